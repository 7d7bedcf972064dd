//! Span export: a bounded queue per collector, drained by one task that sends batches.
//!
//! The request path only ever calls [`Exporter::submit`], a `try_send`: when the queue is
//! full (the collector is slow or down) the span is dropped and counted, never waited for.
//! The task sends a batch when it holds `max_batch` spans or `flush_interval` has passed,
//! retries a failed batch once, then gives it up (its spans are counted as dropped). Memory
//! is bounded by `max_queued_spans` queued plus one batch in flight.
//!
//! Exporters belong to the process-wide [`TraceHub`], keyed by provider config: a config
//! push that keeps the provider keeps the exporter and its queue; one that changes it
//! starts a new exporter, and the old one drains what it holds once the last tracer using
//! it is gone.

pub mod otlp;
pub mod zipkin;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use weft_api::{TraceProtocol, TraceProvider};

use super::span::FinishedSpan;

/// A connection to a collector that takes longer than this fails the export.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One export request (OpenTelemetry's default OTLP export timeout).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Process-wide trace export counters (`weft_trace_*` metrics).
#[derive(Debug, Default)]
pub struct TraceCounters {
    exported: AtomicU64,
    dropped: AtomicU64,
    export_failures: AtomicU64,
}

impl TraceCounters {
    /// `weft_trace_spans_exported_total`: spans a collector accepted.
    pub fn spans_exported(&self) -> u64 {
        self.exported.load(Ordering::Relaxed)
    }

    /// `weft_trace_spans_dropped_total`: spans lost because the queue was full, or whose
    /// batch failed twice.
    pub fn spans_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// `weft_trace_export_failures_total`: export requests that failed (each attempt).
    pub fn export_failures(&self) -> u64 {
        self.export_failures.load(Ordering::Relaxed)
    }
}

/// Exporters by provider, and the counters they share.
#[derive(Default)]
pub struct TraceHub {
    counters: Arc<TraceCounters>,
    exporters: Mutex<Vec<Arc<Exporter>>>,
}

impl TraceHub {
    pub fn counters(&self) -> &Arc<TraceCounters> {
        &self.counters
    }

    /// The exporter for `provider` (the one already running when the provider is
    /// unchanged). The hub keeps only the exporter of the latest config; `None` releases
    /// them all (tracing switched off).
    pub fn exporter(&self, provider: Option<&TraceProvider>) -> Option<Arc<Exporter>> {
        let mut exporters = self.exporters.lock().unwrap_or_else(|e| e.into_inner());
        let Some(provider) = provider else {
            exporters.clear();
            return None;
        };
        let found = exporters.iter().find(|e| e.provider == *provider).cloned();
        let exporter =
            found.unwrap_or_else(|| Exporter::new(provider.clone(), self.counters.clone()));
        exporters.clear();
        exporters.push(exporter.clone());
        Some(exporter)
    }
}

/// The traffic side of one collector's queue.
pub struct Exporter {
    provider: TraceProvider,
    tx: mpsc::Sender<FinishedSpan>,
    counters: Arc<TraceCounters>,
    /// The queue's receiving end until the task runs. The task is spawned on the first
    /// tokio runtime seen (configs may be built outside one, e.g. in unit tests).
    pending: Mutex<Option<mpsc::Receiver<FinishedSpan>>>,
    started: AtomicBool,
}

impl Exporter {
    pub fn new(provider: TraceProvider, counters: Arc<TraceCounters>) -> Arc<Exporter> {
        let (tx, rx) = mpsc::channel(provider.max_queued_spans.max(1) as usize);
        let exporter = Arc::new(Exporter {
            provider,
            tx,
            counters,
            pending: Mutex::new(Some(rx)),
            started: AtomicBool::new(false),
        });
        exporter.ensure_started();
        exporter
    }

    pub fn provider(&self) -> &TraceProvider {
        &self.provider
    }

    pub fn counters(&self) -> &Arc<TraceCounters> {
        &self.counters
    }

    /// Queues a span; never waits. A full queue drops it (counted).
    pub fn submit(&self, span: FinishedSpan) {
        self.ensure_started();
        if self.tx.try_send(span).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn ensure_started(&self) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = pending.take() {
            let task = Task {
                provider: self.provider.clone(),
                counters: self.counters.clone(),
            };
            handle.spawn(task.run(rx));
            self.started.store(true, Ordering::Release);
        }
    }
}

/// The draining side.
struct Task {
    provider: TraceProvider,
    counters: Arc<TraceCounters>,
}

