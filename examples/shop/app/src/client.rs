//! The outbound HTTP client: JSON calls to another shop service, through `HTTP_PROXY` when set.
//!
//! In the mesh's explicit mode the sidecar is a forward proxy: a request for
//! `http://cart:3002/cart/1` is sent to the proxy's address in absolute form
//! (`GET http://cart:3002/cart/1 HTTP/1.1`) and the proxy resolves `cart`. hyper-util's
//! pooled client does exactly that when the connection reports itself as proxied, so the
//! only piece written here is the connector that picks the proxy (per `HTTP_PROXY` and
//! `NO_PROXY`) and says so. In transparent mode nothing is set and calls go direct.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;

use crate::config::BaseUrl;
use crate::trace::TraceContext;

/// Connects to the destination, or to the HTTP proxy that should carry the request to it.
#[derive(Clone)]
pub struct ProxyConnector {
    http: HttpConnector,
    proxy: Option<Arc<Matcher>>,
}

impl ProxyConnector {
    pub fn new(proxy: Option<Arc<Matcher>>) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        ProxyConnector { http, proxy }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = MaybeProxied;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<MaybeProxied, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        let intercept = self.proxy.as_ref().and_then(|m| m.intercept(&destination));
        let (target, proxied) = match intercept {
            Some(proxy) => (proxy.uri().clone(), true),
            None => (destination, false),
        };
        let connecting = self.http.call(target);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(MaybeProxied { io, proxied })
        })
    }
}

/// A TCP connection that tells the client whether it leads to a proxy (then requests go in
/// absolute form) or to the destination itself (origin form).
pub struct MaybeProxied {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for MaybeProxied {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for MaybeProxied {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for MaybeProxied {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Why a call to another service failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{upstream} unreachable: {method} {url}: {reason}")]
    Unreachable {
        upstream: &'static str,
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{upstream} answered {status} to {method} {url}: {body}")]
    Status {
        upstream: &'static str,
        method: Method,
        url: String,
        status: StatusCode,
        body: String,
    },
    #[error("{upstream} sent an unexpected body for {method} {url}: {reason}")]
    BadBody {
        upstream: &'static str,
        method: Method,
        url: String,
        reason: String,
    },
}

impl UpstreamError {
    pub fn upstream(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable { upstream, .. }
            | UpstreamError::Status { upstream, .. }
            | UpstreamError::BadBody { upstream, .. } => upstream,
        }
    }

    /// The upstream's status, when it answered at all.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One service this service calls, e.g. `product` at `PRODUCT_URL`.
#[derive(Clone)]
pub struct Upstream {
    name: &'static str,
    base: BaseUrl,
    client: Client<ProxyConnector, Full<Bytes>>,
}

impl Upstream {
    pub fn new(name: &'static str, base: BaseUrl, proxy: Option<Arc<Matcher>>) -> Self {
        let client = Client::builder(TokioExecutor::new()).build(ProxyConnector::new(proxy));
        Upstream { name, base, client }
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        trace: &TraceContext,
    ) -> Result<T, UpstreamError> {
        let body = self.call(Method::GET, path, None, trace).await?;
        self.decode(Method::GET, path, &body)
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        trace: &TraceContext,
    ) -> Result<T, UpstreamError> {
        let json = serde_json::to_vec(body).map_err(|e| self.bad_body(Method::POST, path, e))?;
        let body = self.call(Method::POST, path, Some(json), trace).await?;
        self.decode(Method::POST, path, &body)
    }

    pub async fn delete(&self, path: &str, trace: &TraceContext) -> Result<(), UpstreamError> {
        self.call(Method::DELETE, path, None, trace).await.map(drop)
    }

    /// Send one request; a non-2xx answer is an error carrying the status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        trace: &TraceContext,
    ) -> Result<Bytes, UpstreamError> {
        let url = self.base.join(path);
        let unreachable = |reason: String| UpstreamError::Unreachable {
            upstream: self.name,
            method: method.clone(),
            url: url.clone(),
            reason,
        };
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(header::ACCEPT, "application/json");
        for (name, value) in trace.headers() {
            builder = builder.header(name, value);
        }
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(format!("cannot build the request: {e}")))?;

        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(format!("reading the response body: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(UpstreamError::Status {
                upstream: self.name,
                method,
                url,
                status,
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
        }
        Ok(body)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
    ) -> Result<T, UpstreamError> {
        serde_json::from_slice(body).map_err(|e| self.bad_body(method, path, e))
    }

    fn bad_body(&self, method: Method, path: &str, reason: impl ToString) -> UpstreamError {
        UpstreamError::BadBody {
            upstream: self.name,
            method,
            url: self.base.join(path),
            reason: reason.to_string(),
        }
    }
}

/// hyper-util's errors say "client error (Connect)" at the top and the useful part
/// ("Connection refused") in their sources: join them.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
