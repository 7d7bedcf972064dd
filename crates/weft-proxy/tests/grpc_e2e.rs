//! gRPC through the proxy with a real tonic client and a real tonic server: the four call
//! shapes (unary, server streaming, client streaming, bidirectional), error statuses and
//! trailing metadata, a gRPC fault abort and a retry on `unavailable`.
//!
//! The messages are hand-written prost structs and the server is tonic's `server::Grpc`
//! over a hyper HTTP/2 connection (no protoc, no build script). The upstream cluster speaks
//! HTTP/2; the client dials the proxy with h2c prior knowledge, as gRPC clients do.

// tonic's `Status` is large and its service traits fix `Result<_, Status>`; boxing it is
// not ours to choose.
#![allow(clippy::result_large_err)]

mod http_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http_support::Proxy;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::codec::Streaming;
use tonic::codegen::tokio_stream;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{BoxFuture, BoxStream, http::uri::PathAndQuery};
use tonic::metadata::MetadataMap;
use tonic::server::{
    ClientStreamingService, ServerStreamingService, StreamingService, UnaryService,
};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tonic_prost::ProstCodec;
use weft_api::{
    AbortStatus, Fault, FaultAbort, ProxyConfig, RetryOn, RetryPolicy, Route, RouteAction,
    UpstreamProtocol,
};
use weft_testkit::fixtures;

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(uint32, tag = "2")]
    count: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
    #[prost(uint32, tag = "2")]
    seq: u32,
}

/// How many calls reached the server, per method.
#[derive(Default)]
struct Calls {
    unary: AtomicU32,
    flaky: AtomicU32,
    aborted: AtomicU32,
}

// === the server ===

#[derive(Clone)]
struct Unary(Arc<Calls>);

impl UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;

    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        self.0.unary.fetch_add(1, Ordering::SeqCst);
        let req = req.into_inner();
        Box::pin(async move {
            if req.message == "missing" {
                let mut trailers = MetadataMap::new();
                trailers.insert("x-detail", "looked-everywhere".parse().expect("ascii"));
                return Err(Status::with_metadata(
                    Code::NotFound,
                    "no widget named missing",
                    trailers,
                ));
            }
            Ok(Response::new(EchoReply {
                message: format!("echo: {}", req.message),
                seq: 0,
            }))
        })
    }
}

/// Fails with UNAVAILABLE on every odd call, succeeds on every even one.
#[derive(Clone)]
struct Flaky(Arc<Calls>);

impl UnaryService<EchoRequest> for Flaky {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;

    fn call(&mut self, _req: Request<EchoRequest>) -> Self::Future {
        let n = self.0.flaky.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            if n % 2 == 1 {
                return Err(Status::unavailable("warming up"));
            }
            Ok(Response::new(EchoReply {
                message: format!("attempt {n}"),
                seq: n,
            }))
        })
    }
}

/// Counts calls that should never arrive (the route aborts them).
#[derive(Clone)]
struct Aborted(Arc<Calls>);

impl UnaryService<EchoRequest> for Aborted {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;

    fn call(&mut self, _req: Request<EchoRequest>) -> Self::Future {
        self.0.aborted.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(Response::new(EchoReply::default())) })
    }
}

/// `count` replies, then (for `message == "fail"`) an error status in the trailers.
#[derive(Clone)]
struct Countdown;

impl ServerStreamingService<EchoRequest> for Countdown {
    type Response = EchoReply;
    type ResponseStream = BoxStream<EchoReply>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        let req = req.into_inner();
        Box::pin(async move {
            let mut items: Vec<Result<EchoReply, Status>> = (1..=req.count)
                .map(|seq| {
                    Ok(EchoReply {
                        message: req.message.clone(),
                        seq,
                    })
                })
                .collect();
            if req.message == "fail" {
                items.push(Err(Status::resource_exhausted("stream ran dry")));
            }
            Ok(Response::new(
                Box::pin(tokio_stream::iter(items)) as Self::ResponseStream
            ))
        })
    }
}

/// Joins every message of the request stream.
#[derive(Clone)]
struct Collect;

impl ClientStreamingService<EchoRequest> for Collect {
    type Response = EchoReply;
    type Future = BoxFuture<Response<EchoReply>, Status>;

    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        let mut stream = req.into_inner();
        Box::pin(async move {
            let mut words = Vec::new();
            while let Some(msg) = stream.message().await? {
                words.push(msg.message);
            }
            Ok(Response::new(EchoReply {
                message: words.join(" "),
                seq: u32::try_from(words.len()).unwrap_or(u32::MAX),
            }))
        })
    }
}

