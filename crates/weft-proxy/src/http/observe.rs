//! Telemetry bookkeeping for one HTTP request: what the request path learns as it goes
//! (route, cluster, endpoint, errors), and the response body wrapper that hands the
//! finished exchange to the runtime's [`Telemetry`] when the last byte is sent (or the
//! client goes away).
//!
//! When nothing consumes telemetry the observation is inactive and every method is a
//! no-op, so the request path pays for nothing it does not use.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;
use weft_api::Direction;

use super::body::{BoxError, ProxyBody};
use super::headers;
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::telemetry::{HttpRecord, PeerMeta, SpanHandle, Telemetry, UpstreamInfo};
use crate::upstream::{ClusterState, Endpoint};

/// The telemetry state of one request (inactive when no sink or tracer is configured).
#[derive(Default)]
pub struct Observation {
    active: Option<Box<Active>>,
}

struct Active {
    tel: Arc<Telemetry>,
    conn: ConnInfo,
    client_side: bool,
    start: Instant,
    start_wall: SystemTime,
    method: Method,
    uri: Uri,
    host: Option<HeaderValue>,
    version: Version,
    grpc: bool,
    request_headers: HeaderMap,
    request_id: Option<HeaderValue>,
    span: Option<SpanHandle>,
    downstream_peer: Option<Arc<PeerMeta>>,
    route_name: Option<String>,
    upstream: Option<UpstreamInfo>,
    /// Flags the request path raised on the way (`DI`), before any error flag.
    flags: Vec<&'static str>,
    error_code: Option<&'static str>,
    code_details: &'static str,
    request_body: Arc<BodyCounts>,
}

/// Bytes and gRPC messages that went through a body.
#[derive(Default)]
pub struct BodyCounts {
    bytes: AtomicU64,
    messages: AtomicU64,
}

impl Observation {
    /// Starts observing `req` (before routing, after the connection's control-header
    /// policy): starts the trace span, rewriting the trace headers, and makes sure the
    /// request has an `x-request-id` so logs, spans and the upstream see the same one.
    pub fn begin(
        tel: &Arc<Telemetry>,
        req: &mut Request<hyper::body::Incoming>,
        conn: &ConnInfo,
    ) -> Self {
        if !tel.is_active() {
            return Observation::default();
        }
        let client_side = conn.direction != Direction::Inbound;
        let request_id = match req.headers().get(&headers::X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = headers::new_request_id();
                req.headers_mut().insert(headers::X_REQUEST_ID, id.clone());
                id
            }
        };
        let span = tel
            .tracer()
            .and_then(|t| t.start(req.headers_mut(), client_side));
        let grpc = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let request_headers = if tel.needs_request_headers() {
            req.headers().clone()
        } else {
            HeaderMap::new()
        };
        Observation {
            active: Some(Box::new(Active {
                tel: tel.clone(),
                conn: conn.clone(),
                client_side,
                start: Instant::now(),
                start_wall: SystemTime::now(),
                method: req.method().clone(),
                uri: req.uri().clone(),
                host: req.headers().get(header::HOST).cloned(),
                version: req.version(),
                grpc,
                request_headers,
                request_id: Some(request_id),
                span,
                downstream_peer: req.extensions().get::<Arc<PeerMeta>>().cloned(),
                route_name: None,
                upstream: None,
                flags: Vec::new(),
                error_code: None,
                code_details: "via_upstream",
                request_body: Arc::default(),
            })),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The request is gRPC (its messages are counted).
    pub fn is_grpc(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.grpc)
    }

    pub fn route(&mut self, name: &str) {
        if let Some(a) = &mut self.active {
            a.route_name = Some(name.to_string());
        }
    }

    /// A fault delay was injected (`DI`).
    pub fn delayed(&mut self) {
        if let Some(a) = &mut self.active {
            a.flags.push("DI");
        }
    }

