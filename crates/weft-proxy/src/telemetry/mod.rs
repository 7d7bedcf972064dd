//! What the proxy tells the outside world about the traffic it carries: Istio's standard
//! metrics, access logs and trace spans.
//!
//! The request path knows nothing of metrics, log formats or exporters. It fills one
//! [`HttpRecord`] per request (or [`TcpRecord`] per connection) when the exchange ends and
//! hands it to the [`Telemetry`] of the runtime it started on; each configured sink takes
//! what it needs from the record. Tracing is the one part that acts before the end: it
//! reads and rewrites the trace headers when a request starts ([`Tracer`]).
//!
//! Two lifetimes: a [`Hub`] lives as long as the process (metric series must survive
//! config changes, exporters keep their queues), a [`Telemetry`] lives as long as one
//! config (which metrics, formats and sampling rate apply).

pub mod access_log;
pub mod expr;
pub mod metrics;
pub mod peer;
pub mod record;
pub mod trace;

use std::sync::Arc;

use http::HeaderMap;
use weft_api::Node;

pub use peer::PeerMeta;
pub use record::{HttpRecord, TcpEvent, TcpRecord, UpstreamInfo};

/// Something that consumes finished exchanges: the metrics, one access log.
pub trait Sink: Send + Sync {
    fn http(&self, rec: &HttpRecord<'_>);
    /// A TCP connection opened, reported its byte counters (periodically), or closed.
    fn tcp(&self, rec: &TcpRecord<'_>);
}

/// Trace context handling for one config: decides sampling and rewrites trace headers when
/// a request starts, and finishes the span when it ends.
pub trait Tracer: Send + Sync {
    /// Called before routing with the downstream request headers. Reads the incoming
    /// context (W3C `traceparent`/`tracestate`, B3 single or multi header), decides whether
    /// to sample, and rewrites the headers the upstream (or, inbound, the app) will see so
    /// that its parent is this proxy's span. `None` when there is nothing to report
    /// (not sampled, or this direction is not traced); headers may still be rewritten to
    /// carry the decision.
    fn start(&self, headers: &mut HeaderMap, client_side: bool) -> Option<SpanHandle>;
    /// Ends the span with what the record says about the exchange.
    fn finish(&self, span: SpanHandle, rec: &HttpRecord<'_>);
}

/// A started span: the ids the finished span will carry. Opaque to the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanHandle {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// The incoming `tracestate`, passed on unchanged.
    pub trace_state: Option<String>,
    pub start: std::time::SystemTime,
    /// Span tags read from the request when it started (`user_agent`, request-header
    /// custom tags), so the request path need not keep the headers for the span.
    pub request_tags: Vec<(String, String)>,
}

impl SpanHandle {
    /// 32 lower-case hex digits (`%TRACE_ID%`, log correlation).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Process-wide telemetry state, shared by every runtime the proxy builds.
#[derive(Default)]
pub struct Hub {
    /// Span exporters (their queues survive config changes) and their counters.
    pub tracing: trace::export::TraceHub,
    /// Istio metric series (they survive config changes) and the metrics' own counters.
    pub metrics: metrics::MetricsHub,
    /// Access-log counters (entries written, dropped, failed exports).
    pub access_logs: Arc<access_log::LogStats>,
}

/// The telemetry of one config.
pub struct Telemetry {
    hub: Arc<Hub>,
    /// This proxy's own workload, for `source_*` labels on the client side and
    /// `destination_*` on the server side, and for the peer-metadata exchange.
    local: Arc<PeerMeta>,
    /// `local` as the peer-metadata header value, encoded once per config.
    local_header: http::HeaderValue,
    sinks: Vec<Arc<dyn Sink>>,
    tracer: Option<Arc<dyn Tracer>>,
    /// Some sink reads request headers at the end (access-log `%REQ()%`, CEL
    /// `request.headers[...]`): only then does the request path keep a copy of them.
    needs_request_headers: bool,
    /// How often long TCP connections report their byte counters.
    tcp_reporting_interval: std::time::Duration,
}

impl Telemetry {
    /// Nothing configured: no sinks, no tracer.
    pub fn empty(hub: Arc<Hub>) -> Telemetry {
        Telemetry {
            hub,
            local: Arc::new(PeerMeta::default()),
            local_header: PeerMeta::default().to_header(),
            sinks: Vec::new(),
            tracer: None,
            needs_request_headers: false,
            tcp_reporting_interval: weft_api::MetricsConfig::default().tcp_reporting_interval,
        }
    }

    pub fn tcp_reporting_interval(&self) -> std::time::Duration {
        self.tcp_reporting_interval
    }

    /// The telemetry `node.telemetry` asks for.
    pub fn build(node: &Node, hub: Arc<Hub>) -> Telemetry {
        let local = Arc::new(PeerMeta::of_node(node));
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        if let Some(m) = metrics::IstioMetrics::new(&node.telemetry.metrics, hub.clone()) {
            sinks.push(Arc::new(m));
        }
        let tracer: Option<Arc<dyn Tracer>> = match &node.telemetry.tracing {
            Some(cfg) => Some(Arc::new(trace::ProxyTracer::from_config(
                cfg,
                node,
                &hub.tracing,
            ))),
            None => {
                // Tracing switched off: let the previous config's exporter drain and go.
                hub.tracing.exporter(None);
                None
            }
        };
        sinks.extend(access_log::build(
            &node.telemetry.access_logs,
            node,
            &hub.access_logs,
        ));
        let needs_request_headers = access_log::reads_request_headers(&node.telemetry.access_logs);
        Telemetry {
            hub,
            local_header: local.to_header(),
            local,
            sinks,
            tracer,
            needs_request_headers,
            tcp_reporting_interval: node.telemetry.metrics.tcp_reporting_interval,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn local(&self) -> &Arc<PeerMeta> {
        &self.local
    }

    pub fn local_header(&self) -> &http::HeaderValue {
        &self.local_header
    }

    pub fn tracer(&self) -> Option<&Arc<dyn Tracer>> {
        self.tracer.as_ref()
    }

    pub fn needs_request_headers(&self) -> bool {
        self.needs_request_headers
    }

    /// Whether anything consumes records (the request path skips the bookkeeping when
    /// nothing would read it).
    pub fn is_active(&self) -> bool {
        !self.sinks.is_empty() || self.tracer.is_some()
    }

    pub fn record_http(&self, rec: &HttpRecord<'_>) {
        for sink in &self.sinks {
            sink.http(rec);
        }
    }

    pub fn record_tcp(&self, rec: &TcpRecord<'_>) {
        for sink in &self.sinks {
            sink.tcp(rec);
        }
    }
}
