//! Server-side mesh TLS: the rustls configs built from the current workload certificate,
//! the handshake, and PeerAuthentication on inbound service ports.
//!
//! - STRICT: a connection that does not start with a TLS ClientHello is closed, counted
//!   (`weft_inbound_plaintext_refused_total`) and logged with its source address; a
//!   ClientHello is terminated with the mesh certificate (client certificate required) and
//!   the chain is served inside.
//! - PERMISSIVE: a ClientHello offering a mesh ALPN protocol (`istio`, `istio-peer-exchange`,
//!   `istio-h2`, `istio-http/1.x`, `weft-mesh`: what mesh clients send, as Istio's sidecars
//!   tell them apart) is terminated the same way; plaintext, and TLS the application
//!   serves itself, pass as they are.
//! - DISABLE: nothing changes (TLS bytes reach the application untouched).
//!
//! Configs are cached per certificate: after a rotation new handshakes use the new one,
//! connections already open keep theirs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};
use weft_api::{ChainProtocol, FilterChain, MtlsMode};

use super::conn::{ConnError, serve_detect, serve_http, serve_tcp};
use super::{ListenerStats, Rewind, Shared};
use crate::ConnInfo;
use crate::identity::{Identity, peer_spiffe_id, server_config};
use crate::runtime::Runtime;

/// How long a TLS handshake may take once the ClientHello arrived.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// STRICT ports: how long to wait for the ClientHello before calling the client plaintext.
pub const STRICT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// PERMISSIVE TCP ports: how long to wait for a first byte before serving plaintext
/// (server-first protocols see this delay; declare the port STRICT or DISABLE to avoid it).
pub const PERMISSIVE_TCP_TIMEOUT: Duration = Duration::from_secs(1);

/// ALPN of the mesh tunnel.
const TUNNEL_ALPN: &[&[u8]] = &[b"h2"];
/// ALPN protocols that mark a mesh client on a service port (Istio's, and weft's own).
const MESH_ALPN: &[&[u8]] = &[
    b"weft-mesh",
    b"istio",
    b"istio-peer-exchange",
    b"istio-h2",
    b"istio-http/1.1",
    b"istio-http/1.0",
];

/// ALPN on service ports: what mesh clients (weft or Istio sidecars) may offer. The inner
/// protocol is sniffed anyway.
const SERVICE_ALPN: &[&[u8]] = &[
    b"h2",
    b"http/1.1",
    b"weft-mesh",
    b"istio",
    b"istio-peer-exchange",
    b"istio-h2",
    b"istio-http/1.1",
    b"istio-http/1.0",
];

struct Cached {
    identity: Arc<Identity>,
    tunnel: Arc<ServerConfig>,
    service: Arc<ServerConfig>,
}

/// Server configs for the current certificate.
#[derive(Default)]
pub struct ServerTls {
    cached: Mutex<Option<Cached>>,
}

impl ServerTls {
    /// `(tunnel, service port)` configs presenting `identity`.
    pub fn configs(
        &self,
        identity: &Arc<Identity>,
    ) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), String> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached
            .as_ref()
            .filter(|c| Arc::ptr_eq(&c.identity, identity))
        {
            return Ok((c.tunnel.clone(), c.service.clone()));
        }
        let build = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, String> {
            let mut config = server_config(identity).map_err(|e| e.to_string())?;
            config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
            Ok(Arc::new(config))
        };
        let fresh = Cached {
            identity: identity.clone(),
            tunnel: build(TUNNEL_ALPN)?,
            service: build(SERVICE_ALPN)?,
        };
        let out = (fresh.tunnel.clone(), fresh.service.clone());
        *cached = Some(fresh);
        Ok(out)
    }
}

/// A terminated mTLS connection and the client's SPIFFE ID.
pub struct Accepted<IO> {
    pub stream: TlsStream<IO>,
    pub peer_identity: Arc<str>,
}

/// The TLS handshake as a server requiring a mesh client certificate with a SPIFFE ID.
pub async fn accept<IO>(io: IO, config: Arc<ServerConfig>) -> Result<Accepted<IO>, String>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(io))
        .await
        .map_err(|_| format!("TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}"))?
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(peer_spiffe_id)
        .ok_or("the client certificate carries no SPIFFE ID")?;
    Ok(Accepted {
        stream,
        peer_identity: Arc::from(peer),
    })
}

