//! A workload certificate as the proxy holds it, checked before it is published.

use std::fmt;
use std::time::{Duration, SystemTime};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::IdentityError;

/// The proxy's current certificate, key and trust bundle.
#[derive(Clone)]
pub struct Identity {
    /// `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`, from the leaf's URI SAN.
    pub spiffe_id: String,
    /// DER certificates: the leaf, then intermediates (roots are left out).
    pub cert_chain: Vec<Vec<u8>>,
    /// The same chain as PEM, as the CA sent it (root included when sent).
    pub cert_chain_pem: Vec<String>,
    /// The private key, PKCS#8 DER. Never leaves the process.
    pub key_pkcs8: Vec<u8>,
    /// DER roots to trust (one, or two during a root rotation).
    pub trust_bundle: Vec<Vec<u8>>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("spiffe_id", &self.spiffe_id)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("chain_len", &self.cert_chain.len())
            .field("roots", &self.trust_bundle.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Seconds until the certificate expires (negative once expired).
    pub fn expires_in_secs(&self) -> i64 {
        match self.not_after.duration_since(SystemTime::now()) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// The certificate's whole lifetime.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// Builds an identity from a CA reply, checking that the leaf carries `public_key` and a
    /// SPIFFE ID, and that the chain verifies against the trust bundle (the bundle is the
    /// reply's, or the chain's last certificate when the reply carries none).
    pub fn from_reply(
        chain_pem: &[String],
        bundle_pem: &[String],
        key_pkcs8: Vec<u8>,
        public_key: &[u8],
    ) -> Result<Self, IdentityError> {
        let bad = IdentityError::BadCertificate;
        let mut chain = Vec::new();
        for pem in chain_pem {
            chain.extend(ders(pem).map_err(bad)?);
        }
        let mut roots = Vec::new();
        for pem in bundle_pem {
            roots.extend(ders(pem).map_err(bad)?);
        }
        if chain.is_empty() {
            return Err(bad("empty certificate chain".to_owned()));
        }
        if roots.is_empty() {
            roots.push(chain[chain.len() - 1].clone());
        }
        // Roots are trust anchors, not part of the chain a peer is sent.
        chain.retain(|c| !roots.contains(c));
        if chain.is_empty() {
            return Err(bad("the chain holds only a root".to_owned()));
        }
        let leaf = parse(&chain[0]).map_err(bad)?;
        if leaf.public_key().subject_public_key.data.as_ref() != public_key {
            return Err(bad("the leaf does not carry the key we sent".to_owned()));
        }
        let spiffe_id =
            spiffe_san(&leaf).ok_or_else(|| bad("the leaf has no SPIFFE ID".to_owned()))?;
        verify_chain(&chain, &roots).map_err(bad)?;
        if leaf.validity().not_after.timestamp() <= now_unix() {
            return Err(bad(format!(
                "the certificate expired at {}",
                leaf.validity().not_after
            )));
        }
        let to_system =
            |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0).unsigned_abs());
        Ok(Self {
            spiffe_id,
            not_before: to_system(leaf.validity().not_before.timestamp()),
            not_after: to_system(leaf.validity().not_after.timestamp()),
            cert_chain: chain,
            cert_chain_pem: chain_pem.to_vec(),
            key_pkcs8,
            trust_bundle: roots,
        })
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `(trust domain, namespace, service account)` of `spiffe://<td>/ns/<ns>/sa/<sa>`.
pub fn spiffe_id_parts(id: &str) -> Option<(&str, &str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let (td, path) = rest.split_once('/')?;
    let mut parts = path.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("ns"), Some(ns), Some("sa"), Some(sa), None)
            if !td.is_empty() && !ns.is_empty() && !sa.is_empty() =>
        {
            Some((td, ns, sa))
        }
        _ => None,
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

fn ders(pem_text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(pem_text.as_bytes()) {
        let pem = pem.map_err(|e| format!("bad PEM: {e}"))?;
        if pem.label == "CERTIFICATE" {
            parse(&pem.contents)?;
            out.push(pem.contents);
        }
    }
    Ok(out)
}

/// The SPIFFE ID of a DER certificate: its only URI SAN, when that is a SPIFFE ID.
pub(super) fn spiffe_id_of(der: &[u8]) -> Option<String> {
    spiffe_san(&parse(der).ok()?)
}

fn spiffe_san(cert: &X509Certificate<'_>) -> Option<String> {
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let uri = uris.next()?;
    (uris.next().is_none() && spiffe_id_parts(uri).is_some()).then(|| uri.to_owned())
}

/// Each certificate signed by the next; the last signed by one of `roots`.
fn verify_chain(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> Result<(), String> {
    let certs = chain
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let anchors = roots
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    for pair in certs.windows(2) {
        pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .map_err(|_| {
                format!(
                    "{} is not signed by {}",
                    pair[0].subject(),
                    pair[1].subject()
                )
            })?;
    }
    let last = &certs[certs.len() - 1];
    if anchors.iter().any(|r| {
        last.issuer() == r.subject() && last.verify_signature(Some(r.public_key())).is_ok()
    }) {
        Ok(())
    } else {
        Err(format!(
            "{} does not lead to a root of the trust bundle",
            last.subject()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_parts() {
        assert_eq!(
            spiffe_id_parts("spiffe://cluster.local/ns/shop/sa/web"),
            Some(("cluster.local", "shop", "web"))
        );
        assert_eq!(spiffe_id_parts("spiffe://cluster.local/ns/shop"), None);
        assert_eq!(spiffe_id_parts("https://x/ns/a/sa/b"), None);
        assert_eq!(spiffe_id_parts("spiffe://td/ns/a/sa/b/c"), None);
    }
}
