//! Validation of the Istio networking kinds, following Istio's webhook
//! (`pkg/config/validation`) and CRD rules. One file per kind; helpers shared by several
//! kinds live here.

mod destination_rule;
mod envoy_filter;
mod gateway;
mod http_parts;
mod service_entry;
mod sidecar;
mod virtual_service;

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::Report;
use super::rules::{is_dns1123_label, is_label_key, is_label_value, is_port, is_wildcard_dns_name};
use crate::kinds::common::Duration;
use crate::kinds::istio::*;
use crate::path::FieldPath;

pub use destination_rule::destination_rule;
pub use envoy_filter::envoy_filter;
pub use gateway::gateway;
pub use service_entry::{service_entry, workload_entry, workload_group};
pub use sidecar::sidecar;
pub use virtual_service::virtual_service;

pub fn proxy_config(p: &ProxyConfig, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    let spec = spec();
    if let Some(c) = p.concurrency
        && c < 0
    {
        r.error(
            spec.key("concurrency"),
            format!("concurrency {c} is negative"),
        )
        .hint("use 0 for one worker thread per CPU core, or a positive thread count");
    }
    if let Some(sel) = &p.selector {
        check_selector_labels(
            r,
            &spec.key("selector").key("matchLabels"),
            &sel.match_labels,
        );
    }
    for k in p.environment_variables.keys() {
        if k.is_empty() {
            r.error(
                spec.key("environmentVariables"),
                "environment variable name must not be empty",
            );
        }
    }
}

/// `spec` as a path.
fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

/// Report a missing or null `spec` (Istio's CRDs require it). Returns whether it is present.
fn spec_present(r: &mut Report) -> bool {
    let present = r.object().node.get("spec").is_some_and(|s| !s.is_null());
    if !present {
        let kind = r.object().kind.name();
        r.error(
            FieldPath::root(),
            format!("spec: Required value: a {kind} needs a `spec`"),
        )
        .hint(format!(
            "add a `spec:` block; see https://istio.io/latest/docs/reference/config/networking/{}/",
            doc_page(kind)
        ));
    }
    present
}

fn doc_page(kind: &str) -> String {
    let mut out = String::new();
    for (i, c) in kind.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// A host as Istio accepts in VirtualService, DestinationRule and ServiceEntry: a DNS name,
/// optionally with a leading `*.` label, or `*`.
fn check_host(r: &mut Report, path: FieldPath, host: &str) -> bool {
    if host.is_empty() {
        r.error(path, "host must not be empty")
            .hint("write a service name such as `reviews` or `reviews.prod.svc.cluster.local`");
        return false;
    }
    if !is_wildcard_dns_name(host) {
        let hint = if host.contains('*') {
            "a wildcard is only allowed as the whole first label, e.g. `*.example.com`, or `*` alone"
        } else if host.contains("://") || host.contains('/') || host.contains(':') {
            "write only the host name: no scheme, port or path"
        } else {
            "use letters, digits, '-' and '.' (e.g. `reviews.prod.svc.cluster.local`)"
        };
        r.error(path, format!("invalid host `{host}`")).hint(hint);
        return false;
    }
    true
}

/// Istio's wildcard-aware overlap of two hosts (`host.Name.Matches`).
pub(crate) fn hosts_overlap(a: &str, b: &str) -> bool {
    let a = a.to_ascii_lowercase();
    let b = b.to_ascii_lowercase();
    if a == b || a == "*" || b == "*" {
        return true;
    }
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => sa.ends_with(sb) || sb.ends_with(sa),
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => false,
    }
}

