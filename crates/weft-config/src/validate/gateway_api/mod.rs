//! Gateway API validation: the rules of the `gateway.networking.k8s.io` CRD schemas (field
//! patterns, limits and CEL rules), reported at the field responsible. Problems the API
//! server accepts but a controller reports in status (unresolvable references, unsupported
//! backend kinds) are warnings at most: such objects load.

mod gateway;
mod grpc;
mod http;
mod l4;

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use super::Report;
use super::rules::{check_regex, is_dns1123_label, is_dns1123_subdomain, is_label_key};
use crate::kinds::gateway_api::*;
use crate::path::FieldPath;

pub use gateway::{gateway, gateway_class};
pub use grpc::grpc_route;
pub use http::http_route;
pub use l4::{reference_grant, tcp_route, tls_route};

/// Upper limits from the CRD schemas.
const MAX_HOSTNAMES: usize = 16;
const MAX_PARENT_REFS: usize = 32;
const MAX_RULES: usize = 16;
const MAX_BACKEND_REFS: usize = 16;
const MAX_LISTENERS: usize = 64;
const MAX_WEIGHT: i64 = 1_000_000;

fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

// ---------------------------------------------------------------------------------------
// Syntax helpers (patterns from the CRD schemas)
// ---------------------------------------------------------------------------------------

/// A Gateway API `Hostname`: an RFC 1123 subdomain, optionally with a leading `*.` label;
/// no IP addresses.
pub(crate) fn hostname_problem(h: &str, allow_wildcard: bool) -> Option<String> {
    if h.parse::<IpAddr>().is_ok() {
        return Some(format!(
            "`{h}` is an IP address; hostnames must be DNS names"
        ));
    }
    let rest = match h.strip_prefix("*.") {
        Some(r) if allow_wildcard => r,
        Some(_) => {
            return Some(format!(
                "`{h}` has a wildcard, which is not allowed here; write a full host name"
            ));
        }
        None => h,
    };
    if h.len() > 253 || !is_dns1123_subdomain(rest) {
        let lower = h.to_ascii_lowercase();
        if lower != h && hostname_problem(&lower, allow_wildcard).is_none() {
            return Some(format!(
                "`{h}` has upper-case letters; host names must be lower case (`{lower}`)"
            ));
        }
        return Some(format!(
            "`{h}` is not a valid host name: use lower-case letters, digits, '-' and '.'{}",
            if allow_wildcard {
                ", optionally starting with `*.`"
            } else {
                ""
            }
        ));
    }
    None
}

/// An HTTP header (or query parameter) name: an RFC 7230 token of at most 256 characters.
pub(crate) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An API group: empty (core) or a DNS subdomain.
fn is_group(s: &str) -> bool {
    s.is_empty() || is_dns1123_subdomain(s)
}

/// A kind: a letter, then letters, digits and '-', ending alphanumeric; at most 63.
fn is_kind(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.ends_with('-')
}

/// A listener protocol: a token (`HTTP`) or a domain-prefixed name (`example.com/proto`).
fn is_protocol(s: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !t.starts_with('-')
            && !t.ends_with('-')
    };
    if s.len() > 255 {
        return false;
    }
    match s.split_once('/') {
        Some((domain, name)) => {
            is_dns1123_subdomain(domain)
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => token(s),
    }
}

/// A GatewayClass controller name: `domain/path`.
fn is_controller_name(s: &str) -> bool {
    match s.split_once('/') {
        Some((domain, path)) => {
            s.len() <= 253
                && is_dns1123_subdomain(domain)
                && !path.is_empty()
                && path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b))
        }
        None => false,
    }
}

fn check_port(r: &mut Report, path: FieldPath, port: Option<u32>) {
    if let Some(p) = port
        && !(1..=65535).contains(&p)
    {
        r.error(path, format!("port {p} is out of range"))
            .hint("use a port number from 1 to 65535");
    }
}

fn check_group(r: &mut Report, path: FieldPath, group: Option<&str>) {
    if let Some(g) = group
        && !is_group(g)
    {
        r.error(path, format!("invalid API group `{g}`")).hint(
            "a group is empty (\"\" for core) or a DNS name such as `gateway.networking.k8s.io`",
        );
    }
}

