//! One downstream connection: find its original destination, read the first bytes when a
//! decision needs them (SNI, protocol detection), pick the filter chain and hand the
//! connection to HTTP or TCP, or to the listener's fallback.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info};
use weft_api::{Capture, ChainProtocol, Fallback, HttpChain, Listener, TcpChain};

use super::detect::{self, MAX_SNIFF_BYTES, Protocol};
use super::tcp::{self, Target, TcpError};
use super::{ListenerStats, Rewind, Shared, chain, mtls, signalled, tunnel};
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::http;
use crate::runtime::Runtime;

/// How long to wait for a ClientHello when chains differ only by SNI and no `Detect` chain
/// gives a timeout. Generous, because a TLS client always speaks first; what never sends
/// one falls through to the chains without server names.
const SNI_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a blackholed connection may take to show it is HTTP/1 (and get a 502 naming
/// the reason instead of a bare close).
const BLACKHOLE_SNIFF_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    #[error("reading the first bytes: {0}")]
    Sniff(io::Error),
    #[error("proxy draining before the client sent anything")]
    Drained,
    #[error(transparent)]
    Tcp(#[from] TcpError),
    #[error(transparent)]
    Http(#[from] http::ServeError),
    #[error("blackholed: {0}")]
    Blackholed(String),
    #[error("mTLS: {0}")]
    Mtls(String),
    #[error("mesh tunnel: {0}")]
    Tunnel(String),
}

/// The first bytes of a connection and what they look like.
pub(super) struct Sniffed {
    bytes: Bytes,
    protocol: Protocol,
    /// The client sent nothing conclusive before the timeout.
    timed_out: bool,
}

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    shared: &Arc<Shared>,
) {
    // The runtime current at accept time serves the whole connection (HTTP requests load
    // the live one per request).
    let rt = shared.rt.load_full();
    let Some(spec) = rt.config.listeners.iter().find(|l| *l.name == *name) else {
        debug!("listener no longer configured; closing");
        return;
    };
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(e) => return debug!(error = %e, "connection gone before it was classified"),
    };
    let original_dst = match spec.capture {
        Capture::Explicit => local,
        Capture::Transparent => crate::sys::original_dst(&stream, local).unwrap_or_else(|e| {
            debug!(error = %e, "no SO_ORIGINAL_DST (not redirected?); using the local address");
            local
        }),
    };
    let mut conn = ConnInfo {
        listener: name,
        direction: spec.direction,
        peer,
        original_dst,
        local,
        sni: None,
        peer_identity: None,
        local_identity: None,
    };
    match handle(stream, spec, &mut conn, &rt, shared).await {
        Ok(()) => debug!("closed"),
        Err(ConnError::Drained) => debug!("closed: draining"),
        Err(e) => {
            ListenerStats::inc(&shared.stats.connection_errors_total);
            info!(error = %e, dst = %conn.original_dst, "connection failed");
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    spec: &Listener,
    conn: &mut ConnInfo,
    rt: &Runtime,
    shared: &Arc<Shared>,
) -> Result<(), ConnError> {
    let candidates = chain::candidates(&spec.chains, conn.original_dst);
    let mut sniffed = None;
    if chain::needs_sni(&candidates) {
        let timeout = candidates
            .iter()
            .filter_map(|c| match &c.protocol {
                ChainProtocol::Detect { timeout, .. } if !timeout.is_zero() => Some(*timeout),
                _ => None,
            })
            .min()
            .unwrap_or(SNI_TIMEOUT);
        sniffed = Some(sniff_conn(&mut stream, Some(timeout), shared).await?);
    }
    conn.sni = sniffed
        .as_ref()
        .and_then(|s| s.protocol.sni().map(str::to_string));
    let Some(chosen) = chain::select(&candidates, conn.sni.as_deref()) else {
        debug!(dst = %conn.original_dst, sni = ?conn.sni, "no filter chain matches");
        return fallback(stream, sniffed, &spec.fallback, conn, rt, shared).await;
    };
    debug!(chain = %chosen.name, "filter chain");
    if let Some(mode) = mtls::terminating_mode(chosen) {
        let first = match sniffed.take() {
            Some(s) => s,
            None => {
                let timeout = mtls::hello_timeout(mode, chosen);
                sniff_conn(&mut stream, timeout, shared).await?
            }
        };
        if matches!(first.protocol, Protocol::Tls { .. }) && mtls::terminates(mode, &first.bytes) {
            return mtls::serve_tls(stream, first.bytes, chosen, conn, rt, shared).await;
        }
        if mode == weft_api::MtlsMode::Strict {
            mtls::refuse_plaintext(chosen, conn, shared);
            return Ok(());
        }
        conn.sni = first.protocol.sni().map(str::to_string);
        sniffed = Some(first);
    }
    match &chosen.protocol {
        ChainProtocol::Http(http) => serve_http(stream, prefix(&sniffed), http, conn, shared).await,
        ChainProtocol::Tcp(tcp) => serve_tcp(stream, prefix(&sniffed), tcp, conn, rt, shared).await,
        ChainProtocol::TlsPassthrough(tls) => {
            let sniffed = match sniffed {
                Some(s) => s,
                None => sniff_conn(&mut stream, Some(SNI_TIMEOUT), shared).await?,
            };
            conn.sni = sniffed.protocol.sni().map(str::to_string);
            let route =
                tcp::sni_route(tls, conn.sni.as_deref()).ok_or_else(|| TcpError::NoSniRoute {
                    sni: conn.sni.clone(),
                })?;
            let target = tcp::pick_weighted(&route.clusters, &mut fastrand::Rng::new())
                .ok_or(TcpError::NoCluster)?;
            let own = shared.own_addrs.load();
            let target = Target::Cluster(&target.cluster);
            Ok(tcp::forward(stream, &sniffed.bytes, target, None, conn, rt, &own).await?)
        }
        ChainProtocol::Tunnel(t) => tunnel::serve(stream, &t.inbound_listeners, conn, shared).await,
        ChainProtocol::Detect { http, tcp, timeout } => match sniffed {
            Some(s) => serve_sniffed(stream, s, http, tcp, conn, rt, shared).await,
            None => serve_detect(stream, http, tcp, *timeout, conn, rt, shared).await,
        },
    }
}

/// Detect HTTP or TCP on `io` (read with the chain's timeout; zero means none, as Istio's
/// `protocolDetectionTimeout: 0s`) and serve it.
pub(super) async fn serve_detect<IO>(
    mut io: IO,
    http: &HttpChain,
    tcp: &TcpChain,
    timeout: Duration,
    conn: &mut ConnInfo,
    rt: &Runtime,
    shared: &Arc<Shared>,
) -> Result<(), ConnError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = Some(timeout).filter(|t| !t.is_zero());
    let sniffed = sniff_with_drain(&mut io, timeout, shared.drain.clone()).await?;
    serve_sniffed(io, sniffed, http, tcp, conn, rt, shared).await
}

async fn serve_sniffed<IO>(
    io: IO,
    sniffed: Sniffed,
    http: &HttpChain,
    tcp: &TcpChain,
    conn: &mut ConnInfo,
    rt: &Runtime,
    shared: &Arc<Shared>,
) -> Result<(), ConnError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if sniffed.timed_out {
        ListenerStats::inc(&shared.stats.detect_timeouts_total);
    }
    if conn.peer_identity.is_none() {
        conn.sni = sniffed.protocol.sni().map(str::to_string);
    }
    debug!(protocol = ?sniffed.protocol, timed_out = sniffed.timed_out, "detected");
    if sniffed.protocol.is_http() {
        serve_http(io, sniffed.bytes, http, conn, shared).await
    } else {
        serve_tcp(io, sniffed.bytes, tcp, conn, rt, shared).await
    }
}