/// The PeerAuthentication mode that makes the proxy look for TLS on this chain: STRICT or
/// PERMISSIVE on a chain that serves plaintext protocols.
pub(super) fn terminating_mode(chain: &FilterChain) -> Option<MtlsMode> {
    let mode = chain.mtls.as_ref()?.mode;
    let plaintext_chain = matches!(
        chain.protocol,
        ChainProtocol::Http(_) | ChainProtocol::Tcp(_) | ChainProtocol::Detect { .. }
    );
    (mode != MtlsMode::Disable && plaintext_chain).then_some(mode)
}

/// How long to wait for the first bytes on a chain under `mode`; `None`: until they come.
pub(super) fn hello_timeout(mode: MtlsMode, chain: &FilterChain) -> Option<Duration> {
    match (mode, &chain.protocol) {
        (MtlsMode::Strict, _) => Some(STRICT_HELLO_TIMEOUT),
        // Zero: wait as long as it takes (Istio's `protocolDetectionTimeout: 0s`).
        (_, ChainProtocol::Detect { timeout, .. }) => Some(*timeout).filter(|t| !t.is_zero()),
        (_, ChainProtocol::Http(_)) => None,
        _ => Some(PERMISSIVE_TCP_TIMEOUT),
    }
}

/// Whether the first bytes are a ClientHello the proxy terminates under `mode`: any under
/// STRICT; under PERMISSIVE only one offering a mesh ALPN protocol, so that applications
/// serving TLS themselves on a PERMISSIVE port (the mesh default) keep working.
pub(super) fn terminates(mode: MtlsMode, hello: &[u8]) -> bool {
    match mode {
        MtlsMode::Strict => true,
        MtlsMode::Disable => false,
        MtlsMode::Permissive => super::detect::client_hello_alpn(hello)
            .is_some_and(|offered| offered.iter().any(|p| MESH_ALPN.contains(&p.as_slice()))),
    }
}

/// STRICT and the client spoke plaintext: count, log, close.
pub(super) fn refuse_plaintext(chain: &FilterChain, conn: &ConnInfo, shared: &Shared) {
    ListenerStats::inc(&shared.stats.plaintext_refused_total);
    let origin = chain
        .mtls
        .as_ref()
        .and_then(|m| m.origin.as_ref())
        .map_or_else(|| "the mesh default".to_string(), |o| o.to_string());
    warn!(
        source = %conn.peer,
        dst = %conn.original_dst,
        policy = %origin,
        "plaintext connection refused: mTLS is STRICT on this port"
    );
}

/// Terminate mesh TLS on a service port (the ClientHello is in `hello`) and serve the chain
/// inside, with the client's identity recorded.
pub(super) async fn serve_tls(
    stream: TcpStream,
    hello: Bytes,
    chain: &FilterChain,
    conn: &mut ConnInfo,
    rt: &Runtime,
    shared: &Arc<Shared>,
) -> Result<(), ConnError> {
    let Some(identity) = shared.mesh.identity() else {
        ListenerStats::inc(&shared.stats.mtls_handshake_failures_total);
        return Err(ConnError::Mtls(
            "a mesh TLS client arrived but this proxy has no workload certificate".into(),
        ));
    };
    let (_, config) = shared
        .server_tls
        .configs(&identity)
        .map_err(ConnError::Mtls)?;
    let accepted = match accept(Rewind::new(hello, stream), config).await {
        Ok(a) => a,
        Err(e) => {
            ListenerStats::inc(&shared.stats.mtls_handshake_failures_total);
            return Err(ConnError::Mtls(e));
        }
    };
    ListenerStats::inc(&shared.stats.mtls_connections_total);
    conn.peer_identity = Some(accepted.peer_identity);
    conn.local_identity = Some(Arc::from(identity.spiffe_id.as_str()));
    debug!(peer_identity = ?conn.peer_identity, "mTLS terminated");
    let io = accepted.stream;
    match &chain.protocol {
        ChainProtocol::Http(http) => serve_http(io, Bytes::new(), http, conn, shared).await,
        ChainProtocol::Tcp(tcp) => serve_tcp(io, Bytes::new(), tcp, conn, rt, shared).await,
        ChainProtocol::Detect { http, tcp, timeout } => {
            serve_detect(io, http, tcp, *timeout, conn, rt, shared).await
        }
        ChainProtocol::TlsPassthrough(_) | ChainProtocol::Tunnel(_) => Err(ConnError::Mtls(
            format!("chain {} does not serve plaintext inside mTLS", chain.name),
        )),
    }
}
