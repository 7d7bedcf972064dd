//! The server side of the mesh tunnel (port 15008): TLS 1.3 with the mesh certificate, a
//! client certificate required, HTTP/2 inside. Each stream is dispatched to the inbound
//! chain of the port it names, as if it had arrived on that port, with the client's SPIFFE
//! ID recorded in [`ConnInfo::peer_identity`]:
//!
//! - `CONNECT <ip:port>`: an opaque stream. TCP chains connect upstream first (a failure is
//!   answered with its `x-weft-error`), then answer 200 and copy bytes; HTTP and detecting
//!   chains answer 200 and serve the stream as a connection to that port.
//! - any other request: an HTTP request for the port named by `x-weft-tunnel-target`, routed
//!   by that port's HTTP chain (`x-weft-tunnel-protocol: http/1.1` makes it an HTTP/1.1
//!   request again). Both headers are removed before routing.
//!
//! See `upstream::mesh` for the client side.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, debug_span, info};
use weft_api::{ChainProtocol, Fallback, FilterChain, Listener, ProxyConfig, TunnelTarget};

use super::conn::{ConnError, serve_detect, serve_http};
use super::mtls::accept;
use super::tcp::{self, TcpError};
use super::tcp_observe::TcpObs;
use super::{ListenerStats, Shared, chain};
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::http::body::{self, ProxyBody};
use crate::http::proxy::{self, ConnCtx};
use crate::http::{error_response, xfcc};
use crate::telemetry::PeerMeta;
use crate::telemetry::peer::PEER_HEADER;
use crate::upstream::mesh::{PROTOCOL_HEADER, TARGET_HEADER};

/// What every stream of one tunnel connection shares.
struct Tunnel {
    /// The inbound listeners whose chains serve the streams.
    targets: Vec<TunnelTarget>,
    /// The tunnel listener itself (its fallback takes streams no target takes).
    own_listener: Arc<str>,
    /// The tunnel connection: peer, identities; `listener` and `original_dst` are set per
    /// stream.
    base: ConnInfo,
    shared: Arc<Shared>,
}

