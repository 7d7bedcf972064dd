//! Mesh mTLS between two sidecars through the tunnel: HTTP with the client's identity
//! forwarded in XFCC, TCP through CONNECT, one shared connection for many requests, and a
//! server that is not who the endpoint says is refused.

mod mtls_support;

use std::time::Duration;

use mtls_support::{DEADLINE, Sidecar, TestMesh, client_config, server_config};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_testkit::client::TestClient;
use weft_testkit::echo::EchoServer;
use weft_testkit::tcp::TcpEchoServer;

struct Pair {
    mesh: TestMesh,
    app: EchoServer,
    _tcp_app: TcpEchoServer,
    server: Sidecar,
    client: Sidecar,
}

async fn pair(expected_server: Option<&str>, tls: serde_json::Value) -> Pair {
    let mesh = TestMesh::new();
    let app = EchoServer::start("app").await.expect("echo app");
    let tcp_app = TcpEchoServer::start().await.expect("tcp echo app");
    let server = Sidecar::start(
        server_config(app.addr, tcp_app.addr, None),
        mesh.identity("server"),
    )
    .await;
    let expected = expected_server.map_or_else(|| mesh.id("server"), str::to_string);
    let client = Sidecar::start(
        client_config(server.addr("tunnel"), &expected, tls),
        mesh.identity("client"),
    )
    .await;
    Pair {
        mesh,
        app,
        _tcp_app: tcp_app,
        server,
        client,
    }
}

#[tokio::test]
async fn http_through_both_sidecars_carries_the_client_identity() {
    let p = pair(None, json!("istio_mutual")).await;
    let mut client = TestClient::h1(p.client.addr("outbound"))
        .await
        .expect("connect");
    let resp = client
        .get(
            "svc:3002",
            "/hello?x=1",
            &[("x-forwarded-client-cert", "URI=spiffe://forged")],
        )
        .await
        .expect("response");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let echoed = resp.echoed();
    assert_eq!(echoed.path, "/hello");
    // The app spoke HTTP/1.1 to the client sidecar and hears HTTP/1.1 from the server's.
    assert_eq!(echoed.version, "HTTP/1.1");
    assert_eq!(
        echoed.headers.get("host").map(String::as_str),
        Some("svc:3002")
    );
    let xfcc = echoed
        .headers
        .get("x-forwarded-client-cert")
        .expect("XFCC reaches the app");
    assert!(
        xfcc.ends_with(&format!(
            "By={};URI={}",
            p.mesh.id("server"),
            p.mesh.id("client")
        )),
        "{xfcc}"
    );
    assert!(
        !echoed.headers.contains_key("x-weft-tunnel-target"),
        "tunnel headers are stripped: {:?}",
        echoed.headers
    );
    assert_eq!(p.app.requests(), 1);
    assert_eq!(
        p.server
            .metric("weft_tunnel_connections_accepted_total")
            .await,
        1.0
    );
}