/// Answers each message as it arrives (so a client that waits for each answer before
/// sending the next proves nothing on the path buffers a whole stream).
#[derive(Clone)]
struct Chat;

impl StreamingService<EchoRequest> for Chat {
    type Response = EchoReply;
    type ResponseStream = BoxStream<EchoReply>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, req: Request<Streaming<EchoRequest>>) -> Self::Future {
        let mut incoming = req.into_inner();
        Box::pin(async move {
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                let mut seq = 0;
                while let Ok(Some(msg)) = incoming.message().await {
                    seq += 1;
                    let reply = EchoReply {
                        message: msg.message.to_uppercase(),
                        seq,
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Response::new(
                Box::pin(ReceiverStream::new(rx)) as Self::ResponseStream
            ))
        })
    }
}

async fn dispatch(
    req: http::Request<hyper::body::Incoming>,
    calls: Arc<Calls>,
) -> http::Response<tonic::body::Body> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
    match req.uri().path() {
        "/test.Echo/Unary" => grpc.unary(Unary(calls), req).await,
        "/test.Echo/Flaky" => grpc.unary(Flaky(calls), req).await,
        "/test.Echo/Aborted" => grpc.unary(Aborted(calls), req).await,
        "/test.Echo/Countdown" => grpc.server_streaming(Countdown, req).await,
        "/test.Echo/Collect" => grpc.client_streaming(Collect, req).await,
        "/test.Echo/Chat" => grpc.streaming(Chat, req).await,
        _ => Status::unimplemented("no such method").into_http(),
    }
}

/// A tonic gRPC server on 127.0.0.1 (HTTP/2 cleartext).
async fn grpc_server(calls: Arc<Calls>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let calls = calls.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let calls = calls.clone();
                    async move { Ok::<_, std::convert::Infallible>(dispatch(req, calls).await) }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

// === the proxy ===

fn config(upstream: SocketAddr) -> ProxyConfig {
    let mut cluster = fixtures::cluster("grpc", &[upstream]);
    cluster.protocol = UpstreamProtocol::Http2;
    let mut aborted = fixtures::route_to("aborted", "grpc");
    aborted.matches = vec![fixtures::prefix("/test.Echo/Aborted")];
    aborted.fault = Some(Fault {
        delay: None,
        abort: Some(FaultAbort {
            status: AbortStatus::Grpc(14),
            percent: 100.0,
        }),
    });
    let flaky: Route = fixtures::route(
        "flaky",
        vec![fixtures::prefix("/test.Echo/Flaky")],
        RouteAction::Forward(weft_api::Forward {
            retry: Some(RetryPolicy {
                attempts: 2,
                per_try_timeout: None,
                retry_on: RetryOn {
                    grpc: vec!["unavailable".into()],
                    ..RetryOn::default()
                },
                backoff_base: Duration::from_millis(1),
                other_host: false,
                budget: None,
            }),
            ..fixtures::forward(vec![fixtures::weighted("grpc", 100)])
        }),
    );
    let default = fixtures::route_to("default", "grpc");
    fixtures::config(
        vec![fixtures::table(
            "grpc",
            vec![fixtures::vhost(
                "grpc",
                &["*"],
                vec![aborted, flaky, default],
            )],
        )],
        vec![cluster],
    )
}

struct Setup {
    calls: Arc<Calls>,
    client: tonic::client::Grpc<Channel>,
    _proxy: Proxy,
}

async fn setup() -> Setup {
    let calls = Arc::new(Calls::default());
    let upstream = grpc_server(calls.clone()).await;
    let proxy = Proxy::start(config(upstream), fixtures::http_chain("grpc")).await;
    let channel = Channel::from_shared(format!("http://{}", proxy.addr))
        .expect("uri")
        .connect()
        .await
        .expect("client connects to the proxy");
    Setup {
        calls,
        client: tonic::client::Grpc::new(channel),
        _proxy: proxy,
    }
}

fn request(message: &str, count: u32) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        count,
    }
}

async fn unary(
    client: &mut tonic::client::Grpc<Channel>,
    method: &'static str,
    msg: EchoRequest,
) -> Result<Response<EchoReply>, Status> {
    client.ready().await.expect("channel ready");
    client
        .unary(
            Request::new(msg),
            PathAndQuery::from_static(method),
            ProstCodec::default(),
        )
        .await
}

// === the tests ===

