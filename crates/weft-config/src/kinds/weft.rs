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
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

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
}

impl WorkloadSpec {
    pub fn replicas(&self) -> u32 {
        self.replicas.unwrap_or(1)
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
