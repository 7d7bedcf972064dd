//! The HTTP data path: serve a downstream connection (HTTP/1.1 and HTTP/2), route each
//! request and forward it upstream.

pub mod body;
pub mod body_tee;
pub mod cors;
pub mod forward;
pub mod headers;
pub mod mirror;
pub mod observe;
pub mod proxy;
pub mod ratelimit;
pub mod retry;
pub mod rewrite;
pub mod route;
pub mod xfcc;

use std::convert::Infallible;
use std::sync::Arc;

use http::Response;
use http::header::{self, HeaderValue};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use weft_api::HttpChain;

use crate::error::{ERROR_HEADER, ProxyError};
use crate::{ConnInfo, RuntimeHandle};
use body::ProxyBody;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("HTTP connection from {peer} failed: {detail}")]
    Connection {
        peer: std::net::SocketAddr,
        detail: String,
    },
}

/// Serves HTTP/1.1 and HTTP/2 (prior knowledge, told apart by the preface) on an accepted
/// connection until it closes. When `drain` turns true the connection shuts down
/// gracefully: HTTP/2 sends GOAWAY, HTTP/1 answers the next response with
/// `Connection: close`; requests in flight finish.
pub async fn serve_connection<IO>(
    io: IO,
    chain: HttpChain,
    conn: ConnInfo,
    rt: RuntimeHandle,
    mut drain: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let ctx = Arc::new(proxy::ConnCtx {
        chain,
        conn,
        rt,
        drain: drain.clone(),
    });
    let service = hyper::service::service_fn(move |mut req: http::Request<_>| {
        let ctx = ctx.clone();
        xfcc::apply(req.headers_mut(), &ctx.conn);
        async move { Ok::<_, Infallible>(proxy::handle(req, ctx).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut draining = false;
    if *drain.borrow_and_update() {
        connection.as_mut().graceful_shutdown();
        draining = true;
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                return result.map_err(|e| ServeError::Connection { peer, detail: e.to_string() });
            }
            changed = drain.changed(), if !draining => {
                // A dropped sender means nobody will ask us to drain any more.
                match changed {
                    Ok(()) if *drain.borrow() => {
                        connection.as_mut().graceful_shutdown();
                        draining = true;
                    }
                    Ok(()) => {}
                    Err(_) => draining = true,
                }
            }
        }
    }
}

/// The response for an error the proxy generated: its status, `x-weft-error` and the
/// message as a plain-text body. gRPC fault aborts answer 200 with `grpc-status`.
pub fn error_response(err: &ProxyError) -> Response<ProxyBody> {
    let grpc = match err {
        ProxyError::FaultAbort {
            grpc_status: Some(code),
            ..
        } => Some(*code),
        _ => None,
    };
    let mut resp = Response::new(match grpc {
        Some(_) => body::empty(),
        None => body::full(format!("{err}\n")),
    });
    *resp.status_mut() = err.status();
    let h = resp.headers_mut();
    h.insert(ERROR_HEADER, err.header_value());
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Some(code) = grpc {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        if let Ok(v) = HeaderValue::from_str(&code.to_string()) {
            h.insert("grpc-status", v);
        }
        h.insert(
            "grpc-message",
            HeaderValue::from_static("fault filter abort"),
        );
    }
    resp
}