#[tokio::test]
async fn unary_call_and_error_status_with_trailers() {
    let mut s = setup().await;
    let ok = unary(&mut s.client, "/test.Echo/Unary", request("hi", 0))
        .await
        .expect("unary call succeeds");
    assert_eq!(ok.get_ref().message, "echo: hi");

    let err = unary(&mut s.client, "/test.Echo/Unary", request("missing", 0))
        .await
        .expect_err("NOT_FOUND comes back as an error");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert_eq!(err.message(), "no widget named missing");
    assert_eq!(
        err.metadata().get("x-detail").and_then(|v| v.to_str().ok()),
        Some("looked-everywhere"),
        "trailing metadata crosses the proxy: {err:?}"
    );
    assert_eq!(s.calls.unary.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn server_streaming_delivers_every_message_then_the_trailer_status() {
    let mut s = setup().await;
    s.client.ready().await.expect("ready");
    let resp = s
        .client
        .server_streaming(
            Request::new(request("tick", 5)),
            PathAndQuery::from_static("/test.Echo/Countdown"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .expect("stream starts");
    let mut stream = resp.into_inner();
    let mut seqs = Vec::new();
    while let Some(reply) = stream.message().await.expect("stream item") {
        assert_eq!(reply.message, "tick");
        seqs.push(reply.seq);
    }
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    let trailers = stream.trailers().await.expect("trailers");
    assert!(trailers.is_some(), "the OK status arrives in trailers");

    // An error after two messages: both messages, then the status from the trailers.
    s.client.ready().await.expect("ready");
    let mut failing = s
        .client
        .server_streaming(
            Request::new(request("fail", 2)),
            PathAndQuery::from_static("/test.Echo/Countdown"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .expect("stream starts")
        .into_inner();
    assert_eq!(
        failing.message().await.expect("first").map(|r| r.seq),
        Some(1)
    );
    assert_eq!(
        failing.message().await.expect("second").map(|r| r.seq),
        Some(2)
    );
    let err = failing.message().await.expect_err("status in trailers");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(err.message(), "stream ran dry");
}

#[tokio::test]
async fn client_streaming_sends_every_message() {
    let mut s = setup().await;
    s.client.ready().await.expect("ready");
    let words = ["one", "two", "three", "four"].map(|w| request(w, 0));
    let resp = s
        .client
        .client_streaming(
            Request::new(tokio_stream::iter(words)),
            PathAndQuery::from_static("/test.Echo/Collect"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .expect("client streaming call");
    assert_eq!(resp.get_ref().message, "one two three four");
    assert_eq!(resp.get_ref().seq, 4);
}

#[tokio::test]
async fn bidirectional_streaming_interleaves() {
    let mut s = setup().await;
    s.client.ready().await.expect("ready");
    let (tx, rx) = mpsc::channel(1);
    tx.send(request("ping", 0))
        .await
        .expect("first message queued");
    let mut replies = s
        .client
        .streaming(
            Request::new(ReceiverStream::new(rx)),
            PathAndQuery::from_static("/test.Echo/Chat"),
            ProstCodec::<EchoRequest, EchoReply>::default(),
        )
        .await
        .expect("bidi call starts")
        .into_inner();
    // Each answer arrives before the next message is sent: nothing buffers the stream.
    for (i, word) in ["ping", "pong", "done"].iter().enumerate() {
        if i > 0 {
            tx.send(request(word, 0)).await.expect("message queued");
        }
        let reply = tokio::time::timeout(Duration::from_secs(10), replies.message())
            .await
            .expect("reply arrives while the request stream is open")
            .expect("stream item")
            .expect("a reply, not the end");
        assert_eq!(reply.message, word.to_uppercase());
        assert_eq!(reply.seq, u32::try_from(i + 1).unwrap_or(u32::MAX));
    }
    drop(tx);
    assert!(replies.message().await.expect("clean end").is_none());
}

#[tokio::test]
async fn grpc_fault_abort_is_unavailable_on_the_client() {
    let mut s = setup().await;
    let err = unary(&mut s.client, "/test.Echo/Aborted", request("x", 0))
        .await
        .expect_err("the fault aborts the call");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // The proxy's answer, not a transport failure (which tonic also reports as UNAVAILABLE).
    assert_eq!(err.message(), "fault filter abort", "{err:?}");
    assert_eq!(
        s.calls.aborted.load(Ordering::SeqCst),
        0,
        "aborted calls never reach the server"
    );
}

#[tokio::test]
async fn retry_on_unavailable_hides_one_failure() {
    let mut s = setup().await;
    let ok = unary(&mut s.client, "/test.Echo/Flaky", request("x", 0))
        .await
        .expect("the retry hides the first UNAVAILABLE");
    assert_eq!(ok.get_ref().message, "attempt 2");
    assert_eq!(
        s.calls.flaky.load(Ordering::SeqCst),
        2,
        "one failure, one retry"
    );
}
