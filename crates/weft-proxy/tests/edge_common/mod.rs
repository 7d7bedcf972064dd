//! Shared helpers of the edge tests: config fixtures, small upstream servers on 127.0.0.1,
//! an HTTP client, and bounded waiting.
#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use weft_api::ProxyConfig;
use weft_proxy::app::{self, ProxyOptions, Running};
use weft_proxy::source::ConfigSource;

/// Every wait in these tests gives up after this long.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn config(v: Value) -> ProxyConfig {
    serde_json::from_value(v).expect("fixture is a valid ProxyConfig")
}

pub fn limits() -> Value {
    json!({"max_connections": 1000, "max_pending_requests": 1000, "max_requests": 1000, "max_retries": 3})
}

pub fn cluster(name: &str, protocol: &str, endpoints: &[SocketAddr]) -> Value {
    json!({
        "name": name,
        "discovery": "static",
        "endpoints": endpoints.iter().map(|a| json!({"address": a.to_string()})).collect::<Vec<_>>(),
        "lb": "round_robin",
        "connect_timeout": "2s",
        "limits": limits(),
        "protocol": protocol,
    })
}

/// An explicit-capture outbound listener on a free port.
pub fn listener(name: &str, chains: Value, fallback: Value) -> Value {
    json!({
        "name": name,
        "address": "127.0.0.1:0",
        "direction": "outbound",
        "capture": "explicit",
        "chains": chains,
        "fallback": fallback,
    })
}

pub fn tcp_chain(name: &str, clusters: &[(&str, u32)]) -> Value {
    json!({
        "name": name,
        "protocol": {"tcp": {"clusters": weighted(clusters)}},
    })
}

pub fn weighted(clusters: &[(&str, u32)]) -> Value {
    clusters
        .iter()
        .map(|(c, w)| json!({"cluster": c, "weight": w}))
        .collect()
}

/// A route table with one catch-all virtual host.
pub fn route_table(name: &str, routes: Value) -> Value {
    json!({
        "name": name,
        "virtual_hosts": [{"name": "any", "domains": ["*"], "routes": routes}],
    })
}

pub fn direct_route(path_prefix: &str, status: u16, body: &str) -> Value {
    json!({
        "name": format!("direct{path_prefix}"),
        "matches": [{"path": {"prefix": {"value": path_prefix, "ignore_case": false}}}],
        "action": {"direct_response": {"status": status, "body": body}},
    })
}

pub fn forward_route(path_prefix: &str, cluster: &str) -> Value {
    json!({
        "name": format!("forward{path_prefix}"),
        "matches": [{"path": {"prefix": {"value": path_prefix, "ignore_case": false}}}],
        "action": {"forward": {"clusters": [{"cluster": cluster, "weight": 1}]}},
    })
}

pub fn options() -> ProxyOptions {
    ProxyOptions {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ProxyOptions::default()
    }
}

/// Start a proxy and wait until it has applied its first config.
pub async fn start(source: impl ConfigSource) -> Running {
    let running = app::build(options(), source).await.expect("proxy starts");
    let mut status = running.status();
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.ready))
        .await
        .expect("first config applied in time")
        .expect("status channel open");
    running
}

/// Wait until `version` is applied.
pub async fn applied(running: &Running, version: &str) {
    let mut status = running.status();
    let res = tokio::time::timeout(
        DEADLINE,
        status.wait_for(|s| s.applied.as_ref().is_some_and(|a| a.version == version)),
    )
    .await
    .map(|r| r.is_ok());
    if res != Ok(true) {
        panic!(
            "version {version} not applied: {:?}",
            *running.status().borrow()
        );
    }
}

/// Poll `check` until it returns true; fail the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    weft_testkit::wait::eventually(what, DEADLINE, check).await
}

/// Run `fut` with the test deadline.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

async fn bind_local() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let a = l.local_addr().expect("addr");
    (l, a)
}

/// Echoes every byte back.
pub async fn echo_server() -> SocketAddr {
    tagged_echo_server("").await
}

/// Writes `tag\n` as soon as a client connects (unless the tag is empty), then echoes.
pub async fn tagged_echo_server(tag: &'static str) -> SocketAddr {
    let (l, addr) = bind_local().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if !tag.is_empty() && s.write_all(format!("{tag}\n").as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Read the tag line a [`tagged_echo_server`] sends first.
pub async fn read_tag(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match within("tag line", s.read(&mut b)).await {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            other => panic!("connection ended before the tag line: {other:?} after {line:?}"),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// An HTTP/1 upstream. `GET /slow` is answered only after `release` is notified (and
/// announces its arrival on the returned channel); everything else is answered at once
/// with `name`.
pub async fn http_server(
    name: &'static str,
    release: Arc<Notify>,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let (l, addr) = bind_local().await;
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let release = release.clone();
            let arrived_tx = arrived_tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let release = release.clone();
                    let arrived_tx = arrived_tx.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let _ = arrived_tx.send(path.clone());
                        if path == "/slow" {
                            release.notified().await;
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(format!("{name} {path}")),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, arrived)
}

pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// An HTTP/1 client connection (keep-alive).
pub struct Http1Client {
    pub send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    pub closed: tokio::task::JoinHandle<()>,
}

pub async fn http1_client(addr: SocketAddr) -> std::io::Result<Http1Client> {
    let stream = TcpStream::connect(addr).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    let closed = tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Http1Client { send, closed })
}

impl Http1Client {
    pub async fn get(&mut self, host: &str, path: &str) -> Result<HttpResponse, hyper::Error> {
        self.send.ready().await?;
        let req = Request::get(path)
            .header("host", host)
            .body(Empty::new())
            .expect("request");
        let resp = self.send.send_request(req).await?;
        collect(resp).await
    }
}

async fn collect(resp: hyper::Response<Incoming>) -> Result<HttpResponse, hyper::Error> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One GET on a new HTTP/1 connection.
pub async fn http_get(addr: SocketAddr, host: &str, path: &str) -> HttpResponse {
    let mut client = within("connect", http1_client(addr))
        .await
        .expect("connect");
    within("response", client.get(host, path))
        .await
        .expect("response")
}

/// One GET over HTTP/2 with prior knowledge (h2c).
pub async fn h2_get(addr: SocketAddr, host: &str, path: &str) -> HttpResponse {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(format!("http://{host}{path}"))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = within("h2 response", send.send_request(req))
        .await
        .expect("h2 response");
    collect(resp).await.expect("h2 body")
}

/// `(status, body)` of an admin request.
pub async fn admin(addr: SocketAddr, method: &str, path: &str) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect admin");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("admin handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let resp = within("admin response", send.send_request(req))
        .await
        .expect("admin response");
    let r = collect(resp).await.expect("admin body");
    (r.status, r.body)
}

/// The value of a counter in `/stats/prometheus`.
pub async fn stat(admin_addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = admin(admin_addr, "GET", "/stats/prometheus").await;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in stats:\n{body}"))
}
