//! Distributed tracing in the proxy: trace context in and out, one span per hop, export.
//!
//! Per request, [`ProxyTracer::start`] reads the incoming context ([`context`]), takes the
//! caller's sampling decision or makes one ([`sampler`]), gives this hop a new span id and
//! rewrites the trace headers so the next hop is a child of this span. When the exchange
//! ends, [`ProxyTracer::finish`] turns the record into a span with Istio's tags ([`span`])
//! and queues it for the collector ([`export`]).
//!
//! Directions: outbound listeners and gateways make CLIENT spans, inbound listeners SERVER
//! spans (Envoy's egress/ingress tracing directions; Istio configures gateways as egress).
//! A direction outside the config's `mode` is not traced at all: its trace headers pass
//! through unchanged.
//!
//! Unsampled requests get no span but still carry the decision (`-00`, `x-b3-sampled: 0`)
//! with a fresh span id, so the next hop does not draw again.

pub mod context;
pub mod export;
pub mod sampler;
pub mod span;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};
use weft_api::{Node, ReporterMode, TagValue, TraceProtocol, TraceProvider, TracingConfig};

use self::context::Outgoing;
use self::export::{Exporter, TraceHub};
use self::sampler::Sampler;
use self::span::SpanConfig;
use super::{HttpRecord, PeerMeta, SpanHandle, Tracer};
use crate::http::headers::{X_REQUEST_ID, new_request_id};

/// The [`Tracer`] of one config.
pub struct ProxyTracer {
    mode: ReporterMode,
    propagate: bool,
    sampler: Sampler,
    spans: SpanConfig,
    /// `None` with `disable_span_reporting`: decide and propagate, export nothing.
    exporter: Option<Arc<Exporter>>,
}

impl ProxyTracer {
    /// The tracer `cfg` asks for on the proxy `node`, exporting through `hub`'s exporter
    /// for the configured provider.
    pub fn from_config(cfg: &TracingConfig, node: &Node, hub: &TraceHub) -> ProxyTracer {
        let exporter = if cfg.disable_span_reporting {
            hub.exporter(None)
        } else {
            hub.exporter(Some(&cfg.provider))
        };
        ProxyTracer::new(cfg, node, exporter, Sampler::new(cfg.sampling_percent))
    }

    /// A tracer with an explicit exporter and random source (tests seed the sampler).
    pub fn new(
        cfg: &TracingConfig,
        node: &Node,
        exporter: Option<Arc<Exporter>>,
        sampler: Sampler,
    ) -> ProxyTracer {
        ProxyTracer {
            mode: cfg.mode,
            propagate: !cfg.disable_context_propagation,
            sampler,
            spans: span_config(cfg, node),
            exporter,
        }
    }

    /// Whether `finish` needs request headers in the record: never, the tags read from
    /// request headers are taken in `start` (see [`SpanHandle::request_tags`]).
    pub fn needs_request_headers(&self) -> bool {
        false
    }

    pub fn span_config(&self) -> &SpanConfig {
        &self.spans
    }
}

impl Tracer for ProxyTracer {
    fn start(&self, headers: &mut HeaderMap, client_side: bool) -> Option<SpanHandle> {
        // One id for logs, spans and the app (`guid:x-request-id`), made before anything
        // reads it.
        if !headers.contains_key(X_REQUEST_ID) {
            headers.insert(X_REQUEST_ID, new_request_id());
        }
        if !self.mode.covers(client_side) {
            return None;
        }
        let incoming = context::read(headers);
        let sampled = self.sampler.decide(incoming.sampled);
        let trace_id = incoming
            .ids
            .map_or_else(|| self.sampler.trace_id(), |ids| ids.trace_id);
        let parent_span_id = incoming.ids.map(|ids| ids.span_id);
        let span_id = self.sampler.span_id();
        let report = sampled && self.exporter.is_some();
        let request_tags = if report {
            self.spans.request_tags(headers)
        } else {
            Vec::new()
        };
        if self.propagate {
            let out = Outgoing {
                trace_id,
                span_id,
                parent_span_id,
                sampled,
                incoming: &incoming,
            };
            context::write(headers, &out);
        }
        report.then(|| SpanHandle {
            trace_id,
            span_id,
            parent_span_id,
            trace_state: incoming.trace_state,
            start: SystemTime::now(),
            request_tags,
        })
    }

    fn finish(&self, span: SpanHandle, rec: &HttpRecord<'_>) {
        if let Some(exporter) = &self.exporter {
            exporter.submit(self.spans.build(span, rec));
        }
    }
}

/// Resolves the config's tags: environment custom tags are read here, once per config.
fn span_config(cfg: &TracingConfig, node: &Node) -> SpanConfig {
    let mut fixed_tags = Vec::new();
    let mut header_tags = Vec::new();
    for tag in &cfg.custom_tags {
        match &tag.value {
            TagValue::Literal(v) => fixed_tags.push((tag.name.clone(), v.clone())),
            TagValue::Environment { name, default } => {
                if let Some(v) = std::env::var(name).ok().or_else(|| default.clone()) {
                    fixed_tags.push((tag.name.clone(), v));
                }
            }
            TagValue::Header { name, default } => {
                match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                    Ok(header) => header_tags.push((tag.name.clone(), header, default.clone())),
                    Err(_) => {
                        if let Some(v) = default {
                            fixed_tags.push((tag.name.clone(), v.clone()));
                        }
                    }
                }
            }
        }
    }
    SpanConfig {
        node_id: node.id.clone(),
        mesh_id: if node.trust_domain.is_empty() {
            "cluster.local".to_string()
        } else {
            node.trust_domain.clone()
        },
        local: PeerMeta::of_node(node),
        istio_tags: cfg.enable_istio_tags,
        max_tag_length: cfg.max_tag_length.max(1) as usize,
        fixed_tags,
        header_tags,
    }
}

/// A tracing config that samples everything and sends to a collector on `collector`
/// quickly (small batches, short flush interval): for tests with a loopback receiver.
pub fn collector_config(
    protocol: TraceProtocol,
    collector: SocketAddr,
    service_name: &str,
) -> TracingConfig {
    TracingConfig {
        provider: TraceProvider {
            name: "test-collector".to_string(),
            protocol,
            endpoint: collector.to_string(),
            path: String::new(),
            service_name: service_name.to_string(),
            max_queued_spans: 1024,
            max_batch: 16,
            flush_interval: Duration::from_millis(50),
        },
        sampling_percent: 100.0,
        disable_span_reporting: false,
        disable_context_propagation: false,
        enable_istio_tags: true,
        custom_tags: Vec::new(),
        mode: ReporterMode::ClientAndServer,
        max_tag_length: 256,
    }
}