/// `exportTo`: `.`, `*`, `~` or namespace names; no duplicates; `*` and `~` stand alone.
fn check_export_to(r: &mut Report, path: FieldPath, list: &[String]) {
    let mut seen: Vec<&str> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let p = path.index(i);
        if seen.contains(&e.as_str()) {
            r.error(p.clone(), format!("duplicate exportTo entry `{e}`"))
                .hint("remove the repeated entry");
        }
        seen.push(e);
        if !matches!(e.as_str(), "." | "*" | "~") && !is_dns1123_label(e) {
            r.error(p, format!("invalid exportTo entry `{e}`")).hint(
                "use `.` (this namespace), `*` (all namespaces), `~` (none) or a namespace name",
            );
        }
    }
    if list.len() > 1 {
        if list.iter().any(|e| e == "*") {
            r.error(
                path.clone(),
                "exportTo cannot combine `*` with other entries",
            )
            .hint("`*` already exports to every namespace: keep only `*`, or list the namespaces");
        }
        if list.iter().any(|e| e == "~") {
            r.error(path, "exportTo cannot combine `~` with other entries")
                .hint("`~` means \"export to no namespace\": keep it alone");
        }
    }
}

/// Workload selector labels: valid keys and values, no wildcards, no empty keys.
fn check_selector_labels(r: &mut Report, path: &FieldPath, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let p = path.key(k.as_str());
        if k.is_empty() {
            r.error(
                path.clone(),
                "key must not be empty: a selector label needs a key",
            )
            .hint("remove the entry or give it a label key");
            continue;
        }
        if k.contains('*') || v.contains('*') {
            r.error(
                p,
                format!("wildcard is not supported in selector (`{k}: {v}`)"),
            )
            .hint("selectors match exact label values; list the exact labels of the workloads");
            continue;
        }
        if !is_label_key(k) {
            r.error(p.clone(), format!("invalid label key `{k}`"))
                .hint("label keys are an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.'");
        }
        if !is_label_value(v) {
            r.error(p, format!("invalid label value `{v}` for key `{k}`"))
                .hint("label values are up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
        }
    }
}

/// Plain labels (subset labels, WorkloadEntry labels): valid keys and values.
fn check_labels(r: &mut Report, path: &FieldPath, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        let p = path.key(k.as_str());
        if !is_label_key(k) {
            r.error(p.clone(), format!("invalid label key `{k}`"))
                .hint("label keys are an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.'");
        }
        if !is_label_value(v) {
            r.error(p, format!("invalid label value `{v}` for key `{k}`"))
                .hint("label values are up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
        }
    }
}

fn check_port(r: &mut Report, path: FieldPath, n: u32) -> bool {
    if !is_port(n) {
        r.error(path, format!("port must be between 1-65535, got {n}"))
            .hint("use a port number from 1 to 65535");
        return false;
    }
    true
}

/// Durations that Istio requires to be at least 1ms.
fn check_duration(r: &mut Report, path: FieldPath, d: &Duration) {
    if d.0 < std::time::Duration::from_millis(1) {
        r.error(path, format!("duration must be at least 1ms, got `{d}`"))
            .hint("use a value such as `100ms` or `5s`; remove the field to get the default");
    } else if !d.0.subsec_nanos().is_multiple_of(1_000_000) {
        r.error(
            path,
            format!("only durations to ms precision are supported, got `{d}`"),
        )
        .hint("round the value to whole milliseconds");
    }
}

fn check_opt_duration(r: &mut Report, path: FieldPath, d: &Option<Duration>) {
    if let Some(d) = d {
        check_duration(r, path, d);
    }
}

fn check_percent(r: &mut Report, path: FieldPath, v: f64) {
    if !(0.0..=100.0).contains(&v) || v.is_nan() {
        r.error(path, format!("percentage {v} is out of range"))
            .hint("use a value from 0 to 100");
    }
}

fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// `ip/prefix` with a prefix length valid for the address family.
fn is_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    len <= if ip.is_ipv4() { 32 } else { 128 }
}

fn is_ip_or_cidr(s: &str) -> bool {
    is_ip(s) || is_cidr(s)
}

