//! OTLP export: spans as OpenTelemetry protobuf, over gRPC (`TraceService/Export`) or
//! HTTP (`POST /v1/traces`, `application/x-protobuf`).

use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;
use weft_api::TraceProvider;
use weft_api::otlp::common::{AnyValue, InstrumentationScope, KeyValue, any_value};
use weft_api::otlp::resource::Resource;
use weft_api::otlp::trace::{ResourceSpans, ScopeSpans, Span, Status, span, status};
use weft_api::otlp::trace_service::ExportTraceServiceRequest;
use weft_api::otlp::trace_service::trace_service_client::TraceServiceClient;

use super::{CONNECT_TIMEOUT, EXPORT_TIMEOUT, ExportError};
use crate::telemetry::trace::span::{FinishedSpan, SpanKind};

pub const DEFAULT_HTTP_PATH: &str = "/v1/traces";
pub const HTTP_CONTENT_TYPE: &str = "application/x-protobuf";

/// W3C trace flags: sampled (every exported span is).
const FLAG_SAMPLED: u32 = 0x01;
/// OTLP span flags: whether the parent is remote is known / is true.
const FLAG_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_IS_REMOTE: u32 = 0x200;

/// The `ExportTraceServiceRequest` for a batch: one resource (`service.name`), one scope.
pub fn request(spans: &[FinishedSpan], service_name: &str) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![string_kv("service.name", service_name)],
        dropped_attributes_count: 0,
    };
    let scope = InstrumentationScope {
        name: "weft-proxy".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans: spans.iter().map(to_otlp).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// The OTLP/HTTP body.
pub fn encode_http(spans: &[FinishedSpan], service_name: &str) -> Vec<u8> {
    request(spans, service_name).encode_to_vec()
}

fn to_otlp(s: &FinishedSpan) -> Span {
    // A span's parent is always the caller (another process) or none.
    let mut flags = FLAG_SAMPLED | FLAG_HAS_IS_REMOTE;
    if s.parent_span_id.is_some() {
        flags |= FLAG_IS_REMOTE;
    }
    let kind = match s.kind {
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Server => span::SpanKind::Server,
    };
    let status = s.error.then(|| Status {
        message: s.error_message.clone().unwrap_or_default(),
        code: status::StatusCode::Error as i32,
    });
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        trace_state: s.trace_state.clone().unwrap_or_default(),
        parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        flags,
        name: s.name.clone(),
        kind: kind as i32,
        start_time_unix_nano: unix_nanos(s.start),
        end_time_unix_nano: unix_nanos(s.end),
        attributes: s.tags.iter().map(|(k, v)| string_kv(k, v)).collect(),
        dropped_attributes_count: 0,
        events: Vec::new(),
        dropped_events_count: 0,
        links: Vec::new(),
        dropped_links_count: 0,
        status,
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A lazily connecting tonic client (it reconnects by itself after failures).
pub struct GrpcExporter {
    client: Result<TraceServiceClient<tonic::transport::Channel>, ExportError>,
}

impl GrpcExporter {
    /// Must run inside a tokio runtime (the channel spawns its worker).
    pub fn new(provider: &TraceProvider) -> GrpcExporter {
        let client =
            tonic::transport::Endpoint::from_shared(format!("http://{}", provider.endpoint))
                .map(|e| {
                    let channel = e
                        .connect_timeout(CONNECT_TIMEOUT)
                        .timeout(EXPORT_TIMEOUT)
                        .connect_lazy();
                    TraceServiceClient::new(channel)
                })
                .map_err(|_| ExportError::Endpoint(provider.endpoint.clone()));
        GrpcExporter { client }
    }

    pub async fn send(&mut self, spans: &[FinishedSpan], service: &str) -> Result<(), ExportError> {
        let client = self
            .client
            .as_mut()
            .map_err(|e| ExportError::Endpoint(e.to_string()))?;
        client
            .export(request(spans, service))
            .await
            .map(|_| ())
            .map_err(|s| ExportError::Grpc(format!("{:?}: {}", s.code(), s.message())))
    }
}
