//! EnvoyFilter (`networking.istio.io/v1alpha3`): `istio/api:networking/v1alpha3/envoy_filter.proto`.
//!
//! Patch values are free-form Envoy configuration, kept as JSON values.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::kinds::common::{NetworkingWorkloadSelector, PolicyTargetReference};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EnvoyFilter {
    pub workload_selector: Option<NetworkingWorkloadSelector>,
    pub target_refs: Vec<PolicyTargetReference>,
    pub config_patches: Vec<EnvoyConfigObjectPatch>,
    /// Lower applies first; default 0.
    pub priority: i32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EnvoyConfigObjectPatch {
    pub apply_to: Option<ApplyTo>,
    pub r#match: Option<EnvoyConfigObjectMatch>,
    pub patch: Option<Patch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApplyTo {
    Invalid,
    Listener,
    FilterChain,
    NetworkFilter,
    HttpFilter,
    RouteConfiguration,
    VirtualHost,
    HttpRoute,
    Cluster,
    ExtensionConfig,
    Bootstrap,
    ListenerFilter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EnvoyConfigObjectMatch {
    /// Unset means ANY.
    pub context: Option<PatchContext>,
    pub proxy: Option<ProxyMatch>,
    pub listener: Option<ListenerMatch>,
    pub route_configuration: Option<RouteConfigurationMatch>,
    pub cluster: Option<ClusterMatch>,
    /// Only with context WAYPOINT.
    pub waypoint: Option<WaypointMatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchContext {
    Any,
    SidecarInbound,
    SidecarOutbound,
    Gateway,
    Waypoint,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyMatch {
    /// A regex on the proxy version.
    pub proxy_version: String,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ListenerMatch {
    pub port_number: u32,
    pub port_name: String,
    pub filter_chain: Option<FilterChainMatch>,
    pub listener_filter: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FilterChainMatch {
    pub name: String,
    pub sni: String,
    pub transport_protocol: String,
    pub application_protocols: String,
    pub filter: Option<FilterMatch>,
    pub destination_port: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct FilterMatch {
    pub name: String,
    pub sub_filter: Option<SubFilterMatch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SubFilterMatch {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RouteConfigurationMatch {
    pub port_number: u32,
    pub port_name: String,
    pub gateway: String,
    pub vhost: Option<VirtualHostMatch>,
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VirtualHostMatch {
    pub name: String,
    pub domain_name: String,
    pub route: Option<RouteMatch>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RouteMatch {
    pub name: String,
    pub action: Option<RouteAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RouteAction {
    Any,
    Route,
    Redirect,
    DirectResponse,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClusterMatch {
    pub port_number: u32,
    pub service: String,
    pub subset: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WaypointMatch {
    pub filter: Option<FilterMatch>,
    pub route: Option<WaypointRouteMatch>,
    pub port_number: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WaypointRouteMatch {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Patch {
    pub operation: Option<PatchOperation>,
    /// Envoy configuration (free-form); required except for REMOVE.
    pub value: Option<serde_json::Value>,
    pub filter_class: Option<FilterClass>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PatchOperation {
    Invalid,
    Merge,
    Add,
    Remove,
    InsertBefore,
    InsertAfter,
    InsertFirst,
    Replace,
    MergeAndReplaceList,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterClass {
    Unspecified,
    Authn,
    Authz,
    Stats,
}
