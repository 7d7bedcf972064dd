//! The refresh loop: fetch a certificate, publish it, refresh at a fraction of its life;
//! on failure retry with exponential backoff and keep the current certificate until it
//! expires. All timers use tokio's clock (tests run it paused).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, PublicKeyData, SanType};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};

use super::{CertificateClient, Identity, IdentityError};

/// How the identity manager asks for and refreshes certificates.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// Lifetime to ask for; `None` takes the CA's default (24 h).
    pub requested_ttl: Option<Duration>,
    /// Refresh when this fraction of the lifetime has passed (0.5: at half life).
    pub refresh_fraction: f64,
    /// Refresh up to this fraction of the lifetime earlier, at random, so that proxies
    /// started together do not refresh together (0.05).
    pub refresh_jitter: f64,
    /// First retry delay after a failure; doubles on each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Each retry delay is shortened by up to this fraction, at random (0.2).
    pub backoff_jitter: f64,
    /// When set, a certificate for any other SPIFFE ID is refused; the CSR asks for it.
    pub expected_identity: Option<String>,
    /// Seed of the jitter; `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        Self {
            requested_ttl: None,
            refresh_fraction: 0.5,
            refresh_jitter: 0.05,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(150),
            backoff_jitter: 0.2,
            expected_identity: None,
            seed: None,
        }
    }
}

/// Never refresh sooner than this after a success, whatever the certificate says.
const MIN_REFRESH: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Counters {
    issued: AtomicU64,
    failures: AtomicU64,
}

/// Certificates obtained and failed attempts, shared with whoever exports them (the admin
/// endpoint's `weft_certificate_*` counters).
#[derive(Debug, Clone, Default)]
pub struct IdentityStats {
    counters: Arc<Counters>,
}

impl IdentityStats {
    /// Certificates obtained (or, from files, loaded) so far.
    pub fn issued(&self) -> u64 {
        self.counters.issued.load(Ordering::Relaxed)
    }

    /// Failed requests (or loads) so far.
    pub fn failures(&self) -> u64 {
        self.counters.failures.load(Ordering::Relaxed)
    }

