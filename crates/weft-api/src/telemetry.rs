//! Telemetry one proxy produces: Istio's standard metrics, access logs and trace spans.
//!
//! The compiler resolves Telemetry resources (workload > namespace > root namespace),
//! `meshConfig.extensionProviders`, `defaultProviders` and `accessLogFile`/`accessLogFormat`
//! into this model. Format strings and CEL expressions arrive parsed, so the proxy renders
//! and evaluates, and never parses user text on the request path.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;

/// Everything telemetry for one proxy. The default is Istio's install defaults: metrics on,
/// access logs off, tracing off (no provider).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub metrics: MetricsConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub access_logs: Vec<AccessLog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracing: Option<TracingConfig>,
}

impl TelemetryConfig {
    pub fn is_default(&self) -> bool {
        *self == TelemetryConfig::default()
    }
}

/// Client side (outbound listeners, gateways: `reporter="source"`), server side (inbound:
/// `reporter="destination"`) or both. Telemetry's `match.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReporterMode {
    #[default]
    ClientAndServer,
    Client,
    Server,
}

impl ReporterMode {
    /// Whether this mode covers traffic on a listener of this direction
    /// (`client` = outbound or gateway).
    pub fn covers(self, client: bool) -> bool {
        match self {
            ReporterMode::ClientAndServer => true,
            ReporterMode::Client => client,
            ReporterMode::Server => !client,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Istio metrics are produced (the `prometheus` provider is selected). Proxy health
    /// metrics are always served.
    pub enabled: bool,
    /// Applied in order (mesh, then namespace, then workload overrides).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<MetricOverride>,
    /// Cardinality guard: at most this many label sets per metric; further ones are
    /// counted under a series whose labels are all `overflow`.
    pub max_series_per_metric: u32,
    /// A series not updated for this long is dropped from the output.
    #[serde(with = "duration::required")]
    pub series_idle_expiry: Duration,
    /// How often long-lived TCP connections report their byte counters (default 5s).
    #[serde(with = "duration::required")]
    pub tcp_reporting_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            overrides: Vec::new(),
            max_series_per_metric: 2000,
            series_idle_expiry: Duration::from_secs(3600),
            tcp_reporting_interval: Duration::from_secs(5),
        }
    }
}

/// Istio's standard metrics (Telemetry `overrides[].match.metric`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IstioMetric {
    AllMetrics,
    RequestCount,
    RequestDuration,
    RequestSize,
    ResponseSize,
    TcpOpenedConnections,
    TcpClosedConnections,
    TcpSentBytes,
    TcpReceivedBytes,
    GrpcRequestMessages,
    GrpcResponseMessages,
}

impl IstioMetric {
    /// The Prometheus name (without `_total` for counters written by OpenMetrics
    /// encoders, which add it).
    pub fn prometheus_name(self) -> Option<&'static str> {
        Some(match self {
            IstioMetric::AllMetrics => return None,
            IstioMetric::RequestCount => "istio_requests_total",
            IstioMetric::RequestDuration => "istio_request_duration_milliseconds",
            IstioMetric::RequestSize => "istio_request_bytes",
            IstioMetric::ResponseSize => "istio_response_bytes",
            IstioMetric::TcpOpenedConnections => "istio_tcp_connections_opened_total",
            IstioMetric::TcpClosedConnections => "istio_tcp_connections_closed_total",
            IstioMetric::TcpSentBytes => "istio_tcp_sent_bytes_total",
            IstioMetric::TcpReceivedBytes => "istio_tcp_received_bytes_total",
            IstioMetric::GrpcRequestMessages => "istio_request_messages_total",
            IstioMetric::GrpcResponseMessages => "istio_response_messages_total",
        })
    }
}

/// One `overrides[]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricOverride {
    pub metric: IstioMetric,
    #[serde(default)]
    pub mode: ReporterMode,
    /// `Some(true)` disables, `Some(false)` re-enables what a parent disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagOverride {
    /// The label name (`request_host`, or a standard one such as `destination_app`).
    pub tag: String,
    /// `None` removes the label (REMOVE); `Some` sets it (UPSERT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Expr>,
}

