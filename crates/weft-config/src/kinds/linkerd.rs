//! Linkerd (`linkerd.io`, `policy.linkerd.io`) and SMI TrafficSplit (`split.smi-spec.io`).
//! Linkerd's `policy.linkerd.io` HTTPRoute is [`super::gateway_api::HttpRoute`].

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::common::{Duration, IntOrString, LabelSelector};

// ---------------------------------------------------------------------------------------
// ServiceProfile (linkerd.io/v1alpha2)
// ---------------------------------------------------------------------------------------

/// Per-route metrics, retries and timeouts for the Service named by `metadata.name` (its
/// FQDN, e.g. `books.booksapp.svc.cluster.local`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServiceProfile {
    pub routes: Vec<ServiceProfileRoute>,
    pub retry_budget: Option<RetryBudget>,
    pub dst_overrides: Vec<WeightedDst>,
    pub opaque_ports: Vec<IntOrString>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServiceProfileRoute {
    pub name: String,
    pub condition: Option<RequestMatch>,
    pub response_classes: Vec<ResponseClass>,
    pub is_retryable: bool,
    /// Total time for the request, retries included.
    pub timeout: Option<Duration>,
}

/// A request condition. Linkerd requires at least one field; when several are set, all must
/// match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RequestMatch {
    pub all: Vec<RequestMatch>,
    pub any: Vec<RequestMatch>,
    pub not: Option<Box<RequestMatch>>,
    pub path_regex: Option<String>,
    pub method: Option<String>,
}

impl RequestMatch {
    /// Which of the condition fields are set, by JSON name.
    pub fn set_fields(&self) -> Vec<&'static str> {
        [
            (!self.all.is_empty(), "all"),
            (!self.any.is_empty(), "any"),
            (self.not.is_some(), "not"),
            (self.path_regex.is_some(), "pathRegex"),
            (self.method.is_some(), "method"),
        ]
        .into_iter()
        .filter(|(s, _)| *s)
        .map(|(_, n)| n)
        .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResponseClass {
    pub condition: Option<ResponseMatch>,
    pub is_failure: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ResponseMatch {
    pub all: Vec<ResponseMatch>,
    pub any: Vec<ResponseMatch>,
    pub not: Option<Box<ResponseMatch>>,
    pub status: Option<StatusRange>,
}

impl ResponseMatch {
    pub fn set_fields(&self) -> Vec<&'static str> {
        [
            (!self.all.is_empty(), "all"),
            (!self.any.is_empty(), "any"),
            (self.not.is_some(), "not"),
            (self.status.is_some(), "status"),
        ]
        .into_iter()
        .filter(|(s, _)| *s)
        .map(|(_, n)| n)
        .collect()
    }
}

/// An inclusive status code range; a missing bound is open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StatusRange {
    pub min: Option<u32>,
    pub max: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryBudget {
    /// Retries allowed as a share of requests (0.2 = 20 % more load).
    pub retry_ratio: Option<f64>,
    pub min_retries_per_second: Option<u32>,
    pub ttl: Option<Duration>,
}

/// A `dstOverrides[]` entry: send a weighted share of traffic to `authority`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WeightedDst {
    pub authority: String,
    pub weight: Weight,
}

// ---------------------------------------------------------------------------------------
// Weights: Kubernetes quantities (`500m`, `1`, `1k`) or plain integers.
// ---------------------------------------------------------------------------------------

/// A relative weight as written: an integer (`1000`) or, as SMI v1alpha1 and ServiceProfile
/// `dstOverrides` allow, a Kubernetes quantity (`500m`). [`Weight::value`] is the number it
/// stands for (`500m` → 0.5), so weights written either way compare directly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weight {
    /// The value as written.
    pub text: String,
    value: f64,
}

impl Weight {
    pub fn value(&self) -> f64 {
        self.value
    }

    pub fn from_int(n: i64) -> Weight {
        Weight {
            text: n.to_string(),
            value: n as f64,
        }
    }

