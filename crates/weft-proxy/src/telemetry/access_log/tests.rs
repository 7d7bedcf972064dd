//! Access-log golden tests: Istio's default text and JSON formats and a custom format with
//! every operator, rendered for constructed records.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Version};
use serde_json::json;
use weft_api::{Direction, LogFormat, LogOperator, LogPart};

use super::format::Formatter;
use super::*;
use crate::ConnInfo;
use crate::telemetry::record::UpstreamInfo;
use crate::telemetry::{PeerMeta, SpanHandle, TcpRecord};

/// Envoy format text into the model, for tests only (the real parser is weft-config's,
/// which the proxy does not depend on): `%NAME%`, `%NAME(args)%`, `:N`, `%%`.
pub(super) fn parse(format: &str) -> Vec<LogPart> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        text.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            text.push('%');
            rest = r;
            continue;
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .expect("operator name");
        let (name, mut after) = rest.split_at(name_len);
        let mut arg = None;
        if let Some(a) = after.strip_prefix('(') {
            let close = a.find(')').expect("closing paren");
            arg = Some(&a[..close]);
            after = &a[close + 1..];
        }
        let mut max_len = None;
        if let Some(a) = after.strip_prefix(':') {
            let digits = a.find('%').expect("closed operator");
            max_len = Some(a[..digits].parse::<u32>().expect("length"));
            after = &a[digits..];
        }
        rest = after.strip_prefix('%').expect("closed operator");
        let name = name.to_ascii_lowercase();
        let op: LogOperator = match (name.as_str(), arg) {
            ("req" | "resp" | "trailer" | "req_without_query", Some(a)) => {
                let (h, alt) = match a.split_once('?') {
                    Some((h, alt)) => (h.to_ascii_lowercase(), Some(alt.to_ascii_lowercase())),
                    None => (a.to_ascii_lowercase(), None),
                };
                serde_json::from_value(json!({ name: [h, alt] })).unwrap()
            }
            ("start_time", a) => LogOperator::StartTime(a.map(str::to_string)),
            ("grpc_status", a) => serde_json::from_value(
                json!({ "grpc_status": a.unwrap_or("CAMEL_STRING").to_ascii_lowercase() }),
            )
            .unwrap(),
            ("environment", Some(a)) => LogOperator::Environment(a.to_string()),
            (_, None) => {
                serde_json::from_value(json!(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
            }
            (n, Some(a)) => panic!("test parser: {n}({a})"),
        };
        if !text.is_empty() {
            parts.push(LogPart::Text(std::mem::take(&mut text)));
        }
        parts.push(LogPart::Op { op, max_len });
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(LogPart::Text(text));
    }
    parts
}

/// Istio's `EnvoyTextLogFormat`.
pub(super) const ISTIO_TEXT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's JSON format (keys sorted, as the compiler emits them).
fn istio_json() -> LogFormat {
    let fields = [
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
    LogFormat::Json(
        fields
            .iter()
            .map(|(k, f)| (k.to_string(), parse(f)))
            .collect(),
    )
}

/// The Istio docs' client-sidecar exchange: `GET /status/418` from curl to httpbin.
pub(super) struct Fixture {
    pub conn: ConnInfo,
    pub local: PeerMeta,
    pub headers: HeaderMap,
    pub response: HeaderMap,
    pub trailers: HeaderMap,
    pub upstream: UpstreamInfo,
    pub method: Method,
    pub span: SpanHandle,
}

pub(super) fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_606_339_578_409)
}

