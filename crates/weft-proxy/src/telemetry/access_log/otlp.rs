//! Access logs as OpenTelemetry log records over OTLP/gRPC (Istio's `envoyOtelAls`
//! provider): the body is the formatted line, and with a JSON (`labels`) format every
//! field is also an attribute, typed.
//!
//! Records queue (bounded) towards an exporter task that sends them in batches, at least
//! once per flush interval. A slow or absent collector costs log records, never request
//! latency: a full queue drops new records, a failed export drops its batch, and both are
//! counted in [`LogStats`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use weft_api::otlp::common::{AnyValue, InstrumentationScope, KeyValue, any_value};
use weft_api::otlp::logs::{LogRecord, ResourceLogs, ScopeLogs};
use weft_api::otlp::logs_service::ExportLogsServiceRequest;
use weft_api::otlp::logs_service::logs_service_client::LogsServiceClient;
use weft_api::otlp::resource::Resource;

use super::LogStats;
use super::format::Rendered;
use crate::telemetry::SpanHandle;

/// Queue, batch and timing limits of one exporter.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub queue: usize,
    pub batch: usize,
    pub flush_interval: Duration,
    pub timeout: Duration,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            queue: 2048,
            batch: 512,
            flush_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The request path's end of an exporter.
#[derive(Clone)]
pub struct OtlpLogs {
    tx: mpsc::Sender<LogRecord>,
    stats: Arc<LogStats>,
}

impl OtlpLogs {
    /// Starts an exporter to `endpoint` (`host:port`) on the current tokio runtime;
    /// `None` when there is none or the endpoint is not a valid URI authority.
    pub fn start(
        endpoint: &str,
        resource: Vec<KeyValue>,
        settings: ExportSettings,
        stats: Arc<LogStats>,
    ) -> Option<OtlpLogs> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
            .ok()?
            .connect_timeout(settings.timeout)
            .connect_lazy();
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let client = LogsServiceClient::new(channel);
        runtime.spawn(export_loop(client, rx, resource, settings, stats.clone()));
        Some(OtlpLogs { tx, stats })
    }

    /// Queues a record without waiting; a full queue drops it.
    pub fn offer(&self, record: LogRecord) {
        if self.tx.try_send(record).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `service.name` and the proxy's identity as resource attributes.
pub fn resource(service_name: &str, node_id: &str, namespace: &str) -> Vec<KeyValue> {
    [
        ("service.name", service_name),
        ("service.instance.id", node_id),
        ("k8s.namespace.name", namespace),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| kv(k, string(v)))
    .collect()
}

fn string(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_string())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(value),
    }
}

fn json_value(v: &serde_json::Value) -> Option<AnyValue> {
    let value = match v {
        serde_json::Value::Null => return None,
        serde_json::Value::Bool(b) => any_value::Value::BoolValue(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => any_value::Value::StringValue(s.clone()),
        other => any_value::Value::StringValue(other.to_string()),
    };
    Some(AnyValue { value: Some(value) })
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The log record for one rendered entry.
pub fn record(rendered: &Rendered, start: SystemTime, span: Option<&SpanHandle>) -> LogRecord {
    let body = rendered.line.strip_suffix('\n').unwrap_or(&rendered.line);
    LogRecord {
        time_unix_nano: unix_nanos(start),
        observed_time_unix_nano: unix_nanos(SystemTime::now()),
        body: Some(string(body)),
        attributes: rendered
            .fields
            .iter()
            .flatten()
            .filter_map(|(k, v)| json_value(v).map(|v| kv(k, v)))
            .collect(),
        trace_id: span.map(|s| s.trace_id.to_vec()).unwrap_or_default(),
        span_id: span.map(|s| s.span_id.to_vec()).unwrap_or_default(),
        ..LogRecord::default()
    }
}

async fn export_loop(
    mut client: LogsServiceClient<tonic::transport::Channel>,
    mut rx: mpsc::Receiver<LogRecord>,
    resource: Vec<KeyValue>,
    settings: ExportSettings,
    stats: Arc<LogStats>,
) {
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + settings.flush_interval;
        while batch.len() < settings.batch {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(r) => batch.push(r),
                    None => {
                        open = false;
                        break;
                    }
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let count = batch.len() as u64;
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource.clone(),
                    dropped_attributes_count: 0,
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "weft-proxy/access-log".into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: batch,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        match tokio::time::timeout(settings.timeout, client.export(request)).await {
            Ok(Ok(_)) => {
                stats.written.fetch_add(count, Ordering::Relaxed);
            }
            Ok(Err(status)) => {
                stats.dropped.fetch_add(count, Ordering::Relaxed);
                stats.export_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%status, "OTLP access log export failed");
            }
            Err(_) => {
                stats.dropped.fetch_add(count, Ordering::Relaxed);
                stats.export_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("OTLP access log export timed out");
            }
        }
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