    /// The proxy answered by itself (direct response, redirect, CORS preflight).
    pub fn answered_locally(&mut self) {
        if let Some(a) = &mut self.active {
            a.code_details = "direct_response";
        }
    }

    /// The request goes to `cluster`.
    pub fn cluster(&mut self, cluster: &ClusterState) {
        if let Some(a) = &mut self.active {
            a.upstream = Some(UpstreamInfo {
                cluster: cluster.telemetry_name.clone(),
                service: cluster.telemetry_service.clone(),
                ..UpstreamInfo::default()
            });
        }
    }

    /// An attempt starts on `ep` of `cluster`.
    pub fn attempt(&mut self, cluster: &ClusterState, ep: &Endpoint) {
        if let Some(up) = self.active.as_mut().and_then(|a| a.upstream.as_mut()) {
            up.attempts += 1;
            up.host = ep.address.parse().ok();
            up.labels = Some(ep.labels.clone());
            up.identity = ep
                .mesh
                .as_ref()
                .and_then(|m| m.identity.as_deref())
                .map(Arc::from);
            // Through a peer's tunnel this proxy presents its own certificate.
            up.local_identity = match &ep.mesh {
                Some(_) => cluster.local_identity(),
                None => None,
            };
        }
    }

    /// The response came back from upstream: the destination proxy's metadata, if it sent
    /// any.
    pub fn upstream_response<B>(&mut self, resp: &Response<B>) {
        if let Some(up) = self.active.as_mut().and_then(|a| a.upstream.as_mut()) {
            up.peer = resp.extensions().get::<Arc<PeerMeta>>().cloned();
        }
    }

    /// The counters the request body wrapper feeds (see [`counted`]).
    pub fn request_counts(&self) -> Option<Arc<BodyCounts>> {
        self.active.as_ref().map(|a| a.request_body.clone())
    }

    /// The request failed with `err` (its response is generated by the proxy).
    pub fn failed(&mut self, err: &ProxyError) {
        if let Some(a) = &mut self.active {
            a.flags.push(err.flag());
            a.error_code = Some(err.code());
            a.code_details = err.code();
        }
    }

