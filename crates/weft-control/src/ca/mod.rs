//! The certificate authority of the control plane and workload identity.
//!
//! A self-signed ECDSA P-256 root generated on first start and persisted (or a plugged-in
//! CA in Istio's `cacerts` layout) signs workload CSRs. A certificate carries exactly one URI
//! SAN, `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`, for the identity the caller's bootstrap
//! token entitles it to, never the one the CSR asks for. The trust bundle holds one root, or
//! two during a root rotation.
//!
//! Root rotation: a CA directory may hold `root-cert-next.pem`, one more root the trust
//! bundle carries besides the signing root. To roll a new root in: (1) put the new root there
//! and restart, so every proxy's next certificate refresh brings both roots; (2) once
//! refreshed, switch the directory to the new CA (its `ca-cert.pem`, `ca-key.pem`,
//! `root-cert.pem`, `cert-chain.pem`) and put the old root in `root-cert-next.pem`, so
//! certificates still signed by the old root verify until they expire; (3) remove
//! `root-cert-next.pem`.

mod authority;
mod bundle;
mod error;
mod files;
mod identity;
mod pem;
mod service;
mod tokens;

use std::time::Duration;

pub use authority::{CaExpiry, CaOptions, CertificateAuthority, IssuedCertificate};
pub use bundle::{MAX_ROOTS, TrustBundle};
pub use error::CaError;
pub use files::{CA_CERT, CA_KEY, CERT_CHAIN, NEXT_ROOT_CERT, ROOT_CERT};
pub use identity::{TrustDomain, WorkloadIdentity};
pub use pem::{PemCert, certs_from_pem};
pub use service::{CaHooks, CaService};
pub use tokens::{Grant, TokenError, TokenStore};

/// The trust domain when mesh config names none.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Validity of a generated root: 10 years.
pub const DEFAULT_ROOT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Workload certificate lifetime: 24 hours.
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Longest workload certificate lifetime granted: 90 days.
pub const DEFAULT_MAX_WORKLOAD_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