fn prefix(sniffed: &Option<Sniffed>) -> Bytes {
    sniffed
        .as_ref()
        .map(|s| s.bytes.clone())
        .unwrap_or_default()
}

pub(super) async fn serve_http<IO>(
    stream: IO,
    prefix: Bytes,
    chain: &HttpChain,
    conn: &ConnInfo,
    shared: &Shared,
) -> Result<(), ConnError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = Rewind::new(prefix, stream);
    http::serve_connection(
        io,
        chain.clone(),
        conn.clone(),
        shared.rt.clone(),
        shared.drain.clone(),
    )
    .await?;
    Ok(())
}

pub(super) async fn serve_tcp<IO>(
    stream: IO,
    prefix: Bytes,
    chain: &TcpChain,
    conn: &ConnInfo,
    rt: &Runtime,
    shared: &Shared,
) -> Result<(), ConnError>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let target = tcp::tcp_target(chain, &mut fastrand::Rng::new())?;
    let own = shared.own_addrs.load();
    let res = tcp::forward(stream, &prefix, target, chain.idle_timeout, conn, rt, &own).await;
    count_loop(&res, shared);
    Ok(res?)
}

async fn fallback(
    mut stream: TcpStream,
    sniffed: Option<Sniffed>,
    fallback: &Fallback,
    conn: &ConnInfo,
    rt: &Runtime,
    shared: &Shared,
) -> Result<(), ConnError> {
    match fallback {
        Fallback::Passthrough => {
            let own = shared.own_addrs.load();
            let prefix = prefix(&sniffed);
            let res = tcp::forward(stream, &prefix, Target::OriginalDst, None, conn, rt, &own);
            let res = res.await;
            count_loop(&res, shared);
            Ok(res?)
        }
        Fallback::Blackhole { reason } => {
            ListenerStats::inc(&shared.stats.blackholed_total);
            let sniffed = match sniffed {
                Some(s) => s,
                None => sniff_conn(&mut stream, Some(BLACKHOLE_SNIFF_TIMEOUT), shared).await?,
            };
            if sniffed.protocol == Protocol::Http1 {
                answer_blocked(&mut stream, reason).await;
            }
            Err(ConnError::Blackholed(reason.clone()))
        }
    }
}

