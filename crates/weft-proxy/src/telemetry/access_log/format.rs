//! Renders a [`LogFormat`] for one finished exchange, as Envoy does: an operator without
//! a value prints `-`, `:N` cuts a value to N characters, and in JSON a field that is
//! exactly one operator keeps its type (numbers stay numbers, a missing value is `null`);
//! a field mixing text and operators is a string.

use std::borrow::Cow;
use std::net::SocketAddr;

use http::HeaderMap;
use weft_api::{GrpcStatusFormat, LogFormat, LogOperator, LogPart};

use super::time;
use crate::telemetry::expr::{self, Exchange, Value};
use crate::telemetry::{HttpRecord, TcpRecord};

/// The value of one operator for one exchange.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    Absent,
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
}

impl Field<'_> {
    fn as_text(&self) -> Cow<'_, str> {
        match self {
            Field::Absent => Cow::Borrowed("-"),
            Field::Str(s) if s.is_empty() => Cow::Borrowed("-"),
            Field::Str(s) => Cow::Borrowed(s),
            Field::Int(i) => Cow::Owned(i.to_string()),
            Field::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Field::Absent => serde_json::Value::Null,
            Field::Str(s) if s.is_empty() => serde_json::Value::Null,
            Field::Str(s) => serde_json::Value::String(s.to_string()),
            Field::Int(i) => serde_json::Value::from(*i),
            Field::Bool(b) => serde_json::Value::Bool(*b),
        }
    }
}

/// A part with what the proxy's environment gives resolved once, at config time.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Op(LogOperator, Option<u32>),
    /// `%ENVIRONMENT(X)%`, `%HOSTNAME%`.
    Const(Option<String>, Option<u32>),
}

/// A format ready to render.
#[derive(Debug, Clone)]
pub struct Formatter {
    text: Option<Vec<Part>>,
    json: Option<Vec<(String, Vec<Part>)>>,
}

/// One rendered entry: the line (with its newline) and, for JSON formats, the typed
/// fields (OTLP attributes).
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub line: String,
    pub fields: Option<Vec<(String, serde_json::Value)>>,
}

fn prepare(parts: &[LogPart], hostname: &str) -> Vec<Part> {
    parts
        .iter()
        .map(|p| match p {
            LogPart::Text(t) => Part::Text(t.clone()),
            LogPart::Op {
                op: LogOperator::Environment(name),
                max_len,
            } => Part::Const(std::env::var(name).ok(), *max_len),
            LogPart::Op {
                op: LogOperator::Hostname,
                max_len,
            } => Part::Const(Some(hostname.to_string()), *max_len),
            LogPart::Op { op, max_len } => Part::Op(op.clone(), *max_len),
        })
        .collect()
}

impl Formatter {
    pub fn new(format: &LogFormat, hostname: &str) -> Formatter {
        match format {
            LogFormat::Text(parts) => Formatter {
                text: Some(prepare(parts, hostname)),
                json: None,
            },
            LogFormat::Json(fields) => Formatter {
                text: None,
                json: Some(
                    fields
                        .iter()
                        .map(|(k, p)| (k.clone(), prepare(p, hostname)))
                        .collect(),
                ),
            },
        }
    }

    pub fn http(&self, rec: &HttpRecord<'_>) -> Rendered {
        self.render(Exchange::Http(rec))
    }

    pub fn tcp(&self, rec: &TcpRecord<'_>) -> Rendered {
        self.render(Exchange::Tcp(rec))
    }

    fn render(&self, x: Exchange<'_, '_>) -> Rendered {
        if let Some(parts) = &self.text {
            let mut line = String::with_capacity(256);
            render_text(&mut line, parts, x);
            return Rendered { line, fields: None };
        }
        let mut fields = Vec::new();
        for (key, parts) in self.json.iter().flatten() {
            let value = match parts.as_slice() {
                [single @ (Part::Op(..) | Part::Const(..))] => field(single, x).to_json(),
                _ => {
                    let mut s = String::new();
                    render_text(&mut s, parts, x);
                    serde_json::Value::String(s)
                }
            };
            fields.push((key.clone(), value));
        }
        // serde_json's map keeps insertion order only with a feature; write the fields in
        // the format's order (sorted by the compiler, as Envoy sorts them) by hand.
        let mut line = String::from("{");
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&serde_json::Value::String(key.clone()).to_string());
            line.push(':');
            line.push_str(&value.to_string());
        }
        line.push_str("}\n");
        Rendered {
            line,
            fields: Some(fields),
        }
    }
}

