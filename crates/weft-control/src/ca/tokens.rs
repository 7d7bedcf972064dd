//! Bootstrap tokens (local mode): each token entitles its holder to one workload identity,
//! and optionally binds it to one proxy.
//!
//! File format, one token per line: `<token> <namespace> <service-account> [<proxy-id>]`;
//! blank lines and lines starting with `#` are ignored. With a proxy id (`name.namespace`,
//! as `weft control --write-tokens` writes them) only that proxy may use the token; without
//! one, any proxy of that identity may.

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
    #[error("cannot issue a token: {0}")]
    InvalidIdentity(String),
    #[error("cannot issue a token: no workload instance `{0}` in the registry")]
    UnknownProxy(String),
}

/// What a token entitles its holder to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub identity: WorkloadIdentity,
    /// The only proxy (`name.namespace`) that may use the token; none: any of the identity.
    pub proxy: Option<String>,
}

/// Tokens and the identities they entitle their holders to.
#[derive(Debug, Default)]
pub struct TokenStore {
    tokens: RwLock<HashMap<String, Grant>>,
}

impl TokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads `<token> <namespace> <service-account> [<proxy-id>]` lines from `path`.
    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let store = Self::new();
        store.load_file(path)?;
        Ok(store)
    }

    /// Adds the tokens of `path` (the [`TokenStore::from_file`] format) to this store.
    pub fn load_file(&self, path: &Path) -> Result<(), TokenError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut parsed = Vec::new();
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
            let (token, ns, sa, proxy) = match fields[..] {
                [token, ns, sa] => (token, ns, sa, None),
                [token, ns, sa, proxy] => (token, ns, sa, Some(proxy.to_owned())),
                _ => {
                    return Err(syntax(format!(
                        "expected `<token> <namespace> <service-account> [<proxy-id>]`, got {} fields",
                        fields.len()
                    )));
                }
            };
            let identity = WorkloadIdentity::new(ns, sa).map_err(syntax)?;
            parsed.push((token.to_owned(), Grant { identity, proxy }));
        }
        // All or nothing: a file with a bad line adds no token.
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        tokens.extend(parsed);
        Ok(())
    }

    /// Writes the tokens bound to a proxy, one `<token> <ns> <sa> <proxy-id>` line each
    /// sorted by proxy id, to `path` (mode 0600, replaced in one rename).
    pub fn write_proxy_tokens(&self, path: &Path) -> Result<(), TokenError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut lines: Vec<(String, String)> = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(token, g)| {
                let proxy = g.proxy.as_ref()?;
                let line = format!(
                    "{token} {} {} {proxy}\n",
                    g.identity.namespace, g.identity.service_account
                );
                Some((proxy.clone(), line))
            })
            .collect();
        lines.sort();
        let mut text = String::from(
            "# weft bootstrap tokens: <token> <namespace> <service-account> <proxy-id>\n",
        );
        text.extend(lines.into_iter().map(|(_, l)| l));
        let io = |source| TokenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp~");
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Registers `token` for `identity`, replacing any earlier mapping of that token.
    pub fn insert(&self, token: &str, identity: WorkloadIdentity) {
        self.insert_grant(
            token,
            Grant {
                identity,
                proxy: None,
            },
        );
    }

    /// Registers `token` with what it entitles, replacing any earlier mapping of it.
    pub fn insert_grant(&self, token: &str, grant: Grant) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_owned(), grant);
    }

    /// Generates a fresh random token (256 bits from the OS) for `identity` and returns it.
    pub fn issue(&self, identity: WorkloadIdentity) -> Result<String, TokenError> {
        self.issue_grant(Grant {
            identity,
            proxy: None,
        })
    }

    /// Generates a fresh random token for `grant` and returns it.
    pub fn issue_grant(&self, grant: Grant) -> Result<String, TokenError> {
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(TokenError::Random)?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.insert_grant(&token, grant);
        Ok(token)
    }

    /// The token bound to `proxy_id`, if one is.
    pub fn token_of_proxy(&self, proxy_id: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(_, g)| g.proxy.as_deref() == Some(proxy_id))
            .map(|(t, _)| t.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
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
        self.grant(token).map(|g| g.identity)
    }

    /// What `token` entitles its holder to.
    pub fn grant(&self, token: Option<&str>) -> Result<Grant, TokenError> {
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

    #[test]
    fn proxy_bound_tokens_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        let store = TokenStore::new();
        let id = WorkloadIdentity::new("shop", "cart").expect("valid");
        let bound = store
            .issue_grant(Grant {
                identity: id.clone(),
                proxy: Some("cart-0.shop".into()),
            })
            .expect("issue");
        // Unbound tokens (from --tokens) are not written back.
        store.insert("shared", id.clone());
        store.write_proxy_tokens(&path).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains(&format!("{bound} shop cart cart-0.shop")),
            "{text}"
        );
        assert!(!text.contains("shared"), "{text}");

        let loaded = TokenStore::from_file(&path).expect("load");
        assert_eq!(loaded.token_of_proxy("cart-0.shop"), Some(bound.clone()));
        assert_eq!(
            loaded.grant(Some(&bound)).expect("known").proxy.as_deref(),
            Some("cart-0.shop")
        );
        std::fs::write(&path, "a shop cart p q\n").expect("write");
        let err = TokenStore::from_file(&path).expect_err("five fields");
        assert!(err.to_string().contains("[<proxy-id>]"), "{err}");
    }
}