/// Protocol names Istio parses for ports (case-insensitive).
fn is_known_protocol(p: &str) -> bool {
    matches!(
        p.to_ascii_uppercase().as_str(),
        "HTTP"
            | "HTTPS"
            | "HTTP2"
            | "GRPC"
            | "GRPC-WEB"
            | "MONGO"
            | "REDIS"
            | "MYSQL"
            | "TCP"
            | "TLS"
            | "UDP"
            | "HTTP_PROXY"
    )
}

const PROTOCOL_HINT: &str =
    "use one of HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, MYSQL, REDIS";

/// A route destination (VirtualService route, mirror, Sidecar egress proxy).
fn check_destination(r: &mut Report, path: &FieldPath, d: &Destination) {
    if d.host.is_empty() {
        r.error(path.key("host"), "destination host is required")
            .hint(
                "name the service, e.g. `host: reviews` or `host: reviews.prod.svc.cluster.local`",
            );
    } else if d.host == "*" {
        r.error(path.key("host"), "destination host cannot be `*`")
            .hint("name one service as the destination");
    } else {
        check_host(r, path.key("host"), &d.host);
    }
    if !d.subset.is_empty() && !is_dns1123_label(&d.subset) {
        r.error(path.key("subset"), format!("invalid subset name `{}`", d.subset))
            .hint("subset names are DNS labels: lowercase letters, digits and '-', matching a subset in the DestinationRule");
    }
    if let Some(p) = &d.port
        && let Some(n) = p.number
    {
        check_port(r, path.key("port").key("number"), n);
    }
}

/// Server-side TLS settings (Gateway servers; Sidecar ingress listeners).
fn check_server_tls(r: &mut Report, path: &FieldPath, tls: &ServerTLSSettings) {
    let mode = tls.mode();
    if mode == ServerTLSMode::IstioMutual {
        for (field, set) in [
            ("serverCertificate", !tls.server_certificate.is_empty()),
            ("privateKey", !tls.private_key.is_empty()),
            ("caCertificates", !tls.ca_certificates.is_empty()),
            ("credentialName", !tls.credential_name.is_empty()),
            ("credentialNames", !tls.credential_names.is_empty()),
            ("tlsCertificates", !tls.tls_certificates.is_empty()),
        ] {
            if set {
                r.error(
                    path.key(field),
                    format!(
                        "ISTIO_MUTUAL TLS cannot have `{field}`: Istio provides the certificates"
                    ),
                )
                .hint(format!(
                    "remove `{field}`, or use mode SIMPLE/MUTUAL to bring your own certificates"
                ));
            }
        }
    }
    if !tls.credential_name.is_empty() && !tls.credential_names.is_empty() {
        r.error(
            path.key("credentialNames"),
            "only one of credentialName and credentialNames can be set",
        )
        .hint("move the name into `credentialNames` and remove `credentialName`");
    }
    if tls.credential_names.len() > 2 {
        r.error(
            path.key("credentialNames"),
            "at most 2 credentialNames are allowed (one RSA and one ECDSA)",
        );
    }
    if tls.tls_certificates.len() > 2 {
        r.error(
            path.key("tlsCertificates"),
            "at most 2 tlsCertificates are allowed (one RSA and one ECDSA)",
        );
    }
    if matches!(
        mode,
        ServerTLSMode::Simple | ServerTLSMode::Mutual | ServerTLSMode::OptionalMutual
    ) && !tls.uses_credentials()
        && tls.tls_certificates.is_empty()
    {
        let m = match mode {
            ServerTLSMode::Simple => "SIMPLE",
            ServerTLSMode::Mutual => "MUTUAL",
            _ => "OPTIONAL_MUTUAL",
        };
        if tls.server_certificate.is_empty() {
            r.error(path.key("serverCertificate"), format!("{m} TLS requires a server certificate"))
                .hint("set `credentialName` to a Kubernetes TLS Secret, or `serverCertificate` and `privateKey` to file paths");
        }
        if tls.private_key.is_empty() {
            r.error(
                path.key("privateKey"),
                format!("{m} TLS requires a private key"),
            )
            .hint(
                "set `credentialName` to a Kubernetes TLS Secret, or `privateKey` to a file path",
            );
        }
        if mode != ServerTLSMode::Simple
            && tls.ca_certificates.is_empty()
            && tls.ca_cert_credential_name.is_empty()
        {
            r.error(
                path.key("caCertificates"),
                format!("{m} TLS requires a CA bundle to verify client certificates"),
            )
            .hint("set `caCertificates` to a file path, or use `credentialName` with a Secret holding `ca.crt`");
        }
    }
    for (i, c) in tls.tls_certificates.iter().enumerate() {
        let p = path.key("tlsCertificates").index(i);
        if c.server_certificate.is_empty() || c.private_key.is_empty() {
            r.error(
                p,
                "each tlsCertificates entry needs serverCertificate and privateKey",
            );
        }
    }
    if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version)
        && min != TLSProtocol::TlsAuto
        && max != TLSProtocol::TlsAuto
        && min > max
    {
        r.error(
            path.key("minProtocolVersion"),
            "minProtocolVersion is greater than maxProtocolVersion",
        )
        .hint("lower minProtocolVersion or raise maxProtocolVersion");
    }
    for (i, c) in tls.cipher_suites.iter().enumerate() {
        if c.trim().is_empty() {
            r.error(
                path.key("cipherSuites").index(i),
                "cipher suite name must not be empty",
            );
        }
    }
    for (i, h) in tls.verify_certificate_hash.iter().enumerate() {
        let hex: String = h.chars().filter(|c| *c != ':').collect();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            r.error(
                path.key("verifyCertificateHash").index(i),
                format!("`{h}` is not a SHA-256 fingerprint"),
            )
            .hint("write 64 hex digits, optionally separated by ':'");
        }
    }
}

