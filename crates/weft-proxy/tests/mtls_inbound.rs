//! PeerAuthentication on a service port: STRICT refuses plaintext and serves mesh mTLS,
//! PERMISSIVE serves both on the same port, DISABLE leaves TLS to the application.

mod mtls_support;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use mtls_support::{DEADLINE, Sidecar, TestMesh, client_config, server_config};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use weft_proxy::identity::{Identity, PeerIdentities, client_config as mesh_client_config};
use weft_testkit::client::TestClient;
use weft_testkit::echo::{EchoServer, Echoed};
use weft_testkit::tcp::TcpEchoServer;

struct Server {
    mesh: TestMesh,
    app: EchoServer,
    _tcp_app: TcpEchoServer,
    sidecar: Sidecar,
}

async fn server(mode: &str) -> Server {
    let mesh = TestMesh::new();
    let app = EchoServer::start("app").await.expect("echo app");
    let tcp_app = TcpEchoServer::start().await.expect("tcp app");
    let sidecar = Sidecar::start(
        server_config(app.addr, tcp_app.addr, Some(mode)),
        mesh.identity("server"),
    )
    .await;
    Server {
        mesh,
        app,
        _tcp_app: tcp_app,
        sidecar,
    }
}

/// An HTTP/1.1 GET over mesh mTLS straight to a service port (as an Istio sidecar or
/// another mesh client would connect), offering Istio's ALPN.
async fn mtls_get(
    addr: std::net::SocketAddr,
    identity: &Identity,
    path: &str,
) -> Result<(u16, Echoed), String> {
    tls_get(addr, identity, path, &[b"istio", b"http/1.1"]).await
}

async fn tls_get(
    addr: std::net::SocketAddr,
    identity: &Identity,
    path: &str,
    alpn: &[&[u8]],
) -> Result<(u16, Echoed), String> {
    let mut config =
        mesh_client_config(identity, PeerIdentities::Any).map_err(|e| e.to_string())?;
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("svc").map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", "svc:3002")
        .header("x-forwarded-client-cert", "URI=spiffe://upstream-hop")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let echoed = serde_json::from_slice(&body).map_err(|e| format!("{e}: {body:?}"))?;
    Ok((status, echoed))
}

#[tokio::test]
async fn strict_refuses_plaintext_and_serves_mtls() {
    let s = server("STRICT").await;
    let port = s.sidecar.addr("inbound|3002");

    let mut plain = TestClient::h1(port).await.expect("TCP connect succeeds");
    assert!(
        plain.get("svc", "/", &[]).await.is_err(),
        "a plaintext request must not be answered"
    );
    // Raw bytes: the proxy closes without answering.
    let mut raw = TcpStream::connect(port).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"GET / HTTP/1.1\r\nhost: svc\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(DEADLINE, raw.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?} {rest:?}");
    assert_eq!(s.app.requests(), 0);
    assert_eq!(
        s.sidecar
            .metric("weft_inbound_plaintext_refused_total")
            .await,
        2.0
    );

    let client = s.mesh.identity("client");
    let (status, echoed) = mtls_get(port, &client, "/strict")
        .await
        .expect("mTLS request");
    assert_eq!(status, 200);
    assert_eq!(echoed.path, "/strict");
    let xfcc = &echoed.headers["x-forwarded-client-cert"];
    assert_eq!(
        xfcc,
        &format!(
            "URI=spiffe://upstream-hop,By={};URI={}",
            s.mesh.id("server"),
            s.mesh.id("client")
        )
    );
    assert_eq!(
        s.sidecar
            .metric("weft_inbound_mtls_connections_total")
            .await,
        1.0
    );

    // A certificate from another CA is refused in the handshake and counted.
    let stranger = TestMesh::new().identity("client");
    assert!(mtls_get(port, &stranger, "/").await.is_err());
    assert_eq!(s.app.requests(), 1);
    assert_eq!(
        s.sidecar
            .metric("weft_inbound_mtls_handshake_failures_total")
            .await,
        1.0
    );

    // The tunnel is mTLS too: STRICT ports take tunnelled requests.
    let peer = Sidecar::start(
        client_config(
            s.sidecar.addr("tunnel"),
            &s.mesh.id("server"),
            json!("istio_mutual"),
        ),
        client,
    )
    .await;
    let mut c = TestClient::h1(peer.addr("outbound"))
        .await
        .expect("connect");
    let resp = c.get("svc", "/via-tunnel", &[]).await.expect("response");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(s.app.requests(), 2);
}

#[tokio::test]
async fn permissive_serves_plaintext_and_mtls_on_one_port() {
    let s = server("PERMISSIVE").await;
    let port = s.sidecar.addr("inbound|3002");

    let mut plain = TestClient::h1(port).await.expect("connect");
    let resp = plain
        .get(
            "svc",
            "/plain",
            &[("x-forwarded-client-cert", "URI=spiffe://forged")],
        )
        .await
        .expect("plaintext answered");
    assert_eq!(resp.status, 200);
    let echoed = resp.echoed();
    assert_eq!(echoed.path, "/plain");
    assert!(
        !echoed.headers.contains_key("x-forwarded-client-cert"),
        "a plaintext client's XFCC is removed: {:?}",
        echoed.headers
    );

    let (status, echoed) = mtls_get(port, &s.mesh.identity("client"), "/mtls")
        .await
        .expect("mTLS request");
    assert_eq!(status, 200);
    assert_eq!(echoed.path, "/mtls");
    assert!(
        echoed.headers["x-forwarded-client-cert"]
            .ends_with(&format!("URI={}", s.mesh.id("client")))
    );

    // TLS without a mesh ALPN is the application's own: passed through, not terminated
    // (the echo app speaks no TLS, so this handshake fails at the app).
    let client = s.mesh.identity("client");
    assert!(
        tls_get(port, &client, "/", &[b"h2", b"http/1.1"])
            .await
            .is_err()
    );
    assert_eq!(s.app.requests(), 2);

    // h2c plaintext keeps working next to TLS.
    let mut h2 = TestClient::h2(port).await.expect("connect");
    let resp = h2.get("svc", "/h2", &[]).await.expect("h2c answered");
    assert_eq!(resp.status, 200);
    assert_eq!(s.app.requests(), 3);
    assert_eq!(
        s.sidecar
            .metric("weft_inbound_plaintext_refused_total")
            .await,
        0.0
    );
    assert_eq!(
        s.sidecar
            .metric("weft_inbound_mtls_connections_total")
            .await,
        1.0
    );
}

#[tokio::test]
async fn disable_leaves_tls_to_the_application() {
    let s = server("DISABLE").await;
    let port = s.sidecar.addr("inbound|3002");
    // The echo app does not speak TLS, so a TLS client fails; the proxy did not terminate.
    assert!(
        mtls_get(port, &s.mesh.identity("client"), "/")
            .await
            .is_err()
    );
    assert_eq!(
        s.sidecar
            .metric("weft_inbound_mtls_connections_total")
            .await,
        0.0
    );
    let mut plain = TestClient::h1(port).await.expect("connect");
    assert_eq!(plain.get("svc", "/", &[]).await.expect("plain").status, 200);
}