/// Serves one accepted tunnel connection until it closes or the proxy drains.
pub(super) async fn serve(
    stream: TcpStream,
    targets: &[TunnelTarget],
    conn: &mut ConnInfo,
    shared: &Arc<Shared>,
) -> Result<(), ConnError> {
    let Some(identity) = shared.mesh.identity() else {
        ListenerStats::inc(&shared.stats.mtls_handshake_failures_total);
        return Err(ConnError::Tunnel(
            "a peer connected but this proxy has no workload certificate yet".into(),
        ));
    };
    let (config, _) = shared
        .server_tls
        .configs(&identity)
        .map_err(ConnError::Tunnel)?;
    let accepted = match accept(stream, config).await {
        Ok(a) => a,
        Err(e) => {
            ListenerStats::inc(&shared.stats.mtls_handshake_failures_total);
            return Err(ConnError::Tunnel(e));
        }
    };
    ListenerStats::inc(&shared.stats.tunnel_connections_total);
    conn.peer_identity = Some(accepted.peer_identity);
    conn.local_identity = Some(Arc::from(identity.spiffe_id.as_str()));
    debug!(peer_identity = ?conn.peer_identity, "mesh tunnel accepted");
    let tunnel = Arc::new(Tunnel {
        targets: targets.to_vec(),
        own_listener: conn.listener.clone(),
        base: conn.clone(),
        shared: shared.clone(),
    });
    let service = hyper::service::service_fn(move |req| {
        let tunnel = tunnel.clone();
        async move { Ok::<_, Infallible>(stream_request(req, tunnel).await) }
    });
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .adaptive_window(true)
        .serve_connection(TokioIo::new(accepted.stream), service);
    tokio::pin!(connection);
    let mut drain = shared.drain.clone();
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                return result.map_err(|e| ConnError::Tunnel(e.to_string()));
            }
            changed = drain.changed(), if !draining => {
                if changed.is_err() || *drain.borrow() {
                    // GOAWAY: streams in flight finish, the peer opens new connections.
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

async fn stream_request(mut req: Request<Incoming>, tunnel: Arc<Tunnel>) -> Response<ProxyBody> {
    ListenerStats::inc(&tunnel.shared.stats.tunnel_streams_total);
    // The client proxy's metadata (telemetry's source labels): taken off the request so the
    // app never sees it, kept as an extension for the telemetry of this stream.
    if let Some(v) = req.headers_mut().remove(PEER_HEADER)
        && let Some(meta) = PeerMeta::from_header(&v)
    {
        req.extensions_mut().insert(Arc::new(meta));
    }
    let result = if req.method() == Method::CONNECT {
        connect_stream(req, &tunnel).await
    } else {
        http_stream(req, &tunnel).await
    };
    let mut resp = result.unwrap_or_else(|e| error_response(&e));
    let local = tunnel.shared.rt.load().telemetry().local_header().clone();
    resp.headers_mut().insert(PEER_HEADER, local);
    resp
}

fn bad(detail: String) -> ProxyError {
    ProxyError::BadRequest { detail }
}

/// The listener serving a stream to `target` and its chain: the first target entry whose
/// port is the target's (or absent), matched as a connection to `target`; `None` as chain
/// means that listener's fallback. No entry: the tunnel listener's own fallback.
fn find_chain<'a>(
    config: &'a ProxyConfig,
    tunnel: &Tunnel,
    target: SocketAddr,
) -> Option<(&'a Listener, Option<&'a FilterChain>)> {
    let entry = tunnel
        .targets
        .iter()
        .find(|t| t.port.is_none_or(|p| p == target.port()));
    let name = entry.map_or(&*tunnel.own_listener, |e| e.listener.as_str());
    let listener = config.listeners.iter().find(|l| l.name == name)?;
    if entry.is_none() {
        return Some((listener, None));
    }
    let candidates = chain::candidates(&listener.chains, target);
    Some((listener, chain::select(&candidates, None)))
}

fn stream_conn(tunnel: &Tunnel, listener: &Listener, target: SocketAddr) -> ConnInfo {
    ConnInfo {
        listener: Arc::from(listener.name.as_str()),
        direction: listener.direction,
        original_dst: target,
        ..tunnel.base.clone()
    }
}

async fn http_stream(
    mut req: Request<Incoming>,
    tunnel: &Tunnel,
) -> Result<Response<ProxyBody>, ProxyError> {
    let headers = req.headers_mut();
    let target = headers
        .remove(TARGET_HEADER)
        .ok_or_else(|| bad(format!("tunnelled request without {TARGET_HEADER}")))?;
    let target: SocketAddr = target
        .to_str()
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| bad(format!("{TARGET_HEADER} is not ip:port")))?;
    let http1 = headers
        .remove(PROTOCOL_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"http/1.1"));
    if http1 {
        as_http1(&mut req)?;
    }
    let rt = tunnel.shared.rt.load_full();
    let not_http = |name: &str| ProxyError::NoRoute {
        authority: format!(
            "{target} (port {} of this workload is not HTTP: {name})",
            target.port()
        ),
        path: String::new(),
        blocked: false,
    };
    let (listener, chain) =
        find_chain(&rt.config, tunnel, target).ok_or_else(|| not_http("no inbound listener"))?;
    let chain = chain.ok_or_else(|| not_http("no chain"))?;
    let http = match &chain.protocol {
        ChainProtocol::Http(h) | ChainProtocol::Detect { http: h, .. } => h.clone(),
        _ => return Err(not_http(&chain.name)),
    };
    let conn = stream_conn(tunnel, listener, target);
    xfcc::apply(req.headers_mut(), &conn);
    let ctx = Arc::new(ConnCtx {
        chain: http,
        conn,
        rt: tunnel.shared.rt.clone(),
        drain: tunnel.shared.drain.clone(),
    });
    Ok(proxy::handle(req, ctx).await)
}

/// Back to the HTTP/1.1 form the client sidecar would have sent to the endpoint.
fn as_http1(req: &mut Request<Incoming>) -> Result<(), ProxyError> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .ok_or_else(|| bad("tunnelled request without :authority".into()))?;
    let host = HeaderValue::from_str(&authority).map_err(|_| bad("bad :authority".into()))?;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = path
        .parse::<Uri>()
        .map_err(|e| bad(format!("bad path: {e}")))?;
    *req.version_mut() = Version::HTTP_11;
    req.headers_mut().insert(header::HOST, host);
    Ok(())
}

