//! Loading the CA from disk (Istio's `cacerts` layout) and creating a self-signed root.
//!
//! Layout: `ca-cert.pem` (the signing certificate), `ca-key.pem` (its PKCS#8 key),
//! `root-cert.pem` (the root), `cert-chain.pem` (from `ca-cert` up to the root). A generated
//! self-signed root is written in the same layout, so restart and plug-in share one loader.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use time::OffsetDateTime;

use super::CaError;
use super::pem::{PemCert, certs_from_pem, signed_by};

pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// One more root to trust besides the signing root, during a root rotation (optional).
pub const NEXT_ROOT_CERT: &str = "root-cert-next.pem";
const ALL: [&str; 4] = [CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN];

/// What a CA directory yields once checked.
pub struct LoadedCa {
    pub key: KeyPair,
    pub ca_cert: PemCert,
    /// `ca-cert` first, then intermediates, the root last.
    pub chain: Vec<PemCert>,
    pub root: PemCert,
}

/// True when none of the four files exist (a fresh state directory).
pub fn is_empty(dir: &Path) -> bool {
    ALL.iter().all(|f| !dir.join(f).exists())
}

/// Generates an ECDSA P-256 self-signed root valid for `validity` and writes it to `dir`
/// (created with mode 0700; the key file with mode 0600).
pub fn generate_root(
    dir: &Path,
    organization: &str,
    validity: std::time::Duration,
) -> Result<(), CaError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CaError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let key = KeyPair::generate().map_err(|e| CaError::Signing(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, organization);
    params
        .distinguished_name
        .push(DnType::CommonName, "weft root CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + validity;
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::Signing(format!("self-signing the root: {e}")))?;
    let key_path = dir.join(CA_KEY);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(io(&key_path))?;
    f.write_all(key.serialize_pem().as_bytes())
        .map_err(io(&key_path))?;
    for name in [CA_CERT, ROOT_CERT, CERT_CHAIN] {
        let path = dir.join(name);
        fs::write(&path, cert.pem()).map_err(io(&path))?;
    }
    tracing::info!(dir = %dir.display(), "generated a self-signed root CA");
    Ok(())
}

/// Loads and checks a CA directory: every file present, the key matching `ca-cert.pem`, the
/// certificates valid now, `cert-chain.pem` leading from `ca-cert.pem` to `root-cert.pem`.
pub fn load(dir: &Path) -> Result<LoadedCa, CaError> {
    let read = |name: &str| -> Result<(PathBuf, String), CaError> {
        let path = dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok((path, text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CaError::MissingFile {
                dir: dir.to_path_buf(),
                missing: path,
            }),
            Err(source) => Err(CaError::Io { path, source }),
        }
    };
    let (cert_path, cert_text) = read(CA_CERT)?;
    let (key_path, key_text) = read(CA_KEY)?;
    let (root_path, root_text) = read(ROOT_CERT)?;
    let (chain_path, chain_text) = read(CERT_CHAIN)?;

    let ca_cert = first_cert(&cert_path, &cert_text)?;
    let root = first_cert(&root_path, &root_text)?;
    let mut chain = certs_from_pem(&chain_text).map_err(|reason| CaError::BadFile {
        path: chain_path.clone(),
        reason,
    })?;

    let key = KeyPair::from_pem(&key_text).map_err(|e| CaError::BadFile {
        path: key_path.clone(),
        reason: format!("cannot read the private key (PKCS#8 \"PRIVATE KEY\" PEM expected): {e}"),
    })?;
    if let Ok(meta) = fs::metadata(&key_path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %key_path.display(), "CA key is readable by group or others; use mode 0600");
    }

    let x = ca_cert.x509().map_err(|reason| CaError::BadFile {
        path: cert_path.clone(),
        reason,
    })?;
    if x.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Err(CaError::KeyMismatch {
            key: key_path,
            cert: cert_path,
        });
    }
    if !x.is_ca() {
        return Err(CaError::BadFile {
            path: cert_path,
            reason: "not a CA certificate (basicConstraints CA:TRUE is missing)".to_owned(),
        });
    }
    check_validity(&cert_path, &ca_cert)?;
    check_validity(&root_path, &root)?;
    if !signed_by(&root, &root) {
        return Err(CaError::BadFile {
            path: root_path,
            reason: "the root is not self-signed".to_owned(),
        });
    }

    match chain.first() {
        Some(first) if first.der == ca_cert.der => {}
        Some(_) => {
            return Err(CaError::BadFile {
                path: chain_path,
                reason: format!("must start with the certificate of {CA_CERT}"),
            });
        }
        None => {
            return Err(CaError::BadFile {
                path: chain_path,
                reason: "no certificate in the file".to_owned(),
            });
        }
    }
    if chain.last().map(|c| &c.der) != Some(&root.der) {
        chain.push(root.clone());
    }
    for pair in chain.windows(2) {
        if !signed_by(&pair[0], &pair[1]) {
            return Err(CaError::ChainBroken {
                child: format!("{} ({})", pair[0].subject(), chain_path.display()),
                parent: format!("{} ({})", pair[1].subject(), chain_path.display()),
            });
        }
    }
    Ok(LoadedCa {
        key,
        ca_cert,
        chain,
        root,
    })
}

fn first_cert(path: &Path, text: &str) -> Result<PemCert, CaError> {
    let bad = |reason: String| CaError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    certs_from_pem(text)
        .map_err(bad)?
        .into_iter()
        .next()
        .ok_or_else(|| bad("no certificate in the file".to_owned()))
}

fn check_validity(path: &Path, cert: &PemCert) -> Result<(), CaError> {
    let x = cert.x509().map_err(|reason| CaError::BadFile {
        path: path.to_path_buf(),
        reason,
    })?;
    let now = OffsetDateTime::now_utc();
    let v = x.validity();
    if v.not_after.to_datetime() < now {
        return Err(CaError::Expired {
            path: path.to_path_buf(),
            not_after: v.not_after.to_string(),
        });
    }
    if v.not_before.to_datetime() > now {
        return Err(CaError::NotYetValid {
            path: path.to_path_buf(),
            not_before: v.not_before.to_string(),
        });
    }
    Ok(())
}
