//! The identity manager under tokio's paused clock, against a fake CA: rotation at a
//! fraction of the lifetime, backoff on failure, keeping the certificate until it expires.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, IsCa, Issuer, KeyPair,
    SanType,
};
use tokio::time::Instant;
use weft_proxy::identity::{
    CertificateClient, CertificateReply, IdentityError, IdentityManager, IdentityOptions,
};

const SPIFFE: &str = "spiffe://cluster.local/ns/shop/sa/web";

struct Inner {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    other_root_pem: String,
    ttl: Duration,
    calls: AtomicU64,
    fail: AtomicBool,
    wrong_root: AtomicBool,
}

#[derive(Clone)]
struct FakeCa(Arc<Inner>);

fn root() -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).expect("root").pem();
    (Issuer::new(params, key), pem)
}

impl FakeCa {
    fn new(ttl: Duration) -> Self {
        let (issuer, root_pem) = root();
        let (_, other_root_pem) = root();
        Self(Arc::new(Inner {
            issuer,
            root_pem,
            other_root_pem,
            ttl,
            calls: AtomicU64::new(0),
            fail: AtomicBool::new(false),
            wrong_root: AtomicBool::new(false),
        }))
    }
}

impl CertificateClient for FakeCa {
    async fn create_certificate(
        &self,
        csr_pem: String,
        _ttl: Option<Duration>,
    ) -> Result<CertificateReply, IdentityError> {
        let ca = &self.0;
        ca.calls.fetch_add(1, Ordering::SeqCst);
        if ca.fail.load(Ordering::SeqCst) {
            return Err(IdentityError::Unreachable("fake CA is down".to_owned()));
        }
        let mut csr = CertificateSigningRequestParams::from_pem(&csr_pem).expect("csr");
        let now = SystemTime::now();
        csr.params.subject_alt_names = vec![SanType::URI(SPIFFE.try_into().expect("ia5"))];
        csr.params.not_before = now.into();
        csr.params.not_after = (now + ca.ttl).into();
        let leaf = csr.signed_by(&ca.issuer).expect("sign");
        let root = if ca.wrong_root.load(Ordering::SeqCst) {
            &ca.other_root_pem
        } else {
            &ca.root_pem
        };
        Ok(CertificateReply {
            cert_chain: vec![leaf.pem(), ca.root_pem.clone()],
            trust_bundle: vec![root.clone()],
        })
    }
}

fn options() -> IdentityOptions {
    IdentityOptions {
        refresh_jitter: 0.0,
        backoff_jitter: 0.0,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(8),
        ..IdentityOptions::default()
    }
}

#[tokio::test(start_paused = true)]
async fn rotates_at_half_life() {
    let ca = FakeCa::new(Duration::from_secs(100));
    let handle = IdentityManager::spawn(ca.clone(), options());
    let first = handle.ready().await;
    assert_eq!(first.spiffe_id, SPIFFE);
    assert_eq!(
        first.cert_chain.len(),
        1,
        "the root is not part of the sent chain"
    );
    assert_eq!(first.trust_bundle.len(), 1);
    let expiry = handle.expiry_seconds().expect("has a cert");
    assert!((98..=100).contains(&expiry), "{expiry}");

    let mut rx = handle.subscribe();
    rx.borrow_and_update();
    let mut previous = first;
    for _ in 0..3 {
        let start = Instant::now();
        rx.changed().await.expect("manager alive");
        let elapsed = start.elapsed();
        // X.509 times have whole seconds, so the refresh can come up to 1 s early.
        assert!(
            elapsed <= Duration::from_secs(50) && elapsed >= Duration::from_secs(49),
            "refreshed after {elapsed:?}"
        );
        let next = rx.borrow_and_update().clone().expect("a certificate");
        assert_ne!(next.cert_chain[0], previous.cert_chain[0]);
        assert_ne!(next.key_pkcs8, previous.key_pkcs8, "a fresh key each time");
        previous = next;
    }
    assert_eq!(handle.issued(), 4);
    assert_eq!(handle.failures(), 0);
}

