//! The trust bundle: one root, or two while a new root is rolled in.

use super::CaError;
use super::pem::{PemCert, certs_from_pem, signed_by};

/// The roots workloads trust. Holds at most two: the current one and, during a root
/// rotation, the next (or the previous) one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    roots: Vec<PemCert>,
}

/// How many roots a bundle holds at most.
pub const MAX_ROOTS: usize = 2;

impl TrustBundle {
    /// A bundle of the roots in `pem` (one or two self-signed CA certificates).
    pub fn from_pem(pem: &str) -> Result<Self, CaError> {
        let mut bundle = Self { roots: Vec::new() };
        let certs = certs_from_pem(pem).map_err(CaError::Bundle)?;
        if certs.is_empty() {
            return Err(CaError::Bundle("no root certificate given".to_owned()));
        }
        for cert in certs {
            bundle.push(cert)?;
        }
        Ok(bundle)
    }

    /// The roots as PEM strings, oldest first.
    pub fn roots_pem(&self) -> Vec<String> {
        self.roots.iter().map(|r| r.pem.clone()).collect()
    }

    /// The roots, oldest first.
    pub fn roots(&self) -> &[PemCert] {
        &self.roots
    }

    /// Adds a root (a self-signed CA certificate) so that leaves signed under it verify.
    pub fn add_root(&mut self, pem: &str) -> Result<(), CaError> {
        let certs = certs_from_pem(pem).map_err(CaError::Bundle)?;
        let [cert] = <[PemCert; 1]>::try_from(certs).map_err(|certs| {
            CaError::Bundle(format!(
                "add_root takes exactly one certificate, got {}",
                certs.len()
            ))
        })?;
        self.push(cert)
    }

    /// Removes a root. The last root cannot be removed.
    pub fn retire_root(&mut self, pem: &str) -> Result<(), CaError> {
        let certs = certs_from_pem(pem).map_err(CaError::Bundle)?;
        let Some(cert) = certs.first() else {
            return Err(CaError::Bundle(
                "retire_root: no certificate given".to_owned(),
            ));
        };
        let Some(pos) = self.roots.iter().position(|r| r.der == cert.der) else {
            return Err(CaError::Bundle(format!(
                "retire_root: {} is not in the trust bundle",
                cert.subject()
            )));
        };
        if self.roots.len() == 1 {
            return Err(CaError::Bundle(
                "retire_root: cannot remove the only root (add the new root first)".to_owned(),
            ));
        }
        self.roots.remove(pos);
        Ok(())
    }

    /// Checks that `chain` (leaf first, then intermediates, optionally the root) leads to a
    /// root of this bundle, every signature verifying and every certificate valid now.
    /// Returns the index of the root it leads to.
    pub fn verify_chain(&self, chain: &[PemCert]) -> Result<usize, CaError> {
        let Some(mut current) = chain.first() else {
            return Err(CaError::Bundle("empty certificate chain".to_owned()));
        };
        let mut rest = chain[1..].iter();
        loop {
            check_valid_now(current)?;
            if let Some(i) = self.roots.iter().position(|r| signed_by(current, r)) {
                check_valid_now(&self.roots[i])?;
                return Ok(i);
            }
            let Some(next) = rest.next() else {
                return Err(CaError::Bundle(format!(
                    "chain of {} does not lead to a trusted root",
                    chain[0].subject()
                )));
            };
            if !signed_by(current, next) {
                return Err(CaError::ChainBroken {
                    child: current.subject(),
                    parent: next.subject(),
                });
            }
            current = next;
        }
    }

    fn push(&mut self, cert: PemCert) -> Result<(), CaError> {
        let x = cert.x509().map_err(CaError::Bundle)?;
        if !x.is_ca() {
            return Err(CaError::Bundle(format!(
                "{} is not a CA certificate",
                cert.subject()
            )));
        }
        if !signed_by(&cert, &cert) {
            return Err(CaError::Bundle(format!(
                "{} is not a self-signed root",
                cert.subject()
            )));
        }
        if self.roots.iter().any(|r| r.der == cert.der) {
            return Err(CaError::Bundle(format!(
                "{} is already in the trust bundle",
                cert.subject()
            )));
        }
        if self.roots.len() >= MAX_ROOTS {
            return Err(CaError::Bundle(format!(
                "the trust bundle already holds {MAX_ROOTS} roots; retire one first"
            )));
        }
        self.roots.push(cert);
        Ok(())
    }
}

fn check_valid_now(cert: &PemCert) -> Result<(), CaError> {
    let x = cert.x509().map_err(CaError::Bundle)?;
    if x.validity().is_valid() {
        Ok(())
    } else {
        Err(CaError::Bundle(format!(
            "{} is not valid now (valid {} to {})",
            cert.subject(),
            x.validity().not_before,
            x.validity().not_after
        )))
    }
}