    pub(super) fn record(&self, ok: bool) {
        let c = if ok {
            &self.counters.issued
        } else {
            &self.counters.failures
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the proxy's mesh certificate comes from, as `app::build` takes it: the watch of
/// the current identity (`None` until the first certificate, and after one expired) and
/// the counters to export.
#[derive(Debug, Clone)]
pub struct IdentitySource {
    pub rx: watch::Receiver<Option<Arc<Identity>>>,
    pub stats: IdentityStats,
}

/// Starts the refresh loop; see [`IdentityHandle`].
#[derive(Debug)]
pub struct IdentityManager;

impl IdentityManager {
    /// Spawns the loop on the current runtime. It runs until the handle is dropped.
    pub fn spawn<C: CertificateClient>(client: C, options: IdentityOptions) -> IdentityHandle {
        Self::spawn_with_stats(client, options, IdentityStats::default())
    }

    /// As [`IdentityManager::spawn`], counting into `stats` (created before the manager,
    /// e.g. when the proxy starts before its expected identity is known).
    pub fn spawn_with_stats<C: CertificateClient>(
        client: C,
        options: IdentityOptions,
        stats: IdentityStats,
    ) -> IdentityHandle {
        let (tx, rx) = watch::channel(None);
        let counters = stats.counters.clone();
        let rng = match options.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let task = tokio::spawn(run(client, options, tx, counters.clone(), rng));
        IdentityHandle { rx, task, counters }
    }
}

/// The current identity and the loop that keeps it fresh (stopped when dropped).
#[derive(Debug)]
pub struct IdentityHandle {
    rx: watch::Receiver<Option<Arc<Identity>>>,
    task: JoinHandle<()>,
    counters: Arc<Counters>,
}

impl IdentityHandle {
    /// Every new certificate (and `None` once one expired without a replacement).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Identity>>> {
        self.rx.clone()
    }

    /// The watch and counters for `app::build` (the handle must outlive the proxy).
    pub fn source(&self) -> IdentitySource {
        IdentitySource {
            rx: self.rx.clone(),
            stats: IdentityStats {
                counters: self.counters.clone(),
            },
        }
    }

    /// A handle over a loop the caller spawned (see `identity::files`).
    pub(super) fn from_parts(
        rx: watch::Receiver<Option<Arc<Identity>>>,
        task: JoinHandle<()>,
        stats: IdentityStats,
    ) -> IdentityHandle {
        IdentityHandle {
            rx,
            task,
            counters: stats.counters,
        }
    }

    pub fn current(&self) -> Option<Arc<Identity>> {
        self.rx.borrow().clone()
    }

    /// Seconds until the current certificate expires, for metrics and status.
    pub fn expiry_seconds(&self) -> Option<i64> {
        self.rx.borrow().as_ref().map(|i| i.expires_in_secs())
    }

    /// Certificates obtained so far.
    pub fn issued(&self) -> u64 {
        self.counters.issued.load(Ordering::Relaxed)
    }

    /// Failed requests so far.
    pub fn failures(&self) -> u64 {
        self.counters.failures.load(Ordering::Relaxed)
    }

    /// Waits for a certificate (the identity latch: serve mTLS only once this returns).
    pub async fn ready(&self) -> Arc<Identity> {
        let mut rx = self.rx.clone();
        loop {
            if let Some(identity) = rx.borrow_and_update().clone() {
                return identity;
            }
            if rx.changed().await.is_err() {
                // The loop never ends on its own; only a panic closes the channel.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for IdentityHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run<C: CertificateClient>(
    client: C,
    options: IdentityOptions,
    tx: watch::Sender<Option<Arc<Identity>>>,
    counters: Arc<Counters>,
    mut rng: fastrand::Rng,
) {
    let mut failures: u32 = 0;
    let mut expires_at: Option<Instant> = None;
    loop {
        match fetch(&client, &options).await {
            Ok(identity) => {
                failures = 0;
                let (now, wall) = (Instant::now(), SystemTime::now());
                let point =
                    (options.refresh_fraction - rng.f64() * options.refresh_jitter).clamp(0.0, 1.0);
                // The life counts from when we got the certificate: CAs backdate notBefore
                // for clock skew (ours by a minute), which would otherwise pull the refresh
                // of a short-lived certificate far ahead of its half life.
                let issued = identity.not_before.max(wall);
                let life = identity
                    .not_after
                    .duration_since(issued)
                    .unwrap_or_default();
                let refresh_wall = issued + life.mul_f64(point);
                let until_refresh = refresh_wall.duration_since(wall).unwrap_or_default();
                let until_expiry = identity.not_after.duration_since(wall).unwrap_or_default();
                expires_at = Some(now + until_expiry);
                tracing::info!(
                    identity = %identity.spiffe_id,
                    expires_in_secs = until_expiry.as_secs(),
                    refresh_in_secs = until_refresh.as_secs(),
                    "workload certificate installed"
                );
                counters.issued.fetch_add(1, Ordering::Relaxed);
                tx.send_replace(Some(Arc::new(identity)));
                sleep_until(now + until_refresh.max(MIN_REFRESH)).await;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                counters.failures.fetch_add(1, Ordering::Relaxed);
                let delay = backoff(&options, failures, &mut rng);
                let wake = Instant::now() + delay;
                tracing::warn!(
                    %error,
                    attempt = failures,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "workload certificate request failed; keeping the current certificate"
                );
                if let Some(at) = expires_at.filter(|at| *at <= wake) {
                    sleep_until(at).await;
                    tracing::error!("workload certificate expired with no replacement");
                    expires_at = None;
                    tx.send_replace(None);
                }
                sleep_until(wake).await;
            }
        }
    }
}

fn backoff(options: &IdentityOptions, failures: u32, rng: &mut fastrand::Rng) -> Duration {
    let exp = options
        .initial_backoff
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = exp.min(options.max_backoff);
    capped.mul_f64(1.0 - rng.f64() * options.backoff_jitter.clamp(0.0, 1.0))
}

async fn fetch<C: CertificateClient>(
    client: &C,
    options: &IdentityOptions,
) -> Result<Identity, IdentityError> {
    let key = KeyPair::generate().map_err(|e| IdentityError::Csr(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(id) = &options.expected_identity {
        let uri = id
            .clone()
            .try_into()
            .map_err(|e| IdentityError::Csr(format!("identity {id}: {e}")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
    }
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| IdentityError::Csr(e.to_string()))?;
    let reply = client
        .create_certificate(csr, options.requested_ttl)
        .await?;
    let identity = Identity::from_reply(
        &reply.cert_chain,
        &reply.trust_bundle,
        key.serialize_der(),
        key.der_bytes(),
    )?;
    if let Some(expected) = &options.expected_identity
        && identity.spiffe_id != *expected
    {
        return Err(IdentityError::BadCertificate(format!(
            "the certificate is for {}, not {expected}",
            identity.spiffe_id
        )));
    }
    Ok(identity)
}
