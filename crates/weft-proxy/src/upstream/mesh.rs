//! The client side of the mesh tunnel: one TLS 1.3 mTLS connection per peer proxy, HTTP/2
//! inside, shared by every cluster and request going to that peer.
//!
//! Wire scheme (the server side is `listener::tunnel`):
//!
//! - HTTP: the request is sent as an HTTP/2 request on the peer connection with the
//!   `:authority` the application used, plus `x-weft-tunnel-target: <ip:port>` naming the
//!   endpoint (so the peer knows which of its ports the request is for) and, when the
//!   request would have gone to the endpoint as HTTP/1.1, `x-weft-tunnel-protocol:
//!   http/1.1` (the peer then forwards it as HTTP/1.1, as if it had arrived that way). The
//!   peer strips both before routing.
//! - Opaque TCP (and HTTP/1 upgrades): an HTTP/2 `CONNECT` stream with `:authority` =
//!   `<ip:port>`; a 200 answer opens the stream and bytes flow both ways; any other answer
//!   carries the peer's `x-weft-error`.
//!
//! The client checks that the peer's certificate carries the endpoint's SPIFFE ID. The
//! connection is made with the certificate current at connect time; after a rotation, new
//! connections use the new one and open ones carry on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::sync::watch;
use tokio_rustls::TlsConnector;

use super::endpoint::MeshPeer;
use super::pool::Proto;
use crate::http::body::{self, ProxyBody};
use crate::identity::{Identity, PeerIdentities, client_config};
use crate::telemetry::PeerMeta;
use crate::telemetry::peer::PEER_HEADER;

/// The request header naming the endpoint (`ip:port`) a tunnelled HTTP request is for.
pub const TARGET_HEADER: &str = "x-weft-tunnel-target";
/// `http/1.1` when the request is to reach the endpoint as HTTP/1.1 (absent: HTTP/2).
pub const PROTOCOL_HEADER: &str = "x-weft-tunnel-protocol";
/// The ALPN protocol of the tunnel.
pub const TUNNEL_ALPN: &[u8] = b"h2";

/// Peers whose entries are kept; beyond this, entries without a live connection go.
const MAX_PEERS: usize = 4096;
/// How often an idle tunnel is pinged, so a dead peer is noticed before a request is.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The current workload certificate, `None` until one is issued.
pub type IdentityRx = watch::Receiver<Option<Arc<Identity>>>;

/// Why sending through the tunnel failed.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("this proxy has no workload certificate ({0})")]
    NoCertificate(&'static str),
    /// TCP to the peer's tunnel port failed (counts as a connect failure).
    #[error("connect to mesh tunnel {tunnel}: {detail}")]
    Connect { tunnel: String, detail: String },
    /// The TLS handshake failed: wrong peer identity, untrusted certificate, ...
    #[error("mTLS handshake with {tunnel}{}: {detail}", expected_suffix(.expected))]
    Handshake {
        tunnel: String,
        expected: Option<String>,
        detail: String,
    },
    /// The stream failed after the connection was up.
    #[error("mesh tunnel {tunnel}: {detail}")]
    Stream { tunnel: String, detail: String },
    /// The peer refused a CONNECT; `error` is its `x-weft-error`, if any.
    #[error("peer proxy at {tunnel} answered {status} to CONNECT {target}{}", error_suffix(.error))]
    Refused {
        tunnel: String,
        target: String,
        status: StatusCode,
        error: Option<String>,
    },
}

fn expected_suffix(expected: &Option<String>) -> String {
    match expected {
        Some(id) => format!(" (expecting {id})"),
        None => String::new(),
    }
}

fn error_suffix(error: &Option<String>) -> String {
    match error {
        Some(e) => format!(": {e}"),
        None => String::new(),
    }
}

/// Counters of the client side (exported by the admin endpoint).
#[derive(Debug, Default)]
pub struct MeshStats {
    /// mTLS connections to peer proxies established.
    pub connections_total: AtomicU64,
    /// Failed attempts (TCP or TLS).
    pub connect_failures_total: AtomicU64,
    /// HTTP requests and CONNECT streams sent through tunnels.
    pub streams_total: AtomicU64,
}

type Slot = Arc<tokio::sync::Mutex<Option<http2::SendRequest<ProxyBody>>>>;

