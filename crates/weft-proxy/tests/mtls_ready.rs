//! Readiness with an identity source: `/ready` waits for the first certificate as well as
//! the first config, and says which one it waits for; the certificate counters and expiry
//! are exported.

mod mtls_support;

use std::net::SocketAddr;

use mtls_support::{DEADLINE, TestMesh, server_config};
use tokio::sync::watch;
use weft_proxy::app::{self, ProxyOptions};
use weft_proxy::identity::{IdentitySource, IdentityStats};
use weft_proxy::source::StaticSource;
use weft_testkit::client::TestClient;

async fn ready(admin: SocketAddr) -> (u16, String) {
    let mut c = TestClient::h1(admin).await.expect("admin");
    let resp = c.get("admin", "/ready", &[]).await.expect("ready");
    (resp.status.as_u16(), resp.text())
}

#[tokio::test]
async fn ready_only_with_config_and_certificate() {
    let mesh = TestMesh::new();
    let (tx, rx) = watch::channel(None);
    let options = ProxyOptions {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        identity: Some(IdentitySource {
            rx,
            stats: IdentityStats::default(),
        }),
        ..ProxyOptions::default()
    };
    let config = server_config(
        "127.0.0.1:1".parse().expect("addr"),
        "127.0.0.1:1".parse().expect("addr"),
        Some("STRICT"),
    );
    let running = app::build(options, StaticSource::new(config))
        .await
        .expect("starts");
    let mut status = running.status();
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.applied.is_some()))
        .await
        .expect("config applied in time")
        .expect("status open");
    assert!(!running.ready());
    let (code, text) = ready(running.admin_addr()).await;
    assert_eq!(code, 503);
    assert!(
        text.contains("waiting for the workload certificate"),
        "{text}"
    );

    let identity = mesh.identity("server");
    tx.send_replace(Some(identity.clone()));
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.ready))
        .await
        .expect("ready once the certificate is there")
        .expect("status open");
    assert_eq!(ready(running.admin_addr()).await.0, 200);

    let mut c = TestClient::h1(running.admin_addr()).await.expect("admin");
    let stats = c
        .get("admin", "/stats/prometheus", &[])
        .await
        .expect("stats")
        .text();
    let expiry = identity
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs();
    assert!(
        stats.contains(&format!("weft_certificate_expiry_seconds {expiry}\n")),
        "{stats}"
    );
    assert!(
        stats.contains("weft_certificate_issued_total 0\n"),
        "{stats}"
    );

    // An expired certificate without a replacement (the manager publishes `None`) makes
    // the proxy unready again.
    tx.send_replace(None);
    tokio::time::timeout(DEADLINE, status.wait_for(|s| !s.ready))
        .await
        .expect("unready in time")
        .expect("status open");
}
