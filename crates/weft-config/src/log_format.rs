//! Envoy's access-log format language (`%START_TIME%`, `%REQ(X?Y):N%`, ...), parsed with
//! positions so that a mistake is reported at the operator responsible, and Istio's default
//! text and JSON formats.
//!
//! Rules (Envoy `access_log/usage.rst`): a command operator is `%NAME%`, `%NAME(arg)%` or
//! `%NAME(arg):N%` (`N` truncates the value to N characters); `%%` is a literal `%`; every
//! other character is literal text. Operators Envoy has but weft does not produce (dynamic
//! metadata, filter state, TLS details weft does not record) parse as
//! [`Operator::Unsupported`] and print `-`, as Envoy prints an absent value; validation
//! warns about them.

use crate::telemetry_expr::{self, Expr, suggest};

/// Istio's default text format (`EnvoyTextLogFormat`), used for the built-in `envoy`
/// provider and when `meshConfig.accessLogFormat` is empty.
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON format (`accessLogEncoding: JSON`, `EnvoyJSONLogFormatIstio`):
/// the same operators under these keys. Envoy writes the keys sorted, as here.
pub const ISTIO_JSON_FORMAT: &[(&str, &str)] = &[
    ("authority", "%REQ(:AUTHORITY)%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("duration", "%DURATION%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("route_name", "%ROUTE_NAME%"),
    ("start_time", "%START_TIME%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Op {
        op: Operator,
        /// `:N` truncation.
        max_len: Option<u32>,
        /// Byte offset of the operator's `%` in the format string.
        offset: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcStatusFormat {
    CamelString,
    SnakeString,
    Number,
}

macro_rules! simple_operators {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// A command operator. Mirrors the data-plane model (weft-compile converts it).
        #[derive(Debug, Clone, PartialEq)]
        pub enum Operator {
            /// `%START_TIME%` or `%START_TIME(strftime)%`.
            StartTime(Option<String>),
            /// `%REQ(X?Y)%`: header X, else Y (lower-case).
            Req(String, Option<String>),
            ReqWithoutQuery(String, Option<String>),
            Resp(String, Option<String>),
            Trailer(String, Option<String>),
            GrpcStatus(GrpcStatusFormat),
            Environment(String),
            Cel(Expr),
            /// An Envoy operator weft does not produce; prints `-`.
            Unsupported(String),
            $($variant),+
        }

        /// Operators without an argument, by name.
        const SIMPLE: &[(&str, Operator)] = &[$(($name, Operator::$variant)),+];
    };
}

simple_operators! {
    Protocol => "PROTOCOL",
    ResponseCode => "RESPONSE_CODE",
    ResponseFlags => "RESPONSE_FLAGS",
    ResponseFlagsLong => "RESPONSE_FLAGS_LONG",
    ResponseCodeDetails => "RESPONSE_CODE_DETAILS",
    ConnectionTerminationDetails => "CONNECTION_TERMINATION_DETAILS",
    UpstreamTransportFailureReason => "UPSTREAM_TRANSPORT_FAILURE_REASON",
    BytesReceived => "BYTES_RECEIVED",
    BytesSent => "BYTES_SENT",
    Duration => "DURATION",
    RequestDuration => "REQUEST_DURATION",
    ResponseDuration => "RESPONSE_DURATION",
    ResponseTxDuration => "RESPONSE_TX_DURATION",
    UpstreamHost => "UPSTREAM_HOST",
    UpstreamCluster => "UPSTREAM_CLUSTER",
    UpstreamClusterRaw => "UPSTREAM_CLUSTER_RAW",
    UpstreamLocalAddress => "UPSTREAM_LOCAL_ADDRESS",
    UpstreamRequestAttemptCount => "UPSTREAM_REQUEST_ATTEMPT_COUNT",
    DownstreamLocalAddress => "DOWNSTREAM_LOCAL_ADDRESS",
    DownstreamLocalAddressWithoutPort => "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    DownstreamLocalPort => "DOWNSTREAM_LOCAL_PORT",
    DownstreamRemoteAddress => "DOWNSTREAM_REMOTE_ADDRESS",
    DownstreamRemoteAddressWithoutPort => "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    DownstreamRemotePort => "DOWNSTREAM_REMOTE_PORT",
    DownstreamDirectRemoteAddress => "DOWNSTREAM_DIRECT_REMOTE_ADDRESS",
    DownstreamDirectRemoteAddressWithoutPort => "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
    DownstreamPeerUriSan => "DOWNSTREAM_PEER_URI_SAN",
    DownstreamLocalUriSan => "DOWNSTREAM_LOCAL_URI_SAN",
    DownstreamTlsVersion => "DOWNSTREAM_TLS_VERSION",
    RequestedServerName => "REQUESTED_SERVER_NAME",
    RouteName => "ROUTE_NAME",
    Hostname => "HOSTNAME",
    TraceId => "TRACE_ID",
}

/// Operators that take an argument (`%NAME(arg)%`).
const WITH_ARGUMENT: &[&str] = &[
    "START_TIME",
    "REQ",
    "REQ_WITHOUT_QUERY",
    "RESP",
    "TRAILER",
    "GRPC_STATUS",
    "ENVIRONMENT",
    "CEL",
];

/// Envoy operators weft accepts but does not produce (they print `-`).
const UNSUPPORTED: &[&str] = &[
    "DYNAMIC_METADATA",
    "CLUSTER_METADATA",
    "UPSTREAM_METADATA",
    "METADATA",
    "FILTER_STATE",
    "UPSTREAM_FILTER_STATE",
    "DOWNSTREAM_PEER_SUBJECT",
    "DOWNSTREAM_PEER_ISSUER",
    "DOWNSTREAM_PEER_FINGERPRINT_256",
    "DOWNSTREAM_PEER_FINGERPRINT_1",
    "DOWNSTREAM_PEER_SERIAL",
    "DOWNSTREAM_PEER_CERT",
    "DOWNSTREAM_PEER_CERT_V_START",
    "DOWNSTREAM_PEER_CERT_V_END",
    "DOWNSTREAM_PEER_DNS_SAN",
    "DOWNSTREAM_LOCAL_DNS_SAN",
    "DOWNSTREAM_LOCAL_SUBJECT",
    "DOWNSTREAM_TLS_CIPHER",
    "DOWNSTREAM_TLS_SESSION_ID",
    "DOWNSTREAM_TRANSPORT_FAILURE_REASON",
    "DOWNSTREAM_HANDSHAKE_DURATION",
    "UPSTREAM_TLS_VERSION",
    "UPSTREAM_TLS_CIPHER",
    "UPSTREAM_TLS_SESSION_ID",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_PEER_ISSUER",
    "UPSTREAM_LOCAL_URI_SAN",
    "UPSTREAM_REMOTE_ADDRESS",
    "UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_REMOTE_PORT",
    "UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT",
    "UPSTREAM_LOCAL_PORT",
    "UPSTREAM_CONNECTION_ID",
    "UPSTREAM_WIRE_BYTES_SENT",
    "UPSTREAM_WIRE_BYTES_RECEIVED",
    "UPSTREAM_HEADER_BYTES_SENT",
    "UPSTREAM_HEADER_BYTES_RECEIVED",
    "DOWNSTREAM_WIRE_BYTES_SENT",
    "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    "DOWNSTREAM_HEADER_BYTES_SENT",
    "DOWNSTREAM_HEADER_BYTES_RECEIVED",
    "REQUEST_HEADERS_BYTES",
    "RESPONSE_HEADERS_BYTES",
    "RESPONSE_TRAILERS_BYTES",
    "REQUEST_TX_DURATION",
    "ROUNDTRIP_DURATION",
    "COMMON_DURATION",
    "CONNECTION_ID",
    "STREAM_ID",
    "UNIQUE_ID",
    "VIRTUAL_CLUSTER_NAME",
    "LOCAL_REPLY_BODY",
    "ACCESS_LOG_TYPE",
    "EMIT_TIME",
    "SYSTEM_TIME",
    "DOWNSTREAM_LOCAL_ADDRESS_ENDPOINT_ID",
    "REQUESTED_SERVER_NAME_RAW",
    "GRPC_STATUS_NUMBER",
    "STREAM_INFO_REQ",
    "VIRTUAL_CLUSTER",
];

/// A format error at a byte range of the format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn error(
    offset: usize,
    len: usize,
    message: impl Into<String>,
    hint: Option<String>,
) -> FormatError {
    FormatError {
        offset,
        len,
        message: message.into(),
        hint,
    }
}

/// Every operator name weft knows (for suggestions).
fn all_names() -> impl Iterator<Item = &'static str> {
    SIMPLE
        .iter()
        .map(|(n, _)| *n)
        .chain(WITH_ARGUMENT.iter().copied())
        .chain(UNSUPPORTED.iter().copied())
}

