//! Linkerd (`linkerd.io`, `policy.linkerd.io`) and SMI TrafficSplit validation: the rules of
//! Linkerd's CRD schemas and admission webhooks.

use std::net::IpAddr;

use super::Report;
use super::rules::check_regex;
use crate::kinds::common::{IntOrString, LabelSelector};
use crate::kinds::linkerd::*;
use crate::path::FieldPath;

fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

/// A parsed CIDR (an address alone counts as a single-host network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("`{s}` is not a CIDR: `{a}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "`{s}` is not a CIDR: the prefix length must be 0 to {max}"
                    ));
                }
            },
        };
        Ok(Cidr { addr, prefix })
    }

    fn bits(addr: IpAddr) -> u128 {
        match addr {
            IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    /// Whether `other` lies entirely inside this network.
    pub fn contains(&self, other: &Cidr) -> bool {
        if self.addr.is_ipv4() != other.addr.is_ipv4() || other.prefix < self.prefix {
            return false;
        }
        // IPv4 addresses sit in the top 32 bits, so the prefix counts from the top either way.
        let shift = 128 - u32::from(self.prefix);
        let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
        Self::bits(self.addr) & mask == Self::bits(other.addr) & mask
    }
}

fn networks(r: &mut Report, base: &FieldPath, nets: &[Network]) {
    for (i, n) in nets.iter().enumerate() {
        let p = base.index(i);
        if n.cidr.is_empty() {
            r.error(p.key("cidr"), "network has no `cidr`")
                .hint("add `cidr:`, e.g. `10.0.0.0/8` (or `0.0.0.0/0` for all IPv4)");
            continue;
        }
        let outer = match Cidr::parse(&n.cidr) {
            Ok(c) => Some(c),
            Err(e) => {
                r.error(p.key("cidr"), e)
                    .hint("write an address and prefix length, e.g. `10.0.0.0/8` or `fd00::/8`");
                None
            }
        };
        for (j, x) in n.except.iter().enumerate() {
            match Cidr::parse(x) {
                Err(e) => {
                    r.error(p.key("except").index(j), e)
                        .hint("write an address and prefix length, e.g. `10.1.0.0/16`");
                }
                Ok(inner) => {
                    if let Some(o) = outer
                        && !o.contains(&inner)
                    {
                        r.warning(
                            p.key("except").index(j),
                            format!(
                                "`{x}` is not inside `{}`, so excluding it changes nothing",
                                n.cidr
                            ),
                        )
                        .hint("list only sub-ranges of the network's cidr");
                    }
                }
            }
        }
    }
}

fn selector_set(s: &Option<LabelSelector>) -> bool {
    s.is_some()
}

// ---------------------------------------------------------------------------------------
// ServiceProfile
// ---------------------------------------------------------------------------------------

pub fn service_profile(sp: &ServiceProfile, r: &mut Report) {
    let name = r.object().name().to_string();
    let ns = r.object().namespace().to_string();
    if !name.contains('.') {
        r.error("metadata.name", format!("ServiceProfile name `{name}` is not a fully qualified service name"))
            .hint(format!("Linkerd applies a profile to the authority equal to its name: use `{name}.{ns}.svc.cluster.local`"));
    } else if !name.contains(".svc.") {
        r.warning("metadata.name", format!("ServiceProfile `{name}` does not name an in-cluster Service"))
            .hint("for a Kubernetes Service the name must be `<service>.<namespace>.svc.<cluster domain>`; other names only apply to external authorities");
    }
    let base = spec().key("routes");
    let mut names = std::collections::HashSet::new();
    for (i, route) in sp.routes.iter().enumerate() {
        let p = base.index(i);
        if route.name.is_empty() {
            r.error(p.key("name"), "route has no name")
                .hint("add `name:`, e.g. `name: GET /books`");
        } else if !names.insert(route.name.as_str()) {
            r.warning(
                p.key("name"),
                format!("route name `{}` is used twice", route.name),
            )
            .hint("route names label metrics: make them unique");
        }
        match &route.condition {
            None => {
                r.error(p.key("condition"), "route has no condition")
                    .hint("add `condition: {method: GET, pathRegex: /books}`");
            }
            Some(c) => request_match(r, &p.key("condition"), c),
        }
        for (j, rc) in route.response_classes.iter().enumerate() {
            let rp = p.key("responseClasses").index(j);
            match &rc.condition {
                None => {
                    r.error(rp.key("condition"), "response class has no condition")
                        .hint("add `condition: {status: {min: 500, max: 599}}`");
                }
                Some(c) => response_match(r, &rp.key("condition"), c),
            }
        }
        if route.timeout.is_some_and(|t| t.as_std().is_zero()) {
            r.warning(p.key("timeout"), "timeout 0 disables the route timeout")
                .hint("remove `timeout` or give a positive duration such as `300ms`");
        }
    }
    if let Some(b) = &sp.retry_budget {
        let p = spec().key("retryBudget");
        for (field, missing) in [
            ("retryRatio", b.retry_ratio.is_none()),
            ("minRetriesPerSecond", b.min_retries_per_second.is_none()),
            ("ttl", b.ttl.is_none()),
        ] {
            if missing {
                r.error(p.key(field), format!("retryBudget needs `{field}`"))
                    .hint("a retry budget sets all of retryRatio (e.g. 0.2), minRetriesPerSecond (e.g. 10) and ttl (e.g. 10s)");
            }
        }
        if let Some(ratio) = b.retry_ratio
            && (!ratio.is_finite() || ratio < 0.0)
        {
            r.error(
                p.key("retryRatio"),
                format!("retryRatio {ratio} must be a non-negative number"),
            )
            .hint("e.g. 0.2 allows 20 % extra load from retries");
        }
        if b.ttl.is_some_and(|t| t.as_std().is_zero()) {
            r.error(p.key("ttl"), "ttl must be positive")
                .hint("e.g. `ttl: 10s`");
        }
    }
    for (i, d) in sp.dst_overrides.iter().enumerate() {
        let p = spec().key("dstOverrides").index(i);
        if d.authority.is_empty() {
            r.error(p.key("authority"), "dstOverride has no authority")
                .hint("add `authority: <service>.<namespace>.svc.cluster.local:<port>`");
        }
        weight(r, &p.key("weight"), &d.weight);
    }
    for (i, port) in sp.opaque_ports.iter().enumerate() {
        opaque_port(r, &spec().key("opaquePorts").index(i), port);
    }
}

fn opaque_port(r: &mut Report, p: &FieldPath, port: &IntOrString) {
    let ok = |n: &str| n.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
    let valid = match port {
        IntOrString::Int(n) => (1..=65535).contains(n),
        IntOrString::String(s) => match s.split_once('-') {
            Some((a, b)) => {
                ok(a) && ok(b) && a.parse::<u32>().unwrap_or(0) <= b.parse::<u32>().unwrap_or(0)
            }
            None => ok(s),
        },
    };
    if !valid {
        r.error(p.clone(), format!("invalid opaque port `{port}`"))
            .hint("use a port (1–65535) or a range such as `4000-4100`");
    }
}

fn request_match(r: &mut Report, p: &FieldPath, m: &RequestMatch) {
    if m.set_fields().is_empty() {
        r.error(p.clone(), "empty request condition")
            .hint("set at least one of pathRegex, method, all, any or not");
    }
    if let Some(re) = &m.path_regex
        && let Err(e) = check_regex(re)
    {
        r.error(p.key("pathRegex"), e)
            .hint("fix the regular expression (RE2 syntax; anchored to the whole path)");
    }
    if let Some(method) = &m.method {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
            r.error(p.key("method"), format!("invalid HTTP method `{method}`"))
                .hint("e.g. GET, POST, PUT, DELETE");
        } else if method.bytes().any(|b| b.is_ascii_lowercase()) {
            r.warning(
                p.key("method"),
                format!("HTTP method `{method}` is not upper case; methods are case-sensitive"),
            )
            .hint(format!("write `{}`", method.to_ascii_uppercase()));
        }
    }
    for (field, list) in [("all", &m.all), ("any", &m.any)] {
        for (i, c) in list.iter().enumerate() {
            request_match(r, &p.key(field).index(i), c);
        }
    }
    if let Some(n) = &m.not {
        request_match(r, &p.key("not"), n);
    }
}

