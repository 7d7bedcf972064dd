//! `extensions.istio.io` WasmPlugin: a Wasm module inserted into a proxy's filter chain.

use serde::Deserialize;

use crate::kinds::common::{PolicyTargetReference, WorkloadSelector};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WasmPlugin {
    pub selector: Option<WorkloadSelector>,
    pub target_ref: Option<PolicyTargetReference>,
    pub target_refs: Vec<PolicyTargetReference>,
    /// `oci://`, `https://`, `http://` or `file://`; no scheme means OCI.
    pub url: String,
    /// Hex SHA-256 of the module.
    pub sha256: Option<String>,
    pub image_pull_policy: Option<PullPolicy>,
    pub image_pull_secret: Option<String>,
    /// Deprecated public key for verification; accepted and ignored.
    pub verification_key: Option<String>,
    /// Free-form configuration handed to the plugin.
    pub plugin_config: Option<serde_json::Value>,
    pub plugin_name: Option<String>,
    pub phase: Option<PluginPhase>,
    /// Order within a phase: higher runs first.
    pub priority: Option<i64>,
    #[serde(rename = "match")]
    pub match_rules: Vec<TrafficSelector>,
    pub fail_strategy: Option<FailStrategy>,
    pub vm_config: Option<VmConfig>,
    #[serde(rename = "type")]
    pub plugin_type: Option<PluginType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PullPolicy {
    #[serde(rename = "UNSPECIFIED_POLICY")]
    Unspecified,
    IfNotPresent,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PluginPhase {
    UnspecifiedPhase,
    Authn,
    Authz,
    Stats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailStrategy {
    FailClose,
    FailOpen,
    FailReload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PluginType {
    UnspecifiedPluginType,
    Http,
    Network,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TrafficSelector {
    pub mode: Option<TrafficMode>,
    pub ports: Vec<PortSelector>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TrafficMode {
    Undefined,
    Client,
    Server,
    ClientAndServer,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PortSelector {
    /// Required (1–65535); `None` when omitted so validation can say so.
    pub number: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VmConfig {
    pub env: Vec<EnvVar>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EnvVar {
    pub name: String,
    pub value_from: EnvValueSource,
    /// Only with `valueFrom: INLINE`.
    pub value: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnvValueSource {
    #[default]
    Inline,
    Host,
}
