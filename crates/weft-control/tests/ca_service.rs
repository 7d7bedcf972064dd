//! The CA's gRPC service on a real loopback socket: the token decides the identity.

use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair, SanType};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use weft_api::pb::CertificateRequest;
use weft_api::pb::certificate_service_client::CertificateServiceClient;
use weft_control::ca::{
    CaOptions, CaService, CertificateAuthority, TokenStore, WorkloadIdentity, certs_from_pem,
};

fn csr(sans: &[&str]) -> String {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans
        .iter()
        .map(|s| SanType::URI((*s).try_into().expect("ia5")))
        .collect();
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn request(csr: String, token: Option<&str>) -> tonic::Request<CertificateRequest> {
    let mut req = tonic::Request::new(CertificateRequest {
        csr,
        validity_duration: 3600,
    });
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii"),
        );
    }
    req
}

#[tokio::test]
async fn create_certificate_over_grpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Arc::new(
        CertificateAuthority::load_or_generate(dir.path(), CaOptions::default()).expect("ca"),
    );
    let tokens = Arc::new(TokenStore::new());
    let token = tokens
        .issue(WorkloadIdentity::new("shop", "checkout").expect("id"))
        .expect("token");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(CaService::new(ca.clone(), tokens).into_server())
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let mut client = CertificateServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");

    // The token's identity is signed.
    let resp = client
        .create_certificate(request(
            csr(&["spiffe://cluster.local/ns/shop/sa/checkout"]),
            Some(&token),
        ))
        .await
        .expect("issued")
        .into_inner();
    assert_eq!(resp.cert_chain.len(), 2);
    assert_eq!(resp.trust_bundle, vec![ca.root_pem().to_owned()]);
    let leaf = certs_from_pem(&resp.cert_chain[0]).expect("pem").remove(0);
    let x = leaf.x509().expect("x509");
    let life = x.validity().not_after.timestamp() - x.validity().not_before.timestamp();
    assert_eq!(life, 3600 + 60, "validity_duration is honoured");

    // Another identity: refused.
    let err = client
        .create_certificate(request(
            csr(&["spiffe://cluster.local/ns/kube-system/sa/admin"]),
            Some(&token),
        ))
        .await
        .expect_err("other identity");
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("ns/kube-system/sa/admin"),
        "{}",
        err.message()
    );

    // No token, unknown token: unauthenticated.
    let err = client
        .create_certificate(request(csr(&[]), None))
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .create_certificate(request(csr(&[]), Some("forged")))
        .await
        .expect_err("unknown token");
    assert_eq!(err.code(), Code::Unauthenticated);

    // A bad CSR is an invalid argument.
    let err = client
        .create_certificate(request("garbage".to_owned(), Some(&token)))
        .await
        .expect_err("bad csr");
    assert_eq!(err.code(), Code::InvalidArgument);
    server.abort();
}
