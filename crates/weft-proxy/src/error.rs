//! Every error the proxy itself generates.
//!
//! Each [`ProxyError`] has a stable reason code (`no_route`, `upstream_overflow`, ...), the
//! Envoy response flag operators already know (NR, UO, ...), the HTTP status it is answered
//! with, and a message naming the configuration object responsible. HTTP answers carry all
//! three in one header (see [`ProxyError::header_value`] and `docs/errors.md`):
//!
//! ```text
//! x-weft-error: upstream_overflow; flag=UO; circuit open: maxConnections=10 on DestinationRule shop/cart
//! ```

use http::StatusCode;

/// The response header that explains a response the proxy generated.
pub const ERROR_HEADER: &str = "x-weft-error";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No virtual host or route matched (404, or 502 under `REGISTRY_ONLY`).
    #[error("route not found for host {authority}{}", path_suffix(.path))]
    NoRoute {
        authority: String,
        path: String,
        /// `outboundTrafficPolicy: REGISTRY_ONLY`: answered 502 instead of 404.
        blocked: bool,
    },
    /// The route names a cluster the config does not have.
    #[error("cluster {cluster} not found (route {route})")]
    ClusterNotFound { cluster: String, route: String },
    /// Every endpoint is ejected, or the cluster has none.
    #[error("no healthy upstream in cluster {cluster}{}", origin_suffix(.origin))]
    NoHealthyUpstream {
        cluster: String,
        origin: Option<String>,
        detail: String,
    },
    #[error("upstream connect failed: {detail} (cluster {cluster})")]
    UpstreamConnectFailed { cluster: String, detail: String },
    /// A circuit breaker (DestinationRule connectionPool) refused the request.
    #[error("circuit open: {limit}={value} on {origin} (cluster {cluster})")]
    UpstreamOverflow {
        cluster: String,
        limit: &'static str,
        value: u32,
        origin: String,
    },
    #[error("upstream request timeout after {timeout:?} on route {route}")]
    UpstreamTimeout {
        route: String,
        timeout: std::time::Duration,
    },
    #[error("upstream per-try timeout after {timeout:?} (cluster {cluster})")]
    UpstreamPerTryTimeout {
        cluster: String,
        timeout: std::time::Duration,
    },
    /// The upstream connection closed or reset before a full response.
    #[error("upstream reset before response: {detail} (cluster {cluster})")]
    UpstreamReset { cluster: String, detail: String },
    #[error("retries exhausted after {attempts} attempts on route {route}: {last}")]
    RetriesExhausted {
        route: String,
        attempts: u32,
        last: String,
    },
    /// An injected fault (VirtualService `fault.abort`).
    #[error("fault injected: abort with {} by route {route}{}", abort_what(*.status, *.grpc_status), origin_suffix(.origin))]
    FaultAbort {
        route: String,
        origin: Option<String>,
        /// 200 for gRPC aborts (the code is in `grpc_status`).
        status: u16,
        grpc_status: Option<u32>,
    },
    /// A local rate limit answered 429.
    #[error("rate limited by {scope}{}", origin_suffix(.origin))]
    RateLimited {
        scope: String,
        origin: Option<String>,
    },
    /// The destination is not allowed (`REGISTRY_ONLY`, Blackhole cluster).
    #[error("blocked by policy: {reason}")]
    BlockedByPolicy { reason: String },
    /// The destination to pass through to is this proxy's own listener: connecting would
    /// loop requests into the proxy until it runs out of sockets.
    #[error(
        "passthrough loop: {target} is this proxy's own listener; refusing to connect to itself"
    )]
    PassthroughLoop { target: String },
    /// The TLS handshake with the upstream failed: mesh mTLS to a peer proxy (its
    /// certificate is not the identity the endpoint runs as, or not signed by the mesh
    /// roots) or TLS origination (DestinationRule SIMPLE/MUTUAL; a file that does not load
    /// is named).
    #[error("upstream TLS failed: {detail} (cluster {cluster})")]
    UpstreamTlsFailed { cluster: String, detail: String },
    /// The cluster requires mesh mTLS (DestinationRule ISTIO_MUTUAL) but the endpoint runs
    /// no weft proxy to tunnel to: refused rather than sent in plaintext.
    #[error(
        "mTLS required by {origin} but endpoint {endpoint} has no mesh tunnel (no weft proxy \
         beside it); refusing to send plaintext (cluster {cluster})"
    )]
    MtlsNoTunnel {
        cluster: String,
        endpoint: String,
        origin: String,
    },
    /// Mesh mTLS is required but this proxy has no workload certificate (none configured,
    /// not issued yet, or expired without a replacement).
    #[error(
        "mTLS required but this proxy has no workload certificate: {detail} (cluster {cluster})"
    )]
    MtlsNoCertificate { cluster: String, detail: String },
    /// The downstream request could not be proxied as sent.
    #[error("bad request: {detail}")]
    BadRequest { detail: String },
    /// The downstream client went away before the response.
    #[error("downstream reset: {detail}")]
    DownstreamReset { detail: String },
    /// A bug or an impossible state; the message says where.
    #[error("internal proxy error: {detail}")]
    Internal { detail: String },
}

fn path_suffix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" path {path}")
    }
}

fn abort_what(status: u16, grpc: Option<u32>) -> String {
    match grpc {
        Some(code) => format!("grpc-status {code}"),
        None => format!("HTTP {status}"),
    }
}

fn origin_suffix(origin: &Option<String>) -> String {
    match origin {
        Some(o) => format!(" on {o}"),
        None => String::new(),
    }
}

