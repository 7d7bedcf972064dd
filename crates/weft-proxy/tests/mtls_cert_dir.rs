//! File-mounted certificates (`--cert-dir`): loaded at start, checked, reloaded when the
//! files change; a bad file is named and keeps the current certificate.

use std::time::Duration;

use weft_proxy::identity::{KEY_FILE, load_cert_dir, watch_cert_dir};
use weft_testkit::ca::FakeCa;

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test(start_paused = true)]
async fn loads_and_reloads_istio_layout() {
    let ca = FakeCa::new("cluster.local");
    let id = ca.spiffe_id("shop", "cart");
    let dir = tempfile::tempdir().expect("tempdir");
    let first = ca.issue_spiffe(&id, DAY);
    ca.write_cert_dir(&first, dir.path()).expect("write");
    let handle = watch_cert_dir(dir.path().to_path_buf()).expect("loads");
    let current = handle.current().expect("a certificate");
    assert_eq!(current.spiffe_id, id);
    let mut rx = handle.subscribe();
    rx.borrow_and_update();

    // A broken key is reported with its file name and the current certificate stays.
    std::fs::write(dir.path().join(KEY_FILE), "garbage").expect("write");
    let err = load_cert_dir(dir.path()).expect_err("bad key");
    assert!(err.to_string().contains("key.pem"), "{err}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(handle.failures(), 1);
    assert_eq!(
        handle.current().expect("kept").cert_chain,
        current.cert_chain
    );

    let second = ca.issue_spiffe(&id, DAY);
    ca.write_cert_dir(&second, dir.path()).expect("rewrite");
    tokio::time::timeout(Duration::from_secs(30), rx.changed())
        .await
        .expect("reloaded")
        .expect("watch open");
    let reloaded = handle.current().expect("a certificate");
    assert_ne!(reloaded.cert_chain, current.cert_chain);
    assert_eq!(handle.issued(), 2);
}

#[test]
fn a_certificate_from_another_root_is_refused() {
    let ca = FakeCa::new("cluster.local");
    let other = FakeCa::new("cluster.local");
    let dir = tempfile::tempdir().expect("tempdir");
    let issued = other.issue_spiffe(&ca.spiffe_id("a", "b"), DAY);
    ca.write_cert_dir(&issued, dir.path()).expect("write");
    let err = load_cert_dir(dir.path()).expect_err("wrong root");
    assert!(err.to_string().contains("cert-chain.pem"), "{err}");
}