/// Connection pool limits (DestinationRule policies; Sidecar inbound pools).
fn check_connection_pool(r: &mut Report, path: &FieldPath, cp: &ConnectionPoolSettings) {
    if cp.tcp.is_none() && cp.http.is_none() {
        r.error(path.clone(), "connection pool must have at least one field")
            .hint("set `tcp:` and/or `http:` limits, or remove `connectionPool`");
    }
    let non_negative = |r: &mut Report, p: FieldPath, v: Option<i64>| {
        if let Some(v) = v {
            if v < 0 {
                r.error(p, format!("{v} is negative"))
                    .hint("limits must be 0 or more (0 means the default)");
            } else if v > i64::from(i32::MAX) {
                r.error(p, format!("{v} is too large"))
                    .hint(format!("the maximum is {}", i32::MAX));
            }
        }
    };
    if let Some(t) = &cp.tcp {
        let p = path.key("tcp");
        non_negative(r, p.key("maxConnections"), t.max_connections);
        check_opt_duration(r, p.key("connectTimeout"), &t.connect_timeout);
        check_opt_duration(
            r,
            p.key("maxConnectionDuration"),
            &t.max_connection_duration,
        );
        check_opt_duration(r, p.key("idleTimeout"), &t.idle_timeout);
        if let Some(k) = &t.tcp_keepalive {
            check_opt_duration(r, p.key("tcpKeepalive").key("time"), &k.time);
            check_opt_duration(r, p.key("tcpKeepalive").key("interval"), &k.interval);
        }
    }
    if let Some(h) = &cp.http {
        let p = path.key("http");
        non_negative(
            r,
            p.key("http1MaxPendingRequests"),
            h.http1_max_pending_requests,
        );
        non_negative(r, p.key("http2MaxRequests"), h.http2_max_requests);
        non_negative(
            r,
            p.key("maxRequestsPerConnection"),
            h.max_requests_per_connection,
        );
        non_negative(r, p.key("maxRetries"), h.max_retries);
        non_negative(r, p.key("maxConcurrentStreams"), h.max_concurrent_streams);
        check_opt_duration(r, p.key("idleTimeout"), &h.idle_timeout);
        if let Some(k) = &h.http2_keep_alive {
            check_opt_duration(r, p.key("http2KeepAlive").key("interval"), &k.interval);
            check_opt_duration(r, p.key("http2KeepAlive").key("timeout"), &k.timeout);
        }
    }
}