fn count_loop(res: &Result<(), TcpError>, shared: &Shared) {
    if matches!(res, Err(TcpError::Loop { .. })) {
        ListenerStats::inc(&shared.stats.passthrough_loops_total);
    }
}

/// Answer an HTTP/1 client that reached a blackhole with a 502 naming why, then close.
async fn answer_blocked(stream: &mut TcpStream, reason: &str) {
    let err = ProxyError::BlockedByPolicy {
        reason: reason.to_string(),
    };
    let body = format!("{err}\n");
    let header = err.header_value();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n{}: ",
        err.status().as_u16(),
        err.status().canonical_reason().unwrap_or(""),
        body.len(),
        crate::error::ERROR_HEADER,
    );
    let mut response = head.into_bytes();
    response.extend_from_slice(header.as_bytes());
    response.extend_from_slice(b"\r\n\r\n");
    response.extend_from_slice(body.as_bytes());
    if stream.write_all(&response).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    // Read what the client still sends (its request body) for a moment, so closing with
    // unread data does not reset the connection before the client has read the answer.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(BLACKHOLE_SNIFF_TIMEOUT, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Read the first bytes until they tell the protocol, the timeout passes (`None`: wait as
/// long as it takes), the client closes, or the proxy starts draining.
async fn sniff_conn(
    stream: &mut TcpStream,
    timeout: Option<Duration>,
    shared: &Shared,
) -> Result<Sniffed, ConnError> {
    sniff_with_drain(stream, timeout, shared.drain.clone()).await
}

pub(super) async fn sniff_with_drain<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Option<Duration>,
    drain: watch::Receiver<bool>,
) -> Result<Sniffed, ConnError> {
    tokio::select! {
        r = sniff(stream, timeout) => r.map_err(ConnError::Sniff),
        () = signalled(drain) => Err(ConnError::Drained),
    }
}

async fn sniff<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Option<Duration>,
) -> io::Result<Sniffed> {
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if let Some(protocol) = detect::sniff(&buf) {
            return Ok(sniffed(buf, protocol, false));
        }
        if buf.len() >= MAX_SNIFF_BYTES {
            break;
        }
        buf.reserve(1024);
        let read = stream.read_buf(&mut buf);
        let n = match deadline {
            None => read.await?,
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(r) => r?,
                Err(_) => {
                    let protocol = detect::sniff_final(&buf);
                    return Ok(sniffed(buf, protocol, true));
                }
            },
        };
        if n == 0 {
            break;
        }
    }
    let protocol = detect::sniff_final(&buf);
    Ok(sniffed(buf, protocol, false))
}

fn sniffed(buf: BytesMut, protocol: Protocol, timed_out: bool) -> Sniffed {
    Sniffed {
        bytes: buf.freeze(),
        protocol,
        timed_out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn silent_client_times_out_into_opaque() {
        let (_client, mut server) = tokio::io::duplex(64);
        let (_tx, drain) = watch::channel(false);
        let s = sniff_with_drain(&mut server, Some(Duration::from_millis(100)), drain)
            .await
            .unwrap();
        assert!(s.timed_out);
        assert_eq!(s.protocol, Protocol::Opaque);
        assert!(s.bytes.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn request_line_in_pieces_is_http() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let (_tx, drain) = watch::channel(false);
        let task = tokio::spawn(async move {
            sniff_with_drain(&mut server, Some(Duration::from_secs(1)), drain).await
        });
        client.write_all(b"GET /a").await.unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        client.write_all(b" HTTP/1.1\r\nhost: x\r\n").await.unwrap();
        let s = task.await.unwrap().unwrap();
        assert_eq!(s.protocol, Protocol::Http1);
        assert!(!s.timed_out);
        assert_eq!(&s.bytes[..], b"GET /a HTTP/1.1\r\nhost: x\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn partial_bytes_at_timeout_are_opaque_and_kept() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let (_tx, drain) = watch::channel(false);
        client.write_all(b"GE").await.unwrap();
        let s = sniff_with_drain(&mut server, Some(Duration::from_secs(1)), drain)
            .await
            .unwrap();
        assert!(s.timed_out);
        assert_eq!(s.protocol, Protocol::Opaque);
        assert_eq!(&s.bytes[..], b"GE");
    }

    #[tokio::test]
    async fn drain_stops_waiting() {
        let (_client, mut server) = tokio::io::duplex(64);
        let (tx, drain) = watch::channel(false);
        let task = tokio::spawn(async move { sniff_with_drain(&mut server, None, drain).await });
        tx.send_replace(true);
        assert!(matches!(task.await.unwrap(), Err(ConnError::Drained)));
    }
}
