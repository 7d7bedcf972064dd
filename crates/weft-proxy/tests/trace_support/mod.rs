//! Loopback trace collectors for tests: OTLP/gRPC (OpenTelemetry's own generated server,
//! independent of weft's definitions), OTLP/HTTP and Zipkin JSON (hyper servers), and a
//! collector that accepts connections and never answers. Every collector hands what it
//! received over as [`GotSpan`]s, one shape whatever the protocol, so tests assert trace
//! ids and parent/child links the same way for all of them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One received span, protocol-neutral. Ids are lower-case hex.
#[derive(Debug, Clone, PartialEq)]
pub struct GotSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    /// `CLIENT` or `SERVER`.
    pub kind: String,
    pub service: String,
    pub tags: BTreeMap<String, String>,
    /// OTLP status code ERROR (OTLP only; Zipkin has the `error` tag).
    pub status_error: bool,
    /// Microseconds since the epoch, and the duration.
    pub start_us: u64,
    pub duration_us: u64,
}

impl GotSpan {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a collector saw: decoded spans, and per request the content type and path.
pub struct Collector {
    pub addr: SocketAddr,
    pub spans: mpsc::UnboundedReceiver<GotSpan>,
    pub requests: mpsc::UnboundedReceiver<(String, String)>,
}

impl Collector {
    /// The next `n` spans, failing after `timeout`.
    pub async fn take(&mut self, n: usize, timeout: Duration) -> Vec<GotSpan> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match tokio::time::timeout(timeout, self.spans.recv()).await {
                Ok(Some(span)) => out.push(span),
                Ok(None) => panic!("collector closed after {} of {n} spans", out.len()),
                Err(_) => panic!("timed out with {} of {n} spans: {out:#?}", out.len()),
            }
        }
        out
    }
}

/// Decodes an OTLP export request into spans.
pub fn from_otlp(req: &ExportTraceServiceRequest) -> Vec<GotSpan> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                let tags = s
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(AnyValue::StringValue(s)) => s.clone(),
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), v)
                    })
                    .collect();
                let kind = match s.kind {
                    2 => "SERVER",
                    3 => "CLIENT",
                    _ => "OTHER",
                };
                out.push(GotSpan {
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent_id: (!s.parent_span_id.is_empty()).then(|| hex(&s.parent_span_id)),
                    name: s.name.clone(),
                    kind: kind.to_string(),
                    service: service.clone(),
                    tags,
                    status_error: s.status.as_ref().is_some_and(|st| st.code == 2),
                    start_us: s.start_time_unix_nano / 1000,
                    duration_us: s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) / 1000,
                });
            }
        }
    }
    out
}

/// Decodes a Zipkin v2 JSON body into spans.
pub fn from_zipkin(body: &[u8]) -> Vec<GotSpan> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(body).expect("zipkin JSON array");
    list.iter()
        .map(|s| {
            let text = |k: &str| s.get(k).and_then(|v| v.as_str()).map(str::to_string);
            GotSpan {
                trace_id: text("traceId").expect("traceId"),
                span_id: text("id").expect("id"),
                parent_id: text("parentId"),
                name: text("name").unwrap_or_default(),
                kind: text("kind").unwrap_or_default(),
                service: s["localEndpoint"]["serviceName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                tags: s["tags"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default(),
                status_error: false,
                start_us: s["timestamp"].as_u64().expect("timestamp"),
                duration_us: s["duration"].as_u64().expect("duration"),
            }
        })
        .collect()
}