// ---------------------------------------------------------------------------------------
// Expressions: the CEL subset Istio users write in tagOverrides and access-log filters.
// ---------------------------------------------------------------------------------------

/// A parsed expression. Values are strings, integers or booleans; a missing attribute is
/// absent: `has()` is false for it, and a tag whose value is absent prints `unknown`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    String(String),
    Int(i64),
    Bool(bool),
    Attr(Attribute),
    /// `request.headers['x']`, `response.headers['x']`, `response.trailers['x']`,
    /// `upstream_peer.labels['x']`, `downstream_peer.labels['x']` (lower-case key).
    Index(MapAttribute, String),
    Has(Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, CompareOp, Box<Expr>),
    /// `c ? a : b`
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `string(x)`, `int(x)`
    ToString(Box<Expr>),
    ToInt(Box<Expr>),
    /// `x.contains(y)`, `x.startsWith(y)`, `x.endsWith(y)`, `x.matches(regex)`
    Call(Box<Expr>, StringMethod, Box<Expr>),
    /// `a + b` on strings (concatenation) or integers.
    Add(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMethod {
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapAttribute {
    RequestHeaders,
    ResponseHeaders,
    ResponseTrailers,
    UpstreamPeerLabels,
    DownstreamPeerLabels,
}

/// Envoy/Istio attributes (istio.io "Expressions" / Envoy "Attributes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    RequestPath,
    RequestUrlPath,
    RequestHost,
    RequestScheme,
    RequestMethod,
    RequestUserAgent,
    RequestReferer,
    RequestId,
    RequestProtocol,
    RequestSize,
    RequestTotalSize,
    RequestDuration,
    ResponseCode,
    ResponseCodeDetails,
    ResponseFlags,
    ResponseGrpcStatus,
    ResponseSize,
    ResponseTotalSize,
    SourceAddress,
    SourcePort,
    DestinationAddress,
    DestinationPort,
    ConnectionMtls,
    ConnectionRequestedServerName,
    ConnectionUriSanPeerCertificate,
    ConnectionUriSanLocalCertificate,
    UpstreamAddress,
    UpstreamPort,
    XdsClusterName,
    XdsRouteName,
    XdsNodeId,
    SourceWorkload,
    SourceNamespace,
    SourcePrincipal,
    SourceApp,
    SourceVersion,
    DestinationWorkload,
    DestinationNamespace,
    DestinationPrincipal,
    DestinationApp,
    DestinationVersion,
    DestinationService,
    DestinationServiceName,
    DestinationServiceNamespace,
}

// ---------------------------------------------------------------------------------------
// Access logs
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// The provider's name (`envoy`, or an `extensionProviders` entry) for dumps.
    pub provider: String,
    pub sink: LogSink,
    pub format: LogFormat,
    /// Telemetry `accessLogging[].filter.expression`: log only when true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Expr>,
    #[serde(default)]
    pub mode: ReporterMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSink {
    Stdout,
    Stderr,
    File {
        path: String,
    },
    /// OpenTelemetry logs over OTLP/gRPC (`envoyOtelAls`).
    Otlp {
        /// `host:port`
        endpoint: String,
        /// `service.name` resource attribute.
        service_name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One line per entry; the text normally ends with `\n`.
    Text(Vec<LogPart>),
    /// One JSON object per line: `key: value` in this order. A value that is exactly one
    /// operator keeps its type (numbers stay numbers; empty is `null`).
    Json(Vec<(String, Vec<LogPart>)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogPart {
    Text(String),
    Op {
        op: LogOperator,
        /// `:N` truncation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_len: Option<u32>,
    },
}

/// Envoy command operators (`%NAME(arg)%`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogOperator {
    /// `%START_TIME%` or `%START_TIME(strftime with %s, %3f/%6f/%9f)%`.
    StartTime(Option<String>),
    /// `%REQ(X?Y)%`: header X, else Y. Pseudo headers `:method`, `:path`, `:authority`,
    /// `:scheme` are the request line. Names are lower-case.
    Req(String, Option<String>),
    ReqWithoutQuery(String, Option<String>),
    Resp(String, Option<String>),
    Trailer(String, Option<String>),
    Protocol,
    ResponseCode,
    ResponseFlags,
    ResponseFlagsLong,
    ResponseCodeDetails,
    ConnectionTerminationDetails,
    UpstreamTransportFailureReason,
    BytesReceived,
    BytesSent,
    Duration,
    RequestDuration,
    ResponseDuration,
    ResponseTxDuration,
    UpstreamHost,
    UpstreamCluster,
    UpstreamClusterRaw,
    UpstreamLocalAddress,
    UpstreamRequestAttemptCount,
    DownstreamLocalAddress,
    DownstreamLocalAddressWithoutPort,
    DownstreamLocalPort,
    DownstreamRemoteAddress,
    DownstreamRemoteAddressWithoutPort,
    DownstreamRemotePort,
    DownstreamDirectRemoteAddress,
    DownstreamDirectRemoteAddressWithoutPort,
    DownstreamPeerUriSan,
    DownstreamLocalUriSan,
    DownstreamTlsVersion,
    RequestedServerName,
    RouteName,
    Hostname,
    /// `%GRPC_STATUS(CAMEL_STRING|SNAKE_STRING|NUMBER)%`
    GrpcStatus(GrpcStatusFormat),
    /// `%ENVIRONMENT(X)%`: the proxy's environment variable (the compiler does not know
    /// the proxy's environment).
    Environment(String),
    /// `%CEL(expr)%`
    Cel(Expr),
    /// `%TRACE_ID%`
    TraceId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrpcStatusFormat {
    CamelString,
    SnakeString,
    Number,
}

// ---------------------------------------------------------------------------------------
// Tracing
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    pub provider: TraceProvider,
    /// 0–100 (Istio's default 1.0). Applies to requests that arrive without a sampling
    /// decision; an upstream decision is honoured.
    pub sampling_percent: f64,
    /// Telemetry `disableSpanReporting`: decide and propagate, but export nothing.
    #[serde(default)]
    pub disable_span_reporting: bool,
    /// Telemetry `disableContextPropagation`: do not add trace headers upstream.
    #[serde(default)]
    pub disable_context_propagation: bool,
    #[serde(default = "yes")]
    pub enable_istio_tags: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_tags: Vec<CustomTag>,
    #[serde(default)]
    pub mode: ReporterMode,
    /// Spans a tag value is cut to (Envoy `max_path_tag_length`, default 256).
    #[serde(default = "default_max_tag")]
    pub max_tag_length: u32,
}

fn yes() -> bool {
    true
}

fn default_max_tag() -> u32 {
    256
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceProvider {
    /// The provider's name in `extensionProviders`.
    pub name: String,
    pub protocol: TraceProtocol,
    /// `host:port` of the collector.
    pub endpoint: String,
    /// Zipkin: `/api/v2/spans` by default; OTLP/HTTP: `/v1/traces`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// `service.name` on exported spans (Istio: `<app or workload>.<namespace>`).
    pub service_name: String,
    /// Spans buffered before new ones are dropped (and counted).
    #[serde(default = "default_queue")]
    pub max_queued_spans: u32,
    /// Spans per export request.
    #[serde(default = "default_batch")]
    pub max_batch: u32,
    /// Flush at least this often.
    #[serde(with = "duration::required", default = "default_flush")]
    pub flush_interval: Duration,
}

fn default_queue() -> u32 {
    2048
}

fn default_batch() -> u32 {
    512
}

fn default_flush() -> Duration {
    Duration::from_secs(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceProtocol {
    OtlpGrpc,
    OtlpHttp,
    ZipkinJson,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomTag {
    pub name: String,
    pub value: TagValue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagValue {
    Literal(String),
    /// The proxy's environment variable, else the default.
    Environment {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<String>,
    },
    /// A request header, else the default.
    Header {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default: Option<String>,
    },
}