fn render_text(out: &mut String, parts: &[Part], x: Exchange<'_, '_>) {
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            other => out.push_str(&field(other, x).as_text()),
        }
    }
}

fn truncate(f: Field<'_>, max: Option<u32>) -> Field<'_> {
    match (f, max) {
        (Field::Str(s), Some(n)) => match s.char_indices().nth(n as usize) {
            Some((cut, _)) => Field::Str(Cow::Owned(s[..cut].to_string())),
            None => Field::Str(s),
        },
        (f, _) => f,
    }
}

fn field<'a>(p: &'a Part, x: Exchange<'a, '_>) -> Field<'a> {
    match p {
        Part::Text(t) => Field::Str(Cow::Borrowed(t)),
        Part::Const(v, max) => truncate(
            v.as_deref()
                .map_or(Field::Absent, |s| Field::Str(Cow::Borrowed(s))),
            *max,
        ),
        Part::Op(op, max) => truncate(operator(op, x), *max),
    }
}

fn s(v: &str) -> Field<'_> {
    Field::Str(Cow::Borrowed(v))
}

fn owned(v: String) -> Field<'static> {
    Field::Str(Cow::Owned(v))
}

fn opt(v: Option<&str>) -> Field<'_> {
    v.map_or(Field::Absent, s)
}

fn addr(a: Option<SocketAddr>) -> Field<'static> {
    a.map_or(Field::Absent, |a| owned(a.to_string()))
}

fn int(n: u64) -> Field<'static> {
    i64::try_from(n).map_or(Field::Absent, Field::Int)
}

fn millis(d: std::time::Duration) -> Field<'static> {
    int(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name)?.to_str().ok()
}

/// `%REQ(X?Y)%`: pseudo headers are the request line; `x-request-id` falls back to the
/// id the proxy assigned when the headers were not kept.
fn request_header<'a>(rec: &'a HttpRecord<'_>, name: &str) -> Option<&'a str> {
    let value = match name {
        ":method" => Some(rec.method.as_str()),
        ":path" => Some(rec.path),
        ":authority" | "host" => Some(rec.authority),
        ":scheme" => Some(rec.scheme),
        _ => header(Some(rec.request_headers), name),
    };
    match (value, name) {
        (None, "x-request-id") => rec.request_id,
        (v, _) => v.filter(|v| !v.is_empty()),
    }
}

fn with_fallback<'a>(
    main: &str,
    alt: Option<&String>,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Field<'a> {
    opt(get(main).or_else(|| alt.and_then(|a| get(a))))
}

