//! Kubernetes core and apps kinds, read only as far as a mesh needs them: namespaces and
//! their labels, services and their ports, workloads and their labels and service accounts.
//!
//! Unlike the mesh kinds, workload specs accept fields weft does not model: validating a Pod
//! is the API server's job, and real manifests carry many fields a mesh never reads.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::common::{IntOrString, LabelSelector};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NamespaceSpec {
    pub finalizers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServiceSpec {
    pub ports: Vec<ServicePort>,
    pub selector: Option<BTreeMap<String, String>>,
    #[serde(rename = "type")]
    pub service_type: Option<String>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    #[serde(rename = "clusterIPs")]
    pub cluster_ips: Vec<String>,
    pub external_name: Option<String>,
    #[serde(rename = "externalIPs")]
    pub external_ips: Vec<String>,
    pub session_affinity: Option<String>,
    pub session_affinity_config: Option<IgnoredAny>,
    pub ip_families: Option<IgnoredAny>,
    pub ip_family_policy: Option<IgnoredAny>,
    pub internal_traffic_policy: Option<IgnoredAny>,
    pub external_traffic_policy: Option<IgnoredAny>,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<IgnoredAny>,
    pub load_balancer_class: Option<IgnoredAny>,
    pub load_balancer_source_ranges: Option<IgnoredAny>,
    pub allocate_load_balancer_node_ports: Option<IgnoredAny>,
    pub health_check_node_port: Option<IgnoredAny>,
    pub publish_not_ready_addresses: Option<IgnoredAny>,
    pub traffic_distribution: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target_port: Option<IntOrString>,
    pub protocol: Option<String>,
    pub app_protocol: Option<String>,
    pub node_port: Option<u16>,
}

/// A Pod spec, reduced to what the mesh reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub service_account_name: Option<String>,
    /// Deprecated alias of `serviceAccountName`, still honoured by Kubernetes.
    pub service_account: Option<String>,
    pub security_context: Option<SecurityContext>,
    pub host_network: bool,
}

impl PodSpec {
    /// The service account the pod runs as (`default` when unset).
    pub fn service_account(&self) -> &str {
        self.service_account_name
            .as_deref()
            .or(self.service_account.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("default")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    pub image: Option<String>,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub ports: Vec<ContainerPort>,
    pub security_context: Option<SecurityContext>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: u16,
    pub protocol: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContext {
    pub run_as_user: Option<i64>,
}

/// Deployment, StatefulSet, DaemonSet and ReplicaSet share what the mesh reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkloadSpec {
    pub replicas: Option<u32>,
    pub selector: Option<LabelSelector>,
    pub template: PodTemplate,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodTemplate {
    pub metadata: TemplateMeta,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TemplateMeta {
    pub name: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConfigMapBody {
    pub data: BTreeMap<String, String>,
    pub binary_data: BTreeMap<String, String>,
    pub immutable: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SecretBody {
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
    /// Base64-encoded values, as Kubernetes stores them.
    pub data: BTreeMap<String, String>,
    pub string_data: BTreeMap<String, String>,
    pub immutable: Option<bool>,
}

impl SecretBody {
    /// Whether the secret has a value under `key` (in `data` or `stringData`).
    pub fn has_key(&self, key: &str) -> bool {
        self.data.contains_key(key) || self.string_data.contains_key(key)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookConfigurationBody {
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Webhook {
    pub name: String,
    pub namespace_selector: Option<LabelSelector>,
    pub object_selector: Option<LabelSelector>,
    pub client_config: WebhookClientConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookClientConfig {
    pub url: Option<String>,
    pub service: Option<WebhookService>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WebhookService {
    pub name: String,
    pub namespace: String,
    pub path: Option<String>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CrdSpec {
    pub group: String,
    pub names: CrdNames,
    pub versions: Vec<CrdVersion>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CrdNames {
    pub kind: String,
    pub plural: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CrdVersion {
    pub name: String,
    pub served: bool,
    pub storage: bool,
}
