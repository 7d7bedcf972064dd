//! Bootstrap tokens (local mode): each token entitles its holder to one workload identity.
//!
//! File format, one token per line: `<token> <namespace> <service-account>`; blank lines and
//! lines starting with `#` are ignored.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use super::identity::WorkloadIdentity;

/// Why a token store could not be loaded or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path}:{line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no bootstrap token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("unknown bootstrap token")]
    Unknown,
    #[error("cannot generate a token: {0}")]
    Random(std::io::Error),
}

/// Tokens and the identities they entitle their holders to.
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: RwLock<HashMap<String, WorkloadIdentity>>,
}

impl TokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads `<token> <namespace> <service-account>` lines from `path`.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let store = Self::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: String| TokenError::Syntax {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [token, ns, sa] = fields[..] else {
                return Err(syntax(format!(
                    "expected `<token> <namespace> <service-account>`, got {} fields",
                    fields.len()
                )));
            };
            let identity = WorkloadIdentity::new(ns, sa).map_err(syntax)?;
            store.insert(token, identity);
        }
        Ok(store)
    }

    /// Registers `token` for `identity`, replacing any earlier mapping of that token.
    pub fn insert(&self, token: &str, identity: WorkloadIdentity) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_owned(), identity);
    }

    /// Generates a fresh random token (256 bits from the OS) for `identity` and returns it.
    pub fn issue(&self, identity: WorkloadIdentity) -> Result<String, TokenError> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(TokenError::Random)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.insert(&token, identity);
        Ok(token)
    }

    /// Forgets `token`; returns whether it was known.
    pub fn revoke(&self, token: &str) -> bool {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)
            .is_some()
    }

    /// The identity `token` entitles its holder to.
    pub fn authenticate(&self, token: Option<&str>) -> Result<WorkloadIdentity, TokenError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
            .ok_or(TokenError::Unknown)
    }

    /// The token of an `authorization` header value `Bearer <token>`, if it has that form.
    pub fn bearer(header: &str) -> Option<&str> {
        let (scheme, token) = header.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_issue_and_bearer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, "# comment\n\nabc shop checkout\n").expect("write");
        let store = TokenStore::from_file(&path).expect("load");
        let id = store.authenticate(Some("abc")).expect("known");
        assert_eq!(
            id,
            WorkloadIdentity::new("shop", "checkout").expect("valid")
        );
        assert!(matches!(
            store.authenticate(Some("nope")),
            Err(TokenError::Unknown)
        ));
        assert!(matches!(store.authenticate(None), Err(TokenError::Missing)));

        let t = store.issue(id.clone()).expect("issue");
        assert_eq!(t.len(), 64);
        assert_eq!(store.authenticate(Some(&t)).expect("issued"), id);
        assert!(store.revoke(&t));
        assert_eq!(TokenStore::bearer("Bearer xyz"), Some("xyz"));
        assert_eq!(TokenStore::bearer("Basic xyz"), None);

        std::fs::write(&path, "abc shop\n").expect("write");
        let err = TokenStore::from_file(&path).expect_err("bad line");
        assert!(err.to_string().contains(":1:"), "{err}");
    }
}
