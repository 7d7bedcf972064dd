//! HTTPRoute (also Linkerd's `policy.linkerd.io` HTTPRoute, which has the same shape).

use serde::Deserialize;

use super::{
    BackendObjectReference, HttpHeaderFilter, HttpRequestMirrorFilter, LocalObjectReference,
    MatchType, ParentReference, SessionPersistence,
};
use crate::kinds::common::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRoute {
    pub parent_refs: Vec<ParentReference>,
    pub hostnames: Vec<String>,
    pub rules: Vec<HttpRouteRule>,
    /// Experimental (v1.4): `All` or `None`.
    pub use_default_gateways: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRouteRule {
    pub name: Option<String>,
    /// OR'ed; empty means `PathPrefix /`.
    pub matches: Vec<HttpRouteMatch>,
    pub filters: Vec<HttpRouteFilter>,
    pub backend_refs: Vec<HttpBackendRef>,
    pub timeouts: Option<HttpRouteTimeouts>,
    pub retry: Option<HttpRouteRetry>,
    pub session_persistence: Option<SessionPersistence>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRouteMatch {
    pub path: Option<HttpPathMatch>,
    pub headers: Vec<HttpHeaderMatch>,
    pub query_params: Vec<HttpHeaderMatch>,
    pub method: Option<HttpMethod>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpPathMatch {
    /// Default `PathPrefix`.
    #[serde(rename = "type")]
    pub match_type: Option<PathMatchType>,
    /// Default `/`.
    pub value: Option<String>,
}

impl HttpPathMatch {
    pub fn match_type(&self) -> PathMatchType {
        self.match_type.unwrap_or(PathMatchType::PathPrefix)
    }

    pub fn value(&self) -> &str {
        self.value.as_deref().unwrap_or("/")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PathMatchType {
    Exact,
    PathPrefix,
    RegularExpression,
}

/// A header or query-parameter match (both have this shape).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpHeaderMatch {
    /// Default `Exact`.
    #[serde(rename = "type")]
    pub match_type: Option<MatchType>,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
    Patch,
}

/// A filter: `type` names which one of the other fields must be set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRouteFilter {
    #[serde(rename = "type")]
    pub filter_type: Option<HttpRouteFilterType>,
    pub request_header_modifier: Option<HttpHeaderFilter>,
    pub response_header_modifier: Option<HttpHeaderFilter>,
    pub request_redirect: Option<HttpRequestRedirectFilter>,
    pub url_rewrite: Option<HttpUrlRewriteFilter>,
    pub request_mirror: Option<HttpRequestMirrorFilter>,
    pub cors: Option<HttpCorsFilter>,
    pub extension_ref: Option<LocalObjectReference>,
    pub external_auth: Option<HttpExternalAuthFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HttpRouteFilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestRedirect,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    RequestMirror,
    #[serde(rename = "CORS")]
    Cors,
    ExternalAuth,
    ExtensionRef,
}

impl HttpRouteFilterType {
    /// The field that holds this filter's configuration.
    pub fn field(self) -> &'static str {
        match self {
            HttpRouteFilterType::RequestHeaderModifier => "requestHeaderModifier",
            HttpRouteFilterType::ResponseHeaderModifier => "responseHeaderModifier",
            HttpRouteFilterType::RequestRedirect => "requestRedirect",
            HttpRouteFilterType::UrlRewrite => "urlRewrite",
            HttpRouteFilterType::RequestMirror => "requestMirror",
            HttpRouteFilterType::Cors => "cors",
            HttpRouteFilterType::ExternalAuth => "externalAuth",
            HttpRouteFilterType::ExtensionRef => "extensionRef",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HttpRouteFilterType::RequestHeaderModifier => "RequestHeaderModifier",
            HttpRouteFilterType::ResponseHeaderModifier => "ResponseHeaderModifier",
            HttpRouteFilterType::RequestRedirect => "RequestRedirect",
            HttpRouteFilterType::UrlRewrite => "URLRewrite",
            HttpRouteFilterType::RequestMirror => "RequestMirror",
            HttpRouteFilterType::Cors => "CORS",
            HttpRouteFilterType::ExternalAuth => "ExternalAuth",
            HttpRouteFilterType::ExtensionRef => "ExtensionRef",
        }
    }
}

impl HttpRouteFilter {
    /// The configuration fields that are set, by JSON name.
    pub fn set_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut add = |set: bool, name| {
            if set {
                out.push(name)
            }
        };
        add(
            self.request_header_modifier.is_some(),
            "requestHeaderModifier",
        );
        add(
            self.response_header_modifier.is_some(),
            "responseHeaderModifier",
        );
        add(self.request_redirect.is_some(), "requestRedirect");
        add(self.url_rewrite.is_some(), "urlRewrite");
        add(self.request_mirror.is_some(), "requestMirror");
        add(self.cors.is_some(), "cors");
        add(self.extension_ref.is_some(), "extensionRef");
        add(self.external_auth.is_some(), "externalAuth");
        out
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRequestRedirectFilter {
    pub scheme: Option<RedirectScheme>,
    pub hostname: Option<String>,
    pub path: Option<HttpPathModifier>,
    pub port: Option<u32>,
    /// Default 302.
    pub status_code: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectScheme {
    Http,
    Https,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpUrlRewriteFilter {
    pub hostname: Option<String>,
    pub path: Option<HttpPathModifier>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpPathModifier {
    #[serde(rename = "type")]
    pub modifier_type: Option<PathModifierType>,
    pub replace_full_path: Option<String>,
    pub replace_prefix_match: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PathModifierType {
    ReplaceFullPath,
    ReplacePrefixMatch,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpCorsFilter {
    pub allow_origins: Vec<String>,
    pub allow_credentials: Option<bool>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    /// Seconds; default 5.
    pub max_age: Option<i64>,
}

/// External authorization (experimental).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpExternalAuthFilter {
    pub protocol: Option<ExternalAuthProtocol>,
    pub backend_ref: BackendObjectReference,
    pub grpc: Option<GrpcAuthConfig>,
    pub http: Option<HttpAuthConfig>,
    pub forward_body: Option<ForwardBodyConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ExternalAuthProtocol {
    #[serde(rename = "GRPC")]
    Grpc,
    #[serde(rename = "HTTP")]
    Http,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcAuthConfig {
    pub allowed_headers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpAuthConfig {
    pub path: Option<String>,
    pub allowed_headers: Vec<String>,
    pub allowed_response_headers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ForwardBodyConfig {
    pub max_size: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpBackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<u32>,
    /// 0–1,000,000; default 1.
    pub weight: Option<i64>,
    pub filters: Vec<HttpRouteFilter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRouteTimeouts {
    pub request: Option<Duration>,
    pub backend_request: Option<Duration>,
}

/// Retry policy (experimental).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpRouteRetry {
    pub codes: Vec<i64>,
    pub attempts: Option<i64>,
    pub backoff: Option<Duration>,
}
