//! Workload identity: the proxy's own certificate, key and trust bundle.
//!
//! The proxy generates an ECDSA P-256 key and a CSR in memory, asks the control plane's CA
//! for a certificate ([`CertificateClient`]; [`GrpcCertificateClient`] speaks
//! `weft.v1.CertificateService/CreateCertificate` with a bootstrap token), checks what comes
//! back (the chain verifies against the returned trust bundle, the leaf holds our key and a
//! SPIFFE ID) and publishes it on a `watch` channel. TLS configs are rebuilt from the
//! channel, so a rotation never drops an open connection. [`IdentityManager`] refreshes at
//! a fraction of the lifetime (half, with jitter), and on failure retries with exponential
//! backoff while the current certificate stays in use until it expires.
//!
//! [`server_config`] and [`client_config`] build TLS 1.3 mutual-TLS rustls configs from an
//! [`Identity`]; the client checks the server's SPIFFE ID ([`PeerIdentities`]) and either side
//! reads its peer's with [`peer_spiffe_id`].

mod cert;
mod client;
mod files;
mod manager;
mod tls;

pub use cert::{Identity, spiffe_id_parts};
pub use client::{CertificateClient, CertificateReply, GrpcCertificateClient};
pub use files::{CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE, load_cert_dir, watch_cert_dir};
pub use manager::{
    IdentityHandle, IdentityManager, IdentityOptions, IdentitySource, IdentityStats,
};
pub use tls::{PeerIdentities, TlsConfigError, client_config, peer_spiffe_id, server_config};

/// Why a certificate could not be obtained or used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot generate the key or CSR: {0}")]
    Csr(String),
    #[error("invalid CA address {addr:?}: {reason}")]
    Endpoint { addr: String, reason: String },
    #[error("the CA refused the request ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("the CA is unreachable: {0}")]
    Unreachable(String),
    #[error("the CA returned an unusable certificate: {0}")]
    BadCertificate(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}