impl Task {
    async fn run(self, mut rx: mpsc::Receiver<FinishedSpan>) {
        let max_batch = self.provider.max_batch.max(1) as usize;
        let mut transport = Transport::new(&self.provider);
        let mut batch: Vec<FinishedSpan> = Vec::with_capacity(max_batch);
        let period = self.provider.flush_interval.max(Duration::from_millis(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                got = rx.recv() => match got {
                    Some(span) => {
                        batch.push(span);
                        while batch.len() < max_batch {
                            match rx.try_recv() {
                                Ok(span) => batch.push(span),
                                Err(_) => break,
                            }
                        }
                        if batch.len() >= max_batch {
                            self.flush(&mut transport, &mut batch).await;
                        }
                    }
                    None => {
                        // Every tracer using this exporter is gone: send what is left.
                        self.flush(&mut transport, &mut batch).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !batch.is_empty() {
                        self.flush(&mut transport, &mut batch).await;
                    }
                }
            }
        }
    }

    /// Sends `batch` (retrying once) and empties it.
    async fn flush(&self, transport: &mut Transport, batch: &mut Vec<FinishedSpan>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let service = self.provider.service_name.as_str();
        for _attempt in 0..2 {
            let sent = tokio::time::timeout(EXPORT_TIMEOUT, transport.send(batch, service)).await;
            match sent {
                Ok(Ok(())) => {
                    self.counters.exported.fetch_add(n, Ordering::Relaxed);
                    batch.clear();
                    return;
                }
                Ok(Err(e)) => {
                    tracing::debug!(provider = %self.provider.name, error = %e, "trace export failed");
                }
                Err(_) => {
                    tracing::debug!(provider = %self.provider.name, "trace export timed out");
                }
            }
            self.counters
                .export_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(
            provider = %self.provider.name,
            endpoint = %self.provider.endpoint,
            spans = n,
            "trace export failed twice; spans dropped"
        );
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        batch.clear();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("invalid collector endpoint {0:?}")]
    Endpoint(String),
    #[error("collector connection: {0}")]
    Connect(String),
    #[error("collector answered HTTP {0}")]
    Status(u16),
    #[error("collector answered gRPC {0}")]
    Grpc(String),
}

/// How spans reach one collector.
enum Transport {
    OtlpGrpc(otlp::GrpcExporter),
    OtlpHttp(HttpPost),
    Zipkin(HttpPost),
}

impl Transport {
    fn new(provider: &TraceProvider) -> Transport {
        match provider.protocol {
            TraceProtocol::OtlpGrpc => Transport::OtlpGrpc(otlp::GrpcExporter::new(provider)),
            TraceProtocol::OtlpHttp => Transport::OtlpHttp(HttpPost::new(
                provider,
                otlp::DEFAULT_HTTP_PATH,
                otlp::HTTP_CONTENT_TYPE,
            )),
            TraceProtocol::ZipkinJson => Transport::Zipkin(HttpPost::new(
                provider,
                zipkin::DEFAULT_PATH,
                zipkin::CONTENT_TYPE,
            )),
        }
    }

    async fn send(&mut self, spans: &[FinishedSpan], service: &str) -> Result<(), ExportError> {
        match self {
            Transport::OtlpGrpc(grpc) => grpc.send(spans, service).await,
            Transport::OtlpHttp(post) => post.send(otlp::encode_http(spans, service)).await,
            Transport::Zipkin(post) => post.send(zipkin::encode(spans, service)).await,
        }
    }
}

/// `POST http://<endpoint><path>` over a pooled (keep-alive) HTTP/1.1 client.
struct HttpPost {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Result<http::Uri, ExportError>,
    content_type: &'static str,
}

impl HttpPost {
    fn new(provider: &TraceProvider, default_path: &str, content_type: &'static str) -> HttpPost {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let path = if provider.path.is_empty() {
            default_path
        } else {
            provider.path.as_str()
        };
        let text = format!("http://{}{}", provider.endpoint, path);
        let uri = text
            .parse::<http::Uri>()
            .map_err(|_| ExportError::Endpoint(provider.endpoint.clone()));
        HttpPost {
            client,
            uri,
            content_type,
        }
    }

    async fn send(&self, body: Vec<u8>) -> Result<(), ExportError> {
        let uri = self
            .uri
            .as_ref()
            .map_err(|e| ExportError::Endpoint(e.to_string()))?;
        let req = http::Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, self.content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ExportError::Endpoint(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| ExportError::Connect(e.to_string()))?;
        let status = resp.status();
        // Read the (small) answer so the connection can be reused.
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(ExportError::Status(status.as_u16()))
        }
    }
}
