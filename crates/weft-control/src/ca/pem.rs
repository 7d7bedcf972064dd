//! Small PEM helpers: split a file into certificate blocks and parse them.

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// One certificate: its PEM block (normalised, with a trailing newline) and its DER bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemCert {
    pub pem: String,
    pub der: Vec<u8>,
}

impl PemCert {
    /// Parses the DER into an x509 view. The DER was checked when the block was read.
    pub fn x509(&self) -> Result<X509Certificate<'_>, String> {
        X509Certificate::from_der(&self.der)
            .map(|(_, c)| c)
            .map_err(|e| format!("not an X.509 certificate: {e}"))
    }

    /// The subject, for messages.
    pub fn subject(&self) -> String {
        self.x509()
            .map(|c| c.subject().to_string())
            .unwrap_or_else(|_| "<unparsable>".to_owned())
    }
}

/// Every `CERTIFICATE` block of `text`, in order; other blocks are skipped.
pub fn certs_from_pem(text: &str) -> Result<Vec<PemCert>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let Some(end) = after.find(END) else {
            return Err("a certificate block has no END line".to_owned());
        };
        let block = &after[..end + END.len()];
        let (_, pem) = x509_parser::pem::parse_x509_pem(block.as_bytes())
            .map_err(|e| format!("bad PEM certificate block: {e}"))?;
        X509Certificate::from_der(&pem.contents)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        out.push(PemCert {
            pem: format!("{block}\n"),
            der: pem.contents,
        });
        rest = &after[end + END.len()..];
    }
    Ok(out)
}

/// Verifies that `child` carries a signature made by `parent`'s key.
pub fn signed_by(child: &PemCert, parent: &PemCert) -> bool {
    match (child.x509(), parent.x509()) {
        (Ok(c), Ok(p)) => {
            c.issuer() == p.subject() && c.verify_signature(Some(p.public_key())).is_ok()
        }
        _ => false,
    }
}