#[tokio::test(start_paused = true)]
async fn refresh_fraction_and_jitter_are_configurable() {
    let ca = FakeCa::new(Duration::from_secs(1000));
    let handle = IdentityManager::spawn(
        ca,
        IdentityOptions {
            refresh_fraction: 0.8,
            refresh_jitter: 0.1,
            seed: Some(7),
            ..options()
        },
    );
    handle.ready().await;
    let mut rx = handle.subscribe();
    rx.borrow_and_update();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        rx.changed().await.expect("manager alive");
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(699) && elapsed <= Duration::from_secs(800),
            "refreshed after {elapsed:?}"
        );
        seen.push(elapsed);
    }
    seen.dedup();
    assert!(seen.len() > 1, "jitter varies the refresh point: {seen:?}");
}

#[tokio::test(start_paused = true)]
async fn failed_refresh_keeps_the_certificate_and_backs_off() {
    let ca = FakeCa::new(Duration::from_secs(100));
    let handle = IdentityManager::spawn(ca.clone(), options());
    let first = handle.ready().await;
    let start = Instant::now();
    ca.0.fail.store(true, Ordering::SeqCst);

    // Refresh at ~50 s fails; retries after 1, 2, 4 s: four failures by 60 s.
    tokio::time::sleep_until(start + Duration::from_secs(60)).await;
    assert_eq!(handle.failures(), 4);
    let current = handle.current().expect("still has the old certificate");
    assert_eq!(current.cert_chain, first.cert_chain);

    // Retries go on every 8 s (the cap): ~64, 72, 80, 88, 96 s. At 100 s the certificate
    // expires and is withdrawn.
    tokio::time::sleep_until(start + Duration::from_secs(99)).await;
    assert_eq!(handle.failures(), 9);
    assert!(handle.current().is_some());
    tokio::time::sleep_until(start + Duration::from_secs(101)).await;
    assert!(
        handle.current().is_none(),
        "an expired certificate is not kept"
    );
    assert_eq!(handle.expiry_seconds(), None);

    // The CA comes back: the next retry (~104 s) installs a new certificate.
    ca.0.fail.store(false, Ordering::SeqCst);
    let mut rx = handle.subscribe();
    let next = rx
        .wait_for(|c| c.is_some())
        .await
        .expect("manager alive")
        .clone()
        .expect("some");
    assert_ne!(next.cert_chain, first.cert_chain);
    assert!(start.elapsed() <= Duration::from_secs(105));
    assert_eq!(ca.0.calls.load(Ordering::SeqCst), 11);

    // After a success the backoff starts again from the initial delay.
    ca.0.fail.store(true, Ordering::SeqCst);
    let restart = Instant::now();
    tokio::time::sleep_until(restart + Duration::from_secs(51)).await;
    assert_eq!(
        handle.failures(),
        11,
        "refresh at ~50 s, then a retry 1 s later"
    );
}

#[tokio::test(start_paused = true)]
async fn certificates_that_do_not_verify_are_refused() {
    let ca = FakeCa::new(Duration::from_secs(100));
    ca.0.wrong_root.store(true, Ordering::SeqCst);
    let handle = IdentityManager::spawn(ca.clone(), options());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(handle.current().is_none());
    assert!(handle.failures() >= 2);
    ca.0.wrong_root.store(false, Ordering::SeqCst);
    let identity = handle.ready().await;
    assert_eq!(identity.spiffe_id, SPIFFE);

    // A manager that expects another identity refuses this CA's certificates.
    let other = IdentityManager::spawn(
        ca,
        IdentityOptions {
            expected_identity: Some("spiffe://cluster.local/ns/shop/sa/db".to_owned()),
            ..options()
        },
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(other.current().is_none());
    assert!(other.failures() >= 2);
}