fn operator<'a>(op: &'a LogOperator, x: Exchange<'a, '_>) -> Field<'a> {
    use LogOperator as L;
    let (conn, upstream, start, duration, flags, route) = match x {
        Exchange::Http(r) => (
            r.conn,
            r.upstream,
            r.start,
            r.duration,
            r.flags,
            r.route_name,
        ),
        Exchange::Tcp(r) => (
            r.conn,
            r.upstream,
            r.start,
            r.duration,
            r.flags,
            r.route_name,
        ),
    };
    let http = match x {
        Exchange::Http(r) => Some(r),
        Exchange::Tcp(_) => None,
    };
    match op {
        L::StartTime(format) => {
            let mut out = String::with_capacity(24);
            time::format_into(
                &mut out,
                start,
                format.as_deref().unwrap_or(time::DEFAULT_FORMAT),
            );
            owned(out)
        }
        L::ResponseFlags => opt(Some(flags).filter(|f| !f.is_empty())),
        L::ResponseFlagsLong => {
            if flags.is_empty() {
                Field::Absent
            } else {
                owned(
                    flags
                        .split(',')
                        .map(long_flag)
                        .collect::<Vec<_>>()
                        .join(","),
                )
            }
        }
        L::Duration => millis(duration),
        L::UpstreamHost => addr(upstream.and_then(|u| u.host)),
        L::UpstreamCluster | L::UpstreamClusterRaw => {
            opt(upstream.map(|u| &*u.cluster).filter(|c| !c.is_empty()))
        }
        L::UpstreamLocalAddress => addr(upstream.and_then(|u| u.local)),
        L::UpstreamRequestAttemptCount => int(upstream.map_or(0, |u| u64::from(u.attempts))),
        L::UpstreamTransportFailureReason => {
            opt(upstream.and_then(|u| u.transport_failure.as_deref()))
        }
        L::DownstreamLocalAddress => owned(conn.original_dst.to_string()),
        L::DownstreamLocalAddressWithoutPort => owned(conn.original_dst.ip().to_string()),
        L::DownstreamLocalPort => Field::Int(i64::from(conn.original_dst.port())),
        L::DownstreamRemoteAddress | L::DownstreamDirectRemoteAddress => {
            owned(conn.peer.to_string())
        }
        L::DownstreamRemoteAddressWithoutPort | L::DownstreamDirectRemoteAddressWithoutPort => {
            owned(conn.peer.ip().to_string())
        }
        L::DownstreamRemotePort => Field::Int(i64::from(conn.peer.port())),
        L::DownstreamPeerUriSan => opt(conn.peer_identity.as_deref()),
        L::DownstreamLocalUriSan => opt(conn.local_identity.as_deref()),
        // Mesh mTLS between proxies is TLS 1.3 only.
        L::DownstreamTlsVersion => opt(conn.peer_identity.as_ref().map(|_| "TLSv1.3")),
        L::RequestedServerName => opt(conn.sni.as_deref()),
        L::RouteName => opt(route),
        L::Cel(e) => match expr::eval(e, &x) {
            Value::Absent => Field::Absent,
            Value::Str(v) => Field::Str(v),
            Value::Int(i) => Field::Int(i),
            Value::Bool(b) => Field::Bool(b),
        },
        // Resolved at config time (see `prepare`).
        L::Environment(_) | L::Hostname => Field::Absent,
        L::BytesReceived => match x {
            Exchange::Http(r) => int(r.request_bytes),
            Exchange::Tcp(r) => int(r.total_received),
        },
        L::BytesSent => match x {
            Exchange::Http(r) => int(r.response_bytes),
            Exchange::Tcp(r) => int(r.total_sent),
        },
        L::ConnectionTerminationDetails => match x {
            Exchange::Tcp(r) => opt(r.termination),
            Exchange::Http(_) => Field::Absent,
        },
        // Envoy prints 0 for a connection without an HTTP response.
        L::ResponseCode => Field::Int(http.map_or(0, |r| i64::from(r.response_code))),
        _ => match http {
            Some(r) => http_operator(op, r),
            None => Field::Absent,
        },
    }
}