impl ProxyError {
    /// The stable reason code: the first field of `x-weft-error`, the access log's reason
    /// and a metric label. Never changes once released.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no_route",
            ProxyError::ClusterNotFound { .. } => "cluster_not_found",
            ProxyError::NoHealthyUpstream { .. } => "no_healthy_upstream",
            ProxyError::UpstreamConnectFailed { .. } => "upstream_connect_failed",
            ProxyError::UpstreamOverflow { .. } => "upstream_overflow",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::UpstreamPerTryTimeout { .. } => "upstream_per_try_timeout",
            ProxyError::UpstreamReset { .. } => "upstream_reset",
            ProxyError::RetriesExhausted { .. } => "retries_exhausted",
            ProxyError::FaultAbort { .. } => "fault_abort",
            ProxyError::RateLimited { .. } => "rate_limited",
            ProxyError::BlockedByPolicy { .. } => "blocked_by_policy",
            ProxyError::PassthroughLoop { .. } => "passthrough_loop",
            ProxyError::UpstreamTlsFailed { .. } => "upstream_tls_failed",
            ProxyError::MtlsNoTunnel { .. } => "mtls_no_tunnel",
            ProxyError::MtlsNoCertificate { .. } => "mtls_no_certificate",
            ProxyError::BadRequest { .. } => "bad_request",
            ProxyError::DownstreamReset { .. } => "downstream_reset",
            ProxyError::Internal { .. } => "internal",
        }
    }

    /// The Envoy response flag (`%RESPONSE_FLAGS%`) this error corresponds to.
    pub fn flag(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "NR",
            ProxyError::ClusterNotFound { .. } => "NC",
            ProxyError::NoHealthyUpstream { .. } => "UH",
            ProxyError::UpstreamConnectFailed { .. } => "UF",
            ProxyError::UpstreamOverflow { .. } => "UO",
            ProxyError::UpstreamTimeout { .. } => "UT",
            ProxyError::UpstreamPerTryTimeout { .. } => "UT",
            ProxyError::UpstreamReset { .. } => "UC",
            ProxyError::RetriesExhausted { .. } => "URX",
            ProxyError::FaultAbort { .. } => "FI",
            ProxyError::RateLimited { .. } => "RL",
            ProxyError::BlockedByPolicy { .. } => "NR",
            ProxyError::PassthroughLoop { .. } => "UF",
            ProxyError::UpstreamTlsFailed { .. } => "UF",
            ProxyError::MtlsNoTunnel { .. } => "UF",
            ProxyError::MtlsNoCertificate { .. } => "UF",
            ProxyError::BadRequest { .. } => "DPE",
            ProxyError::DownstreamReset { .. } => "DC",
            ProxyError::Internal { .. } => "UMSDR",
        }
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { blocked: false, .. } => StatusCode::NOT_FOUND,
            ProxyError::NoRoute { blocked: true, .. } => StatusCode::BAD_GATEWAY,
            ProxyError::ClusterNotFound { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::NoHealthyUpstream { .. }
            | ProxyError::UpstreamConnectFailed { .. }
            | ProxyError::UpstreamOverflow { .. }
            | ProxyError::UpstreamReset { .. }
            | ProxyError::RetriesExhausted { .. }
            | ProxyError::UpstreamTlsFailed { .. }
            | ProxyError::MtlsNoTunnel { .. }
            | ProxyError::MtlsNoCertificate { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamTimeout { .. } | ProxyError::UpstreamPerTryTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::FaultAbort { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::BlockedByPolicy { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::PassthroughLoop { .. } => StatusCode::LOOP_DETECTED,
            ProxyError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            // Nobody reads it, but the access log does.
            ProxyError::DownstreamReset { .. } => StatusCode::BAD_REQUEST,
            ProxyError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `<code>; flag=<FLAG>; <message>`, made safe for a header value (control characters
    /// and non-ASCII become `?`).
    pub fn header_value(&self) -> http::HeaderValue {
        let text = format!("{}; flag={}; {}", self.code(), self.flag(), self);
        let safe: String = text
            .chars()
            .map(|c| {
                if c == '\t' || (' '..='~').contains(&c) {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        http::HeaderValue::from_str(&safe).unwrap_or_else(|_| {
            http::HeaderValue::from_static("internal; flag=UMSDR; bad error text")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_value_has_code_flag_and_message() {
        let err = ProxyError::UpstreamOverflow {
            cluster: "outbound|3002||cart.shop.svc.cluster.local".into(),
            limit: "maxConnections",
            value: 10,
            origin: "DestinationRule shop/cart".into(),
        };
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            err.header_value().to_str().unwrap(),
            "upstream_overflow; flag=UO; circuit open: maxConnections=10 on DestinationRule \
             shop/cart (cluster outbound|3002||cart.shop.svc.cluster.local)"
        );
    }

    #[test]
    fn no_route_names_the_host_and_blocked_is_502() {
        let err = ProxyError::NoRoute {
            authority: "cart.shop:3002".into(),
            path: String::new(),
            blocked: false,
        };
        assert_eq!(err.to_string(), "route not found for host cart.shop:3002");
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        let blocked = ProxyError::NoRoute {
            authority: "x".into(),
            path: "/a".into(),
            blocked: true,
        };
        assert_eq!(blocked.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn header_value_replaces_control_characters() {
        let err = ProxyError::BadRequest {
            detail: "bad\nline é".into(),
        };
        assert_eq!(
            err.header_value().to_str().unwrap(),
            "bad_request; flag=DPE; bad request: bad?line ?"
        );
    }
}
