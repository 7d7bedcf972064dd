//! Path and authority rewrites, and redirect locations.

use regex::Regex;
use weft_api::{PathMatch, PathRewrite, Redirect, RedirectPort};

use super::route::strip_port;

/// Rewrites `path` (without query). `matched` is the path match that selected the route,
/// for prefix replacement; `regex` the compiled pattern of a `Regex` rewrite.
pub fn rewrite_path(
    path: &str,
    rewrite: &PathRewrite,
    matched: Option<&PathMatch>,
    regex: Option<&Regex>,
) -> String {
    match rewrite {
        PathRewrite::Full(p) => p.clone(),
        PathRewrite::MatchedPrefix(p) => match matched {
            Some(PathMatch::Prefix { value, .. }) if path.len() >= value.len() => {
                let rest = path.get(value.len()..).unwrap_or("");
                format!("{p}{rest}")
            }
            Some(PathMatch::SegmentPrefix { value }) => {
                let value = value.trim_end_matches('/');
                let rest = path.get(value.len()..).unwrap_or("");
                // Gateway API ReplacePrefixMatch: `/foo` → `/` on `/foo/bar` is `/bar`.
                let replaced = p.trim_end_matches('/');
                match (replaced.is_empty(), rest.is_empty()) {
                    (true, true) => "/".to_string(),
                    (true, false) => rest.to_string(),
                    (false, _) => format!("{replaced}{rest}"),
                }
            }
            _ => p.clone(),
        },
        PathRewrite::Regex { substitution, .. } => match regex {
            Some(re) => re
                .replace_all(path, regex_substitution(substitution).as_str())
                .into_owned(),
            None => path.to_string(),
        },
    }
}

/// `\1` (RE2/Envoy style) → `${1}` (regex crate style).
fn regex_substitution(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len());
    let mut chars = sub.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => {
                out.push_str("${");
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    out.push(*d);
                    chars.next();
                }
                out.push('}');
            }
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out
}

fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    }
}

/// The `Location` of a redirect. Default ports are omitted.
pub fn redirect_location(
    redirect: &Redirect,
    scheme: &str,
    authority: &str,
    path: &str,
    query: Option<&str>,
    new_path: Option<String>,
) -> String {
    let new_scheme = redirect.scheme.as_deref().unwrap_or(scheme);
    let host = match &redirect.host {
        Some(h) => strip_port(h).to_string(),
        None => strip_port(authority).to_string(),
    };
    let request_port = authority
        .strip_prefix(strip_port(authority))
        .and_then(|p| p.strip_prefix(':'))
        .and_then(|p| p.parse::<u16>().ok());
    let port = match &redirect.port {
        Some(RedirectPort::Fixed(p)) => Some(*p),
        Some(RedirectPort::FromRequest) => Some(request_port.unwrap_or(default_port(scheme))),
        Some(RedirectPort::FromProtocolDefault) => None,
        // A scheme change drops a port that was only the old scheme's default.
        None if new_scheme != scheme && request_port == Some(default_port(scheme)) => None,
        None if redirect.host.is_some() => redirect
            .host
            .as_deref()
            .and_then(|h| h.strip_prefix(strip_port(h)))
            .and_then(|p| p.strip_prefix(':'))
            .and_then(|p| p.parse().ok())
            .or(request_port),
        None => request_port,
    };
    let port_text = match port {
        Some(p) if p != default_port(new_scheme) => format!(":{p}"),
        _ => String::new(),
    };
    let path = new_path.unwrap_or_else(|| path.to_string());
    let query_text = match query {
        Some(q) if !path.contains('?') => format!("?{q}"),
        _ => String::new(),
    };
    format!("{new_scheme}://{host}{port_text}{path}{query_text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrites() {
        let prefix = PathMatch::Prefix {
            value: "/v1".into(),
            ignore_case: false,
        };
        let r = PathRewrite::MatchedPrefix("/v2".into());
        assert_eq!(
            rewrite_path("/v1/items", &r, Some(&prefix), None),
            "/v2/items"
        );
        let seg = PathMatch::SegmentPrefix {
            value: "/foo".into(),
        };
        let to_root = PathRewrite::MatchedPrefix("/".into());
        assert_eq!(rewrite_path("/foo/bar", &to_root, Some(&seg), None), "/bar");
        assert_eq!(rewrite_path("/foo", &to_root, Some(&seg), None), "/");
        let exact = PathMatch::Exact {
            value: "/a".into(),
            ignore_case: false,
        };
        assert_eq!(rewrite_path("/a", &r, Some(&exact), None), "/v2");
        assert_eq!(
            rewrite_path("/x", &PathRewrite::Full("/y".into()), None, None),
            "/y"
        );
    }

    #[test]
    fn regex_rewrite_uses_captures() {
        let re = Regex::new("^/service/([^/]+)(/.*)$").unwrap();
        let r = PathRewrite::Regex {
            pattern: re.as_str().into(),
            substitution: "\\2/instance/\\1".into(),
        };
        assert_eq!(
            rewrite_path("/service/foo/v1/api", &r, None, Some(&re)),
            "/v1/api/instance/foo"
        );
    }

    fn redirect(scheme: Option<&str>, host: Option<&str>, port: Option<RedirectPort>) -> Redirect {
        Redirect {
            scheme: scheme.map(Into::into),
            host: host.map(Into::into),
            port,
            path: None,
            status: 301,
        }
    }

    #[test]
    fn redirect_locations() {
        let r = redirect(Some("https"), None, None);
        assert_eq!(
            redirect_location(&r, "http", "shop.example:80", "/a", Some("x=1"), None),
            "https://shop.example/a?x=1"
        );
        let r = redirect(None, Some("other.example"), Some(RedirectPort::Fixed(8080)));
        assert_eq!(
            redirect_location(&r, "http", "shop.example", "/a", None, Some("/b".into())),
            "http://other.example:8080/b"
        );
        let r = redirect(Some("https"), None, Some(RedirectPort::FromProtocolDefault));
        assert_eq!(
            redirect_location(&r, "http", "shop.example:8080", "/", None, None),
            "https://shop.example/"
        );
        let r = redirect(None, None, Some(RedirectPort::FromRequest));
        assert_eq!(
            redirect_location(&r, "http", "shop.example:8080", "/", None, None),
            "http://shop.example:8080/"
        );
        let r = redirect(Some("https"), None, Some(RedirectPort::Fixed(443)));
        assert_eq!(
            redirect_location(&r, "http", "h", "/", None, None),
            "https://h/"
        );
    }
}
