//! Listeners: where the proxy accepts connections and what it does with each.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration;
use crate::route::{TokenBucket, WeightedCluster};

/// A socket the proxy listens on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Stable name: `outbound`, `inbound`, `outbound-http-proxy`, `gateway-8080`,
    /// `outbound-tcp|5432|db.shop.svc.cluster.local`.
    pub name: String,
    pub address: SocketAddr,
    pub direction: Direction,
    pub capture: Capture,
    /// Chains in order; the first whose match accepts the connection handles it.
    pub chains: Vec<FilterChain>,
    /// For connections no chain accepts.
    pub fallback: Fallback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Traffic from the local workload to others.
    Outbound,
    /// Traffic from others to the local workload.
    Inbound,
    /// Traffic entering (or leaving) the mesh through a gateway.
    Gateway,
}

/// How connections reach the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// iptables REDIRECT: the destination the client dialled is read with SO_ORIGINAL_DST
    /// and chains match on it.
    Transparent,
    /// Clients dial the listener itself; chains match on the listener's own port.
    Explicit,
}

/// What happens to connections no chain accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Connect to the original destination unchanged (`outboundTrafficPolicy: ALLOW_ANY`).
    Passthrough,
    /// Refuse: close TCP, answer HTTP with 502 (`REGISTRY_ONLY`), naming why.
    Blackhole { reason: String },
}

/// Which connections a chain takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainMatch {
    /// The destination port (original destination under transparent capture); none = any.
    pub destination_port: Option<u16>,
    /// Destination addresses or CIDRs (`10.0.0.5`, `10.0.0.0/24`); empty = any.
    pub destination_addresses: Vec<String>,
    /// TLS SNI names (exact or `*.example.com`); empty = any (or not TLS).
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterChain {
    pub name: String,
    #[serde(default)]
    pub r#match: ChainMatch,
    pub protocol: ChainProtocol,
    /// Inbound chains: the effective PeerAuthentication for this port. Absent: the chain
    /// neither expects nor terminates mesh TLS (outbound and gateway chains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<InboundMtls>,
}

/// PeerAuthentication as it applies to one inbound port (mesh < namespace < workload,
/// then `portLevelMtls`; UNSET inherits; the mesh default is PERMISSIVE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundMtls {
    pub mode: MtlsMode,
    /// The PeerAuthentication that decided the mode; none for the mesh default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::Origin>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Only mesh mTLS: a plaintext connection is closed, counted and logged with its
    /// source address.
    Strict,
    /// Both: the first bytes tell a TLS ClientHello (terminated with mesh certificates)
    /// from plaintext (served as is).
    Permissive,
    /// Plaintext only; TLS bytes are passed to the application untouched.
    Disable,
}

/// What a chain speaks and does. `Detect` sniffs the first bytes (with a short timeout)
/// and picks HTTP or TCP; server-first protocols time out into TCP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainProtocol {
    Http(HttpChain),
    Tcp(TcpChain),
    /// TLS not terminated: route by SNI (Istio `tls` routes, gateway PASSTHROUGH).
    TlsPassthrough(TlsPassthroughChain),
    /// The mesh tunnel port (15008): TLS 1.3 mTLS with mesh certificates, HTTP/2 inside.
    /// Each HTTP/2 stream is either an HTTP request or a CONNECT to `ip:port`; both are
    /// dispatched by target port to an inbound listener ([`TunnelChain::inbound_listeners`])
    /// and its chain that matches the target, as if they had arrived there, with the
    /// client's SPIFFE ID recorded.
    Tunnel(TunnelChain),
    Detect {
        http: HttpChain,
        tcp: TcpChain,
        #[serde(with = "duration::required")]
        timeout: Duration,
    },
}

/// HTTP/1.1 and HTTP/2 (h2c prior knowledge or detected), routed by a route table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpChain {
    pub route_table: String,
    /// Accept absolute-form requests (`GET http://cart:3002/x`) as an HTTP proxy does, so
    /// applications can use `HTTP_PROXY`.
    pub http_proxy: bool,
    /// Local rate limit for everything on this chain (EnvoyFilter local_ratelimit on the
    /// HTTP filter chain).
    pub rate_limit: Option<TokenBucket>,
    /// `x-weft-*` and `x-envoy-*` request headers from outside are stripped on inbound and
    /// gateway chains: they steer the proxy and must not be spoofable.
    pub trust_control_headers: bool,
}

/// Opaque TCP to weighted clusters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpChain {
    /// Empty means: connect to the original destination.
    pub clusters: Vec<WeightedCluster>,
    #[serde(with = "duration::optional", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Which object chose this route, for errors and `weft why`.
    pub origin: Option<crate::Origin>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelChain {
    /// Where tunnelled streams go. A stream to `ip:port` takes the first entry whose `port`
    /// is the target port or is absent; it is then matched against that listener's chains
    /// as a connection whose (original) destination is `ip:port`, and meets that
    /// listener's fallback when no chain takes it. No entry: the tunnel listener's fallback.
    ///
    /// Transparent capture: one entry without port, `inbound` (chains match on
    /// `destination_port`). Explicit capture: one entry per inbound port,
    /// `{port: 3002, listener: "inbound|3002"}` (those listeners bind a port of their own,
    /// which may differ from the target port, so their chains carry no port match).
    pub inbound_listeners: Vec<TunnelTarget>,
}

/// One inbound listener a tunnel dispatches to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelTarget {
    /// The target port this entry serves; none = any port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub listener: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsPassthroughChain {
    /// First match wins.
    pub routes: Vec<SniRoute>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SniRoute {
    /// Exact names or `*.example.com` (which also matches `example.com`, as Istio's
    /// `sniHosts` do); empty = any SNI.
    pub server_names: Vec<String>,
    pub clusters: Vec<WeightedCluster>,
    pub origin: Option<crate::Origin>,
}
