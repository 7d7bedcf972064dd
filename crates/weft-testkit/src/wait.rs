//! Waiting for a condition in tests: poll until it holds, fail after a deadline.
//!
//! This is the one place tests wait on real time. Use it for things outside the test's
//! control (another process becoming ready, a file watcher firing); use tokio's paused
//! clock for timers the code under test owns.

use std::future::Future;
use std::time::Duration;

/// How often a condition is re-checked.
const POLL: Duration = Duration::from_millis(20);

/// Poll `check` until it returns true. Returns false if `timeout` passes first, so the
/// caller can fail with whatever context it has (logs, status).
pub async fn until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`until`] for synchronous code (e.g. a `Drop` that must wait for a child process).
pub fn until_blocking(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Poll `check` until it returns true; panic naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(
        until(timeout, check).await,
        "timed out after {timeout:?} waiting: {what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn polls_until_true_or_deadline() {
        let n = AtomicU32::new(0);
        assert!(
            until(Duration::from_secs(1), || async {
                n.fetch_add(1, Ordering::SeqCst) >= 3
            })
            .await
        );
        assert_eq!(n.load(Ordering::SeqCst), 4);
        assert!(!until(Duration::from_millis(100), || async { false }).await);
    }

    #[test]
    fn blocking_polls_until_true_or_deadline() {
        let mut n = 0;
        assert!(until_blocking(Duration::from_secs(5), || {
            n += 1;
            n >= 3
        }));
        assert_eq!(n, 3);
        assert!(!until_blocking(Duration::from_millis(30), || false));
    }
}