/// `[ns/]dnsName` hosts of Gateway servers and Sidecar egress listeners.
fn check_namespaced_host(r: &mut Report, path: FieldPath, h: &str, sidecar: bool) {
    let (ns, host) = match h.split_once('/') {
        Some(parts) => parts,
        None if sidecar => {
            r.error(
                path,
                format!("host `{h}` must be of the form namespace/dnsName"),
            )
            .hint(format!(
                "write `*/{h}` (any namespace) or `./{h}` (this namespace)"
            ));
            return;
        }
        None => ("*", h),
    };
    let ns_ok = matches!(ns, "*" | ".") || (sidecar && ns == "~") || is_dns1123_label(ns);
    if !ns_ok {
        let hint = if sidecar {
            "the namespace part is `*`, `.`, `~` or a namespace name"
        } else {
            "the namespace part is `*`, `.` or a namespace name"
        };
        r.error(
            path.clone(),
            format!("invalid namespace `{ns}` in host `{h}`"),
        )
        .hint(hint);
    }
    if host.is_empty() || host.contains('/') || !is_wildcard_dns_name(host) {
        r.error(path, format!("invalid host `{host}` in `{h}`"))
            .hint("write a DNS name such as `foo.example.com`, `*.example.com`, or `*`");
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::diag::Severity;

    /// Load one document and validate it; return (severity, field, message) of each finding.
    pub fn check(yaml: &str) -> Vec<(Severity, String, String)> {
        let b = crate::Bundle::load_str("t.yaml", yaml);
        let mut out: Vec<(Severity, String, String)> = b
            .diagnostics
            .iter()
            .map(|d| {
                (
                    d.severity,
                    d.field.as_ref().map(|f| f.to_string()).unwrap_or_default(),
                    d.message.clone(),
                )
            })
            .collect();
        for o in &b.objects {
            for d in crate::validate::validate(o) {
                out.push((
                    d.severity,
                    d.field.as_ref().map(|f| f.to_string()).unwrap_or_default(),
                    d.message.clone(),
                ));
            }
        }
        out
    }

    /// Paths of Error-severity findings.
    pub fn errors(yaml: &str) -> Vec<String> {
        check(yaml)
            .into_iter()
            .filter(|d| d.0 == Severity::Error)
            .map(|d| format!("{}: {}", d.1, d.2))
            .collect()
    }

    pub fn warnings(yaml: &str) -> Vec<String> {
        check(yaml)
            .into_iter()
            .filter(|d| d.0 == Severity::Warning)
            .map(|d| format!("{}: {}", d.1, d.2))
            .collect()
    }

    /// Assert exactly one error, at `path`, whose message contains `needle`.
    #[track_caller]
    pub fn assert_error(yaml: &str, path: &str, needle: &str) {
        let errs = errors(yaml);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{path}: ")) && e.contains(needle)),
            "expected an error at `{path}` containing `{needle}`, got {errs:#?}"
        );
    }

    #[track_caller]
    pub fn assert_clean(yaml: &str) {
        let errs = errors(yaml);
        assert!(errs.is_empty(), "expected no errors, got {errs:#?}");
    }
}

#[cfg(test)]
mod tests {
    use super::hosts_overlap;

    #[test]
    fn host_overlap() {
        assert!(hosts_overlap("a.foo.com", "a.foo.com"));
        assert!(hosts_overlap("*.foo.com", "a.foo.com"));
        assert!(hosts_overlap("*", "x"));
        assert!(hosts_overlap("*.foo.com", "*.bar.foo.com"));
        assert!(!hosts_overlap("a.foo.com", "b.foo.com"));
        assert!(!hosts_overlap("*.foo.com", "*.bar.com"));
    }
}
