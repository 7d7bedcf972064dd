//! PeerAuthentication: which mTLS mode a workload's inbound side accepts.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::kinds::common::WorkloadSelector;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PeerAuthentication {
    /// Workloads in the policy's namespace it applies to; absent means namespace-wide (or
    /// mesh-wide in the root namespace).
    pub selector: Option<WorkloadSelector>,
    pub mtls: Option<PeerMtls>,
    /// Per-port overrides, keyed by the workload (target) port as a string (`"8080"`).
    /// `None` when absent, so that an empty map `{}` can be told apart and rejected.
    pub port_level_mtls: Option<BTreeMap<String, PeerMtls>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PeerMtls {
    pub mode: MtlsMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    /// Inherit from the parent level; PERMISSIVE when nothing sets a mode.
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}

impl PeerAuthentication {
    /// Whether the policy has a non-empty workload selector.
    pub fn has_selector(&self) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty())
    }

    /// The port-level modes with their keys parsed as ports (invalid keys are skipped;
    /// validation reports them).
    pub fn port_modes(&self) -> Vec<(u16, MtlsMode)> {
        self.port_level_mtls
            .iter()
            .flatten()
            .filter_map(|(k, v)| {
                k.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .map(|p| (p, v.mode))
            })
            .collect()
    }
}