/// The proxy's mesh identity and its connections to peer proxies. One per proxy, shared by
/// every runtime (the connections outlive config reloads).
pub struct Mesh {
    identity: Option<IdentityRx>,
    peers: Mutex<HashMap<MeshPeer, Slot>>,
    pub stats: MeshStats,
    /// This proxy's workload metadata as a header value, sent with every tunnel request
    /// (see `telemetry::peer`); set when a config is applied.
    local_metadata: arc_swap::ArcSwapOption<HeaderValue>,
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh::new(None)
    }
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("identity_source", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// `identity`: the certificate watch, or `None` when the proxy has no identity source
    /// (mesh mTLS is then unavailable: auto-mTLS sends plaintext, ISTIO_MUTUAL refuses).
    pub fn new(identity: Option<IdentityRx>) -> Mesh {
        Mesh {
            identity,
            peers: Mutex::new(HashMap::new()),
            stats: MeshStats::default(),
            local_metadata: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// The metadata to announce to peer proxies from now on.
    pub fn set_local_metadata(&self, header: &HeaderValue) {
        self.local_metadata.store(Some(Arc::new(header.clone())));
    }

    fn add_local_metadata(&self, headers: &mut http::HeaderMap) {
        match self.local_metadata.load().as_deref() {
            Some(v) => headers.insert(PEER_HEADER, v.clone()),
            None => headers.remove(PEER_HEADER),
        };
    }

    /// Whether an identity source is configured (a certificate may still be pending).
    pub fn has_identity_source(&self) -> bool {
        self.identity.is_some()
    }

    /// The current certificate.
    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.identity.as_ref().and_then(|rx| rx.borrow().clone())
    }

    /// Open mTLS connections to peers.
    pub fn open_connections(&self) -> usize {
        let peers = lock(&self.peers);
        peers
            .values()
            .filter(|slot| {
                slot.try_lock()
                    .map(|s| s.as_ref().is_some_and(|c| !c.is_closed()))
                    // Locked: a connect is in progress or a request is taking the sender.
                    .unwrap_or(true)
            })
            .count()
    }

    /// Sends an HTTP request to `address` through `peer`'s tunnel. `req` is the request as
    /// it would have gone to the endpoint over `proto`. A request the connection closed
    /// before taking is sent once more on a new connection.
    pub async fn send_http(
        &self,
        peer: &MeshPeer,
        address: &str,
        req: Request<ProxyBody>,
        proto: Proto,
        connect_timeout: Duration,
    ) -> Result<Response<Incoming>, MeshError> {
        let mut req = tunnel_request(req, address, proto).map_err(|detail| MeshError::Stream {
            tunnel: peer.tunnel.clone(),
            detail,
        })?;
        self.add_local_metadata(req.headers_mut());
        for _ in 0..2 {
            let mut sender = self.sender(peer, connect_timeout).await?;
            self.stats.streams_total.fetch_add(1, Ordering::Relaxed);
            match sender.try_send_request(req).await {
                Ok(mut resp) => {
                    // The server proxy's metadata is for telemetry, not for the app.
                    if let Some(v) = resp.headers_mut().remove(PEER_HEADER)
                        && let Some(meta) = PeerMeta::from_header(&v)
                    {
                        resp.extensions_mut().insert(Arc::new(meta));
                    }
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(back) => req = back,
                    None => {
                        return Err(MeshError::Stream {
                            tunnel: peer.tunnel.clone(),
                            detail: e.into_error().to_string(),
                        });
                    }
                },
            }
        }
        Err(MeshError::Stream {
            tunnel: peer.tunnel.clone(),
            detail: "the connection closed before taking the request, twice".into(),
        })
    }

    /// Opens a `CONNECT` stream to `address` through `peer`'s tunnel: an opaque byte
    /// stream to the endpoint.
    pub async fn connect_stream(
        &self,
        peer: &MeshPeer,
        address: &str,
        connect_timeout: Duration,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, MeshError> {
        let stream_failed = |detail: String| MeshError::Stream {
            tunnel: peer.tunnel.clone(),
            detail,
        };
        let uri: Uri = address
            .parse()
            .map_err(|e| stream_failed(format!("target {address}: {e}")))?;
        let mut sender = self.sender(peer, connect_timeout).await?;
        let mut req = Request::new(body::empty());
        *req.method_mut() = Method::CONNECT;
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_2;
        self.add_local_metadata(req.headers_mut());
        self.stats.streams_total.fetch_add(1, Ordering::Relaxed);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| stream_failed(e.to_string()))?;
        if resp.status() != StatusCode::OK {
            return Err(MeshError::Refused {
                tunnel: peer.tunnel.clone(),
                target: address.to_string(),
                status: resp.status(),
                error: resp
                    .headers()
                    .get(crate::error::ERROR_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            });
        }
        let upgraded = hyper::upgrade::on(resp)
            .await
            .map_err(|e| stream_failed(format!("CONNECT stream: {e}")))?;
        Ok(TokioIo::new(upgraded))
    }

    /// The live connection to `peer`, connecting when there is none. Callers wanting the
    /// same peer at once wait for one handshake instead of making one each.
    async fn sender(
        &self,
        peer: &MeshPeer,
        connect_timeout: Duration,
    ) -> Result<http2::SendRequest<ProxyBody>, MeshError> {
        let slot = {
            let mut peers = lock(&self.peers);
            if peers.len() >= MAX_PEERS && !peers.contains_key(peer) {
                peers.retain(|_, s| {
                    s.try_lock()
                        .map(|c| c.as_ref().is_some_and(|c| !c.is_closed()))
                        .unwrap_or(true)
                });
            }
            peers.entry(peer.clone()).or_default().clone()
        };
        let mut conn = slot.lock().await;
        if let Some(sender) = conn.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        *conn = None;
        let sender = self.connect(peer, connect_timeout).await.inspect_err(|_| {
            self.stats
                .connect_failures_total
                .fetch_add(1, Ordering::Relaxed);
        })?;
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        *conn = Some(sender.clone());
        Ok(sender)
    }

    async fn connect(
        &self,
        peer: &MeshPeer,
        connect_timeout: Duration,
    ) -> Result<http2::SendRequest<ProxyBody>, MeshError> {
        let Some(rx) = &self.identity else {
            return Err(MeshError::NoCertificate("no identity source is configured"));
        };
        let identity = rx.borrow().clone().ok_or(MeshError::NoCertificate(
            "not issued yet, or expired without a replacement",
        ))?;
        let handshake_failed = |detail: String| MeshError::Handshake {
            tunnel: peer.tunnel.clone(),
            expected: peer.identity.clone(),
            detail,
        };
        let peers = match &peer.identity {
            Some(id) => PeerIdentities::OneOf(vec![id.clone()]),
            None => PeerIdentities::Any,
        };
        let mut config =
            client_config(&identity, peers).map_err(|e| handshake_failed(e.to_string()))?;
        config.alpn_protocols = vec![TUNNEL_ALPN.to_vec()];
        let connect_failed = |detail: String| MeshError::Connect {
            tunnel: peer.tunnel.clone(),
            detail,
        };
        let tcp = tokio::time::timeout(connect_timeout, async {
            let addr = super::connect::resolve(&peer.tunnel).await?;
            tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| connect_failed(format!("timed out after {connect_timeout:?}")))?
        .map_err(connect_failed)?;
        let _ = tcp.set_nodelay(true);
        let server_name = match tcp.peer_addr() {
            Ok(a) => ServerName::IpAddress(a.ip().into()),
            Err(e) => return Err(connect_failed(e.to_string())),
        };
        let tls = tokio::time::timeout(
            connect_timeout,
            TlsConnector::from(Arc::new(config)).connect(server_name, tcp),
        )
        .await
        .map_err(|_| handshake_failed(format!("timed out after {connect_timeout:?}")))?
        .map_err(|e| handshake_failed(e.to_string()))?;
        if tls.get_ref().1.alpn_protocol() != Some(TUNNEL_ALPN) {
            return Err(handshake_failed(
                "the peer did not agree to HTTP/2 (ALPN h2); is it a weft tunnel port?".into(),
            ));
        }
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(Duration::from_secs(10))
            .adaptive_window(true)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| handshake_failed(format!("HTTP/2: {e}")))?;
        let tunnel = peer.tunnel.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%tunnel, "mesh tunnel connection ended: {e}");
            }
        });
        tracing::debug!(tunnel = %peer.tunnel, identity = ?peer.identity, "mesh tunnel connected");
        Ok(sender)
    }
}

