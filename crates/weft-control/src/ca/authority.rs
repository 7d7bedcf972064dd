//! The certificate authority: signs workload CSRs for the identity the caller is entitled to.

use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, ExtendedKeyUsagePurpose,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use super::bundle::TrustBundle;
use super::files;
use super::identity::{TrustDomain, WorkloadIdentity};
use super::pem::PemCert;
use super::{CaError, DEFAULT_MAX_WORKLOAD_TTL, DEFAULT_ROOT_VALIDITY, DEFAULT_WORKLOAD_TTL};

/// Settings of the CA; the defaults are production Istio's.
#[derive(Debug, Clone)]
pub struct CaOptions {
    pub trust_domain: TrustDomain,
    /// Validity of a generated self-signed root (10 years).
    pub root_validity: Duration,
    /// Workload certificate lifetime when the request names none (24 h).
    pub workload_ttl: Duration,
    /// The longest workload certificate lifetime granted (90 days).
    pub max_workload_ttl: Duration,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            trust_domain: TrustDomain::default(),
            root_validity: DEFAULT_ROOT_VALIDITY,
            workload_ttl: DEFAULT_WORKLOAD_TTL,
            max_workload_ttl: DEFAULT_MAX_WORKLOAD_TTL,
        }
    }
}

/// A signed workload certificate.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// PEM certificates: the leaf, the intermediates, the root last.
    pub cert_chain: Vec<String>,
    /// The SPIFFE ID in the leaf's only URI SAN.
    pub spiffe_id: String,
    pub not_after: SystemTime,
}

/// When the CA's own certificates expire (their notAfter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaExpiry {
    /// The root the signing chain ends in.
    pub root: SystemTime,
    /// The soonest of the other certificates of the chain: the plugged-in signing
    /// certificate and any intermediates above it. None when the root signs itself.
    pub intermediate: Option<SystemTime>,
}