/// Parses one format string into literal text and operators.
pub fn parse(text: &str) -> Result<Vec<Part>, FormatError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest_start = 0;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        literal.push_str(&text[rest_start..i]);
        if b.get(i + 1) == Some(&b'%') {
            literal.push('%');
            i += 2;
            rest_start = i;
            continue;
        }
        let (op, max_len, end) = operator(text, i)?;
        if !literal.is_empty() {
            parts.push(Part::Text(std::mem::take(&mut literal)));
        }
        parts.push(Part::Op {
            op,
            max_len,
            offset: i,
        });
        i = end;
        rest_start = i;
    }
    literal.push_str(&text[rest_start..]);
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

/// The operator starting with the `%` at `start`: the operator, its truncation and the
/// offset after its closing `%`.
fn operator(text: &str, start: usize) -> Result<(Operator, Option<u32>, usize), FormatError> {
    let b = text.as_bytes();
    let name_start = start + 1;
    let mut i = name_start;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    let name = &text[name_start..i];
    if name.is_empty() {
        return Err(error(
            start,
            1,
            "`%` does not start a command operator",
            Some("write `%%` for a literal percent sign".to_string()),
        ));
    }
    // The argument runs to the first `)` that is followed by `%` or `:N%`, so that CEL
    // expressions may contain parentheses and START_TIME formats may contain `%`.
    let mut arg: Option<(usize, &str)> = None;
    if b.get(i) == Some(&b'(') {
        let arg_start = i + 1;
        let close = (arg_start..b.len()).find(|&j| b[j] == b')' && closes_operator(&b[j + 1..]));
        let Some(close) = close else {
            return Err(error(
                start,
                text.len() - start,
                format!("`%{name}(` has no closing `)%`"),
                Some(format!("write %{name}(...)%")),
            ));
        };
        arg = Some((arg_start, &text[arg_start..close]));
        i = close + 1;
    }
    let mut max_len = None;
    if b.get(i) == Some(&b':') {
        let digits_start = i + 1;
        let mut j = digits_start;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let digits = &text[digits_start..j];
        match digits.parse::<u32>() {
            Ok(n) if b.get(j) == Some(&b'%') => max_len = Some(n),
            _ => {
                return Err(error(
                    i,
                    j.saturating_sub(i).max(1),
                    format!(
                        "`%{name}` has an invalid length: `:` must be followed by a number and `%`"
                    ),
                    Some(format!("e.g. %{name}:64%")),
                ));
            }
        }
        i = j;
    }
    if b.get(i) != Some(&b'%') {
        return Err(error(
            start,
            i - start,
            format!("command operator `%{name}` is not closed"),
            Some(format!("end it with `%`: %{name}%")),
        ));
    }
    let end = i + 1;
    let op = resolve(name, arg, start, end)?;
    Ok((op, max_len, end))
}