    /// Wraps the response so the exchange is recorded when its body ends.
    pub fn finish(self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let Some(active) = self.active else {
            return resp;
        };
        let (parts, body) = resp.into_parts();
        let response_start = active.start.elapsed();
        let grpc_status = grpc_status(&parts.headers);
        let response_headers = if active.tel.needs_request_headers() {
            parts.headers.clone()
        } else {
            HeaderMap::new()
        };
        let grpc = active.grpc;
        let recorded = Recorded {
            inner: body,
            state: Some(Finished {
                active,
                code: parts.status.as_u16(),
                response_start,
                response_headers,
                trailers: None,
                grpc_status,
            }),
            bytes: 0,
            messages: MessageCounter::new(grpc),
            messages_total: 0,
        };
        Response::from_parts(parts, ProxyBody::new(recorded))
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The request body, counted into `counts` as it is read.
pub fn counted<B>(body: B, counts: Arc<BodyCounts>, grpc_hint: bool) -> Counted<B> {
    Counted {
        inner: body,
        counts,
        messages: MessageCounter::new(grpc_hint),
    }
}

pub struct Counted<B> {
    inner: B,
    counts: Arc<BodyCounts>,
    messages: MessageCounter,
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.counts
                .bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            let n = this.messages.feed(data);
            if n > 0 {
                this.counts.messages.fetch_add(n, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Counts gRPC length-prefixed messages (1 flag byte, 4 length bytes, payload) across
/// chunk boundaries. Inactive for non-gRPC bodies.
struct MessageCounter {
    active: bool,
    /// Bytes of the 5-byte prefix still to read, and its length bytes so far.
    header_left: u8,
    len: u32,
    /// Payload bytes still to skip.
    payload_left: u64,
}

impl MessageCounter {
    fn new(active: bool) -> Self {
        MessageCounter {
            active,
            header_left: 5,
            len: 0,
            payload_left: 0,
        }
    }

    /// Feeds a chunk; returns the messages that started in it.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        if !self.active {
            return 0;
        }
        let mut started = 0;
        while !data.is_empty() {
            if self.payload_left > 0 {
                let skip = self.payload_left.min(data.len() as u64);
                self.payload_left -= skip;
                data.advance(skip as usize);
                continue;
            }
            if self.header_left == 5 {
                started += 1;
                self.len = 0;
            }
            // Byte 0 is the compression flag; bytes 1..5 the big-endian length.
            if self.header_left < 5 {
                self.len = (self.len << 8) | u32::from(data[0]);
            }
            data.advance(1);
            self.header_left -= 1;
            if self.header_left == 0 {
                self.header_left = 5;
                self.payload_left = u64::from(self.len);
            }
        }
        started
    }
}

struct Finished {
    active: Box<Active>,
    code: u16,
    response_start: Duration,
    response_headers: HeaderMap,
    trailers: Option<HeaderMap>,
    grpc_status: Option<u32>,
}

/// The response body, recording the exchange when it ends or is dropped.
struct Recorded {
    inner: ProxyBody,
    state: Option<Finished>,
    bytes: u64,
    messages: MessageCounter,
    messages_total: u64,
}

impl Recorded {
    /// Records the exchange once; `flag` says why it ended early (`DC`: the client went
    /// away, `UC`: the upstream body failed).
    fn emit(&mut self, flag: Option<&'static str>) {
        let Some(mut f) = self.state.take() else {
            return;
        };
        if let Some(flag) = flag {
            f.active.flags.push(flag);
        }
        let a = &f.active;
        let flags = a.flags.join(",");
        let authority = a
            .uri
            .authority()
            .map(|x| x.as_str())
            .or_else(|| a.host.as_ref().and_then(|h| h.to_str().ok()))
            .unwrap_or("");
        let path = a.uri.path_and_query().map_or("/", |p| p.as_str());
        let grpc_status = f.trailers.as_ref().and_then(grpc_status).or(f.grpc_status);
        let rec = HttpRecord {
            client_side: a.client_side,
            conn: &a.conn,
            local: a.tel.local(),
            downstream_peer: a.downstream_peer.as_deref(),
            start: a.start_wall,
            duration: a.start.elapsed(),
            response_start: Some(f.response_start),
            version: a.version,
            method: &a.method,
            path,
            authority,
            scheme: a.uri.scheme_str().unwrap_or("http"),
            grpc: a.grpc,
            request_headers: &a.request_headers,
            response_code: f.code,
            response_headers: Some(&f.response_headers),
            response_trailers: f.trailers.as_ref(),
            grpc_status,
            flags: &flags,
            error_code: a.error_code,
            code_details: a.code_details,
            request_bytes: a.request_body.bytes.load(Ordering::Relaxed),
            response_bytes: self.bytes,
            request_messages: a.request_body.messages.load(Ordering::Relaxed),
            response_messages: self.messages_total,
            route_name: a.route_name.as_deref(),
            upstream: a.upstream.as_ref(),
            request_id: a.request_id.as_ref().and_then(|v| v.to_str().ok()),
            span: a.span.as_ref(),
        };
        a.tel.record_http(&rec);
        if let (Some(tracer), Some(span)) = (a.tel.tracer(), a.span.clone()) {
            tracer.finish(span, &rec);
        }
    }
}

impl Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    this.messages_total += this.messages.feed(data);
                } else if let (Some(t), Some(state)) = (frame.trailers_ref(), &mut this.state) {
                    state.trailers = Some(t.clone());
                }
                if this.inner.is_end_stream() {
                    this.emit(None);
                }
            }
            Poll::Ready(None) => this.emit(None),
            Poll::Ready(Some(Err(_))) => this.emit(Some("UC")),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let flag = (!self.inner.is_end_stream()).then_some("DC");
        self.emit(flag);
    }
}
