//! Passive health checking (Envoy outlier detection, DestinationRule `outlierDetection`).
//!
//! Consecutive-error ejection happens as soon as the threshold is reached (as in Envoy);
//! ejected endpoints come back at the first sweep after `base_ejection_time × times
//! ejected`. Sweeps run every `interval`, driven by the request path (the first pick after
//! the interval sweeps) so an idle cluster costs nothing and tests run on tokio's paused
//! clock.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use weft_api::OutlierDetection;

/// What one upstream attempt ended with, as far as health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// Connect failure, reset or timeout: counts as a gateway error and a 5xx.
    LocalFailure,
}

#[derive(Debug, Default)]
pub struct EndpointHealth {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_at: Option<Instant>,
    times_ejected: u32,
}

impl EndpointHealth {
    pub fn is_ejected(&self) -> bool {
        self.ejected_at.is_some()
    }

    /// Counts the outcome; returns true when a threshold is now reached.
    fn record(&mut self, outcome: Outcome, policy: &OutlierDetection) -> bool {
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Status(s) => (s >= 500, matches!(s, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        if is_5xx {
            self.consecutive_5xx += 1;
        } else {
            self.consecutive_5xx = 0;
        }
        if is_gateway {
            self.consecutive_gateway += 1;
        } else {
            self.consecutive_gateway = 0;
        }
        (policy.consecutive_5xx > 0 && self.consecutive_5xx >= policy.consecutive_5xx)
            || (policy.consecutive_gateway_errors > 0
                && self.consecutive_gateway >= policy.consecutive_gateway_errors)
    }

    fn eject(&mut self, now: Instant) {
        self.ejected_at = Some(now);
        self.times_ejected += 1;
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
    }

    /// Un-ejects when the ejection time passed; a healthy endpoint slowly forgets past
    /// ejections (one per interval), as Envoy does.
    fn sweep(&mut self, now: Instant, base: Duration) {
        match self.ejected_at {
            Some(at) if now >= at + base * self.times_ejected.max(1) => self.ejected_at = None,
            Some(_) => {}
            None => self.times_ejected = self.times_ejected.saturating_sub(1),
        }
    }
}

/// The sweep clock of one cluster.
#[derive(Debug)]
pub struct Sweeper {
    next: Mutex<Option<Instant>>,
}

impl Default for Sweeper {
    fn default() -> Self {
        Sweeper {
            next: Mutex::new(None),
        }
    }
}

impl Sweeper {
    /// Runs `sweep` over the endpoints when an interval has passed since the last sweep.
    pub fn maybe_sweep<'a>(
        &self,
        policy: &OutlierDetection,
        endpoints: impl Iterator<Item = &'a Mutex<EndpointHealth>>,
    ) {
        let now = Instant::now();
        {
            let mut next = lock(&self.next);
            match *next {
                Some(at) if now < at => return,
                _ => *next = Some(now + policy.interval.max(Duration::from_millis(1))),
            }
        }
        for health in endpoints {
            lock(health).sweep(now, policy.base_ejection_time);
        }
    }
}

/// Records an outcome for one endpoint of `all`, ejecting it when a threshold is reached
/// and `max_ejection_percent` allows (at least one endpoint may always be ejected, as in
/// Envoy).
pub fn record<'a>(
    policy: &OutlierDetection,
    target: &Mutex<EndpointHealth>,
    all: impl Iterator<Item = &'a Mutex<EndpointHealth>>,
    outcome: Outcome,
) -> bool {
    let reached = lock(target).record(outcome, policy);
    if !reached {
        return false;
    }
    let (mut total, mut ejected) = (0u64, 0u64);
    for h in all {
        total += 1;
        if lock(h).is_ejected() {
            ejected += 1;
        }
    }
    let allowed =
        ejected == 0 || (ejected + 1) * 100 <= u64::from(policy.max_ejection_percent) * total;
    let mut health = lock(target);
    if allowed && !health.is_ejected() {
        health.eject(Instant::now());
        tracing::info!("outlier detection ejected an endpoint");
        true
    } else {
        false
    }
}

/// A poisoned health lock only means another request panicked mid-update; the counters are
/// still usable.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: 0,
            consecutive_gateway_errors: 2,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 50,
            min_health_percent: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejects_after_threshold_and_returns_after_base_time() {
        let p = policy();
        let eps: Vec<Mutex<EndpointHealth>> = (0..2).map(|_| Mutex::default()).collect();
        let sweeper = Sweeper::default();
        sweeper.maybe_sweep(&p, eps.iter());
        assert!(!record(&p, &eps[0], eps.iter(), Outcome::Status(503)));
        assert!(!record(&p, &eps[0], eps.iter(), Outcome::Status(200)));
        assert!(!record(&p, &eps[0], eps.iter(), Outcome::Status(502)));
        assert!(record(&p, &eps[0], eps.iter(), Outcome::LocalFailure));
        assert!(lock(&eps[0]).is_ejected());
        // 50% of two endpoints: the second may not be ejected too.
        record(&p, &eps[1], eps.iter(), Outcome::Status(504));
        assert!(!record(&p, &eps[1], eps.iter(), Outcome::Status(504)));
        assert!(!lock(&eps[1]).is_ejected());

        tokio::time::advance(Duration::from_secs(20)).await;
        sweeper.maybe_sweep(&p, eps.iter());
        assert!(lock(&eps[0]).is_ejected(), "30s have not passed yet");
        tokio::time::advance(Duration::from_secs(10)).await;
        sweeper.maybe_sweep(&p, eps.iter());
        assert!(!lock(&eps[0]).is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn second_ejection_lasts_twice_as_long() {
        let p = policy();
        let eps: Vec<Mutex<EndpointHealth>> = (0..4).map(|_| Mutex::default()).collect();
        let sweeper = Sweeper::default();
        for _ in 0..2 {
            record(&p, &eps[0], eps.iter(), Outcome::LocalFailure);
        }
        tokio::time::advance(Duration::from_secs(30)).await;
        sweeper.maybe_sweep(&p, eps.iter());
        assert!(!lock(&eps[0]).is_ejected());
        for _ in 0..2 {
            record(&p, &eps[0], eps.iter(), Outcome::LocalFailure);
        }
        tokio::time::advance(Duration::from_secs(40)).await;
        sweeper.maybe_sweep(&p, eps.iter());
        assert!(lock(&eps[0]).is_ejected(), "ejected twice: 60s");
        tokio::time::advance(Duration::from_secs(20)).await;
        sweeper.maybe_sweep(&p, eps.iter());
        assert!(!lock(&eps[0]).is_ejected());
    }
}