struct GrpcReceiver {
    spans: mpsc::UnboundedSender<GotSpan>,
    requests: mpsc::UnboundedSender<(String, String)>,
}

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.requests.send((
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export".to_string(),
            "application/grpc".to_string(),
        ));
        for span in from_otlp(request.get_ref()) {
            let _ = self.spans.send(span);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// An OTLP/gRPC collector on a loopback port.
pub async fn otlp_grpc_collector() -> Collector {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (spans_tx, spans) = mpsc::unbounded_channel();
    let (req_tx, requests) = mpsc::unbounded_channel();
    let svc = TraceServiceServer::new(GrpcReceiver {
        spans: spans_tx,
        requests: req_tx,
    });
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    Collector {
        addr,
        spans,
        requests,
    }
}

/// Which body an HTTP collector expects.
#[derive(Clone, Copy)]
enum HttpKind {
    OtlpProtobuf,
    ZipkinJson,
}

/// An OTLP/HTTP collector (protobuf bodies) on a loopback port.
pub async fn otlp_http_collector() -> Collector {
    http_collector(HttpKind::OtlpProtobuf).await
}

/// A Zipkin collector (v2 JSON) on a loopback port.
pub async fn zipkin_collector() -> Collector {
    http_collector(HttpKind::ZipkinJson).await
}

async fn http_collector(kind: HttpKind) -> Collector {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (spans_tx, spans) = mpsc::unbounded_channel();
    let (req_tx, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let spans_tx = spans_tx.clone();
            let req_tx = req_tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let spans_tx = spans_tx.clone();
                    let req_tx = req_tx.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let ctype = req
                            .headers()
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let _ = req_tx.send((path, ctype));
                        let got = match kind {
                            HttpKind::OtlpProtobuf => from_otlp(
                                &ExportTraceServiceRequest::decode(body).expect("OTLP protobuf"),
                            ),
                            HttpKind::ZipkinJson => from_zipkin(&body),
                        };
                        for span in got {
                            let _ = spans_tx.send(span);
                        }
                        let status = match kind {
                            HttpKind::OtlpProtobuf => 200,
                            HttpKind::ZipkinJson => 202,
                        };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Collector {
        addr,
        spans,
        requests,
    }
}

/// A collector that accepts connections, reads whatever comes and never answers.
pub struct SilentCollector {
    pub addr: SocketAddr,
    /// Bytes received so far over all connections.
    pub received: Arc<AtomicUsize>,
}

pub async fn silent_collector() -> SilentCollector {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        // Keep the socket open: the client must not see an answer.
                        std::future::pending::<()>().await;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
        }
    });
    SilentCollector { addr, received }
}

/// The facts of one finished exchange, owned, so tests can lend an `HttpRecord` out of it.
pub struct Exchange {
    pub conn: weft_proxy::ConnInfo,
    pub local: weft_proxy::telemetry::PeerMeta,
    pub method: http::Method,
    pub path: String,
    pub authority: String,
    pub headers: http::HeaderMap,
    pub status: u16,
    pub flags: String,
    pub error_code: Option<&'static str>,
    pub upstream: Option<weft_proxy::telemetry::UpstreamInfo>,
    pub request_id: Option<String>,
    pub client_side: bool,
}

impl Exchange {
    /// A GET that got `status`, on an outbound (`client_side`) or inbound listener.
    pub fn new(client_side: bool, authority: &str, status: u16) -> Exchange {
        let direction = if client_side {
            weft_api::Direction::Outbound
        } else {
            weft_api::Direction::Inbound
        };
        Exchange {
            conn: weft_proxy::ConnInfo {
                listener: Arc::from("test"),
                direction,
                peer: "10.0.0.1:40000".parse().unwrap(),
                original_dst: "10.0.0.2:3002".parse().unwrap(),
                local: "10.0.0.2:15001".parse().unwrap(),
                sni: None,
                peer_identity: None,
                local_identity: None,
            },
            local: weft_proxy::telemetry::PeerMeta::default(),
            method: http::Method::GET,
            path: "/items?id=1".to_string(),
            authority: authority.to_string(),
            headers: http::HeaderMap::new(),
            status,
            flags: String::new(),
            error_code: None,
            upstream: None,
            request_id: None,
            client_side,
        }
    }

    /// The record as the request path would hand it over.
    pub fn record<'a>(
        &'a self,
        span: Option<&'a weft_proxy::telemetry::SpanHandle>,
    ) -> weft_proxy::telemetry::HttpRecord<'a> {
        weft_proxy::telemetry::HttpRecord {
            client_side: self.client_side,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: None,
            start: span.map_or_else(std::time::SystemTime::now, |s| s.start),
            duration: Duration::from_millis(7),
            response_start: Some(Duration::from_millis(5)),
            version: http::Version::HTTP_11,
            method: &self.method,
            path: &self.path,
            authority: &self.authority,
            scheme: "http",
            grpc: false,
            request_headers: &self.headers,
            response_code: self.status,
            response_headers: None,
            response_trailers: None,
            grpc_status: None,
            flags: &self.flags,
            error_code: self.error_code,
            code_details: "via_upstream",
            request_bytes: 12,
            response_bytes: 345,
            request_messages: 0,
            response_messages: 0,
            route_name: None,
            upstream: self.upstream.as_ref(),
            request_id: self.request_id.as_deref(),
            span,
        }
    }
}
