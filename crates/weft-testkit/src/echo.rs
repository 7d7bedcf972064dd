//! The echo server: HTTP/1.1 and h2c on one port.
//!
//! Every response carries `x-echo-instance: <name>`; the default body is JSON describing
//! the request ([`Echoed`]). Request headers steer it:
//!
//! | header | effect |
//! |---|---|
//! | `x-echo-delay-ms: N` | wait N ms (tokio's clock) before answering |
//! | `x-echo-status: N` | answer with status N |
//! | `x-echo-reset: 1` | close the connection without answering |
//! | `x-echo-stream-chunks: N` | stream N chunks `chunk-<i>\n` instead of JSON |
//! | `x-echo-mode: echo-body` | stream the request body (and its trailers) back as it arrives |
//! | `x-echo-trailers: name=value` | end the response with this trailer |
//! | `Upgrade` + `Connection: upgrade` | answer 101 and echo bytes on the upgraded connection |
//!
//! [`EchoServer::fail_next`] makes the next N requests answer a status, for retry tests.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::body::{BoxError, ChannelBody, channel};

type EchoBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// What the echo server saw, as its JSON body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Echoed {
    pub instance: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub version: String,
    /// Lowercase names; several values joined with `,`.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

struct State {
    name: String,
    requests: AtomicU64,
    connections: AtomicU64,
    fail_count: AtomicU32,
    fail_status: AtomicU32,
    /// gRPC status the failing answers carry (0 = none).
    fail_grpc: AtomicU32,
}

/// An echo server on 127.0.0.1; stops accepting when dropped.
pub struct EchoServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl EchoServer {
    pub async fn start(name: &str) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            name: name.to_string(),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            fail_count: AtomicU32::new(0),
            fail_status: AtomicU32::new(503),
            fail_grpc: AtomicU32::new(0),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::Relaxed);
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, st.clone()));
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(EchoServer { addr, state, task })
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// Requests answered (or reset) so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// The next `n` requests answer `status` (with no other effect).
    pub fn fail_next(&self, n: u32, status: u16) {
        self.state
            .fail_status
            .store(u32::from(status), Ordering::Relaxed);
        self.state.fail_grpc.store(0, Ordering::Relaxed);
        self.state.fail_count.store(n, Ordering::Relaxed);
    }

    /// The next `n` requests answer HTTP 200 with `grpc-status: code` in the headers (a
    /// gRPC trailers-only response).
    pub fn fail_next_grpc(&self, n: u32, code: u32) {
        self.state.fail_status.store(200, Ordering::Relaxed);
        self.state.fail_grpc.store(code, Ordering::Relaxed);
        self.state.fail_count.store(n, Ordering::Relaxed);
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn handle(
    mut req: Request<Incoming>,
    st: Arc<State>,
) -> Result<Response<EchoBody>, BoxError> {
    let count = st.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some(ms) = header(&req, "x-echo-delay-ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if header(&req, "x-echo-reset").is_some() {
        return Err("reset requested by x-echo-reset".into());
    }
    let mut resp = if st
        .fail_count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
    {
        let status = st.fail_status.load(Ordering::Relaxed) as u16;
        let mut r = Response::new(full(format!("failing as told by fail_next ({status})\n")));
        *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let grpc = st.fail_grpc.load(Ordering::Relaxed);
        if grpc != 0 {
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from(grpc));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
        }
        r
    } else if req.headers().contains_key(http::header::UPGRADE) {
        upgrade(&mut req)
    } else if let Some(n) = header(&req, "x-echo-stream-chunks").and_then(|v| v.parse::<u32>().ok())
    {
        let trailers = trailer_map(header(&req, "x-echo-trailers"));
        let (tx, body) = channel();
        tokio::spawn(async move {
            for i in 0..n {
                if !tx.data(format!("chunk-{i}\n")).await {
                    return;
                }
            }
            if let Some(t) = trailers {
                tx.trailers(t).await;
            }
        });
        Response::new(boxed(body))
    } else if header(&req, "x-echo-mode") == Some("echo-body") {
        let trailers = trailer_map(header(&req, "x-echo-trailers"));
        Response::new(echo_body(req.into_body(), trailers))
    } else {
        describe(req, &st).await?
    };
    let h = resp.headers_mut();
    h.insert(
        "x-echo-instance",
        HeaderValue::from_str(&st.name).unwrap_or(HeaderValue::from_static("?")),
    );
    h.insert("x-echo-request-count", HeaderValue::from(count));
    Ok(resp)
}

async fn describe(req: Request<Incoming>, st: &State) -> Result<Response<EchoBody>, BoxError> {
    let status = header(&req, "x-echo-status")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok());
    let trailers = trailer_map(header(&req, "x-echo-trailers"));
    let mut headers = BTreeMap::new();
    for (name, value) in req.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|prev: &mut String| {
                prev.push(',');
                prev.push_str(&v);
            })
            .or_insert(v);
    }
    let echoed = Echoed {
        instance: st.name.clone(),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        version: format!("{:?}", req.version()),
        headers,
        body: String::new(),
    };
    let body = req.into_body().collect().await?.to_bytes();
    let echoed = Echoed {
        body: String::from_utf8_lossy(&body).into_owned(),
        ..echoed
    };
    let json = serde_json::to_vec(&echoed)?;
    let mut resp = match trailers {
        Some(t) => {
            let (tx, body) = channel();
            tokio::spawn(async move {
                tx.data(json).await;
                tx.trailers(t).await;
            });
            Response::new(boxed(body))
        }
        None => Response::new(full(json)),
    };
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(s) = status {
        *resp.status_mut() = s;
    }
    Ok(resp)
}

/// Streams `body` back frame by frame, then `trailers` (or the request's own trailers).
fn echo_body(mut body: Incoming, trailers: Option<HeaderMap>) -> EchoBody {
    let (tx, out) = channel();
    tokio::spawn(async move {
        let mut request_trailers = None;
        while let Some(Ok(frame)) = body.frame().await {
            match frame.into_data() {
                Ok(d) => {
                    if !tx.data(d).await {
                        return;
                    }
                }
                Err(f) => request_trailers = f.into_trailers().ok(),
            }
        }
        if let Some(t) = trailers.or(request_trailers) {
            tx.trailers(t).await;
        }
    });
    boxed(out)
}

fn upgrade(req: &mut Request<Incoming>) -> Response<EchoBody> {
    let protocol = req.headers().get(http::header::UPGRADE).cloned();
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let io = TokioIo::new(upgraded);
            let (mut r, mut w) = tokio::io::split(io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    if let Some(p) = protocol {
        resp.headers_mut().insert(http::header::UPGRADE, p);
    }
    resp
}

fn trailer_map(spec: Option<&str>) -> Option<HeaderMap> {
    let (name, value) = spec?.split_once('=')?;
    let mut map = HeaderMap::new();
    map.insert(
        http::header::HeaderName::from_bytes(name.trim().as_bytes()).ok()?,
        HeaderValue::from_str(value.trim()).ok()?,
    );
    Some(map)
}

fn full(bytes: impl Into<Bytes>) -> EchoBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn boxed(body: ChannelBody) -> EchoBody {
    body.boxed()
}
