//! File-mounted certificates (Istio's layout, `/etc/certs`): `cert-chain.pem` (leaf first),
//! `key.pem` (PKCS#8) and `root-cert.pem`. Lets a proxy run mesh mTLS without a control
//! plane; the files are polled and reloaded when they change (cert-manager, Vault agent
//! and Kubernetes secret volumes all replace them in place).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{KeyPair, PublicKeyData};
use tokio::sync::watch;

use super::manager::{IdentityHandle, IdentityStats};
use super::{Identity, IdentityError};

pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
pub const KEY_FILE: &str = "key.pem";
pub const ROOT_CERT_FILE: &str = "root-cert.pem";

/// How often the files are checked for changes.
const POLL: Duration = Duration::from_secs(5);

fn read(dir: &Path, name: &str) -> Result<String, IdentityError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|e| IdentityError::File {
        path: path.display().to_string(),
        reason: format!("cannot read: {e}"),
    })
}

/// Loads and checks the three files of `dir` (the chain verifies against the roots, the
/// leaf holds the key and a SPIFFE ID, the certificate has not expired).
pub fn load_cert_dir(dir: &Path) -> Result<Identity, IdentityError> {
    let chain = read(dir, CERT_CHAIN_FILE)?;
    let key_pem = read(dir, KEY_FILE)?;
    let roots = read(dir, ROOT_CERT_FILE)?;
    let key_path = dir.join(KEY_FILE).display().to_string();
    let key = KeyPair::from_pem(&key_pem).map_err(|e| IdentityError::File {
        path: key_path,
        reason: format!(
            "not a PKCS#8 private key ({e}); convert it with `openssl pkcs8 -topk8 -nocrypt`"
        ),
    })?;
    Identity::from_reply(&[chain], &[roots], key.serialize_der(), key.der_bytes()).map_err(|e| {
        let reason = match e {
            IdentityError::BadCertificate(r) => r,
            other => other.to_string(),
        };
        IdentityError::File {
            path: dir.join(CERT_CHAIN_FILE).display().to_string(),
            reason,
        }
    })
}

/// What tells a changed file: modification time and size.
fn stamp(dir: &Path) -> Vec<Option<(SystemTime, u64)>> {
    [CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE]
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(dir.join(f)).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// Loads `dir` now (failing if the files are unusable) and reloads it whenever one of the
/// files changes. A reload that fails keeps the current certificate and is counted.
pub fn watch_cert_dir(dir: PathBuf) -> Result<IdentityHandle, IdentityError> {
    let stats = IdentityStats::default();
    // Stamped before loading: a change while loading is seen at the first poll.
    let mut seen = stamp(&dir);
    let first = load_cert_dir(&dir)?;
    tracing::info!(identity = %first.spiffe_id, dir = %dir.display(), "loaded mesh certificate");
    stats.record(true);
    let (tx, rx) = watch::channel(Some(Arc::new(first)));
    let counters = stats.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(POLL).await;
            let now = stamp(&dir);
            if now == seen {
                continue;
            }
            seen = now;
            match load_cert_dir(&dir) {
                Ok(identity) => {
                    tracing::info!(identity = %identity.spiffe_id, "reloaded mesh certificate");
                    counters.record(true);
                    tx.send_replace(Some(Arc::new(identity)));
                }
                Err(error) => {
                    counters.record(false);
                    tracing::warn!(%error, "mesh certificate files changed but do not load; keeping the current certificate");
                }
            }
        }
    });
    Ok(IdentityHandle::from_parts(rx, task, stats))
}
