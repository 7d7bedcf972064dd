//! HTTP routing: route tables, virtual hosts, routes and what a route does.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Origin;
use crate::duration;

/// A set of virtual hosts an HTTP chain routes with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteTable {
    /// `outbound|3002` (per port), `outbound-http-proxy`, `inbound|3002`, `gateway|80`.
    pub name: String,
    /// Matched by the request authority: exact domains first, then the longest wildcard
    /// suffix, then `*`.
    pub virtual_hosts: Vec<VirtualHost>,
    /// How a request that matches no virtual host or route is answered.
    pub not_found: NotFound,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotFound {
    /// 404 with `x-weft-error: NR` (Istio's behaviour for unmatched routes).
    #[default]
    NotFound404,
    /// 502 naming the blocked host (`outboundTrafficPolicy: REGISTRY_ONLY`).
    BlockedByPolicy502,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VirtualHost {
    /// `cart.shop.svc.cluster.local:3002` style: `product`, `product:3001`,
    /// `product.shop`, `*.example.com`, `*`. Matching ignores ASCII case.
    pub name: String,
    pub domains: Vec<String>,
    /// First match wins.
    pub routes: Vec<Route>,
    /// Local rate limit shared by every route of this host (EnvoyFilter on VIRTUAL_HOST).
    pub rate_limit: Option<TokenBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `%ROUTE_NAME%`: the VirtualService http route name, or a generated one.
    pub name: String,
    /// The object this route came from.
    #[serde(default)]
    pub origin: Option<Origin>,
    /// Alternatives (OR); empty = every request.
    #[serde(default)]
    pub matches: Vec<RouteMatch>,
    pub action: RouteAction,
    #[serde(default)]
    pub request_headers: HeaderOps,
    #[serde(default)]
    pub response_headers: HeaderOps,
    #[serde(default)]
    pub fault: Option<Fault>,
    #[serde(default)]
    pub cors: Option<CorsPolicy>,
    #[serde(default)]
    pub rate_limit: Option<TokenBucket>,
}

/// One match block: every present field must match (AND).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteMatch {
    pub path: Option<PathMatch>,
    pub headers: Vec<HeaderMatch>,
    pub query_params: Vec<QueryMatch>,
    pub method: Option<StringMatch>,
    pub authority: Option<StringMatch>,
    pub scheme: Option<StringMatch>,
}

/// How a request path (without the query string) is matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    Exact {
        value: String,
        ignore_case: bool,
    },
    /// Plain string prefix (Istio VirtualService: `/v2` matches `/v2example`).
    Prefix {
        value: String,
        ignore_case: bool,
    },
    /// Whole-segment prefix (Gateway API PathPrefix: `/v2` matches `/v2` and `/v2/x`, not
    /// `/v2example`); a trailing `/` in the value is ignored.
    SegmentPrefix {
        value: String,
    },
    /// RE2 syntax, must match the whole path.
    Regex {
        regex: String,
    },
}