    /// Parse a Kubernetes quantity: a decimal number with an optional SI (`m`, `k`, `M`, `G`,
    /// `T`, `P`, `E`), binary (`Ki`, `Mi`, …) or exponent (`e3`) suffix.
    pub fn parse(s: &str) -> Result<Weight, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid weight `{s}`: write an integer (`500`) or a quantity such as `500m` or `1`"
            )
        };
        let num_end = t
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
            .unwrap_or(t.len());
        let (num, suffix) = t.split_at(num_end);
        if num.is_empty() || num == "+" || num == "-" || num == "." {
            return Err(bad());
        }
        let base: f64 = num.parse().map_err(|_| bad())?;
        let mult = match suffix {
            "" => 1.0,
            "m" => 1e-3,
            "k" => 1e3,
            "M" => 1e6,
            "G" => 1e9,
            "T" => 1e12,
            "P" => 1e15,
            "E" => 1e18,
            "Ki" => 1024f64,
            "Mi" => 1024f64.powi(2),
            "Gi" => 1024f64.powi(3),
            "Ti" => 1024f64.powi(4),
            "Pi" => 1024f64.powi(5),
            "Ei" => 1024f64.powi(6),
            e if e.starts_with(['e', 'E']) => {
                let exp: i32 = e[1..].parse().map_err(|_| bad())?;
                10f64.powi(exp)
            }
            _ => return Err(bad()),
        };
        Ok(Weight {
            text: s.to_string(),
            value: base * mult,
        })
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Weight;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a quantity such as `500m`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Weight, E> {
                Ok(Weight {
                    text: v.to_string(),
                    value: v as f64,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Weight, E> {
                Ok(Weight::from_int(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Weight, E> {
                Ok(Weight {
                    text: v.to_string(),
                    value: v,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Weight, E> {
                Weight::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------
// SMI TrafficSplit
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TrafficSplit {
    /// The root (apex) Service clients address.
    pub service: String,
    pub backends: Vec<TrafficSplitBackend>,
    /// v1alpha3+: HTTPRouteGroup / TCPRoute references restricting the split.
    pub matches: Vec<SmiMatchRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TrafficSplitBackend {
    pub service: String,
    pub weight: Weight,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SmiMatchRef {
    pub kind: String,
    pub name: String,
    pub api_group: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Policy (policy.linkerd.io)
// ---------------------------------------------------------------------------------------

/// A port on a set of pods (or external workloads) that policy applies to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Server {
    pub pod_selector: Option<LabelSelector>,
    pub external_workload_selector: Option<LabelSelector>,
    /// A port number or a container port name.
    pub port: Option<IntOrString>,
    /// Default `unknown` (detect).
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Default `deny`.
    pub access_policy: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProxyProtocol {
    #[serde(rename = "unknown")]
    Unknown,
    #[serde(rename = "HTTP/1")]
    Http1,
    #[serde(rename = "HTTP/2")]
    Http2,
    #[serde(rename = "gRPC")]
    Grpc,
    #[serde(rename = "opaque")]
    Opaque,
    #[serde(rename = "TLS")]
    Tls,
}

/// The default-policy names a Server's `accessPolicy` (and the
/// `config.linkerd.io/default-inbound-policy` annotation) accept.
pub const ACCESS_POLICIES: &[&str] = &[
    "all-unauthenticated",
    "all-authenticated",
    "cluster-authenticated",
    "cluster-unauthenticated",
    "deny",
    "audit",
];

/// Legacy authorization of clients to a Server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerAuthorization {
    pub server: ServerRef,
    pub client: ServerAuthorizationClient,
}

/// A Server by `name`, or Servers by label `selector` (exactly one).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerRef {
    pub name: Option<String>,
    pub selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerAuthorizationClient {
    #[serde(rename = "meshTLS")]
    pub mesh_tls: Option<MeshTlsClient>,
    pub unauthenticated: bool,
    pub networks: Vec<Network>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshTlsClient {
    pub identities: Vec<String>,
    pub service_accounts: Vec<ServiceAccountRef>,
    #[serde(rename = "unauthenticatedTLS")]
    pub unauthenticated_tls: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServiceAccountRef {
    pub name: String,
    /// Default: the ServerAuthorization's namespace.
    pub namespace: Option<String>,
}

/// A CIDR, minus some sub-ranges.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Network {
    pub cidr: String,
    pub except: Vec<String>,
}

/// Authorizes requests to a target (Server, HTTPRoute, GRPCRoute or Namespace) when every
/// required authentication matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthorizationPolicy {
    pub target_ref: PolicyRef,
    pub required_authentication_refs: Vec<PolicyRef>,
}

/// A reference from a Linkerd policy object (`targetRef`, `requiredAuthenticationRefs[]`,
/// `identityRefs[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyRef {
    pub group: Option<String>,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshTlsAuthentication {
    /// Identity names; `*` and `*.suffix` allowed. Exclusive with `identityRefs`.
    pub identities: Vec<String>,
    pub identity_refs: Vec<PolicyRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NetworkAuthentication {
    pub networks: Vec<Network>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_weights() {
        assert_eq!(Weight::parse("500m").unwrap().value(), 0.5);
        assert_eq!(Weight::parse("1000m").unwrap().value(), 1.0);
        assert_eq!(Weight::parse("0m").unwrap().value(), 0.0);
        assert_eq!(Weight::parse("1k").unwrap().value(), 1000.0);
        assert_eq!(Weight::parse("2").unwrap().value(), 2.0);
        assert_eq!(Weight::parse("1e3").unwrap().value(), 1000.0);
        assert!(Weight::parse("abc").is_err());
        assert!(
            Weight::parse("5x")
                .unwrap_err()
                .contains("invalid weight `5x`")
        );
    }
}
