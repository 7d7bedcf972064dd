//! weft-api: the data-plane model shared by the compiler, the control plane and the proxy.
//!
//! A [`ProxyConfig`] is everything one proxy needs, already resolved: Istio's semantics
//! (short names, precedence, merging, defaults, scoping) were applied by `weft-compile`, so
//! the proxy reads fields and never interprets Istio. The types are plain data with serde so
//! they can be dumped (`/config_dump`, golden files) and sent over the wire.
//!
//! Names follow Envoy's where the concept is the same (listener, filter chain, route table,
//! virtual host, cluster), because that is what mesh operators already know.

mod cluster;
mod codec;
mod duration;
mod listener;
mod route;
mod telemetry;

pub mod otlp;
pub mod pb;

pub use cluster::*;
pub use listener::*;
pub use route::*;
pub use telemetry::*;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything one proxy runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// A content hash of the rest of the config: equal versions mean equal configs.
    pub version: String,
    pub node: Node,
    pub listeners: Vec<Listener>,
    pub route_tables: Vec<RouteTable>,
    pub clusters: Vec<Cluster>,
}

impl ProxyConfig {
    pub fn route_table(&self, name: &str) -> Option<&RouteTable> {
        self.route_tables.iter().find(|r| r.name == name)
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// The proxy the config is for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Node {
    /// Unique proxy id (`<workload instance>.<namespace>`).
    pub id: String,
    pub namespace: String,
    /// The workload it fronts (for telemetry: `source_workload`).
    pub workload: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub trust_domain: String,
    pub kind: NodeKind,
    /// The cluster the workload runs in (`source_cluster`/`destination_cluster`; Istio's
    /// default is `Kubernetes`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
    /// Metrics, access logs and tracing for this proxy (left out of dumps when it is
    /// Istio's default).
    #[serde(skip_serializing_if = "TelemetryConfig::is_default")]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Beside one workload: outbound and inbound traffic.
    #[default]
    Sidecar,
    /// A standalone ingress/egress gateway serving Gateway servers.
    Gateway,
}

/// Which configuration object a piece of proxy config came from, so that errors the proxy
/// generates can name it ("circuit open on DestinationRule shop/cart").
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Origin {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}
