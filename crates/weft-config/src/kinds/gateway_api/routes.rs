//! GRPCRoute, TCPRoute, TLSRoute and ReferenceGrant.

use serde::Deserialize;

use super::{
    BackendRef, HttpHeaderFilter, HttpRequestMirrorFilter, LocalObjectReference, MatchType,
    ParentReference, SessionPersistence,
};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcRoute {
    pub parent_refs: Vec<ParentReference>,
    pub hostnames: Vec<String>,
    pub rules: Vec<GrpcRouteRule>,
    pub use_default_gateways: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcRouteRule {
    pub name: Option<String>,
    pub matches: Vec<GrpcRouteMatch>,
    pub filters: Vec<GrpcRouteFilter>,
    pub backend_refs: Vec<GrpcBackendRef>,
    pub session_persistence: Option<SessionPersistence>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcRouteMatch {
    pub method: Option<GrpcMethodMatch>,
    pub headers: Vec<GrpcHeaderMatch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcMethodMatch {
    /// Default `Exact`.
    #[serde(rename = "type")]
    pub match_type: Option<MatchType>,
    pub service: Option<String>,
    pub method: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcHeaderMatch {
    #[serde(rename = "type")]
    pub match_type: Option<MatchType>,
    pub name: String,
    pub value: String,
}

/// GRPCRoute filters: a subset of HTTPRoute's.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcRouteFilter {
    #[serde(rename = "type")]
    pub filter_type: Option<GrpcRouteFilterType>,
    pub request_header_modifier: Option<HttpHeaderFilter>,
    pub response_header_modifier: Option<HttpHeaderFilter>,
    pub request_mirror: Option<HttpRequestMirrorFilter>,
    pub extension_ref: Option<LocalObjectReference>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum GrpcRouteFilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestMirror,
    ExtensionRef,
}

impl GrpcRouteFilterType {
    pub fn field(self) -> &'static str {
        match self {
            GrpcRouteFilterType::RequestHeaderModifier => "requestHeaderModifier",
            GrpcRouteFilterType::ResponseHeaderModifier => "responseHeaderModifier",
            GrpcRouteFilterType::RequestMirror => "requestMirror",
            GrpcRouteFilterType::ExtensionRef => "extensionRef",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GrpcRouteFilterType::RequestHeaderModifier => "RequestHeaderModifier",
            GrpcRouteFilterType::ResponseHeaderModifier => "ResponseHeaderModifier",
            GrpcRouteFilterType::RequestMirror => "RequestMirror",
            GrpcRouteFilterType::ExtensionRef => "ExtensionRef",
        }
    }
}

impl GrpcRouteFilter {
    pub fn set_fields(&self) -> Vec<&'static str> {
        [
            (
                self.request_header_modifier.is_some(),
                "requestHeaderModifier",
            ),
            (
                self.response_header_modifier.is_some(),
                "responseHeaderModifier",
            ),
            (self.request_mirror.is_some(), "requestMirror"),
            (self.extension_ref.is_some(), "extensionRef"),
        ]
        .into_iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| n)
        .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcBackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<u32>,
    pub weight: Option<i64>,
    pub filters: Vec<GrpcRouteFilter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TcpRoute {
    pub parent_refs: Vec<ParentReference>,
    pub rules: Vec<L4RouteRule>,
    pub use_default_gateways: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsRoute {
    pub parent_refs: Vec<ParentReference>,
    pub hostnames: Vec<String>,
    pub rules: Vec<L4RouteRule>,
    pub use_default_gateways: Option<String>,
}

/// A TCPRoute or TLSRoute rule: backends only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct L4RouteRule {
    pub name: Option<String>,
    pub backend_refs: Vec<BackendRef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ReferenceGrant {
    pub from: Vec<ReferenceGrantFrom>,
    pub to: Vec<ReferenceGrantTo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ReferenceGrantFrom {
    pub group: String,
    pub kind: String,
    pub namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ReferenceGrantTo {
    pub group: String,
    pub kind: String,
    pub name: Option<String>,
}
