//! The sampling decision and the random ids, from one random source that tests can seed.

use std::sync::Mutex;

/// Where random numbers come from: the thread-local generator in production (no lock on the
/// request path), a seeded one in tests (reproducible draws).
enum Source {
    Thread,
    Seeded(Mutex<fastrand::Rng>),
}

/// Samples requests that arrive without a decision with probability `percent / 100`, and
/// makes trace and span ids.
pub struct Sampler {
    /// Clamped to 0..=100.
    percent: f64,
    source: Source,
}

impl Sampler {
    pub fn new(percent: f64) -> Sampler {
        Sampler {
            percent: clamp(percent),
            source: Source::Thread,
        }
    }

    /// A sampler whose draws (and ids) are fixed by `seed`.
    pub fn seeded(percent: f64, seed: u64) -> Sampler {
        Sampler {
            percent: clamp(percent),
            source: Source::Seeded(Mutex::new(fastrand::Rng::with_seed(seed))),
        }
    }

    pub fn percent(&self) -> f64 {
        self.percent
    }

    /// The decision for this request: the caller's when it made one (Envoy and Istio honour
    /// an upstream decision, sampled or not), else a draw.
    pub fn decide(&self, upstream: Option<bool>) -> bool {
        if let Some(decision) = upstream {
            return decision;
        }
        if self.percent >= 100.0 {
            return true;
        }
        if self.percent <= 0.0 {
            return false;
        }
        self.f64() * 100.0 < self.percent
    }

    /// A random, non-zero 128-bit trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        loop {
            let id = ((u128::from(self.u64())) << 64 | u128::from(self.u64())).to_be_bytes();
            if id != [0; 16] {
                return id;
            }
        }
    }

    /// A random, non-zero 64-bit span id.
    pub fn span_id(&self) -> [u8; 8] {
        loop {
            let id = self.u64();
            if id != 0 {
                return id.to_be_bytes();
            }
        }
    }

    fn f64(&self) -> f64 {
        match &self.source {
            Source::Thread => fastrand::f64(),
            Source::Seeded(rng) => rng.lock().unwrap_or_else(|e| e.into_inner()).f64(),
        }
    }

    fn u64(&self) -> u64 {
        match &self.source {
            Source::Thread => fastrand::u64(..),
            Source::Seeded(rng) => rng.lock().unwrap_or_else(|e| e.into_inner()).u64(..),
        }
    }
}

fn clamp(percent: f64) -> f64 {
    if percent.is_nan() {
        0.0
    } else {
        percent.clamp(0.0, 100.0)
    }
}
