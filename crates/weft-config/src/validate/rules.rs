//! Syntax rules shared by many kinds: DNS names, wildcard hosts, labels, ports, regexes.

/// RFC 1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric, ≤ 63.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: dot-separated labels, ≤ 253.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// A DNS name as Istio accepts for hosts: labels of letters, digits and '-', optionally
/// starting with a `*` label (`*.example.com`) or being `*` alone. Case-insensitive.
pub fn is_wildcard_dns_name(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let rest = s.strip_prefix("*.").unwrap_or(s);
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    !rest.is_empty()
        && rest.len() <= 255
        && rest.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A Kubernetes label key: optional DNS-subdomain prefix and '/', then a name of
/// alphanumerics, '-', '_' and '.', ≤ 63, starting and ending alphanumeric.
pub fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns1123_subdomain) && is_label_name(name)
}

fn is_label_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

/// A Kubernetes label value: empty, or a label name.
pub fn is_label_value(s: &str) -> bool {
    s.is_empty() || is_label_name(s)
}

/// A port number in 1..=65535.
pub fn is_port(n: u32) -> bool {
    (1..=65535).contains(&n)
}

/// Compile a regex as Envoy would (RE2 syntax, which the regex crate follows closely),
/// returning the error text for a diagnostic.
pub fn check_regex(re: &str) -> Result<(), String> {
    regex::Regex::new(re).map(|_| ()).map_err(|e| {
        // The regex crate's message is multi-line with a caret; keep its last line.
        let text = e.to_string();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim();
        format!("invalid regex `{re}`: {last}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_label("reviews-v1"));
        assert!(!is_dns1123_label("Reviews"));
        assert!(!is_dns1123_label("-a"));
        assert!(is_wildcard_dns_name("*.example.com"));
        assert!(is_wildcard_dns_name("reviews"));
        assert!(!is_wildcard_dns_name("foo.*.com"));
        assert!(!is_wildcard_dns_name("a..b"));
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(!is_label_key("bad key"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
        assert!(check_regex("^/api/v[0-9]+$").is_ok());
        assert!(
            check_regex("(")
                .unwrap_err()
                .starts_with("invalid regex `(`")
        );
    }
}
