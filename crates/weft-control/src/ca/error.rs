//! Errors of the certificate authority. Each names the file or the identity involved, so an
//! operator can act on it without reading code.

use std::path::PathBuf;

/// Why the CA could not be loaded, created or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CA file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "CA directory {dir} is incomplete: {missing} is missing (a plugged-in CA needs ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem)"
    )]
    MissingFile { dir: PathBuf, missing: PathBuf },
    #[error("CA file {path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("CA key {key} does not match the certificate {cert} (different public keys)")]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error(
        "CA certificate {path} expired at {not_after} (renew it, or remove the directory to generate a new self-signed root)"
    )]
    Expired { path: PathBuf, not_after: String },
    #[error("CA certificate {path} is not valid before {not_before}")]
    NotYetValid { path: PathBuf, not_before: String },
    #[error("CA chain: {child} is not signed by {parent}")]
    ChainBroken { child: String, parent: String },
    #[error("invalid trust domain {0:?}: expected a DNS-like name such as cluster.local")]
    InvalidTrustDomain(String),
    #[error("invalid CSR: {0}")]
    InvalidCsr(String),
    #[error(
        "CSR asks for {requested}, but the caller is only entitled to {entitled}; the CA signs only the caller's own identity"
    )]
    IdentityMismatch { requested: String, entitled: String },
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("trust bundle: {0}")]
    Bundle(String),
}
