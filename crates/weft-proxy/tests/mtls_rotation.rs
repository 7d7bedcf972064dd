//! Certificate rotation mid-traffic: a new certificate published on the identity watch is
//! used for new handshakes (on both sides), while the open tunnel, its TCP stream and the
//! HTTP requests in flight carry on without a failure.

mod mtls_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mtls_support::{DEADLINE, Sidecar, TestMesh, client_config, cluster, listener, server_config};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use weft_proxy::identity::{
    PeerIdentities, client_config as mesh_client_config, server_config as mesh_server_config,
};
use weft_testkit::client::TestClient;
use weft_testkit::echo::EchoServer;
use weft_testkit::tcp::TcpEchoServer;

async fn echo_round(conn: &mut TcpStream, msg: &[u8]) {
    conn.write_all(msg).await.expect("write");
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(DEADLINE, conn.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(buf, msg);
}

/// A TLS server presenting `identity` that reports the leaf certificate each client
/// presents, then hangs up.
async fn probe_server(
    identity: &weft_proxy::identity::Identity,
) -> (std::net::SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut config = mesh_server_config(identity).expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if let Ok(tls) = acceptor.accept(stream).await
                && let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first())
            {
                let _ = tx.send(leaf.as_ref().to_vec());
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn rotation_keeps_open_streams_and_new_handshakes_use_the_new_certificate() {
    let mesh = TestMesh::new();
    let app = EchoServer::start("app").await.expect("app");
    let tcp_app = TcpEchoServer::start().await.expect("tcp app");
    let server = Sidecar::start(
        server_config(app.addr, tcp_app.addr, Some("STRICT")),
        mesh.identity("server"),
    )
    .await;
    // The client also reaches a probe that records the client certificate it is shown.
    let probe_identity = mesh.identity("probe");
    let (probe_addr, mut presented) = probe_server(&probe_identity).await;
    let mut config = client_config(
        server.addr("tunnel"),
        &mesh.id("server"),
        json!("istio_mutual"),
    );
    let probe: weft_api::Cluster = serde_json::from_value(cluster(
        "outbound|9||probe",
        "tcp",
        json!([{"address": "127.0.0.1:9", "tunnel": probe_addr.to_string(), "identity": mesh.id("probe")}]),
        json!("istio_mutual"),
    ))
    .expect("cluster");
    config.clusters.push(probe);
    config.listeners.push(
        serde_json::from_value(listener(
            "outbound-probe",
            "outbound",
            json!([{
                "name": "probe",
                "protocol": {"tcp": {"clusters": [{"cluster": "outbound|9||probe", "weight": 1}]}},
            }]),
        ))
        .expect("listener"),
    );
    let old_client = mesh.identity("client");
    let client = Sidecar::start(config, old_client.clone()).await;

    // Traffic in flight throughout: HTTP requests on the shared tunnel, and a TCP stream.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let addr = client.addr("outbound");
    let loop_task = tokio::spawn({
        let (stop, done) = (stop.clone(), done.clone());
        async move {
            let mut c = TestClient::h1(addr).await.expect("connect");
            while !stop.load(Ordering::Relaxed) {
                let resp = c.get("svc", "/loop", &[]).await.expect("no request fails");
                assert_eq!(resp.status, 200, "{}", resp.text());
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let mut tcp = TcpStream::connect(client.addr("outbound-tcp"))
        .await
        .expect("connect");
    echo_round(&mut tcp, b"before rotation").await;
    let mut probe_conn = TcpStream::connect(client.addr("outbound-probe"))
        .await
        .expect("connect");
    let first = tokio::time::timeout(DEADLINE, presented.recv())
        .await
        .expect("in time")
        .expect("a cert");
    assert_eq!(first, old_client.cert_chain[0]);
    let _ = probe_conn.shutdown().await;

    weft_testkit::wait::eventually("requests flowing", DEADLINE, || async {
        done.load(Ordering::Relaxed) >= 5
    })
    .await;
    let new_server = mesh.identity("server");
    let new_client = mesh.identity("client");
    assert_ne!(
        new_server.cert_chain[0],
        server.identity.borrow().as_ref().expect("cert").cert_chain[0]
    );
    server.identity.send_replace(Some(new_server.clone()));
    client.identity.send_replace(Some(new_client.clone()));
    let at_rotation = done.load(Ordering::Relaxed);

    // The open stream and the shared connection carry on.
    echo_round(&mut tcp, b"after rotation").await;
    weft_testkit::wait::eventually("requests after the rotation", DEADLINE, || async {
        done.load(Ordering::Relaxed) >= at_rotation + 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    loop_task.await.expect("no request failed");
    assert_eq!(
        server
            .metric("weft_tunnel_connections_accepted_total")
            .await,
        1.0
    );

    // New handshakes: the server presents its new certificate...
    let mut tls_config = mesh_client_config(&new_client, PeerIdentities::Any).expect("config");
    tls_config.alpn_protocols = vec![b"h2".to_vec()];
    let stream = TcpStream::connect(server.addr("tunnel"))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("server").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
        .connect(name, stream)
        .await
        .expect("handshake with the rotated server");
    let shown = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("cert");
    assert_eq!(shown.as_ref(), new_server.cert_chain[0].as_slice());
    // ...and the client presents its new one on its next connection.
    let _probe_conn = TcpStream::connect(client.addr("outbound-probe"))
        .await
        .expect("connect");
    let second = tokio::time::timeout(DEADLINE, presented.recv())
        .await
        .expect("in time")
        .expect("a cert");
    assert_eq!(second, new_client.cert_chain[0]);
    // The expiry gauge follows the certificate in use.
    let not_after = new_server
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after epoch")
        .as_secs() as f64;
    assert_eq!(
        server.metric("weft_certificate_expiry_seconds").await,
        not_after
    );
}
