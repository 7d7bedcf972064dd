//! The CA mounted in `ControlPlane::start`, over real gRPC on loopback: a bootstrap token
//! decides the identity signed and the config a proxy may fetch, the certificate shows in
//! the debug API (`/debug/proxy/<id>/secret`, `/debug/proxies`, `/debug/ca`), the trust
//! domain follows mesh config, and `root-cert-next.pem` joins the trust bundle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use weft_api::pb::certificate_service_client::CertificateServiceClient;
use weft_api::pb::discovery_client::DiscoveryClient;
use weft_api::pb::{self, CertificateRequest, CertificateResponse, ProxyMessage};
use weft_compile::Registry;
use weft_control::ca::{
    CaOptions, CertificateAuthority, NEXT_ROOT_CERT, ROOT_CERT, TokenStore, TrustBundle,
    WorkloadIdentity, certs_from_pem,
};
use weft_control::source::{MemoryHandle, MemorySource};
use weft_control::{CaSettings, ControlPlane, Options};

const DEADLINE: Duration = Duration::from_secs(30);

fn registry() -> Registry {
    weft_compile::parse_registry(
        "registry.yaml",
        "instances:\n\
         - {name: client-0, namespace: demo, serviceAccount: client, address: 127.0.0.1}\n\
         - {name: web-0, namespace: demo, serviceAccount: web, address: 127.0.0.2}\n",
    )
    .expect("registry parses")
}

async fn start(ca_dir: &std::path::Path) -> (ControlPlane, MemoryHandle) {
    let (source, handle) = MemorySource::new();
    let cp = ControlPlane::start(
        Options {
            debug: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            tokens: Some(Arc::new(TokenStore::new())),
            registry: registry(),
            ca: Some(CaSettings::new(ca_dir)),
            ..Options::default()
        },
        Box::new(source),
    )
    .await
    .expect("control plane starts");
    (cp, handle)
}

fn csr() -> String {
    let key = KeyPair::generate().expect("key");
    CertificateParams::default()
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

async fn request_cert(
    cp: &ControlPlane,
    token: Option<&str>,
) -> Result<CertificateResponse, tonic::Status> {
    let mut client = CertificateServiceClient::connect(format!("http://{}", cp.grpc_addr()))
        .await
        .expect("connect");
    let mut req = tonic::Request::new(CertificateRequest {
        csr: csr(),
        validity_duration: 0,
    });
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii"),
        );
    }
    client.create_certificate(req).await.map(|r| r.into_inner())
}

fn leaf_uri(pem: &str) -> String {
    let cert = certs_from_pem(pem).expect("pem").remove(0);
    let x = cert.x509().expect("x509");
    let san = x.subject_alternative_name().expect("san").expect("has san");
    match &san.value.general_names[..] {
        [x509_parser::extensions::GeneralName::URI(u)] => u.to_string(),
        other => panic!("expected one URI SAN, got {other:?}"),
    }
}

/// GET a JSON body from the debug API; the status code and the parsed body.
async fn debug_get(cp: &ControlPlane, path: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(cp.debug_addr().expect("debug runs"))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(body.into())),
    )
}

/// Opens a push stream for `proxy_id` with `token`; the stream (kept open) or the refusal.
async fn connect(
    cp: &ControlPlane,
    proxy_id: &str,
    token: &str,
) -> Result<
    (
        mpsc::Sender<ProxyMessage>,
        tonic::Streaming<pb::DeltaResponse>,
    ),
    tonic::Status,
> {
    let mut client = DiscoveryClient::connect(format!("http://{}", cp.grpc_addr()))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(4);
    tx.send(ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Hello(pb::Hello {
            proxy_id: proxy_id.into(),
            token: token.into(),
            ..Default::default()
        })),
    })
    .await
    .expect("queue hello");
    let stream = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    Ok((tx, stream))
}

