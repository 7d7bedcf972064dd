//! VirtualService (`networking.istio.io`): `istio/api:networking/v1alpha3/virtual_service.proto`.
//!
//! Type names follow Istio's proto message names (`HTTPRoute`, `TLSMatchAttributes`…) so
//! that they read like the Istio reference and do not clash with the Gateway API types.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::kinds::common::{Duration, StringMatch};
use crate::path::FieldPath;

/// Routing rules for a set of hosts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VirtualService {
    pub hosts: Vec<String>,
    /// `<name>`, `<ns>/<name>` or the reserved `mesh`. Empty means `[mesh]`.
    pub gateways: Vec<String>,
    pub http: Vec<HTTPRoute>,
    pub tls: Vec<TLSRoute>,
    pub tcp: Vec<TCPRoute>,
    pub export_to: Vec<String>,
}

/// The reserved gateway name for all sidecars.
pub const MESH_GATEWAY: &str = "mesh";

impl VirtualService {
    /// A delegate VirtualService has no hosts and is only reachable through another
    /// VirtualService's `delegate`.
    pub fn is_delegate(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The effective top-level gateways: `gateways`, or `[mesh]` when empty.
    pub fn effective_gateways(&self) -> Vec<&str> {
        if self.gateways.is_empty() {
            vec![MESH_GATEWAY]
        } else {
            self.gateways.iter().map(String::as_str).collect()
        }
    }

    /// Whether the rules apply to sidecars (`gateways` empty or containing `mesh`).
    pub fn applies_to_mesh(&self) -> bool {
        self.gateways.is_empty() || self.gateways.iter().any(|g| g == MESH_GATEWAY)
    }

    /// Every destination the rules can send traffic to, with its field path: HTTP route
    /// destinations, `mirror`, `mirrors[]`, and TCP/TLS route destinations.
    pub fn all_destinations(&self) -> Vec<(FieldPath, &Destination)> {
        let spec = FieldPath::root().key("spec");
        let mut out = Vec::new();
        for (i, h) in self.http.iter().enumerate() {
            let hp = spec.key("http").index(i);
            for (j, rd) in h.route.iter().enumerate() {
                if let Some(d) = &rd.destination {
                    out.push((hp.key("route").index(j).key("destination"), d));
                }
            }
            if let Some(m) = &h.mirror {
                out.push((hp.key("mirror"), m));
            }
            for (j, m) in h.mirrors.iter().enumerate() {
                if let Some(d) = &m.destination {
                    out.push((hp.key("mirrors").index(j).key("destination"), d));
                }
            }
        }
        for (key, routes) in [
            ("tcp", self.tcp.iter().map(|t| &t.route).collect::<Vec<_>>()),
            ("tls", self.tls.iter().map(|t| &t.route).collect::<Vec<_>>()),
        ] {
            for (i, route) in routes.into_iter().enumerate() {
                for (j, rd) in route.iter().enumerate() {
                    if let Some(d) = &rd.destination {
                        out.push((
                            spec.key(key)
                                .index(i)
                                .key("route")
                                .index(j)
                                .key("destination"),
                            d,
                        ));
                    }
                }
            }
        }
        out
    }

    /// Only the destinations that receive routed traffic (not mirrors).
    pub fn route_destinations(&self) -> Vec<(FieldPath, &Destination)> {
        self.all_destinations()
            .into_iter()
            .filter(|(p, _)| {
                !p.0.iter()
                    .any(|s| matches!(s, crate::path::Segment::Key(k) if k == "mirror" || k == "mirrors"))
            })
            .collect()
    }

    /// Every `gateways` list in match blocks (`spec.http[i].match[j].gateways` and the TCP/TLS
    /// equivalents), with its path.
    pub fn match_gateways(&self) -> Vec<(FieldPath, &[String])> {
        let spec = FieldPath::root().key("spec");
        let mut out = Vec::new();
        for (i, h) in self.http.iter().enumerate() {
            for (j, m) in h.r#match.iter().enumerate() {
                if !m.gateways.is_empty() {
                    out.push((
                        spec.key("http")
                            .index(i)
                            .key("match")
                            .index(j)
                            .key("gateways"),
                        m.gateways.as_slice(),
                    ));
                }
            }
        }
        for (i, t) in self.tcp.iter().enumerate() {
            for (j, m) in t.r#match.iter().enumerate() {
                if !m.gateways.is_empty() {
                    out.push((
                        spec.key("tcp")
                            .index(i)
                            .key("match")
                            .index(j)
                            .key("gateways"),
                        m.gateways.as_slice(),
                    ));
                }
            }
        }
        for (i, t) in self.tls.iter().enumerate() {
            for (j, m) in t.r#match.iter().enumerate() {
                if !m.gateways.is_empty() {
                    out.push((
                        spec.key("tls")
                            .index(i)
                            .key("match")
                            .index(j)
                            .key("gateways"),
                        m.gateways.as_slice(),
                    ));
                }
            }
        }
        out
    }
}