fn closes_operator(after: &[u8]) -> bool {
    match after.first() {
        Some(b'%') => true,
        Some(b':') => {
            let digits = after[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            digits > 0 && after.get(1 + digits) == Some(&b'%')
        }
        _ => false,
    }
}

fn resolve(
    name: &str,
    arg: Option<(usize, &str)>,
    start: usize,
    end: usize,
) -> Result<Operator, FormatError> {
    let whole = |message: String, hint: Option<String>| error(start, end - start, message, hint);
    if let Some((_, op)) = SIMPLE.iter().find(|(n, _)| *n == name) {
        if arg.is_some() {
            return Err(whole(
                format!("%{name}% takes no argument"),
                Some(format!("write %{name}%")),
            ));
        }
        return Ok(op.clone());
    }
    if UNSUPPORTED.contains(&name) {
        return Ok(Operator::Unsupported(name.to_string()));
    }
    if !WITH_ARGUMENT.contains(&name) {
        let names: Vec<&str> = all_names().collect();
        let hint = match suggest(name, &names) {
            Some(s) if WITH_ARGUMENT.contains(&s) => format!("did you mean %{s}(...)%?"),
            Some(s) => format!("did you mean %{s}%?"),
            None => {
                "command operators are Envoy's, in upper case, e.g. %RESPONSE_CODE% or %REQ(:PATH)%"
                    .to_string()
            }
        };
        return Err(whole(
            format!("unknown command operator `%{name}%`"),
            Some(hint),
        ));
    }
    let Some((arg_at, arg)) = arg else {
        return match name {
            "START_TIME" => Ok(Operator::StartTime(None)),
            "GRPC_STATUS" => Ok(Operator::GrpcStatus(GrpcStatusFormat::CamelString)),
            _ => Err(whole(
                format!("%{name}% needs an argument"),
                Some(match name {
                    "ENVIRONMENT" => "e.g. %ENVIRONMENT(POD_NAME)%".to_string(),
                    "CEL" => "e.g. %CEL(request.headers['x-user'])%".to_string(),
                    _ => format!("name a header, e.g. %{name}(X-REQUEST-ID)% or %{name}(X-A?X-B)%"),
                }),
            )),
        };
    };
    let arg_error =
        |message: String, hint: String| error(arg_at, arg.len().max(1), message, Some(hint));
    match name {
        "START_TIME" => Ok(Operator::StartTime(
            (!arg.is_empty()).then(|| arg.to_string()),
        )),
        "GRPC_STATUS" => match arg {
            "" | "CAMEL_STRING" => Ok(Operator::GrpcStatus(GrpcStatusFormat::CamelString)),
            "SNAKE_STRING" => Ok(Operator::GrpcStatus(GrpcStatusFormat::SnakeString)),
            "NUMBER" => Ok(Operator::GrpcStatus(GrpcStatusFormat::Number)),
            other => Err(arg_error(
                format!(
                    "GRPC_STATUS format `{other}` is not one of CAMEL_STRING, SNAKE_STRING, NUMBER"
                ),
                "e.g. %GRPC_STATUS(NUMBER)%".to_string(),
            )),
        },
        "ENVIRONMENT" => {
            if arg.is_empty() {
                return Err(arg_error(
                    "%ENVIRONMENT()% needs a variable name".into(),
                    "e.g. %ENVIRONMENT(POD_NAME)%".into(),
                ));
            }
            Ok(Operator::Environment(arg.to_string()))
        }
        "CEL" => telemetry_expr::parse(arg)
            .map(Operator::Cel)
            .map_err(|e| FormatError {
                offset: arg_at + e.offset,
                len: e.len,
                message: format!("in %CEL(...)%: {}", e.message),
                hint: e.hint,
            }),
        _ => {
            let (main, alt) = headers(name, arg, arg_at)?;
            Ok(match name {
                "REQ" => Operator::Req(main, alt),
                "REQ_WITHOUT_QUERY" => Operator::ReqWithoutQuery(main, alt),
                "RESP" => Operator::Resp(main, alt),
                _ => Operator::Trailer(main, alt),
            })
        }
    }
}

/// `X?Y`: the header and its fallback, lower-cased.
fn headers(name: &str, arg: &str, at: usize) -> Result<(String, Option<String>), FormatError> {
    let bad = |message: String| {
        error(
            at,
            arg.len().max(1),
            message,
            Some(format!(
                "e.g. %{name}(X-REQUEST-ID)% or %{name}(X-ENVOY-ORIGINAL-PATH?:PATH)%"
            )),
        )
    };
    let mut split = arg.split('?');
    let main = split.next().unwrap_or_default().trim();
    let alt = split.next().map(str::trim);
    if split.next().is_some() {
        return Err(bad(format!("%{name}({arg})% has more than one `?`")));
    }
    let valid = |h: &str| {
        !h.is_empty()
            && h.strip_prefix(':')
                .unwrap_or(h)
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.!#$&'*+^`|~".contains(&c))
    };
    if !valid(main) || alt.is_some_and(|a| !valid(a)) {
        return Err(bad(format!("%{name}({arg})% does not name a header")));
    }
    Ok((main.to_ascii_lowercase(), alt.map(str::to_ascii_lowercase)))
}

/// Whether a parsed format reads request headers (the proxy then keeps a copy of them).
pub fn reads_request_headers(parts: &[Part]) -> bool {
    parts.iter().any(|p| match p {
        Part::Op {
            op: Operator::Req(main, alt) | Operator::ReqWithoutQuery(main, alt),
            ..
        } => !main.starts_with(':') || alt.as_deref().is_some_and(|a| !a.starts_with(':')),
        Part::Op {
            op: Operator::Cel(e),
            ..
        } => e.reads_request_headers(),
        _ => false,
    })
}

#[cfg(test)]
#[path = "log_format_tests.rs"]
mod tests;

/// One JSON log entry's fields: key and format, sorted by key as Envoy writes them.
pub type JsonFormat = Vec<(String, Vec<Part>)>;

/// `accessLogFormat` under `accessLogEncoding: JSON`: a JSON object whose values are
/// format strings. Error offsets are in `text`.
pub fn parse_json(text: &str) -> Result<JsonFormat, FormatError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let offset = line_col_offset(text, e.line(), e.column());
        error(
            offset,
            char_len_at(text, offset),
            format!("accessLogFormat is not a JSON object (accessLogEncoding is JSON): {e}"),
            Some(r#"write a JSON object, e.g. '{"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%"}'"#.to_string()),
        )
    })?;
    let Some(map) = value.as_object() else {
        return Err(error(
            0,
            text.len().max(1),
            "accessLogFormat is not a JSON object (accessLogEncoding is JSON)",
            Some(r#"e.g. '{"code": "%RESPONSE_CODE%"}'"#.to_string()),
        ));
    };
    parse_labels(map).map_err(|(key, e)| {
        // Point into the text: the value follows its key. Offsets in the value are mapped
        // through the escapes the text has for it (`\n` is two bytes of text, one of value),
        // assuming serde_json's spelling; with another spelling, the key is pointed at.
        let quoted_key = format!("\"{key}\"");
        let key_span = text.find(&quoted_key).map(|at| (at, quoted_key.len()));
        let key_at = key_span.map_or(0, |(at, _)| at);
        let escaped_len = |s: &str| serde_json::to_string(s).map_or(0, |q| q.len() - 2);
        let in_value = || {
            let value = map[&key].as_str()?;
            let quoted = serde_json::to_string(value).ok()?;
            let at = key_at + text[key_at..].find(&quoted)? + 1;
            let start = escaped_len(value.get(..e.offset)?);
            let end = escaped_len(value.get(..e.offset + e.len)?);
            Some((at + start, end - start))
        };
        let (offset, len) = in_value().or(key_span).unwrap_or((0, text.len()));
        FormatError { offset, len, ..e }
    })
}

/// `logFormat.labels` of a provider: key → format string. On error, the key and the
/// error with offsets in that value.
pub fn parse_labels(
    map: &serde_json::Map<String, serde_json::Value>,
) -> Result<JsonFormat, (String, FormatError)> {
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        let parts = match value {
            serde_json::Value::String(s) => parse(s).map_err(|e| (key.clone(), e))?,
            serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                return Err((
                    key.clone(),
                    error(
                        0,
                        1,
                        format!("log field `{key}` is nested; weft supports flat JSON log formats"),
                        Some(format!(
                            "give `{key}` a format string, e.g. \"%REQ(:PATH)%\""
                        )),
                    ),
                ));
            }
            other => vec![Part::Text(other.to_string())],
        };
        out.push((key.clone(), parts));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The byte offset of serde_json's 1-based line and byte column, moved back to the start
/// of the character it falls in (serde_json counts bytes and may stop inside a character).
fn line_col_offset(text: &str, line: usize, col: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let mut at = (line_start + col.saturating_sub(1)).min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The length of the character at `at` (0 at the end of the text).
fn char_len_at(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(0, char::len_utf8)
}
