//! Configuration from environment variables, typed, with errors that name the variable.
//!
//! Services read an [`Env`] snapshot instead of `std::env` directly so tests can hand each
//! in-process instance its own variables (setting process variables is `unsafe` in Rust 2024
//! and would leak between tests).

use std::collections::HashMap;
use std::fmt::Display;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use http::Uri;
use hyper_util::client::proxy::matcher::Matcher;

/// A configuration error: which variable, what was wrong, and what a good value looks like.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {var} is required: {hint}")]
    Missing {
        var: &'static str,
        hint: &'static str,
    },
    #[error("environment variable {var}={value} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        /// The offending value, quoted, or `<redacted>` for values that may hold secrets.
        value: String,
        reason: String,
    },
}

impl ConfigError {
    pub fn invalid(var: &'static str, value: &str, reason: impl Display) -> Self {
        ConfigError::Invalid {
            var,
            value: format!("{value:?}"),
            reason: reason.to_string(),
        }
    }

    /// Like [`ConfigError::invalid`] without echoing the value (e.g. a URL with a password).
    pub fn invalid_secret(var: &'static str, reason: impl Display) -> Self {
        ConfigError::Invalid {
            var,
            value: "<redacted>".to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A snapshot of environment variables. Empty values count as unset, as most tools treat
/// `FOO=` the same as no `FOO`.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment (variables whose name or value is not UTF-8 are left out).
    pub fn from_process() -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Env { vars }
    }

    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A copy with `name` set (tests build variants of one environment).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_string(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The first of `names` that is set (e.g. `HTTP_PROXY` then `http_proxy`).
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, &str)> {
        names
            .iter()
            .find_map(|&name| self.get(name).map(|value| (name, value)))
    }

    /// Parse `name` with `FromStr`, or `default` when it is unset.
    pub fn parse_or<T>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse_opt(name)?.unwrap_or(default))
    }

    pub fn parse_opt<T>(&self, name: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get(name)
            .map(|raw| {
                raw.parse()
                    .map_err(|e: T::Err| ConfigError::invalid(name, raw, e))
            })
            .transpose()
    }

    /// A required base URL of another service, such as `PRODUCT_URL=http://product:3001`.
    pub fn service_url(&self, name: &'static str) -> Result<BaseUrl, ConfigError> {
        let raw = self.get(name).ok_or(ConfigError::Missing {
            var: name,
            hint: "the base URL of the service to call, e.g. http://product:3001",
        })?;
        BaseUrl::parse(raw).map_err(|reason| ConfigError::invalid(name, raw, reason))
    }

    /// The outbound proxy settings: `HTTP_PROXY`/`http_proxy` and `NO_PROXY`/`no_proxy`.
    ///
    /// Only plain-HTTP proxies are meaningful here: the services call each other over plain
    /// HTTP, which a forward proxy receives as absolute-form requests. A proxy URL that is not
    /// `http://host[:port]` is an error rather than being ignored, so a typo cannot silently
    /// route traffic around the mesh.
    pub fn proxy(&self) -> Result<Option<Arc<Matcher>>, ConfigError> {
        let Some((var, raw)) = self.first(&["HTTP_PROXY", "http_proxy"]) else {
            return Ok(None);
        };
        BaseUrl::parse(raw).map_err(|reason| ConfigError::invalid(var, raw, reason))?;
        let no_proxy = self
            .first(&["NO_PROXY", "no_proxy"])
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        Ok(Some(Arc::new(
            Matcher::builder()
                .http(raw.to_string())
                .no(no_proxy)
                .build(),
        )))
    }
}

/// The base of an `http://host:port` URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let uri: Uri = raw.parse().map_err(|e| format!("not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "scheme {other:?} is not supported, use http:// (TLS between services is the mesh's job)"
                ));
            }
            None => return Err("missing scheme, expected http://host:port".to_string()),
        }
        let authority = uri
            .authority()
            .ok_or("missing host, expected http://host:port")?;
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!(
                "unexpected path {:?}, expected only http://host:port",
                uri.path()
            ));
        }
        Ok(BaseUrl(format!("http://{authority}")))
    }

    /// `path` (starting with `/`) on this base.
    pub fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

impl Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Settings every service shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// `HOST`: the address to listen on (default `0.0.0.0`).
    pub host: IpAddr,
    /// `PORT`: the port to listen on (default: the service's port in examples/shop).
    pub port: u16,
    pub fail: crate::fail::FailConfig,
}

impl Common {
    pub fn from_env(env: &Env, default_port: u16) -> Result<Self, ConfigError> {
        Ok(Common {
            host: env.parse_or("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: env.parse_or("PORT", default_port)?,
            fail: crate::fail::FailConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_port_names_the_variable() {
        let env = Env::from_pairs([("PORT", "http")]);
        let err = Common::from_env(&env, 3001).unwrap_err().to_string();
        assert!(err.contains("PORT=\"http\""), "{err}");
        assert!(err.contains("invalid digit"), "{err}");
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        let env = Env::from_pairs([("PORT", "  ")]);
        let common = Common::from_env(&env, 3004).unwrap();
        assert_eq!(common.port, 3004);
        assert_eq!(common.host, IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn service_url_is_required_and_must_be_plain_http() {
        let err = Env::default().service_url("CART_URL").unwrap_err();
        assert!(err.to_string().contains("CART_URL is required"), "{err}");

        let env = Env::from_pairs([("CART_URL", "https://cart:3002")]);
        let err = env.service_url("CART_URL").unwrap_err().to_string();
        assert!(
            err.contains("CART_URL") && err.contains("\"https\""),
            "{err}"
        );

        let env = Env::from_pairs([("CART_URL", "http://cart:3002/api")]);
        let err = env.service_url("CART_URL").unwrap_err().to_string();
        assert!(err.contains("unexpected path"), "{err}");

        let env = Env::from_pairs([("CART_URL", "http://cart:3002/")]);
        let url = env.service_url("CART_URL").unwrap();
        assert_eq!(url.join("/cart/7"), "http://cart:3002/cart/7");
    }

    #[test]
    fn proxy_prefers_upper_case_and_rejects_non_http() {
        let env = Env::from_pairs([
            ("HTTP_PROXY", "http://127.0.0.1:15001"),
            ("http_proxy", "http://127.0.0.1:9"),
            ("NO_PROXY", "user"),
        ]);
        let matcher = env.proxy().unwrap().expect("proxy configured");
        let hit = matcher
            .intercept(&"http://cart:3002/cart/1".parse().unwrap())
            .expect("cart goes through the proxy");
        assert_eq!(hit.uri().to_string(), "http://127.0.0.1:15001/");
        assert!(
            matcher
                .intercept(&"http://user:3004/users/1".parse().unwrap())
                .is_none(),
            "NO_PROXY=user bypasses the proxy"
        );

        let env = Env::from_pairs([("http_proxy", "socks5://127.0.0.1:1080")]);
        let err = env.proxy().unwrap_err().to_string();
        assert!(
            err.contains("http_proxy=") && err.contains("socks5"),
            "{err}"
        );

        assert!(Env::default().proxy().unwrap().is_none());
    }
}