impl Fixture {
    pub fn new() -> Fixture {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("curl/7.73.0-DEV"));
        headers.insert(
            "x-request-id",
            HeaderValue::from_static("84961386-6d84-929d-98bd-c5aee93b5c88"),
        );
        let mut response = HeaderMap::new();
        response.insert(
            "x-envoy-upstream-service-time",
            HeaderValue::from_static("4"),
        );
        response.insert("content-type", HeaderValue::from_static("text/plain"));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-message", HeaderValue::from_static("teapot"));
        Fixture {
            conn: ConnInfo {
                listener: Arc::from("outbound"),
                direction: Direction::Outbound,
                peer: "10.44.1.23:46520".parse().unwrap(),
                original_dst: "10.0.45.184:8000".parse().unwrap(),
                local: "10.44.1.23:15001".parse().unwrap(),
                sni: None,
                peer_identity: None,
                local_identity: None,
            },
            local: PeerMeta::from_labels("sleep", "foo", &BTreeMap::new()),
            headers,
            response,
            trailers,
            upstream: UpstreamInfo {
                cluster: Arc::from("outbound|8000||httpbin.foo.svc.cluster.local"),
                service: Some(Arc::from("httpbin.foo.svc.cluster.local")),
                host: Some("10.44.1.27:80".parse().unwrap()),
                local: Some("10.44.1.23:37652".parse().unwrap()),
                attempts: 1,
                ..UpstreamInfo::default()
            },
            method: Method::GET,
            span: SpanHandle {
                trace_id: [0xab; 16],
                span_id: [0xcd; 8],
                parent_span_id: None,
                trace_state: None,
                start: start(),
                request_tags: Vec::new(),
            },
        }
    }

    pub fn http(&self) -> HttpRecord<'_> {
        HttpRecord {
            client_side: true,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: None,
            start: start(),
            duration: Duration::from_micros(4_700),
            response_start: Some(Duration::from_millis(3)),
            version: Version::HTTP_11,
            method: &self.method,
            path: "/status/418",
            authority: "httpbin:8000",
            scheme: "http",
            grpc: false,
            request_headers: &self.headers,
            response_code: 418,
            response_headers: Some(&self.response),
            response_trailers: None,
            grpc_status: None,
            flags: "",
            error_code: None,
            code_details: "via_upstream",
            request_bytes: 0,
            response_bytes: 135,
            request_messages: 0,
            response_messages: 0,
            route_name: Some("default"),
            upstream: Some(&self.upstream),
            request_id: Some("84961386-6d84-929d-98bd-c5aee93b5c88"),
            span: None,
        }
    }

    pub fn tcp(&self) -> TcpRecord<'_> {
        TcpRecord {
            event: TcpEvent::Closed,
            client_side: false,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: None,
            start: start(),
            duration: Duration::from_millis(1_250),
            received_bytes: 10,
            sent_bytes: 20,
            total_received: 174,
            total_sent: 5_132,
            flags: "UF,URX",
            error_code: Some("upstream_connect_failed"),
            termination: Some("upstream connect error"),
            route_name: None,
            upstream: Some(&self.upstream),
        }
    }
}

fn text(format: &str) -> Formatter {
    Formatter::new(&LogFormat::Text(parse(format)), "proxy-host")
}

#[test]
fn istio_default_text_format_matches_the_docs_sample() {
    let f = Fixture::new();
    let line = text(ISTIO_TEXT).http(&f.http()).line;
    assert_eq!(
        line,
        "[2020-11-25T21:26:18.409Z] \"GET /status/418 HTTP/1.1\" 418 - via_upstream - \"-\" 0 135 4 4 \"-\" \"curl/7.73.0-DEV\" \"84961386-6d84-929d-98bd-c5aee93b5c88\" \"httpbin:8000\" \"10.44.1.27:80\" outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 - default\n"
    );
}

#[test]
fn istio_default_text_format_for_tcp() {
    let f = Fixture::new();
    let line = text(ISTIO_TEXT).tcp(&f.tcp()).line;
    assert_eq!(
        line,
        "[2020-11-25T21:26:18.409Z] \"- - -\" 0 UF,URX - upstream connect error \"-\" 174 5132 1250 - \"-\" \"-\" \"-\" \"-\" \"10.44.1.27:80\" outbound|8000||httpbin.foo.svc.cluster.local 10.44.1.23:37652 10.0.45.184:8000 10.44.1.23:46520 - -\n"
    );
}

#[test]
fn istio_json_format_keeps_types() {
    let f = Fixture::new();
    let fmt = Formatter::new(&istio_json(), "h");
    let rendered = fmt.http(&f.http());
    assert_eq!(
        rendered.line,
        concat!(
            r#"{"authority":"httpbin:8000","bytes_received":0,"bytes_sent":135,"connection_termination_details":null,"#,
            r#""downstream_local_address":"10.0.45.184:8000","downstream_remote_address":"10.44.1.23:46520","duration":4,"#,
            r#""method":"GET","path":"/status/418","protocol":"HTTP/1.1","request_id":"84961386-6d84-929d-98bd-c5aee93b5c88","#,
            r#""requested_server_name":null,"response_code":418,"response_code_details":"via_upstream","response_flags":null,"#,
            r#""route_name":"default","start_time":"2020-11-25T21:26:18.409Z","#,
            r#""upstream_cluster":"outbound|8000||httpbin.foo.svc.cluster.local","upstream_host":"10.44.1.27:80","#,
            r#""upstream_local_address":"10.44.1.23:37652","upstream_service_time":"4","#,
            r#""upstream_transport_failure_reason":null,"user_agent":"curl/7.73.0-DEV","x_forwarded_for":null}"#,
            "\n"
        )
    );
    // Valid JSON, one object per line.
    let v: serde_json::Value = serde_json::from_str(rendered.line.trim_end()).unwrap();
    assert_eq!(v["response_code"], 418);
    assert_eq!(rendered.fields.as_ref().unwrap().len(), 24);
    // A field mixing text and operators is a string, `-` for what is missing.
    let fmt = Formatter::new(
        &LogFormat::Json(vec![("who".into(), parse("%REQ(X-USER)%@%UPSTREAM_HOST%"))]),
        "h",
    );
    assert_eq!(fmt.http(&f.http()).line, "{\"who\":\"-@10.44.1.27:80\"}\n");
}

