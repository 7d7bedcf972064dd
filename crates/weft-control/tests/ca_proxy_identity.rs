//! End to end on loopback: the proxy's identity manager gets its certificate from the
//! control plane's CA over gRPC, authenticated by a bootstrap token.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use weft_control::ca::{CaOptions, CaService, CertificateAuthority, TokenStore, WorkloadIdentity};
use weft_proxy::identity::{
    CertificateClient, GrpcCertificateClient, IdentityError, IdentityManager, IdentityOptions,
};

async fn serve_ca(dir: &std::path::Path) -> (Arc<CertificateAuthority>, Arc<TokenStore>, String) {
    let ca =
        Arc::new(CertificateAuthority::load_or_generate(dir, CaOptions::default()).expect("ca"));
    let tokens = Arc::new(TokenStore::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CaService::new(ca.clone(), tokens.clone()).into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (ca, tokens, format!("http://{addr}"))
}

#[tokio::test]
async fn proxy_obtains_its_identity_from_the_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, tokens, addr) = serve_ca(dir.path()).await;
    let token = tokens
        .issue(WorkloadIdentity::new("shop", "web").expect("id"))
        .expect("token");
    let client = GrpcCertificateClient::new(&addr, &token).expect("client");
    let handle = IdentityManager::spawn(
        client,
        IdentityOptions {
            requested_ttl: Some(Duration::from_secs(3600)),
            ..IdentityOptions::default()
        },
    );
    let identity = tokio::time::timeout(Duration::from_secs(30), handle.ready())
        .await
        .expect("a certificate within the deadline");
    assert_eq!(identity.spiffe_id, "spiffe://cluster.local/ns/shop/sa/web");
    assert_eq!(identity.lifetime(), Duration::from_secs(3600 + 60));
    let expiry = handle.expiry_seconds().expect("expiry");
    assert!(expiry > 3500 && expiry <= 3600, "{expiry}");
    // The trust bundle the proxy holds is the CA's root.
    let root_der = weft_control::ca::certs_from_pem(ca.root_pem())
        .expect("pem")
        .remove(0)
        .der;
    assert_eq!(identity.trust_bundle, vec![root_der]);
}

#[tokio::test]
async fn unknown_token_and_foreign_identity_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_ca, tokens, addr) = serve_ca(dir.path()).await;

    let forged = GrpcCertificateClient::new(&addr, "forged").expect("client");
    let err = forged
        .create_certificate(csr(None), None)
        .await
        .expect_err("unknown token");
    assert!(
        matches!(&err, IdentityError::Refused { code, .. } if code == "Unauthenticated"),
        "{err}"
    );

    let token = tokens
        .issue(WorkloadIdentity::new("shop", "web").expect("id"))
        .expect("token");
    let client = GrpcCertificateClient::new(&addr, &token).expect("client");
    let err = client
        .create_certificate(csr(Some("spiffe://cluster.local/ns/shop/sa/db")), None)
        .await
        .expect_err("foreign identity");
    assert!(
        matches!(&err, IdentityError::Refused { code, .. } if code == "PermissionDenied"),
        "{err}"
    );
    assert!(err.to_string().contains("ns/shop/sa/db"), "{err}");
}

fn csr(san: Option<&str>) -> String {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    if let Some(s) = san {
        params.subject_alt_names = vec![rcgen::SanType::URI(s.try_into().expect("ia5"))];
    }
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}
