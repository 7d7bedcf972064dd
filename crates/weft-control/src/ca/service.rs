//! The `weft.v1.CertificateService` gRPC service (Istio's `CreateCertificate` shape).
//!
//! The caller's bootstrap token (`authorization: Bearer <token>`) decides the identity; the
//! CSR only contributes its public key.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use weft_api::pb::certificate_service_server::{CertificateService, CertificateServiceServer};
use weft_api::pb::{CertificateRequest, CertificateResponse};

use super::{CaError, CertificateAuthority, TokenError, TokenStore};

/// The CA as a tonic service; mount it with [`CaService::into_server`].
#[derive(Debug, Clone)]
pub struct CaService {
    ca: Arc<CertificateAuthority>,
    tokens: Arc<TokenStore>,
}

impl CaService {
    pub fn new(ca: Arc<CertificateAuthority>, tokens: Arc<TokenStore>) -> Self {
        Self { ca, tokens }
    }

    /// The tonic server wrapper to add to a `tonic::transport::Server` router.
    pub fn into_server(self) -> CertificateServiceServer<Self> {
        CertificateServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl CertificateService for CaService {
    async fn create_certificate(
        &self,
        request: Request<CertificateRequest>,
    ) -> Result<Response<CertificateResponse>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = header.and_then(TokenStore::bearer);
        let identity = self.tokens.authenticate(token).map_err(|e| {
            let why = match e {
                TokenError::Missing => "no bootstrap token: send `authorization: Bearer <token>`",
                _ => "unknown bootstrap token",
            };
            tracing::warn!(reason = why, "certificate request refused");
            Status::unauthenticated(why)
        })?;
        let req = request.into_inner();
        let ttl = match req.validity_duration {
            d if d < 0 => {
                return Err(Status::invalid_argument(format!(
                    "validity_duration must not be negative (got {d})"
                )));
            }
            0 => None,
            d => Some(Duration::from_secs(d.unsigned_abs())),
        };
        let issued = self.ca.sign_csr(&req.csr, &identity, ttl).map_err(|e| {
            tracing::warn!(%identity, error = %e, "certificate request refused");
            match e {
                CaError::IdentityMismatch { .. } => Status::permission_denied(e.to_string()),
                CaError::InvalidCsr(_) => Status::invalid_argument(e.to_string()),
                _ => Status::internal(e.to_string()),
            }
        })?;
        tracing::info!(identity = %issued.spiffe_id, "issued workload certificate");
        Ok(Response::new(CertificateResponse {
            cert_chain: issued.cert_chain,
            trust_bundle: self.ca.trust_bundle().roots_pem(),
        }))
    }
}