/// A rule for HTTP/1.1, HTTP/2 and gRPC traffic.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPRoute {
    pub name: String,
    pub r#match: Vec<HTTPMatchRequest>,
    pub route: Vec<HTTPRouteDestination>,
    pub redirect: Option<HTTPRedirect>,
    pub direct_response: Option<HTTPDirectResponse>,
    pub delegate: Option<Delegate>,
    pub rewrite: Option<HTTPRewrite>,
    pub timeout: Option<Duration>,
    pub retries: Option<HTTPRetry>,
    pub fault: Option<HTTPFaultInjection>,
    pub mirror: Option<Destination>,
    /// Deprecated: use `mirrorPercentage`.
    pub mirror_percent: Option<u32>,
    pub mirror_percentage: Option<Percent>,
    pub mirrors: Vec<HTTPMirrorPolicy>,
    pub cors_policy: Option<CorsPolicy>,
    pub headers: Option<Headers>,
    /// Deprecated and ignored: WebSocket upgrades are always allowed.
    pub websocket_upgrade: Option<bool>,
}

impl HTTPRoute {
    /// True when the rule has no match block: it matches every request.
    pub fn is_catch_all(&self) -> bool {
        self.r#match.is_empty()
    }
}

/// Conditions on a request; all fields of one block must hold (AND).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPMatchRequest {
    pub name: String,
    pub uri: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub headers: BTreeMap<String, StringMatch>,
    pub port: Option<u32>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub query_params: BTreeMap<String, StringMatch>,
    pub ignore_uri_case: Option<bool>,
    pub without_headers: BTreeMap<String, StringMatch>,
    pub source_namespace: String,
    pub stat_prefix: String,
}

/// A weighted destination of an HTTP route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPRouteDestination {
    pub destination: Option<Destination>,
    /// Relative weight; signed so that a negative value is reported by validation.
    pub weight: Option<i64>,
    pub headers: Option<Headers>,
}

/// A weighted destination of a TCP or TLS route.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RouteDestination {
    pub destination: Option<Destination>,
    pub weight: Option<i64>,
}

/// A service (and optionally subset and port) in the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Destination {
    pub host: String,
    pub subset: String,
    pub port: Option<NetworkingPortSelector>,
}

impl Destination {
    pub fn port_number(&self) -> Option<u32> {
        self.port.as_ref().and_then(|p| p.number)
    }

    pub fn subset(&self) -> Option<&str> {
        (!self.subset.is_empty()).then_some(self.subset.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NetworkingPortSelector {
    pub number: Option<u32>,
}

/// A percentage, 0–100 (fractions allowed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Percent {
    pub value: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPRedirect {
    pub uri: String,
    pub authority: String,
    pub port: Option<u32>,
    pub derive_port: Option<RedirectPortSelection>,
    pub scheme: String,
    /// Default 301.
    pub redirect_code: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPortSelection {
    FromProtocolDefault,
    FromRequestPort,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPDirectResponse {
    pub status: u32,
    pub body: Option<HTTPBody>,
}

/// Exactly one of `string` or `bytes` (base64).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPBody {
    pub string: Option<String>,
    pub bytes: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Delegate {
    pub name: String,
    /// Defaults to the namespace of the delegating VirtualService.
    pub namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPRewrite {
    pub uri: String,
    pub authority: String,
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RegexRewrite {
    pub r#match: String,
    pub rewrite: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPRetry {
    /// Signed so that a negative value is reported by validation; 0 disables retries.
    pub attempts: i64,
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated Envoy `x-envoy-retry-on` / `x-envoy-retry-grpc-on` values and status codes.
    pub retry_on: String,
    pub retry_remote_localities: Option<bool>,
    pub retry_ignore_previous_hosts: Option<bool>,
    pub backoff: Option<Duration>,
}

impl HTTPRetry {
    /// The `retryOn` list, trimmed, empty entries dropped.
    pub fn retry_on_list(&self) -> Vec<&str> {
        self.retry_on
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPFaultInjection {
    pub delay: Option<Delay>,
    pub abort: Option<Abort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Delay {
    pub fixed_delay: Option<Duration>,
    /// Hidden in Istio's docs and not implemented by Envoy's fault filter.
    pub exponential_delay: Option<Duration>,
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage; used when `percentage` is unset.
    pub percent: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Abort {
    pub http_status: Option<i64>,
    pub grpc_status: Option<String>,
    /// Hidden in Istio's docs.
    pub http2_error: Option<String>,
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPMirrorPolicy {
    pub destination: Option<Destination>,
    /// Unset means 100 %.
    pub percentage: Option<Percent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CorsPolicy {
    pub allow_origins: Vec<StringMatch>,
    /// Deprecated: exact origins; use `allowOrigins`.
    pub allow_origin: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<Duration>,
    pub allow_credentials: Option<bool>,
    pub unmatched_preflights: Option<UnmatchedPreflights>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnmatchedPreflights {
    Unspecified,
    Forward,
    Ignore,
}

/// Header manipulation for requests and responses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Headers {
    pub request: Option<HeaderOperations>,
    pub response: Option<HeaderOperations>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HeaderOperations {
    pub set: BTreeMap<String, String>,
    pub add: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// A rule for non-terminated TLS traffic, routed by SNI.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TLSRoute {
    pub r#match: Vec<TLSMatchAttributes>,
    pub route: Vec<RouteDestination>,
}

/// A rule for opaque TCP traffic.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TCPRoute {
    pub r#match: Vec<L4MatchAttributes>,
    pub route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TLSMatchAttributes {
    pub sni_hosts: Vec<String>,
    pub destination_subnets: Vec<String>,
    pub port: Option<u32>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub source_namespace: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct L4MatchAttributes {
    pub destination_subnets: Vec<String>,
    pub port: Option<u32>,
    pub source_labels: BTreeMap<String, String>,
    pub gateways: Vec<String>,
    pub source_namespace: String,
}
