//! A throwaway certificate authority for mTLS tests: a self-signed root that issues
//! workload certificates carrying SPIFFE IDs (what the control plane's CA issues) and
//! server/client certificates with DNS names (for TLS origination tests). Everything is
//! PEM or DER bytes, so tests turn them into whatever their code under test takes.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The leaf PEM (the root is not included).
    pub cert_pem: String,
    /// The private key as PKCS#8 PEM and DER.
    pub key_pem: String,
    pub key_pkcs8: Vec<u8>,
    /// The raw public key (what `Identity::from_reply` compares the leaf against).
    pub public_key: Vec<u8>,
    pub not_after: SystemTime,
}

pub struct FakeCa {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    trust_domain: String,
}

impl FakeCa {
    /// A new root for `trust_domain` (e.g. `cluster.local`).
    pub fn new(trust_domain: &str) -> FakeCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            format!("weft test CA {trust_domain}"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(3600)).into();
        params.not_after = (now + Duration::from_secs(10 * 24 * 3600)).into();
        let root_pem = params.self_signed(&key).expect("root").pem();
        FakeCa {
            issuer: Issuer::new(params, key),
            root_pem,
            trust_domain: trust_domain.to_string(),
        }
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
    pub fn spiffe_id(&self, ns: &str, sa: &str) -> String {
        format!("spiffe://{}/ns/{ns}/sa/{sa}", self.trust_domain)
    }

    /// A workload certificate for `spiffe_id`, valid for `ttl`.
    pub fn issue_spiffe(&self, spiffe_id: &str, ttl: Duration) -> Issued {
        let san = SanType::URI(spiffe_id.try_into().expect("SPIFFE ID is IA5"));
        self.issue(vec![san], ttl)
    }

    /// A server/client certificate for DNS names (`localhost`) or IPs.
    pub fn issue_dns(&self, names: &[&str], ttl: Duration) -> Issued {
        let sans = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("DNS name is IA5")),
            })
            .collect();
        self.issue(sans, ttl)
    }

    fn issue(&self, sans: Vec<SanType>, ttl: Duration) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = SystemTime::now();
        let not_after = now + ttl;
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = not_after.into();
        let leaf = params.signed_by(&key, &self.issuer).expect("leaf");
        Issued {
            cert_pem: leaf.pem(),
            key_pem: key.serialize_pem(),
            key_pkcs8: key.serialize_der(),
            public_key: key.der_bytes().to_vec(),
            not_after,
        }
    }

    /// Writes Istio's file-mounted layout for `issued` into `dir`: `cert-chain.pem`,
    /// `key.pem`, `root-cert.pem`.
    pub fn write_cert_dir(&self, issued: &Issued, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("cert-chain.pem"), &issued.cert_pem)?;
        std::fs::write(dir.join("key.pem"), &issued.key_pem)?;
        std::fs::write(dir.join("root-cert.pem"), &self.root_pem)
    }
}