/// The CA of the control plane.
pub struct CertificateAuthority {
    options: CaOptions,
    issuer: Issuer<'static, KeyPair>,
    issuer_not_after: OffsetDateTime,
    /// The signing certificate first, the root last.
    chain: Vec<PemCert>,
    signing_root: PemCert,
    bundle: RwLock<TrustBundle>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.options.trust_domain)
            .field("signing_cert", &self.chain[0].subject())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Uses the CA in `dir`, or generates a self-signed root there when `dir` holds none yet.
    /// A restart finds the persisted root and reuses it.
    pub fn load_or_generate(dir: &Path, options: CaOptions) -> Result<Self, CaError> {
        if files::is_empty(dir) {
            files::generate_root(dir, options.trust_domain.as_str(), options.root_validity)?;
        }
        Self::from_cacerts(dir, options)
    }

    /// [`CertificateAuthority::load_or_generate`], plus the extra root of
    /// `dir/root-cert-next.pem` in the trust bundle when that file exists (root rotation).
    pub fn open(dir: &Path, options: CaOptions) -> Result<Self, CaError> {
        let ca = Self::load_or_generate(dir, options)?;
        let next = dir.join(files::NEXT_ROOT_CERT);
        match std::fs::read_to_string(&next) {
            Ok(pem) => {
                ca.add_root(&pem).map_err(|e| CaError::BadFile {
                    path: next.clone(),
                    reason: e.to_string(),
                })?;
                tracing::info!(path = %next.display(), "trust bundle carries the next root too");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CaError::Io { path: next, source }),
        }
        Ok(ca)
    }

    /// Uses a plugged-in CA from `dir` in Istio's `cacerts` layout.
    pub fn from_cacerts(dir: &Path, options: CaOptions) -> Result<Self, CaError> {
        let loaded = files::load(dir)?;
        let issuer = Issuer::from_ca_cert_pem(&loaded.ca_cert.pem, loaded.key).map_err(|e| {
            CaError::BadFile {
                path: dir.join(files::CA_CERT),
                reason: format!("cannot use it as an issuer: {e}"),
            }
        })?;
        let issuer_not_after = loaded
            .ca_cert
            .x509()
            .map_err(|reason| CaError::BadFile {
                path: dir.join(files::CA_CERT),
                reason,
            })?
            .validity()
            .not_after
            .to_datetime();
        let bundle = TrustBundle::from_pem(&loaded.root.pem)?;
        tracing::info!(
            dir = %dir.display(),
            signing = %loaded.ca_cert.subject(),
            root = %loaded.root.subject(),
            "certificate authority ready"
        );
        Ok(Self {
            options,
            issuer,
            issuer_not_after,
            chain: loaded.chain,
            signing_root: loaded.root,
            bundle: RwLock::new(bundle),
        })
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.options.trust_domain
    }

    pub fn options(&self) -> &CaOptions {
        &self.options
    }

    /// The root this CA's chain ends in, as PEM.
    pub fn root_pem(&self) -> &str {
        &self.signing_root.pem
    }

    /// When the root and the intermediates expire: past either, no certificate this CA
    /// signed verifies any more (workload certificates never outlive the signing one).
    pub fn expiry(&self) -> CaExpiry {
        // Every certificate parsed when the CA was loaded; one that somehow does not now
        // reads as expired, which is what an alert should say about it.
        let not_after = |c: &PemCert| {
            c.x509()
                .ok()
                .and_then(|x| u64::try_from(x.validity().not_after.timestamp()).ok())
                .map_or(SystemTime::UNIX_EPOCH, |s| {
                    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
                })
        };
        let below_root = self.chain.split_last().map_or(&[][..], |(_, rest)| rest);
        CaExpiry {
            root: not_after(&self.signing_root),
            intermediate: below_root.iter().map(not_after).min(),
        }
    }

    /// A copy of the current trust bundle.
    pub fn trust_bundle(&self) -> TrustBundle {
        self.bundle
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds a root to the trust bundle (the first step of a root rotation).
    pub fn add_root(&self, pem: &str) -> Result<(), CaError> {
        self.bundle
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .add_root(pem)
    }

    /// Removes a root from the trust bundle. The root this CA signs under cannot be retired.
    pub fn retire_root(&self, pem: &str) -> Result<(), CaError> {
        let certs = super::pem::certs_from_pem(pem).map_err(CaError::Bundle)?;
        if certs.first().map(|c| &c.der) == Some(&self.signing_root.der) {
            return Err(CaError::Bundle(
                "retire_root: this CA still signs under that root; switch the CA first".to_owned(),
            ));
        }
        self.bundle
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retire_root(pem)
    }

    /// Signs `csr_pem` for `identity` (decided by the caller's credentials, never by the CSR).
    /// A CSR asking for any other name is refused. `requested_ttl` is honoured up to the
    /// maximum; `None` or zero means the default.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &WorkloadIdentity,
        requested_ttl: Option<Duration>,
    ) -> Result<IssuedCertificate, CaError> {
        self.sign_csr_in(csr_pem, identity, requested_ttl, &self.options.trust_domain)
    }

    /// [`CertificateAuthority::sign_csr`] in `trust_domain` instead of the configured one:
    /// the control plane passes the mesh config's current trust domain, so certificates
    /// carry the SPIFFE IDs the compiler puts in proxy configs.
    pub fn sign_csr_in(
        &self,
        csr_pem: &str,
        identity: &WorkloadIdentity,
        requested_ttl: Option<Duration>,
        trust_domain: &TrustDomain,
    ) -> Result<IssuedCertificate, CaError> {
        let entitled = identity.spiffe_id(trust_domain);
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?;
        for san in &csr.params.subject_alt_names {
            let requested = match san {
                SanType::URI(uri) if uri.as_str() == entitled => continue,
                SanType::URI(uri) => uri.as_str().to_owned(),
                SanType::DnsName(name) => format!("DNS name {}", name.as_str()),
                SanType::Rfc822Name(name) => format!("email {}", name.as_str()),
                SanType::IpAddress(ip) => format!("IP address {ip}"),
                _ => "an otherName SAN".to_owned(),
            };
            return Err(CaError::IdentityMismatch {
                requested,
                entitled,
            });
        }
        if matches!(csr.params.is_ca, IsCa::Ca(_)) {
            return Err(CaError::InvalidCsr(
                "the CSR asks for a CA certificate; workloads get leaf certificates only"
                    .to_owned(),
            ));
        }

        let ttl = match requested_ttl {
            Some(t) if !t.is_zero() => t.min(self.options.max_workload_ttl),
            _ => self.options.workload_ttl,
        };
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names =
            vec![SanType::URI(entitled.clone().try_into().map_err(|e| {
                CaError::Signing(format!("SPIFFE ID {entitled} is not IA5: {e}"))
            })?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = (now + ttl).min(self.issuer_not_after);
        params.use_authority_key_identifier_extension = true;
        let serial = fastrand::u128(..) >> 1;
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));

        let leaf = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(|e| CaError::Signing(e.to_string()))?;
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                u64::try_from(self.issuer_not_after.min(now + ttl).unix_timestamp()).unwrap_or(0),
            );
        let mut cert_chain = Vec::with_capacity(self.chain.len() + 1);
        cert_chain.push(leaf.pem());
        cert_chain.extend(self.chain.iter().map(|c| c.pem.clone()));
        tracing::debug!(identity = %entitled, ttl_secs = ttl.as_secs(), "signed workload certificate");
        Ok(IssuedCertificate {
            cert_chain,
            spiffe_id: entitled,
            not_after,
        })
    }
}
