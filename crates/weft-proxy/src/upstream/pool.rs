//! Connection pools per endpoint: HTTP/1 keep-alive connections (one request at a time
//! each) and one multiplexed HTTP/2 connection.
//!
//! A request sent on a pooled connection that turns out to be closed comes back unsent
//! (hyper's `try_send_request`); the caller then tries another connection without counting
//! a retry, because the upstream never saw a byte.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::outlier::lock;
use crate::http::body::ProxyBody;

/// Which protocol to speak to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
}

#[derive(Default)]
pub struct Pool {
    idle_h1: Mutex<Vec<IdleH1>>,
    h2: Mutex<Option<H2Conn>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("idle_h1", &lock(&self.idle_h1).len())
            .field("h2", &lock(&self.h2).is_some())
            .finish()
    }
}

pub struct IdleH1 {
    pub sender: http1::SendRequest<ProxyBody>,
    /// Requests already sent on this connection.
    pub served: u32,
    since: Instant,
}

#[derive(Clone)]
pub struct H2Conn {
    pub sender: http2::SendRequest<ProxyBody>,
    streams: Arc<AtomicU32>,
}

/// What a connection may still be used for.
#[derive(Debug, Clone, Copy)]
pub struct Reuse {
    /// 0 = unlimited.
    pub max_requests_per_connection: u32,
    pub idle_timeout: Option<Duration>,
}

impl Pool {
    /// An idle HTTP/1 connection that is still open, dropping stale and expired ones.
    pub fn take_h1(&self, reuse: Reuse) -> Option<IdleH1> {
        let mut idle = lock(&self.idle_h1);
        // One clock read for the whole scan, not one per idle connection.
        let now = reuse.idle_timeout.map(|_| Instant::now());
        while let Some(conn) = idle.pop() {
            let expired = reuse
                .idle_timeout
                .zip(now)
                .is_some_and(|(t, now)| now.duration_since(conn.since) >= t);
            if !expired && !conn.sender.is_closed() && conn.sender.is_ready() {
                return Some(conn);
            }
        }
        None
    }

    pub fn has_idle(&self) -> bool {
        !lock(&self.idle_h1).is_empty()
    }

    /// Closes one idle HTTP/1 connection (to free a connection slot for another endpoint).
    pub fn evict_one(&self) -> bool {
        lock(&self.idle_h1).pop().is_some()
    }

    /// Returns a connection once its response is fully read; connections that served their
    /// quota are closed instead.
    pub fn give_back(
        self: &Arc<Self>,
        mut sender: http1::SendRequest<ProxyBody>,
        served: u32,
        reuse: Reuse,
        on_idle: impl FnOnce() + Send + 'static,
    ) {
        if reuse.max_requests_per_connection != 0 && served >= reuse.max_requests_per_connection {
            return;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            if sender.ready().await.is_ok() {
                let mut idle = lock(&pool.idle_h1);
                let now = Instant::now();
                if let Some(t) = reuse.idle_timeout {
                    idle.retain(|c| now.duration_since(c.since) < t);
                }
                idle.push(IdleH1 {
                    sender,
                    served,
                    since: now,
                });
                drop(idle);
                on_idle();
            }
        });
    }

    /// The shared HTTP/2 connection, if open and under its stream quota.
    pub fn h2(&self, reuse: Reuse) -> Option<H2Conn> {
        let mut slot = lock(&self.h2);
        let usable = slot.as_ref().is_some_and(|c| {
            !c.sender.is_closed()
                && (reuse.max_requests_per_connection == 0
                    || c.streams.load(Ordering::Relaxed) < reuse.max_requests_per_connection)
        });
        if usable {
            slot.clone()
        } else {
            *slot = None;
            None
        }
    }

    pub fn set_h2(&self, sender: http2::SendRequest<ProxyBody>) -> H2Conn {
        let conn = H2Conn {
            sender,
            streams: Arc::new(AtomicU32::new(0)),
        };
        *lock(&self.h2) = Some(conn.clone());
        conn
    }

    pub fn clear_h2(&self) {
        *lock(&self.h2) = None;
    }

    pub fn move_idle_into(&self, other: &Pool) {
        let moved: Vec<IdleH1> = std::mem::take(&mut *lock(&self.idle_h1));
        lock(&other.idle_h1).extend(moved);
        if let Some(h2) = lock(&self.h2).take() {
            *lock(&other.h2) = Some(h2);
        }
    }
}

impl H2Conn {
    pub fn count_stream(&self) {
        self.streams.fetch_add(1, Ordering::Relaxed);
    }
}

/// The outcome of sending on one connection.
pub enum Sent {
    Response(Response<Incoming>),
    /// The connection was closed before the request was written; here it is back.
    Returned(Request<ProxyBody>),
    Failed(hyper::Error),
}

pub async fn send_h1(sender: &mut http1::SendRequest<ProxyBody>, req: Request<ProxyBody>) -> Sent {
    match sender.try_send_request(req).await {
        Ok(resp) => Sent::Response(resp),
        Err(mut e) => match e.take_message() {
            Some(req) => Sent::Returned(req),
            None => Sent::Failed(e.into_error()),
        },
    }
}

pub async fn send_h2(sender: &mut http2::SendRequest<ProxyBody>, req: Request<ProxyBody>) -> Sent {
    if sender.ready().await.is_err() {
        return Sent::Returned(req);
    }
    match sender.try_send_request(req).await {
        Ok(resp) => Sent::Response(resp),
        Err(mut e) => match e.take_message() {
            Some(req) => Sent::Returned(req),
            None => Sent::Failed(e.into_error()),
        },
    }
}

/// Handshakes HTTP/1 on a fresh connection; the connection task owns `slot` (released when
/// the connection ends).
pub async fn handshake_h1<IO, S: Send + 'static>(
    stream: IO,
    slot: S,
) -> Result<http1::SendRequest<ProxyBody>, hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("upstream HTTP/1 connection ended: {e}");
        }
    });
    Ok(sender)
}

pub async fn handshake_h2<IO, S: Send + 'static>(
    stream: IO,
    slot: S,
) -> Result<http2::SendRequest<ProxyBody>, hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.await {
            tracing::debug!("upstream HTTP/2 connection ended: {e}");
        }
    });
    Ok(sender)
}
