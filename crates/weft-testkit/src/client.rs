//! A small test client: one connection (HTTP/1.1 keep-alive or h2c), whole responses.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::echo::Echoed;

pub type ClientBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A response read to the end.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The echo server's description of the request; panics (test failure) if the body is
    /// not one.
    pub fn echoed(&self) -> Echoed {
        match serde_json::from_slice(&self.body) {
            Ok(e) => e,
            Err(e) => panic!(
                "not an echo response ({e}): status {} headers {:?} body {:?}",
                self.status, self.headers, self.body
            ),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

enum Sender {
    H1(http1::SendRequest<ClientBody>),
    H2(http2::SendRequest<ClientBody>),
}

pub struct TestClient {
    sender: Sender,
}

impl TestClient {
    pub async fn h1(addr: SocketAddr) -> Result<TestClient, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(TestClient {
            sender: Sender::H1(sender),
        })
    }

    pub async fn h2(addr: SocketAddr) -> Result<TestClient, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(TestClient {
            sender: Sender::H2(sender),
        })
    }

    /// Sends a request and returns the response head with its body unread.
    pub async fn send_streaming(
        &mut self,
        req: Request<ClientBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        Ok(match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        })
    }

    pub async fn send(&mut self, req: Request<ClientBody>) -> Result<TestResponse, BoxError> {
        let resp = self.send_streaming(req).await?;
        collect(resp).await
    }

    /// GET `path` with `Host: host` and extra headers.
    pub async fn get(
        &mut self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<TestResponse, BoxError> {
        let req = request("GET", host, path, headers, Bytes::new(), self.is_h2());
        self.send(req).await
    }

    /// Another handle on the same HTTP/2 connection (none for HTTP/1, which cannot
    /// multiplex).
    pub fn try_clone(&self) -> Option<TestClient> {
        match &self.sender {
            Sender::H2(s) => Some(TestClient {
                sender: Sender::H2(s.clone()),
            }),
            Sender::H1(_) => None,
        }
    }

    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }
}

/// Builds a request: origin-form with a Host header for HTTP/1, absolute URI for h2.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
    h2: bool,
) -> Request<ClientBody> {
    let mut b = Request::builder().method(method);
    if h2 {
        b = b
            .uri(format!("http://{host}{path}"))
            .version(http::Version::HTTP_2);
    } else {
        b = b.uri(path).header("host", host);
    }
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    match b.body(Full::new(body).map_err(|never| match never {}).boxed()) {
        Ok(r) => r,
        Err(e) => panic!("bad test request {method} {host}{path}: {e}"),
    }
}

pub async fn collect(resp: Response<Incoming>) -> Result<TestResponse, BoxError> {
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await?;
    let trailers = collected.trailers().cloned();
    Ok(TestResponse {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}
