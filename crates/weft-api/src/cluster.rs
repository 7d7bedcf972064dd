//! Clusters: groups of upstream endpoints with the policy for reaching them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Origin;
use crate::duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Istio's naming: `outbound|3002|v1|cart.shop.svc.cluster.local`,
    /// `inbound|3002||`, `PassthroughCluster`, `BlackHoleCluster`.
    pub name: String,
    /// The service host this cluster reaches (`destination_service` in telemetry).
    #[serde(default)]
    pub service: Option<String>,
    /// The DestinationRule whose policy applies, if any.
    #[serde(default)]
    pub policy_origin: Option<Origin>,
    pub discovery: Discovery,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    pub lb: LbPolicy,
    #[serde(with = "duration::required")]
    pub connect_timeout: Duration,
    pub limits: ConnectionLimits,
    /// 0 = unlimited; 1 disables keep-alive.
    #[serde(default)]
    pub max_requests_per_connection: u32,
    /// Close idle upstream connections after this long.
    #[serde(
        with = "duration::optional",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout: Option<Duration>,
    #[serde(default)]
    pub tcp_keepalive: Option<TcpKeepalive>,
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    pub protocol: UpstreamProtocol,
    #[serde(default)]
    pub tls: UpstreamTls,
}

/// Where a cluster's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// The `endpoints` list (from the registry).
    Static,
    /// Resolve this name (ServiceEntry `resolution: DNS`), re-resolving periodically.
    Dns { hostname: String, port: u16 },
    /// Connect to the destination the client originally dialled (PASSTHROUGH, ALLOW_ANY).
    OriginalDestination,
    /// No endpoints by design (REGISTRY_ONLY): every request fails with `x-weft-error`.
    Blackhole,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `ip:port` (or `host:port` for DNS-resolved ServiceEntry endpoints).
    pub address: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Workload labels (telemetry: `destination_workload`, `destination_version`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The workload's SPIFFE identity when it runs a weft proxy (mTLS target).
    #[serde(default)]
    pub identity: Option<String>,
    /// The mesh tunnel of the workload's proxy (`ip:15008`, or the port an explicit-mode
    /// proxy was given): one TLS 1.3 mTLS HTTP/2 connection per peer proxy carries HTTP
    /// requests as streams and TCP as CONNECT tunnels to `address`. Set only for
    /// endpoints that run a weft proxy; with `UpstreamTls::IstioMutual*` traffic to this
    /// endpoint goes through the tunnel instead of to `address` directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<String>,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    RoundRobin,
    /// Power of two random choices, fewer active requests wins (Istio's default).
    LeastRequest,
    Random,
    /// Consistent hashing on a ring (Istio `consistentHash` with `ringHash`).
    RingHash {
        key: HashKey,
        minimum_ring_size: u64,
    },
    Maglev {
        key: HashKey,
        table_size: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashKey {
    Header(String),
    /// Hash a cookie; with `ttl`, generate the cookie when the request has none.
    Cookie {
        name: String,
        path: Option<String>,
        #[serde(
            with = "duration::optional",
            default,
            skip_serializing_if = "Option::is_none"
        )]
        ttl: Option<Duration>,
    },
    SourceIp,
    QueryParameter(String),
}

/// Envoy circuit breakers. Overflow is answered 503 with `x-weft-error: UO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLimits {
    pub max_connections: u32,
    /// Requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight across all connections.
    pub max_requests: u32,
    /// Retries in flight across the cluster.
    pub max_retries: u32,
}

impl Default for ConnectionLimits {
    /// Istio's defaults: effectively unlimited (2^32-1).
    fn default() -> Self {
        ConnectionLimits {
            max_connections: u32::MAX,
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            max_retries: u32::MAX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpKeepalive {
    pub probes: Option<u32>,
    #[serde(
        with = "duration::optional",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub time: Option<Duration>,
    #[serde(
        with = "duration::optional",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
}

/// Passive health checking: eject endpoints that keep failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// 0 disables.
    pub consecutive_5xx: u32,
    /// 502/503/504 (and connect failures); 0 disables.
    pub consecutive_gateway_errors: u32,
    #[serde(with = "duration::required")]
    pub interval: Duration,
    /// Ejection lasts base × number of times ejected.
    #[serde(with = "duration::required")]
    pub base_ejection_time: Duration,
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints, ignore ejections (panic mode); 0 = never.
    pub min_health_percent: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    Http1,
    /// HTTP/2 (h2c in plaintext, ALPN h2 under TLS); also gRPC.
    Http2,
    /// Whatever the downstream request used.
    SameAsDownstream,
    /// Opaque bytes (TCP clusters).
    Tcp,
}

/// How the proxy secures connections to this cluster's endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamTls {
    #[default]
    Disabled,
    /// mTLS with mesh certificates to endpoints that have an `identity` (auto-mTLS), plain
    /// to the others.
    IstioMutualAuto,
    /// mTLS with mesh certificates, required (DestinationRule ISTIO_MUTUAL).
    IstioMutual,
    /// TLS origination (DestinationRule SIMPLE / MUTUAL) to a destination outside the mesh.
    Originate(OriginateTls),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OriginateTls {
    pub sni: Option<String>,
    pub ca_certificates: Option<String>,
    pub client_certificate: Option<String>,
    pub private_key: Option<String>,
    pub subject_alt_names: Vec<String>,
    pub insecure_skip_verify: bool,
}
