//! Sidecar (`networking.istio.io`): `istio/api:networking/v1alpha3/sidecar.proto`.

use serde::Deserialize;

use super::destination_rule::ConnectionPoolSettings;
use super::gateway::ServerTLSSettings;
use super::virtual_service::Destination;
use crate::kinds::common::NetworkingWorkloadSelector;

/// Scopes what a workload's proxy accepts and can reach.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Sidecar {
    pub workload_selector: Option<NetworkingWorkloadSelector>,
    pub ingress: Vec<IstioIngressListener>,
    pub egress: Vec<IstioEgressListener>,
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    pub outbound_traffic_policy: Option<SidecarOutboundTrafficPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IstioIngressListener {
    /// Required.
    pub port: Option<SidecarPort>,
    pub bind: String,
    pub capture_mode: Option<CaptureMode>,
    /// `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT`, `[::]:PORT` or `unix://…`.
    pub default_endpoint: String,
    /// SIMPLE or MUTUAL only.
    pub tls: Option<ServerTLSSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IstioEgressListener {
    pub port: Option<SidecarPort>,
    pub bind: String,
    pub capture_mode: Option<CaptureMode>,
    /// `ns/dnsName`; ns is `*`, `.`, `~` or a namespace name.
    pub hosts: Vec<String>,
}

impl IstioEgressListener {
    /// The hosts split into (namespace, dnsName).
    pub fn host_parts(&self) -> Vec<(&str, &str)> {
        self.hosts
            .iter()
            .filter_map(|h| h.split_once('/'))
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SidecarPort {
    pub number: u32,
    pub protocol: String,
    pub name: String,
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    Default,
    Iptables,
    None,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SidecarOutboundTrafficPolicy {
    /// Unset means "inherit the mesh setting" (ALLOW_ANY by default).
    pub mode: Option<OutboundTrafficMode>,
    /// Only with ALLOW_ANY.
    pub egress_proxy: Option<Destination>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundTrafficMode {
    RegistryOnly,
    AllowAny,
}