fn check_kind(r: &mut Report, path: FieldPath, kind: Option<&str>) {
    if let Some(k) = kind
        && !is_kind(k)
    {
        r.error(path, format!("invalid kind `{k}`")).hint(
            "a kind starts with a letter and contains letters, digits and '-', e.g. `Service`",
        );
    }
}

fn check_namespace(r: &mut Report, path: FieldPath, ns: Option<&str>) {
    if let Some(ns) = ns
        && !is_dns1123_label(ns)
    {
        r.error(path, format!("invalid namespace `{ns}`"))
            .hint("a namespace is a DNS label: lower-case letters, digits and '-'");
    }
}

fn check_object_name(r: &mut Report, path: FieldPath, name: &str, what: &str) {
    if name.is_empty() {
        r.error(path, format!("{what} has no name"))
            .hint("add `name:` with the referenced object's name");
    } else if name.len() > 253 {
        r.error(path, format!("name `{name}` is longer than 253 characters"));
    }
}

fn check_section_name(r: &mut Report, path: FieldPath, name: &str) {
    if !is_dns1123_subdomain(name) {
        r.error(path, format!("invalid name `{name}`"))
            .hint("use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit");
    }
}

fn check_hostnames(r: &mut Report, base: FieldPath, hostnames: &[String]) {
    if hostnames.len() > MAX_HOSTNAMES {
        r.error(
            base.clone(),
            format!(
                "{} hostnames, more than the {MAX_HOSTNAMES} allowed",
                hostnames.len()
            ),
        )
        .hint("split the route in two");
    }
    for (i, h) in hostnames.iter().enumerate() {
        if let Some(p) = hostname_problem(h, true) {
            r.error(base.index(i), format!("invalid hostname: {p}"));
        }
    }
}

pub(crate) fn check_parent_refs(r: &mut Report, refs: &[ParentReference]) {
    let base = spec().key("parentRefs");
    if refs.len() > MAX_PARENT_REFS {
        r.error(
            base.clone(),
            format!(
                "{} parentRefs, more than the {MAX_PARENT_REFS} allowed",
                refs.len()
            ),
        );
    }
    let mut seen: BTreeMap<(String, String, String, String), Vec<usize>> = BTreeMap::new();
    for (i, p) in refs.iter().enumerate() {
        let path = base.index(i);
        check_object_name(r, path.key("name"), &p.name, "this parentRef");
        check_group(r, path.key("group"), p.group.as_deref());
        check_kind(r, path.key("kind"), p.kind.as_deref());
        check_namespace(r, path.key("namespace"), p.namespace.as_deref());
        if let Some(s) = &p.section_name {
            check_section_name(r, path.key("sectionName"), s);
        }
        check_port(r, path.key("port"), p.port);
        let ns = p.namespace.clone().unwrap_or_default();
        seen.entry((
            p.group().to_string(),
            p.kind().to_string(),
            ns,
            p.name.clone(),
        ))
        .or_default()
        .push(i);
    }
    // Several references to the same parent must each pick a distinct section or port.
    for ((_, kind, _, name), idx) in seen {
        if idx.len() < 2 {
            continue;
        }
        let mut keys = HashSet::new();
        for &i in &idx {
            let p = &refs[i];
            if p.section_name.is_none() && p.port.is_none() {
                r.error(base.index(i), format!("{kind} `{name}` is referenced {} times; each reference must set `sectionName` or `port`", idx.len()))
                    .hint("name the listener (`sectionName`) or `port` each reference attaches to, or remove the duplicate");
            } else if !keys.insert((p.section_name.clone(), p.port)) {
                r.error(
                    base.index(i),
                    format!(
                        "duplicate reference to {kind} `{name}` with the same sectionName and port"
                    ),
                )
                .hint("remove the duplicate parentRef");
            }
        }
    }
}

/// The fields of any backend reference; `weight` is `None` for references without one.
pub(crate) struct BackendView<'a> {
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub port: Option<u32>,
    pub weight: Option<i64>,
}

