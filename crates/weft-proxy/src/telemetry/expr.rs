//! Evaluation of the CEL subset Istio users write (Telemetry `tagOverrides` values,
//! access-log `filter.expression`, `%CEL(...)%`) against one finished exchange.
//!
//! CEL semantics that matter here: comparing values of different types is false (not an
//! error that aborts the whole expression), an attribute the exchange does not have is
//! absent (`has()` is false, comparisons with it are false, a tag prints `unknown`), and
//! `&&` / `||` absorb an absent side when the other side decides the result
//! (`false && x` is false, `true || x` is true), as CEL's commutative logic operators do.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use http::HeaderMap;
use regex::Regex;
use weft_api::{Attribute, CompareOp, Expr, MapAttribute, StringMethod};

use super::record::UpstreamInfo;
use super::{HttpRecord, PeerMeta, TcpRecord};

/// The exchange an expression is evaluated against.
#[derive(Clone, Copy)]
pub enum Exchange<'r, 'a> {
    Http(&'r HttpRecord<'a>),
    Tcp(&'r TcpRecord<'a>),
}

/// A CEL value: a string, an integer, a boolean, or nothing (the attribute is missing, or
/// the expression has no value, e.g. `int('x')`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'v> {
    Absent,
    Str(Cow<'v, str>),
    Int(i64),
    Bool(bool),
}

impl Value<'_> {
    /// The metric label for this value: Istio prints `unknown` for a missing value.
    pub fn to_label(&self) -> String {
        match self {
            Value::Absent => super::peer::UNKNOWN.to_string(),
            Value::Str(s) => s.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Bool(b) => b.to_string(),
        }
    }

    /// Whether a filter passes: only a boolean `true` does (errors and absent values do
    /// not log, as Envoy's CEL filter treats evaluation errors as false).
    pub fn truthy(&self) -> bool {
        matches!(self, Value::Bool(true))
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Value::Absent)
    }

    fn str(s: &str) -> Value<'_> {
        Value::Str(Cow::Borrowed(s))
    }

    fn owned(s: String) -> Value<'static> {
        Value::Str(Cow::Owned(s))
    }

    fn opt_str(s: Option<&str>) -> Value<'_> {
        s.map_or(Value::Absent, Value::str)
    }

    fn into_owned(self) -> Value<'static> {
        match self {
            Value::Absent => Value::Absent,
            Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
            Value::Int(i) => Value::Int(i),
            Value::Bool(b) => Value::Bool(b),
        }
    }
}

