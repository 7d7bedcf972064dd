//! Failure injection, for tests of the mesh's resilience (outlier detection, retries):
//! make one replica answer 503 on purpose.
//!
//! - `FAIL_FIRST=N`: the first N requests fail.
//! - `FAIL_RATE=R` (0.0-1.0): after those, each request fails with probability R.
//! - `FAIL_SEED=S`: seed for the `FAIL_RATE` draws, so a run is reproducible.
//!
//! Off by default. `/health` and `/ready` never fail and are not counted: the point is to
//! fail application traffic the mesh sees, not to get the process restarted.
//! Injected failures carry `x-shop-injected-failure: true` so tests can tell them apart.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::config::{ConfigError, Env};

pub const INJECTED_HEADER: &str = "x-shop-injected-failure";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailConfig {
    pub first: u64,
    pub rate: f64,
    pub seed: Option<u64>,
}

impl FailConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let rate: f64 = env.parse_or("FAIL_RATE", 0.0)?;
        if !(0.0..=1.0).contains(&rate) {
            let raw = env.get("FAIL_RATE").unwrap_or_default();
            return Err(ConfigError::invalid(
                "FAIL_RATE",
                raw,
                "must be a fraction between 0.0 and 1.0",
            ));
        }
        Ok(FailConfig {
            first: env.parse_or("FAIL_FIRST", 0)?,
            rate,
            seed: env.parse_opt("FAIL_SEED")?,
        })
    }

    pub fn is_off(&self) -> bool {
        self.first == 0 && self.rate == 0.0
    }
}

/// Decides, request by request, whether to fail.
#[derive(Debug)]
pub struct FailInjector {
    config: FailConfig,
    seen: AtomicU64,
    rng: Mutex<fastrand::Rng>,
}

impl FailInjector {
    pub fn new(config: FailConfig) -> Self {
        let rng = match config.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        FailInjector {
            config,
            seen: AtomicU64::new(0),
            rng: Mutex::new(rng),
        }
    }

    /// Why the next request should fail, or `None` to serve it.
    pub fn next_failure(&self) -> Option<String> {
        let n = self.seen.fetch_add(1, Ordering::Relaxed);
        if n < self.config.first {
            return Some(format!(
                "injected failure: request {} of the first {} (FAIL_FIRST)",
                n + 1,
                self.config.first
            ));
        }
        if self.config.rate > 0.0 {
            // A poisoned lock only means another request panicked mid-draw; the generator
            // state is still usable.
            let draw = self.rng.lock().unwrap_or_else(|p| p.into_inner()).f64();
            if draw < self.config.rate {
                return Some(format!("injected failure: FAIL_RATE={}", self.config.rate));
            }
        }
        None
    }
}

/// axum middleware: answer 503 when the injector says so.
pub async fn middleware(
    State(injector): State<Arc<FailInjector>>,
    request: Request,
    next: Next,
) -> Response {
    match injector.next_failure() {
        Some(reason) => {
            tracing::warn!(path = %request.uri().path(), %reason, "failing request on purpose");
            let mut response = crate::error::ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason)
                .into_response();
            response
                .headers_mut()
                .insert(INJECTED_HEADER, http::HeaderValue::from_static("true"));
            response
        }
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<FailConfig, ConfigError> {
        FailConfig::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn off_by_default() {
        let config = config(&[]).unwrap();
        assert!(config.is_off());
        let injector = FailInjector::new(config);
        assert!((0..100).all(|_| injector.next_failure().is_none()));
    }

    #[test]
    fn first_n_requests_fail() {
        let injector = FailInjector::new(config(&[("FAIL_FIRST", "2")]).unwrap());
        assert!(
            injector
                .next_failure()
                .unwrap()
                .contains("request 1 of the first 2")
        );
        assert!(injector.next_failure().is_some());
        assert!((0..50).all(|_| injector.next_failure().is_none()));
    }

    #[test]
    fn seeded_rate_is_reproducible_and_near_the_rate() {
        let pairs = [("FAIL_RATE", "0.3"), ("FAIL_SEED", "42")];
        let a = FailInjector::new(config(&pairs).unwrap());
        let b = FailInjector::new(config(&pairs).unwrap());
        let draws_a: Vec<bool> = (0..2000).map(|_| a.next_failure().is_some()).collect();
        let draws_b: Vec<bool> = (0..2000).map(|_| b.next_failure().is_some()).collect();
        assert_eq!(draws_a, draws_b, "same seed, same sequence");
        // 2000 Bernoulli(0.3) draws: standard deviation ~20, so ±100 is 5 sigma.
        let failed = draws_a.iter().filter(|&&f| f).count();
        assert!((500..=700).contains(&failed), "failed {failed} of 2000");
    }

    #[test]
    fn rate_outside_zero_to_one_names_the_variable() {
        let err = config(&[("FAIL_RATE", "1.5")]).unwrap_err().to_string();
        assert!(err.contains("FAIL_RATE=\"1.5\""), "{err}");
        let err = config(&[("FAIL_FIRST", "-1")]).unwrap_err().to_string();
        assert!(err.contains("FAIL_FIRST"), "{err}");
    }
}
