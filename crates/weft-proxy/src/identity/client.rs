//! The seam to the CA: [`CertificateClient`], and its gRPC implementation.

use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use weft_api::pb::CertificateRequest;
use weft_api::pb::certificate_service_client::CertificateServiceClient;

use super::IdentityError;

/// What the CA answers: PEM chain (leaf first) and PEM trust-bundle roots.
#[derive(Debug, Clone, Default)]
pub struct CertificateReply {
    pub cert_chain: Vec<String>,
    pub trust_bundle: Vec<String>,
}

/// Something that signs CSRs: the control plane's CA over gRPC, or a fake in tests.
pub trait CertificateClient: Send + Sync + 'static {
    /// Sends a PEM CSR, asking for `ttl` (the CA's default when `None`).
    fn create_certificate(
        &self,
        csr_pem: String,
        ttl: Option<Duration>,
    ) -> impl Future<Output = Result<CertificateReply, IdentityError>> + Send;
}

/// `weft.v1.CertificateService/CreateCertificate` with `authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct GrpcCertificateClient {
    client: CertificateServiceClient<Channel>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl GrpcCertificateClient {
    /// A client of the CA at `addr` (`http://host:port`). Connects lazily, on the first
    /// request, and reconnects after failures; call it inside a tokio runtime.
    pub fn new(addr: &str, token: &str) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::Endpoint {
            addr: addr.to_owned(),
            reason,
        };
        let endpoint = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15));
        let authorization = format!("Bearer {token}")
            .parse()
            .map_err(|_| bad("the bootstrap token is not printable ASCII".to_owned()))?;
        Ok(Self {
            client: CertificateServiceClient::new(endpoint.connect_lazy()),
            authorization,
        })
    }
}

impl CertificateClient for GrpcCertificateClient {
    async fn create_certificate(
        &self,
        csr_pem: String,
        ttl: Option<Duration>,
    ) -> Result<CertificateReply, IdentityError> {
        let mut request = tonic::Request::new(CertificateRequest {
            csr: csr_pem,
            validity_duration: ttl
                .map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        });
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        let mut client = self.client.clone();
        match client.create_certificate(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                Ok(CertificateReply {
                    cert_chain: reply.cert_chain,
                    trust_bundle: reply.trust_bundle,
                })
            }
            Err(status) => Err(match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
                    IdentityError::Unreachable(status.message().to_owned())
                }
                code => IdentityError::Refused {
                    code: format!("{code:?}"),
                    message: status.message().to_owned(),
                },
            }),
        }
    }
}