#[tokio::test]
async fn tokens_decide_certificates_and_config_and_the_debug_api_shows_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cp, _handle) = start(dir.path()).await;
    let client_token = cp.issue_proxy_token("client-0.demo").expect("token");
    let web_token = cp.issue_proxy_token("web-0.demo").expect("token");
    let cart_token = cp.issue_token("shop", "cart").expect("token");
    assert!(cp.issue_proxy_token("nope.demo").is_err());

    // The token's identity is signed; the CSR names nothing.
    let resp = request_cert(&cp, Some(&client_token))
        .await
        .expect("issued");
    assert_eq!(
        leaf_uri(&resp.cert_chain[0]),
        "spiffe://cluster.local/ns/demo/sa/client"
    );
    let root = cp.ca().expect("ca runs").root_pem().to_owned();
    assert_eq!(resp.trust_bundle, vec![root.clone()]);
    let leaf = certs_from_pem(&resp.cert_chain[0]).expect("pem").remove(0);
    let x = leaf.x509().expect("x509");
    let life = x.validity().not_after.timestamp() - x.validity().not_before.timestamp();
    assert_eq!(life, 24 * 3600 + 60, "the default workload TTL is 24 h");
    let serial = x.raw_serial_as_string();

    // A missing or unknown token is refused.
    let err = request_cert(&cp, None).await.expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = request_cert(&cp, Some("forged"))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        err.message().contains("unknown bootstrap token"),
        "{}",
        err.message()
    );

    // The secret view, by proxy id through its bound token, before it ever connected.
    let record = cp.certificate("client-0.demo").expect("recorded");
    assert_eq!(record.certificate.serial, serial);
    let (code, secret) = debug_get(&cp, "/debug/proxy/client-0.demo/secret").await;
    assert_eq!(code, 200, "{secret}");
    assert_eq!(
        secret["certificate"]["name"],
        "spiffe://cluster.local/ns/demo/sa/client"
    );
    assert_eq!(secret["certificate"]["serial"], serial.as_str());
    assert_eq!(secret["identity"], "demo/client");
    assert_eq!(
        secret["certificate"]["not_after"],
        record.certificate.not_after.as_str()
    );
    let roots = secret["trust_bundle"].as_array().expect("roots");
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0]["sha256"].as_str().map(str::len), Some(64));
    let (code, _) = debug_get(&cp, "/debug/proxy/web-0.demo/secret").await;
    assert_eq!(code, 200, "a bound token without a certificate yet");
    let (code, _) = debug_get(&cp, "/debug/proxy/ghost.demo/secret").await;
    assert_eq!(code, 404);

    // The push stream agrees with the CA: a token names one identity and one proxy.
    let err = connect(&cp, "client-0.demo", &web_token)
        .await
        .expect_err("another proxy's token");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("issued for proxy web-0.demo"),
        "{}",
        err.message()
    );
    let err = connect(&cp, "client-0.demo", &cart_token)
        .await
        .expect_err("another identity's token");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("runs as demo/client") && err.message().contains("shop/cart"),
        "{}",
        err.message()
    );
    let err = connect(&cp, "client-0.demo", "forged")
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::Unauthenticated);

    // Its own token connects, and proxy-status shows the certificate's expiry.
    let _stream = connect(&cp, "client-0.demo", &client_token)
        .await
        .expect("admitted");
    let expiry = record.certificate.not_after.clone();
    weft_testkit::wait::eventually(
        "proxy-status shows the certificate expiry",
        DEADLINE,
        || {
            let expiry = expiry.clone();
            let cp = &cp;
            async move {
                let (_, proxies) = debug_get(cp, "/debug/proxies").await;
                proxies.as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["id"] == "client-0.demo" && p["cert_expiry"] == expiry.as_str())
                })
            }
        },
    )
    .await;
    assert_eq!(
        cp.proxies()
            .iter()
            .find(|p| p.id == "client-0.demo")
            .and_then(|p| p.cert_expiry.clone()),
        Some(expiry)
    );

    let (_, ca) = debug_get(&cp, "/debug/ca").await;
    assert_eq!(ca["enabled"], true);
    assert_eq!(ca["trust_domain"], "cluster.local");
    assert_eq!(ca["counters"]["issued"], 1);
    assert_eq!(ca["counters"]["refused"]["no token"], 1);
    assert_eq!(ca["counters"]["refused"]["unknown token"], 1);
}

#[tokio::test]
async fn certificates_follow_the_mesh_config_trust_domain_and_the_root_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cp, handle) = start(dir.path()).await;
    let root = cp.ca().expect("ca").root_pem().to_owned();
    let token = cp.issue_token("demo", "client").expect("token");
    handle.apply_yaml(
        "mesh.yaml",
        "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\n\
         metadata: {name: mesh, namespace: istio-system}\n\
         spec:\n  meshConfig: {trustDomain: example.org}\n",
    );
    weft_testkit::wait::eventually("the trust domain follows mesh config", DEADLINE, || async {
        debug_get(&cp, "/debug/ca").await.1["trust_domain"] == "example.org"
    })
    .await;
    let resp = request_cert(&cp, Some(&token)).await.expect("issued");
    assert_eq!(
        leaf_uri(&resp.cert_chain[0]),
        "spiffe://example.org/ns/demo/sa/client"
    );
    cp.stop();
    drop(cp);

    // A restart finds the generated root and keeps it.
    let (cp, _handle) = start(dir.path()).await;
    assert_eq!(cp.ca().expect("ca").root_pem(), root);
}

#[tokio::test]
async fn root_cert_next_joins_the_bundle_so_a_new_root_can_roll_in() {
    let current = tempfile::tempdir().expect("tempdir");
    let next = tempfile::tempdir().expect("tempdir");
    let next_ca =
        CertificateAuthority::load_or_generate(next.path(), CaOptions::default()).expect("ca");
    std::fs::write(
        current.path().join(NEXT_ROOT_CERT),
        std::fs::read_to_string(next.path().join(ROOT_CERT)).expect("next root"),
    )
    .expect("write");
    let (cp, _handle) = start(current.path()).await;
    let token = cp.issue_token("demo", "client").expect("token");
    let resp = request_cert(&cp, Some(&token)).await.expect("issued");
    assert_eq!(resp.trust_bundle.len(), 2, "both roots are sent");
    assert_eq!(resp.trust_bundle[1], next_ca.root_pem());
    let bundle = TrustBundle::from_pem(&resp.trust_bundle.concat()).expect("bundle");

    // Today's certificates verify against the current root...
    let chain = certs_from_pem(&resp.cert_chain.concat()).expect("chain");
    assert_eq!(bundle.verify_chain(&chain).expect("verifies"), 0);
    // ...and certificates signed under the next root verify against the same bundle.
    let identity = WorkloadIdentity::new("demo", "client").expect("id");
    let from_next = next_ca.sign_csr(&csr(), &identity, None).expect("signed");
    let chain = certs_from_pem(&from_next.cert_chain.concat()).expect("chain");
    assert_eq!(bundle.verify_chain(&chain).expect("verifies"), 1);

    // A file that is no root is refused at start, naming the file.
    std::fs::write(
        current.path().join(NEXT_ROOT_CERT),
        &from_next.cert_chain[0],
    )
    .expect("write");
    cp.stop();
    let (source, _handle) = MemorySource::new();
    let err = ControlPlane::start(
        Options {
            ca: Some(CaSettings::new(current.path())),
            ..Options::default()
        },
        Box::new(source),
    )
    .await
    .err()
    .expect("a leaf is no root");
    assert!(err.to_string().contains(NEXT_ROOT_CERT), "{err}");
}