/// Checks shared by every backend reference.
pub(crate) fn check_backend_ref(r: &mut Report, path: &FieldPath, b: BackendView<'_>) {
    let BackendView {
        group,
        kind,
        name,
        namespace,
        port,
        weight,
    } = b;
    check_object_name(r, path.key("name"), name, "this backendRef");
    check_group(r, path.key("group"), group);
    check_kind(r, path.key("kind"), kind);
    check_namespace(r, path.key("namespace"), namespace);
    check_port(r, path.key("port"), port);
    if let Some(w) = weight
        && !(0..=MAX_WEIGHT).contains(&w)
    {
        r.error(path.key("weight"), format!("weight {w} is out of range"))
            .hint("weights are relative and range from 0 (no traffic) to 1000000");
    }
    let (g, k) = backend_group_kind(group, kind);
    if g.is_empty() && k == "Service" {
        if port.is_none() {
            r.error(
                path.clone(),
                format!("backendRef to Service `{name}` has no port"),
            )
            .hint("add `port:` with the Service port to send traffic to");
        }
    } else if !matches!(
        (g, k),
        ("multicluster.x-k8s.io", "ServiceImport") | ("networking.istio.io", "Hostname")
    ) {
        let gk = if g.is_empty() {
            k.to_string()
        } else {
            format!("{k}.{g}")
        };
        r.warning(path.key("kind"), format!("backendRef kind `{gk}` is not a Service: weft cannot send traffic to it, so requests for this backend get 500"))
            .hint("reference a Service (omit `group` and `kind`)");
    }
}

fn check_header_filter(r: &mut Report, path: &FieldPath, f: &HttpHeaderFilter) {
    for (list, field) in [(&f.set, "set"), (&f.add, "add")] {
        if list.len() > 16 {
            r.error(
                path.key(field),
                format!("{} headers, more than the 16 allowed", list.len()),
            );
        }
        let mut seen = HashSet::new();
        for (i, h) in list.iter().enumerate() {
            if !is_header_name(&h.name) {
                r.error(
                    path.key(field).index(i).key("name"),
                    format!("invalid header name `{}`", h.name),
                )
                .hint("header names are letters, digits and !#$%&'*+-.^_`|~");
            } else if !seen.insert(h.name.to_ascii_lowercase()) {
                r.error(
                    path.key(field).index(i).key("name"),
                    format!("header `{}` appears twice in `{field}`", h.name),
                )
                .hint("list each header once");
            }
        }
    }
    if f.remove.len() > 16 {
        r.error(
            path.key("remove"),
            format!("{} headers, more than the 16 allowed", f.remove.len()),
        );
    }
    for (i, h) in f.remove.iter().enumerate() {
        if !is_header_name(h) {
            r.error(
                path.key("remove").index(i),
                format!("invalid header name `{h}`"),
            );
        }
    }
    if f.set.is_empty() && f.add.is_empty() && f.remove.is_empty() {
        r.warning(path.clone(), "header modifier changes nothing")
            .hint("add `set`, `add` or `remove` entries, or remove the filter");
    }
}

fn check_mirror(r: &mut Report, path: &FieldPath, m: &HttpRequestMirrorFilter) {
    let b = &m.backend_ref;
    check_backend_ref(
        r,
        &path.key("backendRef"),
        BackendView {
            group: b.group.as_deref(),
            kind: b.kind.as_deref(),
            name: &b.name,
            namespace: b.namespace.as_deref(),
            port: b.port,
            weight: None,
        },
    );
    if m.percent.is_some() && m.fraction.is_some() {
        r.error(path.clone(), "both `percent` and `fraction` are set")
            .hint("keep only one of them");
    }
    if let Some(p) = m.percent
        && !(0..=100).contains(&p)
    {
        r.error(path.key("percent"), format!("percent {p} is out of range"))
            .hint("use 0 to 100");
    }
    if let Some(f) = &m.fraction {
        let den = f.denominator.unwrap_or(100);
        if f.numerator < 0 {
            r.error(
                path.key("fraction").key("numerator"),
                "numerator must not be negative",
            );
        }
        if den < 1 {
            r.error(
                path.key("fraction").key("denominator"),
                format!("denominator {den} must be at least 1"),
            );
        } else if f.numerator > den {
            r.error(
                path.key("fraction"),
                format!("numerator {} is larger than denominator {den}", f.numerator),
            )
            .hint("a fraction mirrors at most all requests: numerator ≤ denominator");
        }
    }
}

fn check_regex_at(r: &mut Report, path: FieldPath, re: &str) {
    if let Err(e) = check_regex(re) {
        r.error(path, e)
            .hint("fix the regular expression (RE2 syntax)");
    }
}

#[cfg(test)]
mod tests;
