//! weft-proxy: the sidecar and gateway proxy.
//!
//! It runs a [`weft_api::ProxyConfig`] and nothing else: every Istio rule was applied by the
//! compiler, so this crate never depends on `weft-config` or `weft-compile`.
//!
//! Shape (after ztunnel): [`app::build`] binds the listeners and the admin port and returns
//! a handle; each listener spawns one task per connection; a connection is classified by
//! its filter chain (original destination, port, SNI, sniffed protocol) and handed to the
//! HTTP server ([`http`]) or the TCP forwarder ([`listener::tcp`]). Upstream connections,
//! load balancing, circuit breaking and outlier detection live in [`upstream`].
//!
//! Config is an immutable [`runtime::Runtime`] behind an `ArcSwap`: a new `ProxyConfig` is
//! built into a runtime off the request path and swapped in one step; requests already in
//! flight finish on the runtime they started with.

pub mod admin;
pub mod app;
pub mod cli;
pub mod error;
pub mod http;
pub mod identity;
pub mod listener;
pub mod redirect;
pub mod runtime;
pub mod source;
mod sys;
pub mod telemetry;
pub mod upstream;
pub mod xds;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use weft_api::Direction;

/// The live runtime, swapped as a whole on every config change.
pub type RuntimeHandle = Arc<ArcSwap<runtime::Runtime>>;

/// What is known about a downstream connection when it is handed to a protocol handler.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Listener that accepted it.
    pub listener: Arc<str>,
    pub direction: Direction,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client dialled: SO_ORIGINAL_DST under transparent capture, the
    /// listener's own address otherwise.
    pub original_dst: SocketAddr,
    /// The local address of the accepted socket.
    pub local: SocketAddr,
    /// TLS SNI, when the connection started with a ClientHello.
    pub sni: Option<String>,
    /// The client's SPIFFE ID, when the connection (or the mesh tunnel it came through)
    /// was mutual TLS with mesh certificates; `None` for plaintext. Policy and telemetry
    /// read it; inbound HTTP forwards it in `x-forwarded-client-cert`.
    pub peer_identity: Option<Arc<str>>,
    /// The SPIFFE ID this proxy presented on that connection (`By=` of the XFCC header).
    pub local_identity: Option<Arc<str>>,
}