fn response_match(r: &mut Report, p: &FieldPath, m: &ResponseMatch) {
    if m.set_fields().is_empty() {
        r.error(p.clone(), "empty response condition")
            .hint("set at least one of status, all, any or not");
    }
    if let Some(s) = &m.status {
        let sp = p.key("status");
        for (field, v) in [("min", s.min), ("max", s.max)] {
            if let Some(v) = v
                && !(100..=599).contains(&v)
            {
                r.error(
                    sp.key(field),
                    format!("status {v} is not an HTTP status code"),
                )
                .hint("use a value from 100 to 599");
            }
        }
        if let (Some(min), Some(max)) = (s.min, s.max)
            && min > max
        {
            r.error(
                sp.clone(),
                format!("status range {min}–{max} is empty: min is greater than max"),
            )
            .hint(format!("swap them: `{{min: {max}, max: {min}}}`"));
        }
        if s.min.is_none() && s.max.is_none() {
            r.error(sp, "status range has neither min nor max")
                .hint("e.g. `status: {min: 500, max: 599}`");
        }
    }
    for (field, list) in [("all", &m.all), ("any", &m.any)] {
        for (i, c) in list.iter().enumerate() {
            response_match(r, &p.key(field).index(i), c);
        }
    }
    if let Some(n) = &m.not {
        response_match(r, &p.key("not"), n);
    }
}