/// Every operator of the issue and the rest of the model, on HTTP and TCP.
#[test]
fn custom_format_with_every_operator() {
    // SAFETY-free: the variable is read once when the formatter is built.
    let format = "%START_TIME% %START_TIME(%s.%6f %d/%b/%Y)% %REQ(X-MISSING?USER-AGENT):4% %REQ(:PATH)% \
%REQ_WITHOUT_QUERY(:PATH)% %RESP(CONTENT-TYPE)% %TRAILER(GRPC-MESSAGE)% %PROTOCOL% %RESPONSE_CODE% \
%RESPONSE_FLAGS% %RESPONSE_FLAGS_LONG% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \
%UPSTREAM_TRANSPORT_FAILURE_REASON% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %REQUEST_DURATION% \
%RESPONSE_DURATION% %RESPONSE_TX_DURATION% %UPSTREAM_HOST% %UPSTREAM_CLUSTER% %UPSTREAM_CLUSTER_RAW% \
%UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %DOWNSTREAM_LOCAL_ADDRESS% \
%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_PORT% %DOWNSTREAM_REMOTE_ADDRESS% \
%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_REMOTE_PORT% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS% \
%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_PEER_URI_SAN% %DOWNSTREAM_LOCAL_URI_SAN% \
%DOWNSTREAM_TLS_VERSION% %REQUESTED_SERVER_NAME% %ROUTE_NAME% %HOSTNAME% %GRPC_STATUS% \
%GRPC_STATUS(SNAKE_STRING)% %GRPC_STATUS(NUMBER)% %ENVIRONMENT(WEFT_TEST_NEVER_SET_VARIABLE)% %TRACE_ID% 100%%\n";
    let mut parts = parse(format);
    // %CEL(...)% (the test parser has no CEL): `request.url_path`.
    parts.push(LogPart::Op {
        op: LogOperator::Cel(weft_api::Expr::Attr(weft_api::Attribute::RequestUrlPath)),
        max_len: None,
    });
    let fmt = Formatter::new(&LogFormat::Text(parts), "proxy-host");

    let mut f = Fixture::new();
    f.conn.peer_identity = Some(Arc::from("spiffe://cluster.local/ns/foo/sa/sleep"));
    f.conn.local_identity = Some(Arc::from("spiffe://cluster.local/ns/foo/sa/httpbin"));
    f.conn.sni = Some("httpbin.foo".into());
    f.upstream.transport_failure = Some("TLS error: handshake".into());
    f.upstream.attempts = 3;
    let mut rec = f.http();
    rec.path = "/status/418?x=1";
    rec.flags = "UT,URX";
    rec.grpc_status = Some(4);
    rec.response_trailers = Some(&f.trailers);
    rec.span = Some(&f.span);
    assert_eq!(
        fmt.http(&rec).line,
        "2020-11-25T21:26:18.409Z 1606339578.409000 25/Nov/2020 curl /status/418?x=1 \
/status/418 text/plain teapot HTTP/1.1 418 \
UT,URX UpstreamRequestTimeout,UpstreamRetryLimitExceeded via_upstream - \
TLS error: handshake 0 135 4 - \
3 1 10.44.1.27:80 outbound|8000||httpbin.foo.svc.cluster.local outbound|8000||httpbin.foo.svc.cluster.local \
10.44.1.23:37652 3 10.0.45.184:8000 \
10.0.45.184 8000 10.44.1.23:46520 \
10.44.1.23 46520 10.44.1.23:46520 \
10.44.1.23 spiffe://cluster.local/ns/foo/sa/sleep spiffe://cluster.local/ns/foo/sa/httpbin \
TLSv1.3 httpbin.foo default proxy-host DeadlineExceeded \
DEADLINE_EXCEEDED 4 - abababababababababababababababab 100%\n/status/418"
    );
    // The same format for a TCP connection: HTTP-only operators print `-`.
    assert_eq!(
        fmt.tcp(&f.tcp()).line,
        "2020-11-25T21:26:18.409Z 1606339578.409000 25/Nov/2020 - - \
- - - - 0 \
UF,URX UpstreamConnectionFailure,UpstreamRetryLimitExceeded - upstream connect error \
TLS error: handshake 174 5132 1250 - \
- - 10.44.1.27:80 outbound|8000||httpbin.foo.svc.cluster.local outbound|8000||httpbin.foo.svc.cluster.local \
10.44.1.23:37652 3 10.0.45.184:8000 \
10.0.45.184 8000 10.44.1.23:46520 \
10.44.1.23 46520 10.44.1.23:46520 \
10.44.1.23 spiffe://cluster.local/ns/foo/sa/sleep spiffe://cluster.local/ns/foo/sa/httpbin \
TLSv1.3 httpbin.foo - proxy-host - \
- - - - 100%\n-"
    );
}

