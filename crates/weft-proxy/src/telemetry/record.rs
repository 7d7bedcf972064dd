//! The facts about one finished exchange, as the request path observed them. Sinks derive
//! their labels, log fields and span tags from these and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Version};

use super::{PeerMeta, SpanHandle};
use crate::ConnInfo;

/// Where a request or connection went upstream. Filled as soon as a cluster is chosen, so
/// errors after that point (overflow, connect failure) still name the cluster.
#[derive(Debug, Clone, Default)]
pub struct UpstreamInfo {
    /// `outbound|3002|v1|cart.shop.svc.cluster.local`, `inbound|3002||`, ...
    pub cluster: Arc<str>,
    /// The service host the cluster reaches (`destination_service`).
    pub service: Option<Arc<str>>,
    /// The endpoint of the last attempt (`%UPSTREAM_HOST%`).
    pub host: Option<SocketAddr>,
    /// The local address of the upstream connection (`%UPSTREAM_LOCAL_ADDRESS%`).
    pub local: Option<SocketAddr>,
    /// The endpoint's SPIFFE identity when the request went through the mesh tunnel
    /// (`destination_principal` on the client side).
    pub identity: Option<Arc<str>>,
    /// The SPIFFE identity this proxy presented on that mTLS connection
    /// (`source_principal` on the client side).
    pub local_identity: Option<Arc<str>>,
    /// The endpoint's workload labels from the config (fallback for `destination_app`,
    /// `destination_version` when the peer sent no metadata).
    pub labels: Option<Arc<std::collections::BTreeMap<String, String>>>,
    /// What the destination proxy said about itself in its response (peer-metadata
    /// exchange through the mesh tunnel).
    pub peer: Option<Arc<PeerMeta>>,
    /// Attempts made (retries + 1); 0 when none was started.
    pub attempts: u32,
    /// TLS handshake failure text (`%UPSTREAM_TRANSPORT_FAILURE_REASON%`).
    pub transport_failure: Option<String>,
}

/// One HTTP request/response, recorded when the response body ended (or the exchange was
/// abandoned).
pub struct HttpRecord<'a> {
    /// Outbound listener or gateway: the proxy is the client (`reporter="source"`).
    pub client_side: bool,
    pub conn: &'a ConnInfo,
    /// This proxy's workload.
    pub local: &'a PeerMeta,
    /// The calling proxy's workload, when the request came through the mesh tunnel with
    /// metadata (server side).
    pub downstream_peer: Option<&'a PeerMeta>,
    pub start: SystemTime,
    /// First request byte to last response byte.
    pub duration: Duration,
    /// First request byte to the response head (`%RESPONSE_DURATION%`); `None` when no
    /// response was started.
    pub response_start: Option<Duration>,
    pub version: Version,
    pub method: &'a Method,
    /// Path and query as received.
    pub path: &'a str,
    pub authority: &'a str,
    pub scheme: &'a str,
    /// `content-type: application/grpc*`.
    pub grpc: bool,
    /// The downstream request headers (only when [`super::Telemetry::needs_request_headers`];
    /// otherwise empty). Trace headers are as rewritten for the upstream.
    pub request_headers: &'a HeaderMap,
    /// 0 when no response was sent (downstream went away first).
    pub response_code: u16,
    pub response_headers: Option<&'a HeaderMap>,
    pub response_trailers: Option<&'a HeaderMap>,
    /// `grpc-status` from trailers or a trailers-only response.
    pub grpc_status: Option<u32>,
    /// Envoy response flags, comma-joined (`UO`, `UT,URX`), empty for none.
    pub flags: &'a str,
    /// The weft error code when the proxy generated the response (`upstream_overflow`).
    pub error_code: Option<&'static str>,
    /// Envoy's `%RESPONSE_CODE_DETAILS%`: `via_upstream`, `route_not_found`, ...
    pub code_details: &'a str,
    /// Downstream body bytes received / sent.
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// gRPC messages seen in each direction (0 for non-gRPC).
    pub request_messages: u64,
    pub response_messages: u64,
    pub route_name: Option<&'a str>,
    pub upstream: Option<&'a UpstreamInfo>,
    pub request_id: Option<&'a str>,
    pub span: Option<&'a SpanHandle>,
}

/// What happened on a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpEvent {
    Opened,
    /// Periodic report of a long connection (counters are the bytes since the last report).
    Progress,
    Closed,
}

/// One opaque TCP connection (or tunnelled stream) event.
pub struct TcpRecord<'a> {
    pub event: TcpEvent,
    pub client_side: bool,
    pub conn: &'a ConnInfo,
    pub local: &'a PeerMeta,
    pub downstream_peer: Option<&'a PeerMeta>,
    pub start: SystemTime,
    /// Connection age at this event.
    pub duration: Duration,
    /// Bytes from the downstream / to the downstream since the last event (for
    /// `Closed`, since the last `Progress`).
    pub received_bytes: u64,
    pub sent_bytes: u64,
    /// Totals over the connection's life (access logs `%BYTES_RECEIVED%` at close).
    pub total_received: u64,
    pub total_sent: u64,
    pub flags: &'a str,
    pub error_code: Option<&'static str>,
    /// Why the connection ended (`%CONNECTION_TERMINATION_DETAILS%`), if not a clean close.
    pub termination: Option<&'a str>,
    pub route_name: Option<&'a str>,
    pub upstream: Option<&'a UpstreamInfo>,
}
