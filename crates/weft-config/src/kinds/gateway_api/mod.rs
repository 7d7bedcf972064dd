//! Kubernetes Gateway API (`gateway.networking.k8s.io`): Gateway, GatewayClass, the route
//! kinds and ReferenceGrant. The schema is v1 plus the experimental-channel fields seen in
//! the conformance manifests. Linkerd's `policy.linkerd.io` HTTPRoute shares [`HttpRoute`].

mod gateway;
mod http_route;
mod routes;

use serde::Deserialize;

pub use gateway::*;
pub use http_route::*;
pub use routes::*;

/// `parentRefs[]`: the Gateway (or, for GAMMA mesh routes, the Service; for Linkerd the
/// Server) a route attaches to. Group defaults to `gateway.networking.k8s.io`, kind to
/// `Gateway`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ParentReference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<u32>,
}

impl ParentReference {
    pub const DEFAULT_GROUP: &'static str = "gateway.networking.k8s.io";

    /// The group, with the default applied (`core` is an alias of "").
    pub fn group(&self) -> &str {
        match self.group.as_deref() {
            None => Self::DEFAULT_GROUP,
            Some("core") => "",
            Some(g) => g,
        }
    }

    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("Gateway")
    }

    /// Whether this is a GAMMA mesh attachment to a Service.
    pub fn is_service(&self) -> bool {
        self.group().is_empty() && self.kind() == "Service"
    }
}

/// A reference to a backend (Service by default) without weight: used by mirrors and
/// external auth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BackendObjectReference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<u32>,
}

/// `backendRefs[]` of TCPRoute / TLSRoute (and the base of HTTP/GRPC backend refs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<u32>,
    /// Relative weight, 0–1,000,000; default 1.
    pub weight: Option<i64>,
}

/// Group and kind of a backend reference with defaults applied (`""` and `Service`; the
/// alias `core` is normalized to "").
pub fn backend_group_kind<'a>(group: Option<&'a str>, kind: Option<&'a str>) -> (&'a str, &'a str) {
    let g = match group {
        None | Some("core") => "",
        Some(g) => g,
    };
    (g, kind.unwrap_or("Service"))
}

/// A reference to a Secret (or other certificate holder) in a listener's `tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SecretObjectReference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
}

/// A reference to an object in the same namespace (`extensionRef`, `parametersRef`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LocalObjectReference {
    pub group: String,
    pub kind: String,
    pub name: String,
}

/// `Exact` or `RegularExpression`, for header, query-parameter and gRPC method matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum MatchType {
    #[default]
    Exact,
    RegularExpression,
}

/// A header name and value (header modifiers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// `requestHeaderModifier` / `responseHeaderModifier`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpHeaderFilter {
    pub set: Vec<HttpHeader>,
    pub add: Vec<HttpHeader>,
    pub remove: Vec<String>,
}

/// `requestMirror`: copy requests to another backend, optionally a share of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRequestMirrorFilter {
    pub backend_ref: BackendObjectReference,
    /// 0–100; exclusive with `fraction`.
    pub percent: Option<i64>,
    pub fraction: Option<Fraction>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Fraction {
    pub numerator: i64,
    /// Default 100.
    pub denominator: Option<i64>,
}

/// Session persistence (experimental).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SessionPersistence {
    pub session_name: Option<String>,
    pub absolute_timeout: Option<crate::kinds::common::Duration>,
    pub idle_timeout: Option<crate::kinds::common::Duration>,
    #[serde(rename = "type")]
    pub persistence_type: Option<SessionPersistenceType>,
    pub cookie_config: Option<CookieConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SessionPersistenceType {
    Cookie,
    Header,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CookieConfig {
    pub lifetime_type: Option<CookieLifetimeType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CookieLifetimeType {
    Permanent,
    Session,
}
