//! The `weft.v1.CertificateService` gRPC service (Istio's `CreateCertificate` shape).
//!
//! The caller's bootstrap token (`authorization: Bearer <token>`) decides the identity; the
//! CSR only contributes its public key.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};
use weft_api::pb::certificate_service_server::{CertificateService, CertificateServiceServer};
use weft_api::pb::{CertificateRequest, CertificateResponse};

use super::{
    CaError, CertificateAuthority, IssuedCertificate, TokenError, TokenStore, TrustDomain,
};

/// What the service tells its host (the control plane) and asks of it.
pub trait CaHooks: Send + Sync + 'static {
    /// The trust domain to sign in now; `None` keeps the CA's configured one.
    fn trust_domain(&self) -> Option<String> {
        None
    }

    /// A certificate was issued to the holder of `token`; `trust_bundle` is what it was sent.
    fn issued(&self, _token: &str, _issued: &IssuedCertificate, _trust_bundle: &[String]) {}

    /// A request was refused; `reason` is a short stable label (`unknown token`, ...).
    fn refused(&self, _reason: &'static str) {}
}

struct NoHooks;

impl CaHooks for NoHooks {}

/// The CA as a tonic service; mount it with [`CaService::into_server`].
#[derive(Clone)]
pub struct CaService {
    ca: Arc<CertificateAuthority>,
    tokens: Arc<TokenStore>,
    hooks: Arc<dyn CaHooks>,
}

impl std::fmt::Debug for CaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaService")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl CaService {
    pub fn new(ca: Arc<CertificateAuthority>, tokens: Arc<TokenStore>) -> Self {
        Self::with_hooks(ca, tokens, Arc::new(NoHooks))
    }

    pub fn with_hooks(
        ca: Arc<CertificateAuthority>,
        tokens: Arc<TokenStore>,
        hooks: Arc<dyn CaHooks>,
    ) -> Self {
        Self { ca, tokens, hooks }
    }

    /// The tonic server wrapper to add to a `tonic::transport::Server` router.
    pub fn into_server(self) -> CertificateServiceServer<Self> {
        CertificateServiceServer::new(self)
    }

    fn refuse(&self, reason: &'static str, status: Status) -> Status {
        self.hooks.refused(reason);
        status
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
        let token = header.and_then(TokenStore::bearer).unwrap_or("").to_owned();
        let identity = self.tokens.authenticate(Some(&token)).map_err(|e| {
            let (reason, why) = match e {
                TokenError::Missing => (
                    "no token",
                    "no bootstrap token: send `authorization: Bearer <token>`",
                ),
                _ => (
                    "unknown token",
                    "unknown bootstrap token (certificates need a per-identity token: \
                     `weft control --tokens FILE` or `--write-tokens FILE`; the shared \
                     `--token` names no identity)",
                ),
            };
            tracing::warn!(reason, "certificate request refused");
            self.refuse(reason, Status::unauthenticated(why))
        })?;
        let req = request.into_inner();
        let ttl = match req.validity_duration {
            d if d < 0 => {
                return Err(self.refuse(
                    "invalid request",
                    Status::invalid_argument(format!(
                        "validity_duration must not be negative (got {d})"
                    )),
                ));
            }
            0 => None,
            d => Some(Duration::from_secs(d.unsigned_abs())),
        };
        let trust_domain = match self.hooks.trust_domain() {
            Some(td) => TrustDomain::new(&td).map_err(|e| {
                self.refuse(
                    "bad trust domain",
                    Status::failed_precondition(format!("mesh config: {e}")),
                )
            })?,
            None => self.ca.trust_domain().clone(),
        };
        let issued = self
            .ca
            .sign_csr_in(&req.csr, &identity, ttl, &trust_domain)
            .map_err(|e| {
                tracing::warn!(%identity, error = %e, "certificate request refused");
                match e {
                    CaError::IdentityMismatch { .. } => self.refuse(
                        "identity mismatch",
                        Status::permission_denied(e.to_string()),
                    ),
                    CaError::InvalidCsr(_) => {
                        self.refuse("invalid request", Status::invalid_argument(e.to_string()))
                    }
                    _ => self.refuse("internal", Status::internal(e.to_string())),
                }
            })?;
        let trust_bundle = self.ca.trust_bundle().roots_pem();
        self.hooks.issued(&token, &issued, &trust_bundle);
        tracing::info!(identity = %issued.spiffe_id, "issued workload certificate");
        Ok(Response::new(CertificateResponse {
            cert_chain: issued.cert_chain,
            trust_bundle,
        }))
    }
}