/// Evaluates `expr` against the exchange. Borrowed strings point into the record.
pub fn eval<'r>(expr: &Expr, x: &Exchange<'r, '_>) -> Value<'r> {
    let x = *x;
    match expr {
        Expr::String(s) => Value::owned(s.clone()),
        Expr::Int(i) => Value::Int(*i),
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Attr(attr) => attribute(*attr, x),
        Expr::Index(map, key) => index(*map, key, x),
        Expr::Has(inner) => Value::Bool(!eval(inner, &x).is_absent()),
        Expr::Not(inner) => match eval(inner, &x) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Absent,
        },
        Expr::And(a, b) => match (eval(a, &x), eval(b, &x)) {
            (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
            (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
            _ => Value::Absent,
        },
        Expr::Or(a, b) => match (eval(a, &x), eval(b, &x)) {
            (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
            (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
            _ => Value::Absent,
        },
        Expr::Compare(a, op, b) => Value::Bool(compare(&eval(a, &x), *op, &eval(b, &x))),
        Expr::Cond(c, a, b) => match eval(c, &x) {
            Value::Bool(true) => eval(a, &x),
            Value::Bool(false) => eval(b, &x),
            _ => Value::Absent,
        },
        Expr::ToString(inner) => match eval(inner, &x) {
            Value::Absent => Value::Absent,
            s @ Value::Str(_) => s,
            Value::Int(i) => Value::owned(i.to_string()),
            Value::Bool(b) => Value::owned(b.to_string()),
        },
        Expr::ToInt(inner) => match eval(inner, &x) {
            Value::Int(i) => Value::Int(i),
            Value::Str(s) => s.trim().parse().map_or(Value::Absent, Value::Int),
            _ => Value::Absent,
        },
        Expr::Call(target, method, arg) => match (eval(target, &x), eval(arg, &x)) {
            (Value::Str(s), Value::Str(a)) => string_method(&s, *method, &a),
            _ => Value::Absent,
        },
        Expr::Add(a, b) => match (eval(a, &x), eval(b, &x)) {
            (Value::Int(a), Value::Int(b)) => a.checked_add(b).map_or(Value::Absent, Value::Int),
            (Value::Str(a), Value::Str(b)) => Value::owned(format!("{a}{b}")),
            _ => Value::Absent,
        },
    }
}

fn compare(a: &Value<'_>, op: CompareOp, b: &Value<'_>) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match (a, b) {
        (Value::Str(a), Value::Str(b)) => a.as_ref().cmp(b.as_ref()),
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        // Mismatched types and absent values: CEL has no answer, the comparison fails.
        _ => return false,
    };
    match op {
        CompareOp::Eq => ord.is_eq(),
        CompareOp::Ne => ord.is_ne(),
        CompareOp::Lt => ord.is_lt(),
        CompareOp::Le => ord.is_le(),
        CompareOp::Gt => ord.is_gt(),
        CompareOp::Ge => ord.is_ge(),
    }
}

fn string_method(s: &str, method: StringMethod, arg: &str) -> Value<'static> {
    match method {
        StringMethod::Contains => Value::Bool(s.contains(arg)),
        StringMethod::StartsWith => Value::Bool(s.starts_with(arg)),
        StringMethod::EndsWith => Value::Bool(s.ends_with(arg)),
        // CEL `matches` is an unanchored RE2 search.
        StringMethod::Matches => with_regex(arg, |re| Value::Bool(re.is_match(s))),
    }
}

/// Compiled regexes, per thread: patterns come from config (a handful), and compiling one
/// per request would dominate the cost of a filter. Bounded so a config churn cannot grow
/// it without end.
fn with_regex(pattern: &str, f: impl FnOnce(&Regex) -> Value<'static>) -> Value<'static> {
    const MAX_CACHED: usize = 64;
    thread_local! {
        static CACHE: RefCell<HashMap<String, Option<Regex>>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache.contains_key(pattern) {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(pattern.to_string(), Regex::new(pattern).ok());
        }
        match cache.get(pattern) {
            Some(Some(re)) => f(re),
            _ => Value::Absent,
        }
    })
}

/// The workloads on either end of the exchange, as telemetry sees them.
struct Ends<'a> {
    client_side: bool,
    local: &'a PeerMeta,
    downstream_peer: Option<&'a PeerMeta>,
    upstream: Option<&'a UpstreamInfo>,
    conn: &'a crate::ConnInfo,
}

impl<'a> Ends<'a> {
    fn of(x: Exchange<'_, 'a>) -> Ends<'a> {
        match x {
            Exchange::Http(r) => Ends {
                client_side: r.client_side,
                local: r.local,
                downstream_peer: r.downstream_peer,
                upstream: r.upstream,
                conn: r.conn,
            },
            Exchange::Tcp(r) => Ends {
                client_side: r.client_side,
                local: r.local,
                downstream_peer: r.downstream_peer,
                upstream: r.upstream,
                conn: r.conn,
            },
        }
    }

    /// The calling workload: this proxy on the client side, the peer on the server side.
    fn source(&self) -> Option<&'a PeerMeta> {
        if self.client_side {
            Some(self.local)
        } else {
            self.downstream_peer
        }
    }

    /// The called workload: the upstream's proxy on the client side, this proxy on the
    /// server side.
    fn destination(&self) -> Option<&'a PeerMeta> {
        if self.client_side {
            self.upstream.and_then(|u| u.peer.as_deref())
        } else {
            Some(self.local)
        }
    }

    fn upstream_label(&self, key: &str) -> Option<&'a str> {
        self.upstream
            .and_then(|u| u.labels.as_deref())
            .and_then(|labels| labels.get(key))
            .map(String::as_str)
    }
}

/// A non-empty field of a peer, else absent.
fn meta_field<'a>(meta: Option<&'a PeerMeta>, f: impl Fn(&'a PeerMeta) -> &'a str) -> Value<'a> {
    match meta.map(f) {
        Some(s) if !s.is_empty() => Value::str(s),
        _ => Value::Absent,
    }
}

fn non_empty(s: &str) -> Value<'_> {
    if s.is_empty() {
        Value::Absent
    } else {
        Value::str(s)
    }
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Value<'a> {
    Value::opt_str(
        headers
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok()),
    )
}

fn headers_size(headers: Option<&HeaderMap>) -> u64 {
    headers.map_or(0, |h| {
        h.iter()
            .map(|(k, v)| (k.as_str().len() + v.len() + 4) as u64)
            .sum()
    })
}

