//! weft's own kind for the local mode: a process `weft up` runs as a mesh workload.
//!
//! ```yaml
//! apiVersion: weft.dev/v1alpha1
//! kind: Workload
//! metadata: {name: product-v1, namespace: shop, labels: {app: product, version: v1}}
//! spec:
//!   command: target/debug/shop-product
//!   args: ["--port", "9080"]
//!   env: {PRODUCT_EDITION: standard}
//!   replicas: 1
//!   serviceAccount: product
//!   ports: [{name: http, port: 9080}]
//!   readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::kinds::common::IntOrString;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadSpec {
    /// The program to run (a path, or a name looked up on PATH).
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Working directory, relative to the directory the Workload was loaded from.
    pub working_dir: Option<String>,
    /// How many copies to run (default 1).
    pub replicas: Option<u32>,
    /// The service account the workload's identity is issued for (default `default`).
    pub service_account: Option<String>,
    /// Ports the application listens on.
    pub ports: Vec<WorkloadPort>,
    /// When the application can take traffic (Kubernetes' `readinessProbe`); without one,
    /// once its ports accept connections.
    pub readiness_probe: Option<Probe>,
}

impl WorkloadSpec {
    pub fn replicas(&self) -> u32 {
        self.replicas.unwrap_or(1)
    }

    /// The port number a probe names (a number, or the name of one of `ports`).
    pub fn port_of(&self, port: &IntOrString) -> Option<u16> {
        match port {
            IntOrString::Int(n) => {
                let n = u16::try_from(*n).ok()?;
                self.ports.iter().any(|p| p.port == n).then_some(n)
            }
            IntOrString::String(name) => self
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.port),
        }
    }

    pub fn service_account(&self) -> &str {
        self.service_account
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WorkloadPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Option<String>,
}

/// A readiness probe, with Kubernetes' field names and defaults (of its handlers, only
/// `httpGet`: a local process has no kubelet to `exec` in).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Probe {
    pub http_get: Option<HttpGetAction>,
    /// How often to probe (Kubernetes' default: 10 s).
    pub period_seconds: Option<u32>,
    /// How long one probe may take (Kubernetes' default: 1 s).
    pub timeout_seconds: Option<u32>,
}

/// Kubernetes' default `periodSeconds`.
pub const DEFAULT_PERIOD_SECONDS: u32 = 10;
/// Kubernetes' default `timeoutSeconds`.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 1;

impl Probe {
    pub fn period_seconds(&self) -> u32 {
        self.period_seconds.unwrap_or(DEFAULT_PERIOD_SECONDS)
    }

    pub fn timeout_seconds(&self) -> u32 {
        self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS)
    }
}

/// `GET path` on one of the Workload's ports; a status from 200 to 399 means ready.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpGetAction {
    /// Default `/`, as in Kubernetes.
    pub path: Option<String>,
    /// A port number or a port name of the Workload.
    pub port: Option<IntOrString>,
}

impl HttpGetAction {
    pub fn path(&self) -> &str {
        self.path.as_deref().unwrap_or("/")
    }
}
