//! Gateway and GatewayClass.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::SecretObjectReference;
use crate::kinds::common::LabelSelector;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Gateway {
    pub gateway_class_name: String,
    pub listeners: Vec<Listener>,
    pub addresses: Vec<GatewayAddress>,
    pub infrastructure: Option<GatewayInfrastructure>,
    /// Experimental: Gateway-wide TLS (frontend client validation, backend client cert).
    pub tls: Option<GatewayTlsSettings>,
    /// Experimental (v1.3): which ListenerSets may attach.
    pub allowed_listeners: Option<AllowedListeners>,
    /// Deprecated experimental field superseded by `tls.backend`.
    #[serde(rename = "backendTLS")]
    pub backend_tls: Option<GatewayBackendTls>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Listener {
    pub name: String,
    pub hostname: Option<String>,
    pub port: u32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP` or an implementation-specific
    /// domain-prefixed protocol: the CRD accepts any token, so this is a string.
    pub protocol: String,
    pub tls: Option<ListenerTls>,
    pub allowed_routes: Option<AllowedRoutes>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ListenerTls {
    /// Default `Terminate`.
    pub mode: Option<TlsMode>,
    pub certificate_refs: Vec<SecretObjectReference>,
    pub options: BTreeMap<String, String>,
    /// Experimental (removed in v1.3 in favour of `spec.tls.frontend`).
    pub frontend_validation: Option<FrontendTlsValidation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsMode {
    Terminate,
    Passthrough,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FrontendTlsValidation {
    pub ca_certificate_refs: Vec<ObjectReference>,
    /// `AllowValidOnly` (default) or `AllowInsecureFallback`.
    pub mode: Option<String>,
}

/// A namespaced reference to any object (CA certificate ConfigMaps, parameters).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ObjectReference {
    pub group: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewayTlsSettings {
    pub backend: Option<GatewayBackendTls>,
    pub frontend: Option<FrontendTlsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewayBackendTls {
    pub client_certificate_ref: Option<SecretObjectReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FrontendTlsConfig {
    pub default: Option<FrontendTlsDefault>,
    pub per_port: Vec<FrontendTlsPerPort>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FrontendTlsDefault {
    pub validation: Option<FrontendTlsValidation>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FrontendTlsPerPort {
    pub port: u32,
    pub tls: FrontendTlsDefault,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AllowedRoutes {
    pub namespaces: Option<RouteNamespaces>,
    pub kinds: Vec<RouteGroupKind>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RouteNamespaces {
    /// Default `Same`.
    pub from: Option<FromNamespaces>,
    pub selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FromNamespaces {
    All,
    Same,
    Selector,
    None,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AllowedListeners {
    pub namespaces: Option<RouteNamespaces>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RouteGroupKind {
    /// Default `gateway.networking.k8s.io`.
    pub group: Option<String>,
    pub kind: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewayAddress {
    /// `IPAddress` (default), `Hostname`, `NamedAddress` or a domain-prefixed type.
    #[serde(rename = "type")]
    pub address_type: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewayInfrastructure {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub parameters_ref: Option<super::LocalObjectReference>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GatewayClass {
    pub controller_name: String,
    pub parameters_ref: Option<ObjectReference>,
    pub description: Option<String>,
}
