//! ServiceEntry, WorkloadEntry and WorkloadGroup (`networking.istio.io`):
//! `service_entry.proto`, `workload_entry.proto`, `workload_group.proto`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::kinds::common::NetworkingWorkloadSelector;

/// Adds a service to the mesh's registry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServiceEntry {
    pub hosts: Vec<String>,
    /// VIPs or CIDRs (CIDRs only with NONE/STATIC resolution).
    #[serde(deserialize_with = "addresses")]
    pub addresses: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub location: Option<Location>,
    pub resolution: Option<Resolution>,
    pub endpoints: Vec<WorkloadEntry>,
    /// Selects WorkloadEntries and pods in the same namespace (not with `endpoints`).
    pub workload_selector: Option<NetworkingWorkloadSelector>,
    pub export_to: Vec<String>,
    pub subject_alt_names: Vec<String>,
}

impl ServiceEntry {
    /// `location`, MESH_EXTERNAL when unset.
    pub fn location(&self) -> Location {
        self.location.unwrap_or(Location::MeshExternal)
    }

    /// `resolution`, NONE when unset.
    pub fn resolution(&self) -> Resolution {
        self.resolution.unwrap_or(Resolution::None)
    }

    pub fn port(&self, number: u32) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }
}

/// Address lists as Kubernetes reads them. In a flow sequence an IPv6 address ending in
/// `::` (`[1.2.3.4, 2001:db8::]`) is a plain string for Go's YAML decoder, while the YAML
/// parser here reads the trailing `:` as a mapping indicator (`{"2001:db8:": null}`); such
/// an entry is put back together.
fn addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    #[allow(dead_code)]
    enum Item {
        Text(String),
        SplitIpv6(BTreeMap<String, ()>),
        Other(serde_json::Value),
    }
    let items = Vec::<Item>::deserialize(d)?;
    items
        .into_iter()
        .map(|i| match i {
            Item::Text(s) => Ok(s),
            Item::SplitIpv6(m) if m.len() == 1 => {
                Ok(format!("{}:", m.into_keys().next().unwrap_or_default()))
            }
            Item::SplitIpv6(_) | Item::Other(_) => Err(serde::de::Error::custom(
                "expected an IP address or CIDR as a string, e.g. \"10.0.0.1\" or \"10.0.0.0/16\"",
            )),
        })
        .collect()
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServicePort {
    pub number: u32,
    /// HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP, TLS, UDP; case-insensitive.
    pub protocol: String,
    pub name: String,
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Location {
    MeshExternal,
    MeshInternal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Resolution {
    None,
    Static,
    Dns,
    DnsRoundRobin,
    DynamicDns,
}

/// A non-Kubernetes workload (VM, bare metal), or an endpoint inlined in a ServiceEntry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadEntry {
    /// IP, DNS name, or `unix:///absolute/path` / `unix://@abstract`.
    pub address: String,
    /// Port name → number; overrides the service's target port.
    pub ports: BTreeMap<String, u32>,
    pub labels: BTreeMap<String, String>,
    pub network: String,
    /// `region/zone/subzone`.
    pub locality: String,
    pub weight: Option<u32>,
    pub service_account: String,
}

impl WorkloadEntry {
    pub fn is_uds(&self) -> bool {
        self.address.starts_with("unix://")
    }
}

/// A template for WorkloadEntries that VMs register automatically.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadGroup {
    pub metadata: Option<WorkloadGroupMetadata>,
    pub template: Option<WorkloadEntry>,
    pub probe: Option<ReadinessProbe>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadGroupMetadata {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// Exactly one of `httpGet`, `tcpSocket`, `exec`, `grpc`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ReadinessProbe {
    pub initial_delay_seconds: Option<i64>,
    pub timeout_seconds: Option<i64>,
    pub period_seconds: Option<i64>,
    pub success_threshold: Option<i64>,
    pub failure_threshold: Option<i64>,
    pub http_get: Option<HTTPHealthCheckConfig>,
    pub tcp_socket: Option<TCPHealthCheckConfig>,
    pub exec: Option<ExecHealthCheckConfig>,
    pub grpc: Option<GrpcHealthCheckConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPHealthCheckConfig {
    pub path: String,
    pub port: u32,
    pub host: String,
    /// HTTP or HTTPS.
    pub scheme: String,
    pub http_headers: Vec<HTTPHeader>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TCPHealthCheckConfig {
    pub host: String,
    pub port: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExecHealthCheckConfig {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GrpcHealthCheckConfig {
    pub port: u32,
    pub service: Option<String>,
}