/// Operators that only have a value on HTTP.
fn http_operator<'a>(op: &'a LogOperator, r: &'a HttpRecord<'_>) -> Field<'a> {
    use LogOperator as L;
    match op {
        L::Req(h, alt) => with_fallback(h, alt.as_ref(), |n| request_header(r, n)),
        L::ReqWithoutQuery(h, alt) => {
            match with_fallback(h, alt.as_ref(), |n| request_header(r, n)) {
                Field::Str(v) => match v.split_once('?') {
                    Some((path, _)) => owned(path.to_string()),
                    None => Field::Str(v),
                },
                other => other,
            }
        }
        L::Resp(h, alt) => with_fallback(h, alt.as_ref(), |n| header(r.response_headers, n)),
        L::Trailer(h, alt) => with_fallback(h, alt.as_ref(), |n| header(r.response_trailers, n)),
        L::Protocol => s(expr::protocol(r.version)),
        L::ResponseCodeDetails => opt(Some(r.code_details).filter(|d| !d.is_empty())),
        L::ResponseDuration => r.response_start.map_or(Field::Absent, millis),
        L::ResponseTxDuration => r.response_start.map_or(Field::Absent, |start| {
            millis(r.duration.saturating_sub(start))
        }),
        // The record does not know when the request's last byte arrived.
        L::RequestDuration => Field::Absent,
        L::GrpcStatus(format) => match (r.grpc_status, format) {
            (None, _) => Field::Absent,
            (Some(code), GrpcStatusFormat::Number) => Field::Int(i64::from(code)),
            (Some(code), GrpcStatusFormat::CamelString) => s(grpc_name(code).0),
            (Some(code), GrpcStatusFormat::SnakeString) => s(grpc_name(code).1),
        },
        L::TraceId => r.span.map_or(Field::Absent, |sp| owned(sp.trace_id_hex())),
        _ => Field::Absent,
    }
}

/// gRPC status names: Envoy's CamelCase and SNAKE_CASE spellings.
fn grpc_name(code: u32) -> (&'static str, &'static str) {
    match code {
        0 => ("OK", "OK"),
        1 => ("Canceled", "CANCELLED"),
        2 => ("Unknown", "UNKNOWN"),
        3 => ("InvalidArgument", "INVALID_ARGUMENT"),
        4 => ("DeadlineExceeded", "DEADLINE_EXCEEDED"),
        5 => ("NotFound", "NOT_FOUND"),
        6 => ("AlreadyExists", "ALREADY_EXISTS"),
        7 => ("PermissionDenied", "PERMISSION_DENIED"),
        8 => ("ResourceExhausted", "RESOURCE_EXHAUSTED"),
        9 => ("FailedPrecondition", "FAILED_PRECONDITION"),
        10 => ("Aborted", "ABORTED"),
        11 => ("OutOfRange", "OUT_OF_RANGE"),
        12 => ("Unimplemented", "UNIMPLEMENTED"),
        13 => ("Internal", "INTERNAL"),
        14 => ("Unavailable", "UNAVAILABLE"),
        15 => ("DataLoss", "DATA_LOSS"),
        16 => ("Unauthenticated", "UNAUTHENTICATED"),
        _ => ("InvalidCode", "INVALID_CODE"),
    }
}

/// `%RESPONSE_FLAGS_LONG%` names (Envoy `stream_info/utility.h`).
fn long_flag(short: &str) -> &str {
    match short {
        "UH" => "NoHealthyUpstream",
        "UF" => "UpstreamConnectionFailure",
        "UO" => "UpstreamOverflow",
        "NR" => "NoRouteFound",
        "URX" => "UpstreamRetryLimitExceeded",
        "NC" => "NoClusterFound",
        "DT" => "DurationTimeout",
        "DC" => "DownstreamConnectionTermination",
        "LH" => "FailedLocalHealthCheck",
        "UT" => "UpstreamRequestTimeout",
        "LR" => "LocalReset",
        "UR" => "UpstreamRemoteReset",
        "UC" => "UpstreamConnectionTermination",
        "DI" => "DelayInjected",
        "FI" => "FaultInjected",
        "RL" => "RateLimited",
        "UAEX" => "UnauthorizedExternalService",
        "RLSE" => "RateLimitServiceError",
        "IH" => "InvalidEnvoyRequestHeaders",
        "SI" => "StreamIdleTimeout",
        "DPE" => "DownstreamProtocolError",
        "UPE" => "UpstreamProtocolError",
        "UMSDR" => "UpstreamMaxStreamDurationReached",
        "OM" => "OverloadManagerTerminated",
        "DF" => "DnsResolutionFailed",
        "RFCF" => "ResponseFromCacheFilter",
        "NFCF" => "NoFilterConfigFound",
        "DO" => "DropOverload",
        "DR" => "DownstreamRemoteReset",
        "UDO" => "UnconditionalDropOverload",
        other => other,
    }
}