fn weight(r: &mut Report, p: &FieldPath, w: &Weight) {
    if w.text.is_empty() {
        r.error(p.clone(), "weight is required")
            .hint("add `weight:`, e.g. `weight: 500` (relative to the other entries)");
    } else if w.value() < 0.0 {
        r.error(p.clone(), format!("weight `{w}` is negative"))
            .hint("weights are relative shares: use 0 (no traffic) or more");
    }
}

// ---------------------------------------------------------------------------------------
// TrafficSplit
// ---------------------------------------------------------------------------------------

pub fn traffic_split(t: &TrafficSplit, r: &mut Report) {
    let s = spec();
    if t.service.is_empty() {
        r.error(s.key("service"), "TrafficSplit has no `service`")
            .hint("name the root Service clients call, e.g. `service: webapp`");
    }
    if t.backends.is_empty() {
        r.error(s.key("backends"), "TrafficSplit has no backends").hint("add `backends: [{service: webapp-v1, weight: 900}, {service: webapp-v2, weight: 100}]`");
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, b) in t.backends.iter().enumerate() {
        let p = s.key("backends").index(i);
        if b.service.is_empty() {
            r.error(p.key("service"), "backend has no `service`")
                .hint("name the Service receiving this share");
        } else if !seen.insert(b.service.as_str()) {
            r.warning(
                p.key("service"),
                format!("backend `{}` is listed twice", b.service),
            )
            .hint("merge the entries and add up their weights");
        }
        weight(r, &p.key("weight"), &b.weight);
    }
    if t.backends
        .iter()
        .all(|b| !b.weight.text.is_empty() && b.weight.value() == 0.0)
    {
        r.warning(
            s.key("backends"),
            "every backend has weight 0, so the split sends no traffic anywhere",
        )
        .hint("give at least one backend a positive weight");
    }
}

// ---------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------

/// An IANA service name, as a container port name: ≤ 15 lower-case letters, digits and '-',
/// with at least one letter.
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