/// Turns the request as it would have gone to the endpoint into the tunnel request.
fn tunnel_request(
    mut req: Request<ProxyBody>,
    address: &str,
    proto: Proto,
) -> Result<Request<ProxyBody>, String> {
    let authority = match req.uri().authority() {
        Some(a) => a.to_string(),
        None => req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .ok_or("the request has no authority")?,
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| format!("cannot build the tunnel request URI: {e}"))?;
    *req.version_mut() = Version::HTTP_2;
    let h = req.headers_mut();
    h.remove(header::HOST);
    // Connection-specific headers are forbidden in HTTP/2.
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
    ] {
        h.remove(name);
    }
    let target = HeaderValue::from_str(address).map_err(|_| format!("bad target {address:?}"))?;
    h.insert(TARGET_HEADER, target);
    if proto == Proto::Http1 {
        h.insert(PROTOCOL_HEADER, HeaderValue::from_static("http/1.1"));
    } else {
        h.remove(PROTOCOL_HEADER);
    }
    Ok(req)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_request_carries_target_and_protocol() {
        let req = Request::builder()
            .uri("/a?b=1")
            .header(header::HOST, "cart.shop:3002")
            .header("connection", "keep-alive")
            .body(body::empty())
            .unwrap();
        let out = tunnel_request(req, "10.0.0.5:3002", Proto::Http1).unwrap();
        assert_eq!(out.uri().to_string(), "http://cart.shop:3002/a?b=1");
        assert_eq!(out.version(), Version::HTTP_2);
        assert!(out.headers().get(header::HOST).is_none());
        assert!(out.headers().get("connection").is_none());
        assert_eq!(out.headers()[TARGET_HEADER], "10.0.0.5:3002");
        assert_eq!(out.headers()[PROTOCOL_HEADER], "http/1.1");
        let req = Request::builder()
            .uri("http://cart:80/")
            .header(PROTOCOL_HEADER, "spoofed")
            .body(body::empty())
            .unwrap();
        let out = tunnel_request(req, "10.0.0.5:80", Proto::Http2).unwrap();
        assert!(out.headers().get(PROTOCOL_HEADER).is_none());
    }
}