#[tokio::test]
async fn tcp_goes_through_a_connect_stream() {
    let p = pair(None, json!("istio_mutual")).await;
    let mut conn = TcpStream::connect(p.client.addr("outbound-tcp"))
        .await
        .expect("connect");
    for msg in [&b"first"[..], b"second message", &[0u8, 1, 2, 255]] {
        conn.write_all(msg).await.expect("write");
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(DEADLINE, conn.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .expect("read");
        assert_eq!(buf, msg);
    }
    // Half-close travels through the tunnel: the echo app sees EOF and closes.
    conn.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    tokio::time::timeout(DEADLINE, conn.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read to end");
    assert!(rest.is_empty());
    assert_eq!(
        p.server.metric("weft_tunnel_streams_received_total").await,
        1.0
    );
}

#[tokio::test]
async fn many_requests_share_one_mtls_connection() {
    let p = pair(None, json!("istio_mutual_auto")).await;
    let addr = p.client.addr("outbound");
    let mut tasks = Vec::new();
    for i in 0..8 {
        tasks.push(tokio::spawn(async move {
            let mut c = TestClient::h1(addr).await.expect("connect");
            for j in 0..10 {
                let resp = c
                    .get("svc", &format!("/r/{i}/{j}"), &[])
                    .await
                    .expect("response");
                assert_eq!(resp.status, 200, "{}", resp.text());
            }
        }));
    }
    // TCP streams join the same connection.
    let mut tcp = TcpStream::connect(p.client.addr("outbound-tcp"))
        .await
        .expect("connect");
    tcp.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    tokio::time::timeout(DEADLINE, tcp.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    for t in tasks {
        t.await.expect("client task");
    }
    assert_eq!(p.app.requests(), 80);
    assert_eq!(
        p.server
            .metric("weft_tunnel_connections_accepted_total")
            .await,
        1.0
    );
    assert_eq!(
        p.server.metric("weft_tunnel_streams_received_total").await,
        81.0
    );
    assert_eq!(p.client.metric("weft_mesh_connections_total").await, 1.0);
    assert_eq!(p.client.metric("weft_mesh_connections_active").await, 1.0);
}

#[tokio::test]
async fn a_server_with_the_wrong_identity_is_refused() {
    let p = pair(
        Some("spiffe://cluster.local/ns/default/sa/payments"),
        json!("istio_mutual"),
    )
    .await;
    let mut client = TestClient::h1(p.client.addr("outbound"))
        .await
        .expect("connect");
    let resp = client.get("svc", "/", &[]).await.expect("response");
    assert_eq!(resp.status, 503);
    let error = resp
        .header("x-weft-error")
        .expect("x-weft-error")
        .to_string();
    assert!(
        error.starts_with("upstream_tls_failed; flag=UF;"),
        "{error}"
    );
    assert!(
        error.contains("spiffe://cluster.local/ns/default/sa/payments"),
        "{error}"
    );
    assert_eq!(p.app.requests(), 0);
    assert_eq!(
        p.server
            .metric("weft_tunnel_connections_accepted_total")
            .await,
        0.0
    );
    assert!(p.client.metric("weft_mesh_connect_failures_total").await >= 1.0);
    // TCP is refused too: the connection closes without a byte from the app.
    let mut tcp = TcpStream::connect(p.client.addr("outbound-tcp"))
        .await
        .expect("connect");
    let _ = tcp.write_all(b"secret").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {rest:?}");
}

#[tokio::test]
async fn istio_mutual_never_falls_back_to_plaintext() {
    let mesh = TestMesh::new();
    let app = EchoServer::start("app").await.expect("echo app");
    // An endpoint with no tunnel: ISTIO_MUTUAL refuses, auto-mTLS would send plaintext.
    let mut config = client_config(
        "127.0.0.1:1".parse().expect("addr"),
        "x",
        json!("istio_mutual"),
    );
    for c in &mut config.clusters {
        for e in &mut c.endpoints {
            e.tunnel = None;
            e.address = app.addr.to_string();
        }
    }
    let strict = Sidecar::start(config.clone(), mesh.identity("client")).await;
    let mut client = TestClient::h1(strict.addr("outbound"))
        .await
        .expect("connect");
    let resp = client.get("svc", "/", &[]).await.expect("response");
    assert_eq!(resp.status, 503);
    let error = resp.header("x-weft-error").expect("x-weft-error");
    assert!(error.starts_with("mtls_no_tunnel; flag=UF;"), "{error}");
    assert_eq!(app.requests(), 0);

    for c in &mut config.clusters {
        c.tls = weft_api::UpstreamTls::IstioMutualAuto;
    }
    let auto = Sidecar::start(config, mesh.identity("client")).await;
    let mut client = TestClient::h1(auto.addr("outbound"))
        .await
        .expect("connect");
    let resp = client.get("svc", "/", &[]).await.expect("response");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(app.requests(), 1);
}

#[tokio::test]
async fn circuit_breakers_count_tunnelled_requests() {
    let mesh = TestMesh::new();
    let app = EchoServer::start("app").await.expect("echo app");
    let tcp_app = TcpEchoServer::start().await.expect("tcp app");
    let server = Sidecar::start(
        server_config(app.addr, tcp_app.addr, None),
        mesh.identity("server"),
    )
    .await;
    let mut config = client_config(
        server.addr("tunnel"),
        &mesh.id("server"),
        json!("istio_mutual"),
    );
    for c in &mut config.clusters {
        c.limits.max_requests = 1;
        c.limits.max_connections = 1;
    }
    let client = Sidecar::start(config, mesh.identity("client")).await;
    let addr = client.addr("outbound");
    let slow = tokio::spawn(async move {
        let mut c = TestClient::h1(addr).await.expect("connect");
        c.get("svc", "/slow", &[("x-echo-delay-ms", "5000")]).await
    });
    weft_testkit::wait::eventually("the slow request reached the app", DEADLINE, || async {
        app.requests() == 1
    })
    .await;
    let mut c = TestClient::h1(addr).await.expect("connect");
    let resp = c.get("svc", "/second", &[]).await.expect("response");
    assert_eq!(resp.status, 503);
    let error = resp.header("x-weft-error").expect("x-weft-error");
    assert!(error.starts_with("upstream_overflow; flag=UO;"), "{error}");
    assert!(error.contains("http2MaxRequests=1"), "{error}");
    // The slow HTTP/1 request held the only connection slot; TCP streams take slots too.
    assert_eq!(
        slow.await.expect("task").expect("slow response").status,
        200
    );
    // maxConnections caps tunnelled TCP streams: the second stream is refused.
    let mut first = TcpStream::connect(client.addr("outbound-tcp"))
        .await
        .expect("connect");
    first.write_all(b"one").await.expect("write");
    let mut buf = [0u8; 3];
    tokio::time::timeout(DEADLINE, first.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    let mut second = TcpStream::connect(client.addr("outbound-tcp"))
        .await
        .expect("connect");
    let _ = second.write_all(b"two").await;
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, second.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {rest:?}");
}

/// HTTP/1 requests through the tunnel hold a `maxConnections` slot until their response
/// head, and wait as `http1MaxPendingRequests` when none is free, as they would on
/// plaintext HTTP/1 connections: the circuit breaker of a DestinationRule trips the same
/// with and without mTLS.
#[tokio::test]
async fn tunnelled_http1_requests_take_connection_slots_and_queue() {
    let mesh = TestMesh::new();
    let app = EchoServer::start("app").await.expect("echo app");
    let tcp_app = TcpEchoServer::start().await.expect("tcp app");
    let server = Sidecar::start(
        server_config(app.addr, tcp_app.addr, None),
        mesh.identity("server"),
    )
    .await;
    let mut config = client_config(
        server.addr("tunnel"),
        &mesh.id("server"),
        json!("istio_mutual"),
    );
    for c in &mut config.clusters {
        c.limits.max_connections = 1;
        c.limits.max_pending_requests = 1;
    }
    let client = Sidecar::start(config, mesh.identity("client")).await;
    let addr = client.addr("outbound");
    let slow = tokio::spawn(async move {
        let mut c = TestClient::h1(addr).await.expect("connect");
        c.get("svc", "/slow", &[("x-echo-delay-ms", "3000")]).await
    });
    weft_testkit::wait::eventually("the slow request reached the app", DEADLINE, || async {
        app.requests() == 1
    })
    .await;
    // Of two more requests, one waits for the slot (pending) and the other overflows.
    let more: Vec<_> = ["/second", "/third"]
        .into_iter()
        .map(|path| {
            tokio::spawn(async move {
                let mut c = TestClient::h1(addr).await.expect("connect");
                c.get("svc", path, &[]).await.expect("response")
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in more {
        let resp = task.await.expect("task");
        if resp.status == 503 {
            let error = resp.header("x-weft-error").expect("x-weft-error");
            assert!(error.starts_with("upstream_overflow; flag=UO;"), "{error}");
            assert!(error.contains("http1MaxPendingRequests=1"), "{error}");
        }
        statuses.push(resp.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 503]);
    assert_eq!(slow.await.expect("task").expect("slow").status, 200);
}
