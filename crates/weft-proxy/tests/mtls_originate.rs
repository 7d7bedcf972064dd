//! TLS origination (DestinationRule `tls.mode: SIMPLE | MUTUAL`) to a rustls test server:
//! the server is verified against `caCertificates` and `subjectAltNames`, MUTUAL presents
//! the client certificate, and every failure answers `upstream_tls_failed` naming why.

mod mtls_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mtls_support::{DEADLINE, Sidecar, TestMesh, cluster, config, listener, route_table};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_testkit::ca::FakeCa;
use weft_testkit::client::TestClient;

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// An HTTPS server for `localhost` (HTTP/1.1 and h2 by ALPN) answering with what it saw:
/// `tls-client=<SAN of the client certificate or none> alpn=<protocol>`. With `client_ca`,
/// a client certificate signed by it is required.
async fn https_server(ca: &FakeCa, client_ca: Option<&FakeCa>) -> SocketAddr {
    let issued = ca.issue_dns(&["localhost"], YEAR);
    let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("cert")];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let mut config = match client_ca {
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(client_ca.root_pem().as_bytes()).expect("root"))
                .expect("add root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(chain, key)
    .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let (_, session) = tls.get_ref();
                let client = match session.peer_certificates() {
                    Some(_) => "yes",
                    None => "none",
                };
                let alpn = session
                    .alpn_protocol()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .unwrap_or_default();
                let answer = format!("tls-client={client} alpn={alpn}");
                let svc = hyper::service::service_fn(move |_req| {
                    let answer = answer.clone();
                    async move {
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

/// A client sidecar: HTTP (`outbound`, protocol `proto`) and TCP (`outbound-tcp`) to
/// `server`, both originating TLS with `tls`.
fn client(server: SocketAddr, proto: &str, tls: Value) -> weft_api::ProxyConfig {
    let endpoints = json!([{"address": server.to_string()}]);
    let originate = json!({"originate": tls});
    config(json!({
        "version": "origination",
        "listeners": [
            listener("outbound", "outbound", json!([{
                "name": "http", "protocol": {"http": {"route_table": "out"}},
            }])),
            listener("outbound-tcp", "outbound", json!([{
                "name": "tcp",
                "protocol": {"tcp": {"clusters": [{"cluster": "outbound|443||tcp", "weight": 1}]}},
            }])),
        ],
        "route_tables": [route_table("out", "outbound|443||api")],
        "clusters": [
            cluster("outbound|443||api", proto, endpoints.clone(), originate.clone()),
            cluster("outbound|443||tcp", "tcp", endpoints, originate),
        ],
    }))
}

async fn get(sidecar: &Sidecar) -> weft_testkit::client::TestResponse {
    let mut c = TestClient::h1(sidecar.addr("outbound"))
        .await
        .expect("connect");
    c.get("api.example.com", "/", &[]).await.expect("response")
}

async fn start(config: weft_api::ProxyConfig) -> Sidecar {
    // Origination needs no mesh identity; the sidecar has one anyway, as in production.
    Sidecar::start(config, TestMesh::new().identity("client")).await
}

#[tokio::test]
async fn simple_verifies_the_server_and_offers_alpn_by_protocol() {
    let ca = FakeCa::new("example.com");
    let server = https_server(&ca, None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = write(dir.path(), "ca.pem", ca.root_pem());
    let tls = json!({"sni": "localhost", "ca_certificates": ca_file});

    let h1 = start(client(server, "http1", tls.clone())).await;
    let resp = get(&h1).await;
    assert_eq!(resp.status, 200, "{:?} {}", resp.headers, resp.text());
    assert_eq!(resp.text(), "tls-client=none alpn=http/1.1");
    let h2 = start(client(server, "http2", tls.clone())).await;
    assert_eq!(get(&h2).await.text(), "tls-client=none alpn=h2");

    // TCP clusters originate too: raw HTTP/1.1 bytes inside the proxy's TLS.
    let mut raw = TcpStream::connect(h1.addr("outbound-tcp"))
        .await
        .expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, raw.read_to_end(&mut answer))
        .await
        .expect("in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("tls-client=none alpn="), "{answer}");

    // subjectAltNames replaces the SNI as the name to check.
    let mut wrong = tls.clone();
    wrong["subject_alt_names"] = json!(["api.other.test"]);
    let resp = get(&start(client(server, "http1", wrong)).await).await;
    assert_eq!(resp.status, 503);
    let error = resp.header("x-weft-error").expect("x-weft-error");
    assert!(
        error.starts_with("upstream_tls_failed; flag=UF;"),
        "{error}"
    );
    assert!(error.contains("api.other.test"), "{error}");
    let mut right = tls;
    right["subject_alt_names"] = json!(["api.other.test", "localhost"]);
    assert_eq!(
        get(&start(client(server, "http1", right)).await)
            .await
            .status,
        200
    );

    // A server signed by another CA is refused.
    let stranger = FakeCa::new("example.com");
    let other_ca = write(dir.path(), "other.pem", stranger.root_pem());
    let resp = get(&start(client(
        server,
        "http1",
        json!({"sni": "localhost", "ca_certificates": other_ca}),
    ))
    .await)
    .await;
    assert_eq!(resp.status, 503);
    assert!(
        resp.header("x-weft-error")
            .expect("error")
            .contains("other.pem"),
        "{:?}",
        resp.header("x-weft-error")
    );
}

#[tokio::test]
async fn mutual_presents_the_client_certificate() {
    let ca = FakeCa::new("example.com");
    let client_ca = FakeCa::new("clients.example.com");
    let server = https_server(&ca, Some(&client_ca)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let issued = client_ca.issue_dns(&["client.example.com"], YEAR);
    let tls = json!({
        "sni": "localhost",
        "ca_certificates": write(dir.path(), "ca.pem", ca.root_pem()),
        "client_certificate": write(dir.path(), "client.pem", &issued.cert_pem),
        "private_key": write(dir.path(), "client-key.pem", &issued.key_pem),
    });
    let sidecar = start(client(server, "http1", tls.clone())).await;
    let resp = get(&sidecar).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "tls-client=yes alpn=http/1.1");

    // A key file that does not load is named in the error.
    let mut broken = tls;
    broken["private_key"] = json!(write(dir.path(), "broken-key.pem", "not a key"));
    let resp = get(&start(client(server, "http1", broken)).await).await;
    assert_eq!(resp.status, 503);
    let error = resp.header("x-weft-error").expect("x-weft-error");
    assert!(error.starts_with("upstream_tls_failed;"), "{error}");
    assert!(error.contains("broken-key.pem"), "{error}");
}
