//! `/metrics` of a control plane with a CA: `weft_control_ca_cert_expiry_seconds` gives
//! the notAfter of the root and of a plugged-in intermediate, read from the CA's files.

#[path = "support/fake_proxy.rs"]
mod fake_proxy;

use std::net::SocketAddr;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use weft_control::ca::certs_from_pem;
use weft_control::source::DirectorySource;
use weft_control::{CaSettings, ControlPlane, Options};

fn ca_params(cn: &str, days: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    p.not_after = OffsetDateTime::now_utc() + Duration::days(days);
    p
}

/// A root valid 10 years and an intermediate valid 20 days, in Istio's `cacerts` layout.
fn plug_in(dir: &Path) {
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca_params("test root", 3650);
    let root = root_params.self_signed(&root_key).expect("root");
    let issuer = Issuer::new(root_params, root_key);
    let inter_key = KeyPair::generate().expect("key");
    let inter = ca_params("test intermediate", 20)
        .signed_by(&inter_key, &issuer)
        .expect("intermediate");
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).expect("write");
    write("ca-cert.pem", inter.pem());
    write("ca-key.pem", inter_key.serialize_pem());
    write("root-cert.pem", root.pem());
    write("cert-chain.pem", format!("{}{}", inter.pem(), root.pem()));
}

/// notAfter (Unix seconds) of the first certificate of `dir/file`.
fn not_after(dir: &Path, file: &str) -> i64 {
    let text = std::fs::read_to_string(dir.join(file)).expect("read");
    let certs = certs_from_pem(&text).expect("pem");
    certs[0]
        .x509()
        .expect("x509")
        .validity()
        .not_after
        .timestamp()
}

/// A control plane with its CA in `ca_dir`; the `weft_control_ca_cert_expiry_seconds`
/// series of its `/metrics`, by `cert` label.
async fn expiry_series(ca_dir: &Path) -> Vec<(String, i64)> {
    let config = tempfile::tempdir().expect("config dir");
    let cp = ControlPlane::start(
        Options {
            debug: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ca: Some(CaSettings::new(ca_dir)),
            ..Options::default()
        },
        Box::new(DirectorySource::new(config.path()).expect("watch")),
    )
    .await
    .expect("control plane starts");
    let debug = cp.debug_addr().expect("debug listener");
    let (status, text) = fake_proxy::get(debug, "/metrics")
        .await
        .expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("# TYPE weft_control_ca_cert_expiry_seconds gauge"),
        "{text}"
    );
    let prefix = "weft_control_ca_cert_expiry_seconds{cert=\"";
    let series = text
        .lines()
        .filter_map(|l| {
            let (cert, value) = l.strip_prefix(prefix)?.split_once("\"} ")?;
            Some((cert.to_owned(), value.parse().expect("a number")))
        })
        .collect();
    cp.stop();
    series
}

#[tokio::test]
async fn plugged_in_ca_reports_root_and_intermediate_expiry() {
    let dir = tempfile::tempdir().expect("ca dir");
    plug_in(dir.path());
    let root = not_after(dir.path(), "root-cert.pem");
    let inter = not_after(dir.path(), "ca-cert.pem");
    assert!(inter < root);
    let mut series = expiry_series(dir.path()).await;
    series.sort();
    assert_eq!(
        series,
        vec![
            ("intermediate".to_owned(), inter),
            ("root".to_owned(), root)
        ]
    );
}

#[tokio::test]
async fn generated_root_reports_only_the_root() {
    let dir = tempfile::tempdir().expect("ca dir");
    let ca_dir = dir.path().join("ca");
    let series = expiry_series(&ca_dir).await;
    let root = not_after(&ca_dir, "root-cert.pem");
    assert_eq!(series, vec![("root".to_owned(), root)]);
    // The generated root lives 10 years.
    let ten_years = OffsetDateTime::now_utc() + Duration::days(3650);
    assert!(
        (root - ten_years.unix_timestamp()).abs() < 86_400,
        "root expires at {root}"
    );
}
