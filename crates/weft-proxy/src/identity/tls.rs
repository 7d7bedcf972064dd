//! rustls configs from the current identity: TLS 1.3 mutual TLS where each side proves a
//! SPIFFE ID signed under the trust bundle.
//!
//! Build new configs whenever the identity `watch` moves: connections already open keep the
//! config they were made with, new ones get the new certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::Identity;
use super::cert::spiffe_id_of;

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("trust bundle: {0}")]
    Roots(String),
    #[error("TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Which server identities a client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentities {
    /// Any SPIFFE ID signed under the trust bundle.
    Any,
    /// One of these SPIFFE IDs (the service accounts the destination service runs as).
    OneOf(Vec<String>),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(identity: &Identity) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    for der in &identity.trust_bundle {
        store
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsConfigError::Roots(e.to_string()))?;
    }
    Ok(store)
}

fn chain_and_key(identity: &Identity) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = identity
        .cert_chain
        .iter()
        .map(|d| CertificateDer::from(d.clone()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_pkcs8.clone()));
    (chain, key)
}

/// A TLS 1.3 server config presenting `identity` and requiring a client certificate that
/// chains to the trust bundle. Read the client's SPIFFE ID after the handshake with
/// [`peer_spiffe_id`]. ALPN is left for the caller to set.
pub fn server_config(identity: &Identity) -> Result<ServerConfig, TlsConfigError> {
    let provider = provider();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(identity)?), provider.clone())
            .build()?;
    let (chain, key) = chain_and_key(identity);
    Ok(ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?)
}

/// A TLS 1.3 client config presenting `identity` and accepting a server whose certificate
/// chains to the trust bundle and whose SPIFFE ID is allowed by `peers`. The server name
/// given to rustls is not checked (mesh certificates carry no DNS names).
pub fn client_config(
    identity: &Identity,
    peers: PeerIdentities,
) -> Result<ClientConfig, TlsConfigError> {
    let provider = provider();
    let verifier = Arc::new(SpiffeServerVerifier {
        roots: Arc::new(roots(identity)?),
        peers,
        algs: provider.signature_verification_algorithms,
    });
    let (chain, key) = chain_and_key(identity);
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)?)
}

/// The SPIFFE ID of a peer's end-entity certificate (the first of `peer_certificates()`).
pub fn peer_spiffe_id(certs: &[CertificateDer<'_>]) -> Option<String> {
    spiffe_id_of(certs.first()?.as_ref())
}

#[derive(Debug)]
struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    peers: PeerIdentities,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algs.all,
        )?;
        let id = spiffe_id_of(end_entity.as_ref()).ok_or_else(|| {
            rustls::Error::General("the server certificate has no SPIFFE ID".to_owned())
        })?;
        match &self.peers {
            PeerIdentities::Any => Ok(ServerCertVerified::assertion()),
            PeerIdentities::OneOf(allowed) if allowed.contains(&id) => {
                Ok(ServerCertVerified::assertion())
            }
            PeerIdentities::OneOf(allowed) => Err(rustls::Error::General(format!(
                "server identity {id} is not one the destination runs as ({})",
                allowed.join(", ")
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