fn int(n: u64) -> Value<'static> {
    i64::try_from(n).map_or(Value::Absent, Value::Int)
}

fn attribute<'r>(attr: Attribute, x: Exchange<'r, '_>) -> Value<'r> {
    let ends = Ends::of(x);
    let http = match x {
        Exchange::Http(r) => Some(r),
        Exchange::Tcp(_) => None,
    };
    match attr {
        // Attributes of the connection and the workloads, on both protocols.
        Attribute::SourceAddress => Value::owned(ends.conn.peer.to_string()),
        Attribute::SourcePort => Value::Int(i64::from(ends.conn.peer.port())),
        Attribute::DestinationAddress => Value::owned(ends.conn.original_dst.to_string()),
        Attribute::DestinationPort => Value::Int(i64::from(ends.conn.original_dst.port())),
        Attribute::ConnectionMtls => Value::Bool(ends.conn.peer_identity.is_some()),
        Attribute::ConnectionRequestedServerName => Value::opt_str(ends.conn.sni.as_deref()),
        Attribute::ConnectionUriSanPeerCertificate => {
            Value::opt_str(ends.conn.peer_identity.as_deref())
        }
        Attribute::ConnectionUriSanLocalCertificate => {
            Value::opt_str(ends.conn.local_identity.as_deref())
        }
        Attribute::UpstreamAddress => match ends.upstream.and_then(|u| u.host) {
            Some(addr) => Value::owned(addr.to_string()),
            None => Value::Absent,
        },
        Attribute::UpstreamPort => match ends.upstream.and_then(|u| u.host) {
            Some(addr) => Value::Int(i64::from(addr.port())),
            None => Value::Absent,
        },
        Attribute::XdsClusterName => match ends.upstream {
            Some(u) if !u.cluster.is_empty() => Value::str(&u.cluster),
            _ => Value::Absent,
        },
        Attribute::XdsRouteName => Value::opt_str(match x {
            Exchange::Http(r) => r.route_name,
            Exchange::Tcp(r) => r.route_name,
        }),
        // The record does not carry the proxy id.
        Attribute::XdsNodeId => Value::Absent,
        Attribute::SourceWorkload => meta_field(ends.source(), |m| &m.workload),
        Attribute::SourceNamespace => meta_field(ends.source(), |m| &m.namespace),
        Attribute::SourceApp => meta_field(ends.source(), |m| &m.app),
        Attribute::SourceVersion => meta_field(ends.source(), |m| &m.version),
        Attribute::SourcePrincipal => {
            if ends.client_side {
                // The app's plaintext connection has no certificate; our own identity is
                // the one the mesh tunnel presents.
                Value::opt_str(ends.conn.local_identity.as_deref())
            } else {
                Value::opt_str(ends.conn.peer_identity.as_deref())
            }
        }
        Attribute::DestinationWorkload => meta_field(ends.destination(), |m| &m.workload),
        Attribute::DestinationNamespace => match meta_field(ends.destination(), |m| &m.namespace) {
            Value::Absent => service_namespace(&ends, http),
            v => v,
        },
        Attribute::DestinationApp => match meta_field(ends.destination(), |m| &m.app) {
            Value::Absent if ends.client_side => Value::opt_str(ends.upstream_label("app")),
            v => v,
        },
        Attribute::DestinationVersion => match meta_field(ends.destination(), |m| &m.version) {
            Value::Absent if ends.client_side => Value::opt_str(ends.upstream_label("version")),
            v => v,
        },
        Attribute::DestinationPrincipal => {
            if ends.client_side {
                Value::opt_str(ends.upstream.and_then(|u| u.identity.as_deref()))
            } else {
                Value::opt_str(ends.conn.local_identity.as_deref())
            }
        }
        Attribute::DestinationService => Value::opt_str(destination_service(&ends, http)),
        Attribute::DestinationServiceName => {
            match destination_service(&ends, http).and_then(|s| s.split('.').next()) {
                Some(name) if !name.is_empty() => Value::str(name),
                _ => Value::Absent,
            }
        }
        Attribute::DestinationServiceNamespace => service_namespace(&ends, http),
        _ => match http {
            Some(r) => http_attribute(attr, r),
            // Request and response attributes do not exist on a TCP connection.
            None => Value::Absent,
        },
    }
}

