//! A plugged-in CA in Istio's `cacerts` layout: root + intermediate made here in the test.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use weft_control::ca::{
    CaError, CaOptions, CertificateAuthority, WorkloadIdentity, certs_from_pem,
};

fn ca_params(cn: &str, not_after: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    p.not_after = not_after;
    p
}

struct Made {
    root_pem: String,
    inter_pem: String,
    inter_key_pem: String,
}

/// A root and an intermediate signed by it; the intermediate's validity ends at `inter_end`.
fn make(inter_end: OffsetDateTime) -> Made {
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca_params(
        "test root",
        OffsetDateTime::now_utc() + Duration::days(3650),
    );
    let root = root_params.self_signed(&root_key).expect("root");
    let issuer = Issuer::new(root_params, root_key);
    let inter_key = KeyPair::generate().expect("key");
    let inter = ca_params("test intermediate", inter_end)
        .signed_by(&inter_key, &issuer)
        .expect("intermediate");
    Made {
        root_pem: root.pem(),
        inter_pem: inter.pem(),
        inter_key_pem: inter_key.serialize_pem(),
    }
}

fn write(dir: &Path, m: &Made) {
    std::fs::write(dir.join("ca-cert.pem"), &m.inter_pem).expect("write");
    std::fs::write(dir.join("ca-key.pem"), &m.inter_key_pem).expect("write");
    std::fs::write(dir.join("root-cert.pem"), &m.root_pem).expect("write");
    std::fs::write(
        dir.join("cert-chain.pem"),
        format!("{}{}", m.inter_pem, m.root_pem),
    )
    .expect("write");
}

fn csr() -> String {
    let key = KeyPair::generate().expect("key");
    CertificateParams::default()
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

#[test]
fn plugged_in_intermediate_signs_leaves_with_the_full_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = make(OffsetDateTime::now_utc() + Duration::days(365));
    write(dir.path(), &made);
    let ca = CertificateAuthority::from_cacerts(dir.path(), CaOptions::default()).expect("ca");
    let id = WorkloadIdentity::new("default", "web").expect("id");
    let issued = ca.sign_csr(&csr(), &id, None).expect("signed");
    assert_eq!(issued.cert_chain.len(), 3, "leaf, intermediate, root");
    assert_eq!(issued.cert_chain[1].trim(), made.inter_pem.trim());
    assert_eq!(issued.cert_chain[2].trim(), made.root_pem.trim());
    let chain: Vec<_> = issued
        .cert_chain
        .iter()
        .flat_map(|p| certs_from_pem(p).expect("pem"))
        .collect();
    assert_eq!(ca.trust_bundle().verify_chain(&chain).expect("verifies"), 0);
    // Only the leaf and intermediate are enough to reach the bundle's root.
    ca.trust_bundle()
        .verify_chain(&chain[..2])
        .expect("verifies without the root");
    // load_or_generate uses the plugged-in files rather than generating a root.
    let again =
        CertificateAuthority::load_or_generate(dir.path(), CaOptions::default()).expect("ca");
    assert_eq!(again.root_pem().trim(), made.root_pem.trim());
}

#[test]
fn missing_file_is_named() {
    for missing in [
        "ca-cert.pem",
        "ca-key.pem",
        "root-cert.pem",
        "cert-chain.pem",
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        write(
            dir.path(),
            &make(OffsetDateTime::now_utc() + Duration::days(365)),
        );
        std::fs::remove_file(dir.path().join(missing)).expect("remove");
        let err = CertificateAuthority::load_or_generate(dir.path(), CaOptions::default())
            .expect_err("incomplete directory");
        assert!(matches!(err, CaError::MissingFile { .. }), "{err}");
        assert!(err.to_string().contains(missing), "{err}");
    }
}

#[test]
fn key_not_matching_the_certificate_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = make(OffsetDateTime::now_utc() + Duration::days(365));
    write(dir.path(), &made);
    let other = KeyPair::generate().expect("key");
    std::fs::write(dir.path().join("ca-key.pem"), other.serialize_pem()).expect("write");
    let err =
        CertificateAuthority::from_cacerts(dir.path(), CaOptions::default()).expect_err("mismatch");
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("ca-key.pem") && msg.contains("ca-cert.pem"),
        "{msg}"
    );
}

#[test]
fn expired_ca_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        &make(OffsetDateTime::now_utc() - Duration::hours(1)),
    );
    let err =
        CertificateAuthority::from_cacerts(dir.path(), CaOptions::default()).expect_err("expired");
    assert!(matches!(err, CaError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("ca-cert.pem"), "{err}");
}

#[test]
fn chain_not_leading_to_the_root_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let made = make(OffsetDateTime::now_utc() + Duration::days(365));
    write(dir.path(), &made);
    let stranger = make(OffsetDateTime::now_utc() + Duration::days(365));
    std::fs::write(dir.path().join("root-cert.pem"), &stranger.root_pem).expect("write");
    std::fs::write(dir.path().join("cert-chain.pem"), &made.inter_pem).expect("write");
    let err = CertificateAuthority::from_cacerts(dir.path(), CaOptions::default())
        .expect_err("broken chain");
    assert!(matches!(err, CaError::ChainBroken { .. }), "{err}");
    assert!(err.to_string().contains("cert-chain.pem"), "{err}");
}

#[test]
fn leaf_lifetime_never_exceeds_the_signing_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let end = OffsetDateTime::now_utc() + Duration::hours(2);
    write(dir.path(), &make(end));
    let ca = CertificateAuthority::from_cacerts(dir.path(), CaOptions::default()).expect("ca");
    let id = WorkloadIdentity::new("default", "web").expect("id");
    let issued = ca.sign_csr(&csr(), &id, None).expect("signed");
    let leaf = certs_from_pem(&issued.cert_chain[0])
        .expect("pem")
        .remove(0);
    let x = leaf.x509().expect("x509");
    assert!(x.validity().not_after.timestamp() <= end.unix_timestamp());
}
