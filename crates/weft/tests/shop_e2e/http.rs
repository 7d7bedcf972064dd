//! A small HTTP/1.1 client for the shop suite: one request per connection or a keep-alive
//! connection, whole responses with the time they took, every wait bounded.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// No single request of the suite may take longer (the longest expected is a 5 s fault
/// delay followed by the upstream's answer).
pub const REQUEST_BOUND: Duration = Duration::from_secs(30);

/// A request to send: `authority` is what the application would name (`cart:3002` from
/// inside the mesh, the gateway's address from outside).
#[derive(Debug, Clone)]
pub struct Req {
    pub method: &'static str,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Req {
    pub fn get(authority: &str, path: &str) -> Req {
        Req {
            method: "GET",
            authority: authority.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// POST with a JSON body.
    pub fn post(authority: &str, path: &str, json: Value) -> Req {
        Req {
            method: "POST",
            body: Some(json.to_string()),
            ..Req::get(authority, path)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Origin-form (`GET /path` + `Host`) or absolute-form (`GET http://host/path`, what an
    /// application sends to its `HTTP_PROXY`).
    fn build(&self, absolute: bool) -> Result<Request<Full<Bytes>>, String> {
        let uri = if absolute {
            format!("http://{}{}", self.authority, self.path)
        } else {
            self.path.clone()
        };
        let mut b = Request::builder()
            .method(self.method)
            .uri(uri)
            .header("host", &self.authority);
        for (n, v) in &self.headers {
            b = b.header(n, v);
        }
        if self.body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let body = Full::new(Bytes::from(self.body.clone().unwrap_or_default()));
        b.body(body)
            .map_err(|e| format!("bad request {self:?}: {e}"))
    }
}

/// A whole response and how long it took from connecting to its last byte.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The proxy's own error, if it generated this response.
    pub fn weft_error(&self) -> Option<&str> {
        self.header("x-weft-error")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One line for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{} x-weft-error={:?} body={:?}",
            self.status,
            self.weft_error(),
            self.text().chars().take(300).collect::<String>()
        )
    }
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        Conn::over(stream, &addr.to_string()).await
    }

    /// HTTP/1.1 over a connection made elsewhere (in another network namespace) to `peer`.
    pub async fn over(stream: TcpStream, peer: &str) -> Result<Conn, String> {
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {peer}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    pub async fn send(&mut self, req: &Req, absolute: bool) -> Result<Resp, String> {
        let started = Instant::now();
        let request = req.build(absolute)?;
        let exchange = async {
            self.sender
                .ready()
                .await
                .map_err(|e| format!("connection not ready: {e}"))?;
            let resp = self
                .sender
                .send_request(request)
                .await
                .map_err(|e| format!("{} {}: {e}", req.method, req.path))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("reading the body of {}: {e}", req.path))?
                .to_bytes();
            Ok::<_, String>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(REQUEST_BOUND, exchange)
            .await
            .map_err(|_| format!("{} {} took over {REQUEST_BOUND:?}", req.method, req.path))??;
        Ok(Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            elapsed: started.elapsed(),
        })
    }
}

/// One request on a connection of its own.
pub async fn send(addr: SocketAddr, req: &Req, absolute: bool) -> Result<Resp, String> {
    let started = Instant::now();
    let mut conn = Conn::open(addr).await?;
    let mut resp = conn.send(req, absolute).await?;
    resp.elapsed = started.elapsed();
    Ok(resp)
}

/// The future an [`InsideClient`] returns.
pub type Reply = Pin<Box<dyn Future<Output = Result<Resp, String>> + Send>>;

/// How a check sends a request from inside the mesh, as the application of one replica
/// would (`http://cart:3002/...` through that replica's proxy). This is the seam between
/// capture modes: explicit mode goes through the replica's outbound HTTP proxy; the
/// transparent mode (`--netns`) sends from inside the replica's network namespace
/// (`transparent::InNamespace`).
pub trait InsideClient: Send + Sync {
    fn send(&self, from_replica: &str, req: Req) -> Reply;
}

/// One request on a connection of its own made by `connect` (elsewhere than here).
pub async fn send_over(stream: TcpStream, peer: &str, req: &Req) -> Result<Resp, String> {
    let started = Instant::now();
    let mut conn = Conn::over(stream, peer).await?;
    let mut resp = conn.send(req, false).await?;
    resp.elapsed = started.elapsed();
    Ok(resp)
}

/// Explicit mode: the replica's `HTTP_PROXY` (its proxy's outbound port), absolute-form.
pub struct ViaHttpProxy {
    /// Replica name → its outbound HTTP proxy.
    pub proxies: BTreeMap<String, SocketAddr>,
}

impl InsideClient for ViaHttpProxy {
    fn send(&self, from_replica: &str, req: Req) -> Reply {
        let proxy = self.proxies.get(from_replica).copied();
        let from = from_replica.to_string();
        Box::pin(async move {
            let proxy = proxy.ok_or_else(|| format!("no replica {from} in the mesh"))?;
            send(proxy, &req, true).await
        })
    }
}

/// `n` requests made by `make(i)`, at most `concurrency` at a time; results in order.
pub async fn many<F>(n: usize, concurrency: usize, make: F) -> Vec<Result<Resp, String>>
where
    F: Fn(usize) -> Reply,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await;
        let reply = make(i);
        tasks.spawn(async move {
            let _permit = permit;
            (i, reply.await)
        });
    }
    let mut out: Vec<Option<Result<Resp, String>>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, r)) => out[i] = Some(r),
            Err(e) => panic!("a request task failed: {e}"),
        }
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err("request never ran".into())))
        .collect()
}