async fn connect_stream(
    mut req: Request<Incoming>,
    tunnel: &Tunnel,
) -> Result<Response<ProxyBody>, ProxyError> {
    let target: SocketAddr = req
        .uri()
        .authority()
        .and_then(|a| a.as_str().parse().ok())
        .ok_or_else(|| bad(format!("CONNECT target {} is not ip:port", req.uri())))?;
    let rt = tunnel.shared.rt.load_full();
    let (listener, chain) = find_chain(&rt.config, tunnel, target).ok_or_else(|| {
        bad(format!(
            "no listener for port {} in this config",
            target.port()
        ))
    })?;
    let mut conn = stream_conn(tunnel, listener, target);
    let peer = req.extensions().get::<Arc<PeerMeta>>().cloned();
    let upgrade = hyper::upgrade::on(&mut req);
    let shared = tunnel.shared.clone();
    let span = debug_span!("tunnel_stream", %target, chain = chain.map(|c| c.name.as_str()));
    let protocol = match chain {
        Some(c) => c.protocol.clone(),
        None => match &listener.fallback {
            Fallback::Passthrough => ChainProtocol::Tcp(Default::default()),
            Fallback::Blackhole { reason } => {
                return Err(ProxyError::BlockedByPolicy {
                    reason: reason.clone(),
                });
            }
        },
    };
    match protocol {
        ChainProtocol::Tcp(tcp_chain) => {
            let own = shared.own_addrs.load_full();
            let target_of =
                tcp::tcp_target(&tcp_chain, &mut fastrand::Rng::new()).map_err(tcp_error)?;
            let mut obs = TcpObs::begin(&rt, &conn, &target_of, peer);
            let (upstream, guard) = match tcp::connect_target(target_of, &conn, &rt, &own).await {
                Ok(c) => c,
                Err(e) => {
                    let e = Err(e);
                    obs.closed(&e);
                    return Err(e.map_err(tcp_error).unwrap_err());
                }
            };
            let idle = tcp_chain.idle_timeout;
            tokio::spawn(
                async move {
                    let _guard = guard;
                    let down = match upgrade.await {
                        Ok(u) => TokioIo::new(u),
                        Err(e) => {
                            let ended = Err(TcpError::Io(std::io::Error::other(e.to_string())));
                            obs.closed(&ended);
                            return debug!("CONNECT stream not opened: {e}");
                        }
                    };
                    let result = tcp::pipe(down, upstream, b"", idle, &mut obs).await;
                    if let Err(e) = &result {
                        debug!(error = %e, "tunnelled TCP ended");
                    }
                    obs.closed(&result);
                }
                .instrument(span),
            );
        }
        ChainProtocol::Http(http) => {
            tokio::spawn(
                async move {
                    let Ok(io) = upgrade.await.map(TokioIo::new) else {
                        return;
                    };
                    if let Err(e) = serve_http(io, bytes::Bytes::new(), &http, &conn, &shared).await
                    {
                        debug!(error = %e, "tunnelled HTTP connection ended");
                    }
                }
                .instrument(span),
            );
        }
        ChainProtocol::Detect { http, tcp, timeout } => {
            tokio::spawn(
                async move {
                    let Ok(io) = upgrade.await.map(TokioIo::new) else {
                        return;
                    };
                    let rt = shared.rt.load_full();
                    let res = serve_detect(io, &http, &tcp, timeout, &mut conn, &rt, &shared).await;
                    if let Err(e) = res {
                        debug!(error = %e, "tunnelled connection ended");
                    }
                }
                .instrument(span),
            );
        }
        ChainProtocol::TlsPassthrough(_) | ChainProtocol::Tunnel(_) => {
            info!(%target, "CONNECT to a port whose chain takes no tunnelled streams");
            return Err(bad(format!(
                "port {} takes no tunnelled streams",
                target.port()
            )));
        }
    }
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

fn tcp_error(e: TcpError) -> ProxyError {
    match e {
        TcpError::Upstream(p) => p,
        other => ProxyError::UpstreamConnectFailed {
            cluster: "inbound".into(),
            detail: other.to_string(),
        },
    }
}
