//! Workload identities and their SPIFFE IDs: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.

use std::fmt;

use super::CaError;

/// A (namespace, service account) pair: what a bootstrap token entitles its holder to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadIdentity {
    pub namespace: String,
    pub service_account: String,
}

impl WorkloadIdentity {
    /// Builds an identity; both parts must be Kubernetes-style names (no `/`, no spaces).
    pub fn new(namespace: &str, service_account: &str) -> Result<Self, String> {
        for (what, v) in [
            ("namespace", namespace),
            ("service account", service_account),
        ] {
            if !is_name(v) {
                return Err(format!(
                    "invalid {what} {v:?}: expected lowercase letters, digits, '-' or '.'"
                ));
            }
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            service_account: service_account.to_owned(),
        })
    }

    /// The SPIFFE ID of this identity in `trust_domain`.
    pub fn spiffe_id(&self, trust_domain: &TrustDomain) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            trust_domain.0, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.service_account)
    }
}

/// A validated trust domain (default `cluster.local`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustDomain(String);

impl TrustDomain {
    pub fn new(domain: &str) -> Result<Self, CaError> {
        let ok = !domain.is_empty()
            && domain.len() <= 255
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                    })
            });
        if ok {
            Ok(Self(domain.to_owned()))
        } else {
            Err(CaError::InvalidTrustDomain(domain.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TrustDomain {
    fn default() -> Self {
        Self(super::DEFAULT_TRUST_DOMAIN.to_owned())
    }
}

fn is_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_id_format() {
        let id = WorkloadIdentity::new("shop", "checkout").expect("valid");
        assert_eq!(
            id.spiffe_id(&TrustDomain::default()),
            "spiffe://cluster.local/ns/shop/sa/checkout"
        );
        assert!(WorkloadIdentity::new("a/b", "x").is_err());
        assert!(WorkloadIdentity::new("", "x").is_err());
        assert!(TrustDomain::new("Bad Domain").is_err());
        assert!(TrustDomain::new("example.org").is_ok());
    }
}
