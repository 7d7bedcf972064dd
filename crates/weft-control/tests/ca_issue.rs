//! The CA signs a CSR for the identity the caller is entitled to, and nothing else.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use rcgen::{CertificateParams, KeyPair, SanType};
use weft_control::ca::{
    CaError, CaOptions, CertificateAuthority, WorkloadIdentity, certs_from_pem,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

fn csr(sans: &[&str]) -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans
        .iter()
        .map(|s| SanType::URI((*s).try_into().expect("ia5")))
        .collect();
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn checkout() -> WorkloadIdentity {
    WorkloadIdentity::new("shop", "checkout").expect("valid identity")
}

#[test]
fn issues_a_leaf_for_the_entitled_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_generate(dir.path(), CaOptions::default()).expect("ca");
    let issued = ca
        .sign_csr(
            &csr(&["spiffe://cluster.local/ns/shop/sa/checkout"]),
            &checkout(),
            None,
        )
        .expect("signed");
    assert_eq!(
        issued.spiffe_id,
        "spiffe://cluster.local/ns/shop/sa/checkout"
    );
    // Self-signed root: leaf then root.
    assert_eq!(issued.cert_chain.len(), 2);
    assert_eq!(issued.cert_chain[1], ca.root_pem());

    let chain: Vec<_> = issued
        .cert_chain
        .iter()
        .flat_map(|p| certs_from_pem(p).expect("pem"))
        .collect();
    ca.trust_bundle()
        .verify_chain(&chain)
        .expect("chain verifies");

    let (_, leaf) = X509Certificate::from_der(&chain[0].der).expect("x509");
    let san = leaf
        .subject_alternative_name()
        .expect("san ext")
        .expect("has san");
    let names: Vec<_> = san.value.general_names.iter().collect();
    assert_eq!(names.len(), 1);
    assert!(
        matches!(names[0], GeneralName::URI(u) if *u == "spiffe://cluster.local/ns/shop/sa/checkout")
    );
    let ku = leaf.key_usage().expect("ku").expect("has ku").value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let eku = leaf
        .extended_key_usage()
        .expect("eku")
        .expect("has eku")
        .value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!leaf.is_ca());

    // Default lifetime 24 h (the leaf is back-dated one minute).
    let life = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert_eq!(life, 24 * 3600 + 60);
    let left = issued
        .not_after
        .duration_since(SystemTime::now())
        .expect("in the future");
    assert!(left <= Duration::from_secs(24 * 3600));
}

#[test]
fn csr_without_sans_gets_the_entitled_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_generate(dir.path(), CaOptions::default()).expect("ca");
    let issued = ca.sign_csr(&csr(&[]), &checkout(), None).expect("signed");
    assert_eq!(
        issued.spiffe_id,
        "spiffe://cluster.local/ns/shop/sa/checkout"
    );
}

#[test]
fn refuses_a_csr_for_another_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_generate(dir.path(), CaOptions::default()).expect("ca");
    let err = ca
        .sign_csr(
            &csr(&["spiffe://cluster.local/ns/kube-system/sa/admin"]),
            &checkout(),
            None,
        )
        .expect_err("must refuse");
    assert!(matches!(err, CaError::IdentityMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("ns/kube-system/sa/admin") && msg.contains("ns/shop/sa/checkout"),
        "{msg}"
    );
    // Asking for its own identity plus another one is refused too.
    let both = csr(&[
        "spiffe://cluster.local/ns/shop/sa/checkout",
        "spiffe://cluster.local/ns/shop/sa/payments",
    ]);
    assert!(ca.sign_csr(&both, &checkout(), None).is_err());
    // Garbage is a clear CSR error.
    let err = ca
        .sign_csr("not a csr", &checkout(), None)
        .expect_err("garbage");
    assert!(matches!(err, CaError::InvalidCsr(_)), "{err}");
}

#[test]
fn requested_ttl_is_honoured_up_to_the_maximum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = CaOptions {
        max_workload_ttl: Duration::from_secs(48 * 3600),
        ..CaOptions::default()
    };
    let ca = CertificateAuthority::load_or_generate(dir.path(), options).expect("ca");
    let life = |ttl: Option<Duration>| {
        let issued = ca.sign_csr(&csr(&[]), &checkout(), ttl).expect("signed");
        let der = certs_from_pem(&issued.cert_chain[0])
            .expect("pem")
            .remove(0)
            .der;
        let (_, leaf) = X509Certificate::from_der(&der).expect("x509");
        leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp() - 60
    };
    assert_eq!(life(Some(Duration::from_secs(600))), 600);
    assert_eq!(life(Some(Duration::from_secs(100 * 24 * 3600))), 48 * 3600);
    assert_eq!(life(Some(Duration::ZERO)), 24 * 3600);
}

#[test]
fn persisted_root_is_reused_on_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("ca");
    let first = CertificateAuthority::load_or_generate(&state, CaOptions::default()).expect("ca");
    let root = first.root_pem().to_owned();
    let mode = std::fs::metadata(state.join("ca-key.pem"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(first);

    let second = CertificateAuthority::load_or_generate(&state, CaOptions::default()).expect("ca");
    assert_eq!(second.root_pem(), root);
    // A leaf signed after the restart verifies against the root from before it.
    let issued = second
        .sign_csr(&csr(&[]), &checkout(), None)
        .expect("signed");
    let chain: Vec<_> = issued
        .cert_chain
        .iter()
        .flat_map(|p| certs_from_pem(p).expect("pem"))
        .collect();
    let bundle = weft_control::ca::TrustBundle::from_pem(&root).expect("bundle");
    bundle
        .verify_chain(&chain)
        .expect("verifies against the old root");

    // Root validity defaults to ten years.
    let der = certs_from_pem(&root).expect("pem").remove(0).der;
    let (_, x) = X509Certificate::from_der(&der).expect("x509");
    let years = (x.validity().not_after.timestamp() - x.validity().not_before.timestamp())
        / (365 * 24 * 3600);
    assert_eq!(years, 10);
}

#[test]
fn trust_domain_comes_from_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = CaOptions {
        trust_domain: weft_control::ca::TrustDomain::new("example.org").expect("td"),
        ..CaOptions::default()
    };
    let ca = CertificateAuthority::load_or_generate(dir.path(), options).expect("ca");
    let issued = ca.sign_csr(&csr(&[]), &checkout(), None).expect("signed");
    assert_eq!(issued.spiffe_id, "spiffe://example.org/ns/shop/sa/checkout");
    let err = ca
        .sign_csr(
            &csr(&["spiffe://cluster.local/ns/shop/sa/checkout"]),
            &checkout(),
            None,
        )
        .expect_err("other trust domain");
    assert!(matches!(err, CaError::IdentityMismatch { .. }));
}