/// `destination.service.host`: the cluster's service, else (HTTP) the Host header
/// without its port, as Istio falls back.
fn destination_service<'r>(ends: &Ends<'r>, http: Option<&'r HttpRecord<'_>>) -> Option<&'r str> {
    if let Some(service) = ends.upstream.and_then(|u| u.service.as_deref()) {
        return Some(service);
    }
    let authority = http?.authority;
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    (!host.is_empty()).then_some(host)
}

/// The namespace in a `name.namespace.svc.<domain>` service host.
fn service_namespace<'r>(ends: &Ends<'r>, http: Option<&'r HttpRecord<'_>>) -> Value<'r> {
    let Some(service) = destination_service(ends, http) else {
        return Value::Absent;
    };
    let mut parts = service.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(ns), Some("svc")) if !ns.is_empty() => Value::str(ns),
        _ => Value::Absent,
    }
}

fn http_attribute<'r>(attr: Attribute, r: &'r HttpRecord<'_>) -> Value<'r> {
    let req = Some(r.request_headers);
    match attr {
        Attribute::RequestPath => non_empty(r.path),
        Attribute::RequestUrlPath => non_empty(r.path.split('?').next().unwrap_or_default()),
        Attribute::RequestHost => non_empty(r.authority),
        Attribute::RequestScheme => non_empty(r.scheme),
        Attribute::RequestMethod => Value::str(r.method.as_str()),
        Attribute::RequestUserAgent => header(req, "user-agent"),
        Attribute::RequestReferer => header(req, "referer"),
        Attribute::RequestId => match r.request_id {
            Some(id) => Value::str(id),
            None => header(req, "x-request-id"),
        },
        Attribute::RequestProtocol => Value::str(protocol(r.version)),
        Attribute::RequestSize => int(r.request_bytes),
        Attribute::RequestTotalSize => int(r.request_bytes + headers_size(req)),
        // Milliseconds: the value model has no duration type.
        Attribute::RequestDuration => int(r.duration.as_millis().try_into().unwrap_or(u64::MAX)),
        Attribute::ResponseCode => Value::Int(i64::from(r.response_code)),
        Attribute::ResponseCodeDetails => non_empty(r.code_details),
        // Envoy exposes a bit set; the short flags are what users compare against.
        Attribute::ResponseFlags => non_empty(r.flags),
        Attribute::ResponseGrpcStatus => r
            .grpc_status
            .map_or(Value::Absent, |s| Value::Int(i64::from(s))),
        Attribute::ResponseSize => int(r.response_bytes),
        Attribute::ResponseTotalSize => int(r.response_bytes
            + headers_size(r.response_headers)
            + headers_size(r.response_trailers)),
        _ => Value::Absent,
    }
}

/// Envoy's protocol string (`%PROTOCOL%`, `request.protocol`).
pub fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "-",
    }
}

fn index<'r>(map: MapAttribute, key: &str, x: Exchange<'r, '_>) -> Value<'r> {
    let ends = Ends::of(x);
    match (map, x) {
        (MapAttribute::RequestHeaders, Exchange::Http(r)) => header(Some(r.request_headers), key),
        (MapAttribute::ResponseHeaders, Exchange::Http(r)) => header(r.response_headers, key),
        (MapAttribute::ResponseTrailers, Exchange::Http(r)) => header(r.response_trailers, key),
        (MapAttribute::UpstreamPeerLabels, _) => match ends.upstream_label(key) {
            Some(v) => Value::str(v),
            None => peer_label(ends.upstream.and_then(|u| u.peer.as_deref()), key),
        },
        (MapAttribute::DownstreamPeerLabels, _) => peer_label(ends.downstream_peer, key),
        _ => Value::Absent,
    }
}

/// The labels a peer's metadata stands for (the peer sends the derived values, not its
/// whole label set).
fn peer_label<'a>(meta: Option<&'a PeerMeta>, key: &str) -> Value<'a> {
    meta_field(meta, |m| match key {
        "app" | "app.kubernetes.io/name" => &m.app,
        "version" | "app.kubernetes.io/version" => &m.version,
        "service.istio.io/canonical-name" => &m.canonical_service,
        "service.istio.io/canonical-revision" => &m.canonical_revision,
        _ => "",
    })
}

/// Values computed once and kept past the record (e.g. cached labels) need no borrow.
pub fn eval_owned(expr: &Expr, x: &Exchange<'_, '_>) -> Value<'static> {
    eval(expr, x).into_owned()
}

#[cfg(test)]
#[path = "expr_tests.rs"]
mod tests;
