//! A stand-in application for `weft up` tests (built with the tests, never installed).
//!
//! Listens on `$HOST:$PORT` (HTTP/1.1). `GET /call/<host:port>/<path>` sends
//! `GET http://<host:port>/<path>` through `$HTTP_PROXY` (the mesh), or, without
//! `$HTTP_PROXY`, straight to `<host:port>` resolved by the system (`weft up --netns`:
//! the capture takes it into the mesh), and answers with what came back: status, body
//! and the `x-weft-error` header. Any other request is answered
//! with JSON: the replica (`$WEFT_REPLICA`), `$VERSION`, the pid, `$HTTP_PROXY`, the path
//! and the request headers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

type Body = Full<Bytes>;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

async fn call(target: &str) -> Response<Body> {
    let (authority, path) = match target.split_once('/') {
        Some((a, p)) => (a.to_string(), format!("/{p}")),
        None => (target.to_string(), "/".to_string()),
    };
    let proxy = env("HTTP_PROXY");
    let proxy = proxy.trim_start_matches("http://").trim_end_matches('/');
    let direct = proxy.is_empty();
    let proxy_addr = match proxy.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) if direct => None,
        Err(_) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("HTTP_PROXY `{proxy}` is not ip:port"),
            );
        }
    };
    let via = if direct { authority.as_str() } else { proxy };
    let result = async {
        let stream = match proxy_addr {
            Some(a) => TcpStream::connect(a).await?,
            // `lookup_host` resolves as the system does (/etc/hosts first).
            None => TcpStream::connect(authority.as_str()).await?,
        };
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        // Absolute-form request target for a proxy, origin-form for the server itself.
        let uri = if direct {
            path.clone()
        } else {
            format!("http://{authority}{path}")
        };
        let req = Request::builder()
            .uri(uri)
            .header("host", &authority)
            .body(Empty::<Bytes>::new())?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let error = resp
            .headers()
            .get("x-weft-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, error, body))
    }
    .await;
    match result {
        Ok((status, error, body)) => {
            let mut r = Response::new(Full::new(body));
            *r.status_mut() = status;
            if let Some(e) = error.and_then(|e| e.parse().ok()) {
                r.headers_mut().insert("x-weft-error", e);
            }
            r
        }
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("call through {via} failed: {e}"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if let Some(target) = req.uri().path().strip_prefix("/call/") {
        return Ok(call(target).await);
    }
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = serde_json::json!({
        "replica": env("WEFT_REPLICA"),
        "version": env("VERSION"),
        "pid": std::process::id(),
        "http_proxy": env("HTTP_PROXY"),
        "path": req.uri().path(),
        "headers": headers,
    });
    Ok(Response::new(Full::new(Bytes::from(body.to_string()))))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = env("PORT");
    let listener = TcpListener::bind(format!("{host}:{port}")).await?;
    eprintln!("up_echo listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                .await;
        });
    }
}
