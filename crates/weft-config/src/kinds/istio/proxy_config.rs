//! ProxyConfig (`networking.istio.io/v1beta1`): `istio/api:networking/v1beta1/proxy_config.proto`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::kinds::common::WorkloadSelector;

/// Per-workload proxy settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyConfig {
    pub selector: Option<WorkloadSelector>,
    /// Worker threads; 0 means one per core. Signed so a negative value reaches validation.
    pub concurrency: Option<i64>,
    pub environment_variables: BTreeMap<String, String>,
    pub image: Option<ProxyConfigImage>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyConfigImage {
    /// `default`, `debug`, `distroless`…
    pub image_type: String,
}