pub fn server(sv: &Server, r: &mut Report) {
    let s = spec();
    match (
        selector_set(&sv.pod_selector),
        selector_set(&sv.external_workload_selector),
    ) {
        (true, true) => {
            r.error(s.key("externalWorkloadSelector"), "a Server selects either pods or external workloads, not both")
                .hint("keep `podSelector` or `externalWorkloadSelector`, and create a second Server for the other");
        }
        (false, false) => {
            r.error(
                s.clone(),
                "a Server needs `podSelector` or `externalWorkloadSelector`",
            )
            .hint("add `podSelector: {matchLabels: {app: <name>}}`");
        }
        _ => {}
    }
    match &sv.port {
        None => {
            r.error(s.key("port"), "a Server needs a `port`")
                .hint("add `port:` with a container port number or name");
        }
        Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
            r.error(s.key("port"), format!("port {n} is out of range"))
                .hint("use a port number from 1 to 65535");
        }
        Some(IntOrString::String(n)) if !is_port_name(n) => {
            r.error(s.key("port"), format!("invalid port name `{n}`"))
                .hint("a port name is the container port's `name`: up to 15 lower-case letters, digits and '-'");
        }
        _ => {}
    }
    if let Some(ap) = &sv.access_policy
        && !ACCESS_POLICIES.contains(&ap.as_str())
    {
        let closest = ACCESS_POLICIES
            .iter()
            .map(|c| (strsim::damerau_levenshtein(ap, c), *c))
            .filter(|(d, c)| {
                *d <= (c.len() / 3).max(2) || (ap.len() >= 3 && c.starts_with(&ap[..3]))
            })
            .min();
        let hint = match closest.map(|(_, c)| c) {
            Some(s) => format!(
                "did you mean `{s}`? (one of {})",
                ACCESS_POLICIES.join(", ")
            ),
            None => format!("use one of {}", ACCESS_POLICIES.join(", ")),
        };
        r.error(
            s.key("accessPolicy"),
            format!("unknown accessPolicy `{ap}`"),
        )
        .hint(hint);
    }
}

pub fn server_authorization(a: &ServerAuthorization, r: &mut Report) {
    let s = spec();
    match (&a.server.name, &a.server.selector) {
        (Some(_), Some(_)) => {
            r.error(
                s.key("server"),
                "`server` names a Server and also has a selector",
            )
            .hint("keep `name` (one Server) or `selector` (Servers by label), not both");
        }
        (None, None) => {
            r.error(s.key("server"), "`server` needs `name` or `selector`")
                .hint("add `name: <server>`");
        }
        (Some(n), None) if n.is_empty() => {
            r.error(s.key("server").key("name"), "empty Server name");
        }
        _ => {}
    }
    let c = &a.client;
    let cp = s.key("client");
    match (&c.mesh_tls, c.unauthenticated) {
        (Some(_), true) => {
            r.error(cp.clone(), "`client` sets both `meshTLS` and `unauthenticated: true`")
                .hint("`unauthenticated: true` already admits every client; remove `meshTLS`, or drop `unauthenticated` to require mTLS");
        }
        (None, false) => {
            r.error(
                cp.clone(),
                "`client` authorizes nobody: set `meshTLS` or `unauthenticated: true`",
            )
            .hint("e.g. `meshTLS: {serviceAccounts: [{name: web}]}`");
        }
        _ => {}
    }
    if let Some(m) = &c.mesh_tls {
        let mp = cp.key("meshTLS");
        let set = [
            !m.identities.is_empty(),
            !m.service_accounts.is_empty(),
            m.unauthenticated_tls,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            r.error(mp.clone(), if set == 0 { "`meshTLS` lists no clients".to_string() } else { "`meshTLS` sets more than one of identities, serviceAccounts and unauthenticatedTLS".to_string() })
                .hint("set exactly one of `identities`, `serviceAccounts` or `unauthenticatedTLS: true`");
        }
        for (i, sa) in m.service_accounts.iter().enumerate() {
            if sa.name.is_empty() {
                r.error(
                    mp.key("serviceAccounts").index(i).key("name"),
                    "service account has no name",
                );
            }
        }
        for (i, id) in m.identities.iter().enumerate() {
            identity(r, &mp.key("identities").index(i), id);
        }
    }
    networks(r, &cp.key("networks"), &c.networks);
}

fn identity(r: &mut Report, p: &FieldPath, id: &str) {
    let rest = if id == "*" {
        "x"
    } else {
        id.strip_prefix("*.").unwrap_or(id)
    };
    if id.is_empty() || rest.contains('*') || rest.split('.').any(str::is_empty) {
        r.error(p.clone(), format!("invalid identity `{id}`"))
            .hint("an identity is `<sa>.<ns>.serviceaccount.identity.linkerd.<trust domain>`, `*`, or `*.<suffix>`");
    }
}