#[test]
fn truncation_counts_characters() {
    let f = Fixture::new();
    let mut rec = f.http();
    rec.path = "/zoë-long";
    assert_eq!(
        text("%REQ(:PATH):3%|%REQ(:PATH):0%|%REQ(:PATH):99%")
            .http(&rec)
            .line,
        "/zo|-|/zoë-long"
    );
    assert_eq!(text("%REQ(:PATH):4%").http(&rec).line, "/zoë");
}

fn memory_sink(log: &AccessLog) -> (AccessLogSink, Arc<Mutex<Vec<String>>>, Arc<LogStats>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stats = Arc::new(LogStats::default());
    let writer = LineWriter::start(Output::Memory(lines.clone()), 64, stats.clone()).unwrap();
    let sink = AccessLogSink {
        formatter: Formatter::new(&log.format, "h"),
        filter: log.filter.clone(),
        mode: log.mode,
        dest: Destination::Lines(writer),
    };
    (sink, lines, stats)
}

#[test]
fn filters_and_modes_decide_what_is_logged() {
    use weft_api::{Attribute, CompareOp, Expr};
    let log = AccessLog {
        provider: "envoy".into(),
        sink: LogSink::Stdout,
        format: LogFormat::Text(parse("%RESPONSE_CODE% %REQ(:PATH)%\n")),
        filter: Some(Expr::Compare(
            Box::new(Expr::Attr(Attribute::ResponseCode)),
            CompareOp::Ge,
            Box::new(Expr::Int(400)),
        )),
        mode: ReporterMode::Client,
    };
    let (sink, lines, stats) = memory_sink(&log);
    let f = Fixture::new();
    let mut ok = f.http();
    ok.response_code = 200;
    ok.path = "/ok";
    sink.http(&ok);
    sink.http(&f.http());
    let mut server = f.http();
    server.client_side = false;
    server.path = "/server-side";
    sink.http(&server);
    // TCP: logged only when the connection closes, and only if the filter passes (no
    // response code on TCP: the comparison is false).
    sink.tcp(&f.tcp());
    drop(sink);
    assert!(weft_testkit::wait::until_blocking(
        Duration::from_secs(10),
        || stats.written() == 1
    ));
    assert_eq!(*lines.lock().unwrap(), ["418 /status/418\n"]);
}

#[test]
fn tcp_connections_are_logged_once_at_close() {
    let log = AccessLog {
        provider: "envoy".into(),
        sink: LogSink::Stdout,
        format: LogFormat::Text(parse("%BYTES_RECEIVED% %BYTES_SENT% %RESPONSE_FLAGS%\n")),
        filter: None,
        mode: ReporterMode::ClientAndServer,
    };
    let (sink, lines, stats) = memory_sink(&log);
    let f = Fixture::new();
    for event in [TcpEvent::Opened, TcpEvent::Progress, TcpEvent::Closed] {
        let mut rec = f.tcp();
        rec.event = event;
        sink.tcp(&rec);
    }
    drop(sink);
    assert!(weft_testkit::wait::until_blocking(
        Duration::from_secs(10),
        || stats.written() == 1
    ));
    assert_eq!(*lines.lock().unwrap(), ["174 5132 UF,URX\n"]);
}

#[test]
fn request_headers_are_kept_only_when_read() {
    let log = |format: &str, filter: Option<weft_api::Expr>| AccessLog {
        provider: "p".into(),
        sink: LogSink::Stdout,
        format: LogFormat::Text(parse(format)),
        filter,
        mode: ReporterMode::ClientAndServer,
    };
    assert!(!reads_request_headers(&[log(
        ISTIO_TEXT
            .replace("%REQ(X-FORWARDED-FOR)%", "")
            .replace("X-ENVOY-ORIGINAL-PATH?", "")
            .replace("%REQ(USER-AGENT)%", "")
            .as_str(),
        None
    )]));
    assert!(reads_request_headers(&[log(ISTIO_TEXT, None)]));
    let by_filter = weft_api::Expr::Has(Box::new(weft_api::Expr::Index(
        weft_api::MapAttribute::RequestHeaders,
        "x-user".into(),
    )));
    assert!(reads_request_headers(&[log(
        "%RESPONSE_CODE%",
        Some(by_filter)
    )]));
    assert!(!reads_request_headers(&[log(
        "%REQ(:PATH)% %REQ(X-REQUEST-ID)%",
        None
    )]));
}
