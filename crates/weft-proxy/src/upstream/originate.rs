//! TLS origination (DestinationRule `tls.mode: SIMPLE | MUTUAL`): the proxy opens TLS to a
//! destination outside the mesh with the rule's files.
//!
//! The server certificate must chain to `caCertificates` (there is no implicit system trust
//! store: without the file the connection is refused and the error says so, unless
//! `insecureSkipVerify`). It must match one of `subjectAltNames` when given (DNS names, IPs
//! or URIs such as SPIFFE IDs), else the SNI (`sni`, or the endpoint's host name). MUTUAL
//! presents `clientCertificate` + `privateKey`. ALPN follows the upstream protocol (`h2`,
//! `http/1.1`, none for TCP). Every file error names the file.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use weft_api::OriginateTls;

/// Which ALPN to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    Http2,
    None,
}

/// The client configs of one cluster, built once from its files.
#[derive(Debug)]
pub struct Originator {
    http1: Arc<ClientConfig>,
    http2: Arc<ClientConfig>,
    opaque: Arc<ClientConfig>,
    sni: Option<String>,
}

impl Originator {
    /// Reads the files of `tls`; the error names the file that does not load.
    pub fn new(tls: &OriginateTls) -> Result<Originator, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure_skip_verify {
            Arc::new(NoVerification {
                algs: provider.signature_verification_algorithms,
            })
        } else {
            let ca = tls.ca_certificates.as_deref().ok_or(
                "no caCertificates: set tls.caCertificates in the DestinationRule to the CA \
                 file that signs the server (weft has no implicit system trust store), or \
                 insecureSkipVerify: true",
            )?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("caCertificates {ca}: {e}"))?;
            }
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("caCertificates {ca}: {e}"))?;
            Arc::new(SanVerifier {
                inner,
                roots_file: ca.to_string(),
                subject_alt_names: tls.subject_alt_names.clone(),
            })
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&tls.client_certificate, &tls.private_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = read_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("clientCertificate {cert}: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err("clientCertificate is set without privateKey".into()),
            (None, Some(_)) => return Err("privateKey is set without clientCertificate".into()),
        };
        let with_alpn = |alpn: &[&[u8]]| {
            let mut c = config.clone();
            c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
            Arc::new(c)
        };
        Ok(Originator {
            http1: with_alpn(&[b"http/1.1"]),
            http2: with_alpn(&[b"h2"]),
            opaque: with_alpn(&[]),
            sni: tls.sni.clone(),
        })
    }

    /// TLS over `stream` to the endpoint at `address` (`host:port`).
    pub async fn connect<S>(
        &self,
        stream: S,
        address: &str,
        alpn: Alpn,
    ) -> Result<TlsStream<S>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let host = match &self.sni {
            Some(sni) => sni.clone(),
            None => host_of(address).to_string(),
        };
        let name =
            ServerName::try_from(host.clone()).map_err(|e| format!("server name {host:?}: {e}"))?;
        let config = match alpn {
            Alpn::Http1 => &self.http1,
            Alpn::Http2 => &self.http2,
            Alpn::None => &self.opaque,
        };
        TlsConnector::from(config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with {address} (server name {host}): {e}"))
    }
}

fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path}: no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{path}: no PKCS#8, PKCS#1 or SEC1 private key: {e}"))
}

/// The WebPKI check against the configured roots, with the name taken from
/// `subjectAltNames` when given (any one must match).
#[derive(Debug)]
struct SanVerifier {
    inner: Arc<WebPkiServerVerifier>,
    roots_file: String,
    subject_alt_names: Vec<String>,
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let with_context = |e: rustls::Error| {
            rustls::Error::General(format!(
                "server certificate (CA file {}): {e}",
                self.roots_file
            ))
        };
        if self.subject_alt_names.is_empty() {
            return self
                .inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(with_context);
        }
        let uris = uri_sans(end_entity.as_ref());
        let mut last = None;
        for san in &self.subject_alt_names {
            let result = if san.contains("://") {
                // URI SANs (SPIFFE IDs): the chain must verify; the URI must be in the cert.
                let any = ServerName::try_from("uri.san.invalid")
                    .map_err(|e| rustls::Error::General(format!("internal: {e}")))?;
                match self
                    .inner
                    .verify_server_cert(end_entity, intermediates, &any, ocsp, now)
                {
                    Ok(v) => Ok(v),
                    // The name check is ours for URIs.
                    Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName,
                    ))
                    | Err(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForNameContext { .. },
                    )) => Ok(ServerCertVerified::assertion()),
                    Err(e) => Err(e),
                }
                .and_then(|v| {
                    if uris.iter().any(|u| u == san) {
                        Ok(v)
                    } else {
                        Err(rustls::Error::General(format!(
                            "certificate has no URI SAN {san}"
                        )))
                    }
                })
            } else {
                match ServerName::try_from(san.as_str()) {
                    Ok(name) => {
                        self.inner
                            .verify_server_cert(end_entity, intermediates, &name, ocsp, now)
                    }
                    Err(e) => Err(rustls::Error::General(format!(
                        "subjectAltName {san:?}: {e}"
                    ))),
                }
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(rustls::Error::General(format!(
            "server certificate matches none of subjectAltNames [{}]: {}",
            self.subject_alt_names.join(", "),
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn uri_sans(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::FromDer;
    let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

/// `insecureSkipVerify: true`: signatures are still checked (the handshake needs them),
/// the certificate is not.
#[derive(Debug)]
struct NoVerification {
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_is_explained_and_files_are_named() {
        let err = Originator::new(&OriginateTls::default()).unwrap_err();
        assert!(err.contains("caCertificates"), "{err}");
        let err = Originator::new(&OriginateTls {
            ca_certificates: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("api.example.com:443"), "api.example.com");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("10.0.0.1:8443"), "10.0.0.1");
    }
}