const TARGET_KINDS: &[&str] = &["Server", "HTTPRoute", "GRPCRoute", "Namespace"];
const AUTHN_KINDS: &[&str] = &[
    "MeshTLSAuthentication",
    "NetworkAuthentication",
    "ServiceAccount",
];

pub fn authorization_policy(a: &AuthorizationPolicy, r: &mut Report) {
    let s = spec();
    let t = &a.target_ref;
    let tp = s.key("targetRef");
    if !TARGET_KINDS.contains(&t.kind.as_str()) {
        r.error(
            tp.key("kind"),
            if t.kind.is_empty() {
                "targetRef has no kind".to_string()
            } else {
                format!("AuthorizationPolicy cannot target a {}", t.kind)
            },
        )
        .hint(format!("target one of {}", TARGET_KINDS.join(", ")));
    }
    if t.name.is_empty() {
        r.error(tp.key("name"), "targetRef has no name")
            .hint("name the Server, route or Namespace to protect");
    }
    let own_ns = r.object().namespace().to_string();
    if t.kind == "Namespace" && !t.name.is_empty() && t.name != own_ns {
        r.error(
            tp.key("name"),
            format!(
                "an AuthorizationPolicy in `{own_ns}` cannot target namespace `{}`",
                t.name
            ),
        )
        .hint(format!(
            "create the policy in `{}`, or target `{own_ns}`",
            t.name
        ));
    }
    if let Some(ns) = &t.namespace
        && ns != &own_ns
    {
        r.error(tp.key("namespace"), format!("targetRef points to namespace `{ns}`, but policies only apply in their own namespace `{own_ns}`"))
                .hint("remove `namespace`, or move the policy");
    }
    for (i, a) in a.required_authentication_refs.iter().enumerate() {
        let p = s.key("requiredAuthenticationRefs").index(i);
        if !AUTHN_KINDS.contains(&a.kind.as_str()) {
            r.error(
                p.key("kind"),
                if a.kind.is_empty() {
                    "authentication ref has no kind".to_string()
                } else {
                    format!("`{}` is not an authentication kind", a.kind)
                },
            )
            .hint(format!("use one of {}", AUTHN_KINDS.join(", ")));
        }
        if a.name.is_empty() {
            r.error(p.key("name"), "authentication ref has no name");
        }
    }
}

pub fn mesh_tls_authentication(m: &MeshTlsAuthentication, r: &mut Report) {
    let s = spec();
    match (m.identities.is_empty(), m.identity_refs.is_empty()) {
        (false, false) => {
            r.error(s.key("identityRefs"), "set `identities` or `identityRefs`, not both")
                .hint("list identity names in `identities`, or reference ServiceAccounts in `identityRefs`");
        }
        (true, true) => {
            r.error(s.clone(), "MeshTLSAuthentication lists no identities")
                .hint("add `identities: [\"<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local\"]` or `identityRefs: [{kind: ServiceAccount, name: <sa>}]`");
        }
        _ => {}
    }
    for (i, id) in m.identities.iter().enumerate() {
        identity(r, &s.key("identities").index(i), id);
    }
    for (i, rf) in m.identity_refs.iter().enumerate() {
        let p = s.key("identityRefs").index(i);
        if !matches!(rf.kind.as_str(), "ServiceAccount" | "Namespace") {
            r.error(
                p.key("kind"),
                format!("identityRefs cannot reference kind `{}`", rf.kind),
            )
            .hint("use ServiceAccount (or Namespace for all its service accounts)");
        }
        if rf.name.is_empty() {
            r.error(p.key("name"), "identity ref has no name")
                .hint("name the ServiceAccount, or `*` for all");
        }
    }
}

pub fn network_authentication(n: &NetworkAuthentication, r: &mut Report) {
    if n.networks.is_empty() {
        r.error(
            spec().key("networks"),
            "NetworkAuthentication lists no networks",
        )
        .hint("add `networks: [{cidr: 10.0.0.0/8}]`");
    }
    networks(r, &spec().key("networks"), &n.networks);
}

#[cfg(test)]
mod tests;