/// Matching a header, method, authority, scheme or query value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// Whole-value regex (RE2 syntax).
    Regex(String),
    /// The header or parameter is present, whatever its value.
    Present,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Lowercase header name.
    pub name: String,
    pub value: StringMatch,
    /// Matches when the inner match does not (Istio `withoutHeaders`); a missing header is
    /// then compared as the empty string.
    #[serde(default)]
    pub invert: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryMatch {
    pub name: String,
    pub value: StringMatch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    Forward(Forward),
    Redirect(Redirect),
    DirectResponse(DirectResponse),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Forward {
    /// Relative weights; zero-weight entries never receive traffic. An entry whose cluster
    /// does not exist gets 500 for its share (Gateway API invalid backend).
    pub clusters: Vec<WeightedCluster>,
    pub rewrite: Option<Rewrite>,
    /// Whole request budget including retries; none = no timeout.
    #[serde(with = "duration::optional", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub mirrors: Vec<Mirror>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightedCluster {
    pub cluster: String,
    pub weight: u32,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
}

/// Header changes, applied in the order remove, set, add (route level before destination
/// level).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderOps {
    /// Overwrite or add.
    pub set: Vec<(String, String)>,
    /// Append (a further value of the same header).
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rewrite {
    pub path: Option<PathRewrite>,
    /// New `:authority` / Host.
    pub authority: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathRewrite {
    /// Replace the whole path (query string kept).
    Full(String),
    /// Replace the part the route's path match matched: the prefix for prefix matches
    /// (Istio `rewrite.uri`, Gateway API ReplacePrefixMatch), the whole path otherwise.
    MatchedPrefix(String),
    /// RE2 substitution on the path; `\1` style capture references.
    Regex {
        pattern: String,
        substitution: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<RedirectPort>,
    pub path: Option<PathRewrite>,
    /// 301 (Istio default), 302, 303, 307 or 308.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectPort {
    Fixed(u16),
    /// The port the request arrived on.
    FromRequest,
    /// 80 for http, 443 for https (omitted from the Location as the default).
    FromProtocolDefault,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectResponse {
    pub status: u16,
    #[serde(default)]
    pub body: Option<String>,
}

/// Retries. `attempts` is the number of retries (a request is tried at most 1 + attempts
/// times).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub attempts: u32,
    #[serde(
        with = "duration::optional",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub per_try_timeout: Option<Duration>,
    pub retry_on: RetryOn,
    /// Base of the fully jittered exponential backoff (25 ms), capped at 10x base.
    #[serde(with = "duration::required")]
    pub backoff_base: Duration,
    /// Prefer an endpoint not tried before (Istio default, off for consistent hashing).
    pub other_host: bool,
    /// Linkerd retry budget: retries may add at most this ratio of extra load.
    #[serde(default)]
    pub budget: Option<RetryBudget>,
}

/// The conditions a response or failure is retried on (Envoy `x-envoy-retry-on` names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOn {
    pub five_xx: bool,
    /// 502, 503, 504.
    pub gateway_error: bool,
    /// Connection reset, refused or closed after the request was (possibly) sent.
    pub reset: bool,
    pub connect_failure: bool,
    /// HTTP/2 REFUSED_STREAM.
    pub refused_stream: bool,
    /// 409.
    pub retriable_4xx: bool,
    pub status_codes: Vec<u16>,
    /// gRPC status names from `grpc-status`: cancelled, deadline-exceeded, internal,
    /// resource-exhausted, unavailable.
    pub grpc: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    pub retry_ratio: f64,
    pub min_retries_per_second: u32,
    #[serde(with = "duration::required")]
    pub ttl: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    pub delay: Option<FaultDelay>,
    pub abort: Option<FaultAbort>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    #[serde(with = "duration::required")]
    pub delay: Duration,
    /// 0–100; Istio's unset percentage is 0.
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    pub status: AbortStatus,
    pub percent: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortStatus {
    Http(u16),
    /// gRPC status code (numeric), answered as HTTP 200 with `grpc-status`.
    Grpc(u32),
}

/// Copy of the request to another cluster; the response is discarded and never delays the
/// original.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub cluster: String,
    /// 0–100 (Istio's unset mirror percentage is 100).
    pub percent: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsPolicy {
    pub allow_origins: Vec<StringMatch>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    #[serde(with = "duration::optional", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    pub allow_credentials: bool,
    /// Answer preflights whose origin is not allowed without forwarding them.
    pub ignore_unmatched_preflights: bool,
}

/// Envoy's local rate limit token bucket: `max_tokens` to start, `tokens_per_fill` added
/// every `fill_interval`. An empty bucket answers 429 with `x-weft-error: RL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucket {
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
    #[serde(with = "duration::required")]
    pub fill_interval: Duration,
    /// Response headers added to every answer of the limited scope.
    #[serde(default)]
    pub response_headers: Vec<(String, String)>,
    #[serde(default)]
    pub origin: Option<Origin>,
}
