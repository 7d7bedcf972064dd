//! Helpers for the shop's tests: run services in-process on 127.0.0.1:0, call them, and a
//! recording forward proxy standing in for the mesh's explicit-mode sidecar.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use weft_shop::config::{ConfigError, Env};
use weft_shop::server::{App, Running};

pub const PATIENCE: Duration = Duration::from_secs(20);

/// Start a service built from `env` on an ephemeral loopback port, and wait until ready.
pub async fn start(build: fn(&Env) -> Result<App, ConfigError>, env: Env) -> Running {
    let app = build(&env).expect("valid configuration");
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let running = Running::spawn(listener, app.into_router()).unwrap();
    let url = format!("{}/ready", running.url());
    weft_testkit::wait::eventually("service ready", PATIENCE, || {
        let url = url.clone();
        async move {
            matches!(
                call(Method::GET, &url, None).await,
                Ok((StatusCode::OK, ..))
            )
        }
    })
    .await;
    running
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

/// One request with a JSON body; an empty response body reads as `Value::Null`.
pub async fn call(
    method: Method,
    url: &str,
    body: Option<Value>,
) -> Result<(StatusCode, HeaderMap, Value), String> {
    call_with(method, url, &HeaderMap::new(), body)
        .await
        .map(|r| (r.status, r.headers, r.json))
}

pub async fn call_with(
    method: Method,
    url: &str,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Result<Reply, String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = request
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&bytes)))?
    };
    Ok(Reply {
        status,
        headers,
        json,
    })
}

/// `call`, panicking with the URL on transport errors (the service under test is local).
pub async fn must(method: Method, url: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, _, json) = call(method.clone(), url, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    (status, json)
}

/// A request the proxy received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// As received: absolute form (`http://product:3001/products/1`) from a proxy client.
    pub uri: Uri,
    pub headers: HeaderMap,
}

/// A forward HTTP proxy that records each request and forwards it to the address it maps
/// the request's host to (as the mesh resolves service names the app cannot).
pub struct RecordingProxy {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingProxy {
    pub async fn start(hosts: HashMap<String, SocketAddr>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let hosts = Arc::new(hosts);
        let recorded = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, hosts) = (recorded.clone(), hosts.clone());
                let service = hyper::service::service_fn(move |req| {
                    forward(req, seen.clone(), hosts.clone())
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        RecordingProxy { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn forward(
    request: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    hosts: Arc<HashMap<String, SocketAddr>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        headers: parts.headers.clone(),
    });
    let reply = |status: StatusCode, text: String| {
        Ok(Response::builder()
            .status(status)
            .body(Full::new(Bytes::from(text)))
            .unwrap())
    };
    let Some(target) = parts.uri.host().and_then(|h| hosts.get(h)) else {
        return reply(
            StatusCode::BAD_GATEWAY,
            format!("proxy: unknown host in {}", parts.uri),
        );
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut upstream = Request::builder()
        .method(parts.method)
        .uri(format!("http://{target}{path}"));
    for (name, value) in &parts.headers {
        upstream = upstream.header(name, value);
    }
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    match client
        .request(upstream.body(Full::new(body)).unwrap())
        .await
    {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        Err(e) => reply(StatusCode::BAD_GATEWAY, format!("proxy: {e}")),
    }
}
