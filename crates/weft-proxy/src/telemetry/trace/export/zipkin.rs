//! Zipkin v2 JSON export: `POST /api/v2/spans` with a JSON array of spans.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::telemetry::hex;
use crate::telemetry::trace::span::{FinishedSpan, SpanKind};

pub const DEFAULT_PATH: &str = "/api/v2/spans";
pub const CONTENT_TYPE: &str = "application/json";

/// The request body for a batch.
pub fn encode(spans: &[FinishedSpan], service_name: &str) -> Vec<u8> {
    let list: Vec<Value> = spans.iter().map(|s| to_zipkin(s, service_name)).collect();
    serde_json::to_vec(&list).unwrap_or_else(|_| b"[]".to_vec())
}

/// One span in Zipkin's v2 model.
pub fn to_zipkin(s: &FinishedSpan, service_name: &str) -> Value {
    let mut span = Map::new();
    span.insert("traceId".into(), hex(&s.trace_id).into());
    span.insert("id".into(), hex(&s.span_id).into());
    if let Some(parent) = &s.parent_span_id {
        span.insert("parentId".into(), hex(parent).into());
    }
    span.insert("name".into(), s.name.clone().into());
    let kind = match s.kind {
        SpanKind::Client => "CLIENT",
        SpanKind::Server => "SERVER",
    };
    span.insert("kind".into(), kind.into());
    let start = micros(s.start);
    span.insert("timestamp".into(), start.into());
    // Zipkin treats 0 as "unknown"; a finished span lasted at least a microsecond.
    span.insert(
        "duration".into(),
        micros(s.end).saturating_sub(start).max(1).into(),
    );
    let mut local = endpoint(s.local);
    local.insert("serviceName".into(), service_name.into());
    span.insert("localEndpoint".into(), Value::Object(local));
    if let Some(remote) = s.remote {
        span.insert(
            "remoteEndpoint".into(),
            Value::Object(endpoint(Some(remote))),
        );
    }
    let tags: Map<String, Value> = s
        .tags
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
        .collect();
    span.insert("tags".into(), Value::Object(tags));
    Value::Object(span)
}

fn endpoint(addr: Option<SocketAddr>) -> Map<String, Value> {
    let mut ep = Map::new();
    if let Some(addr) = addr {
        let key = if addr.is_ipv4() { "ipv4" } else { "ipv6" };
        ep.insert(key.into(), addr.ip().to_string().into());
        ep.insert("port".into(), json!(addr.port()));
    }
    ep
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
