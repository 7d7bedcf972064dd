//! Traffic-resource analyzers: Istio Gateways (workloads, ports, credentials, conflicts,
//! shared certificates), ServiceEntries (addresses, protocol conflicts), Sidecars
//! (selectors), EnvoyFilters (patch operations) and policies that select the pods of a
//! Kubernetes Gateway API gateway.

mod envoyfilter;
mod gateway;
mod k8sgateway;
mod secret;
mod serviceentry;
mod sidecar;
mod tls;
mod workloads;

use std::collections::BTreeMap;

use super::Analyzer;

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![
        Box::new(gateway::IngressGatewayPortAnalyzer),
        Box::new(secret::SecretAnalyzer),
        Box::new(gateway::ConflictingGatewayAnalyzer),
        Box::new(gateway::CertificateAnalyzer),
        Box::new(serviceentry::ProtocolAddressesAnalyzer),
        Box::new(serviceentry::ConflictingServiceEntryProtocolAnalyzer),
        Box::new(sidecar::SelectorAnalyzer),
        Box::new(envoyfilter::EnvoyPatchAnalyzer),
        Box::new(k8sgateway::SelectorAnalyzer),
    ]
}

/// `k=v,k2=v2`, as Kubernetes prints a label selector.
fn selector_text(labels: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
    }
    s
}

/// Every selector label is present with the same value in `superset`.
fn is_subset(subset: &BTreeMap<String, String>, superset: &BTreeMap<String, String>) -> bool {
    crate::kinds::common::labels_match(subset, superset)
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::analyze::Analyzer;
    use crate::diag::Diagnostic;

    /// Load `yaml` and run one analyzer over it.
    pub fn run(analyzer: &dyn Analyzer, yaml: &str) -> Vec<Diagnostic> {
        crate::testing::run_analyzer(analyzer, yaml)
    }

    /// `CODE name` for each diagnostic, sorted.
    pub fn codes(diags: &[Diagnostic]) -> Vec<String> {
        let mut v: Vec<String> = diags
            .iter()
            .map(|d| {
                format!(
                    "{} {}",
                    d.code,
                    d.resource.as_ref().map(|r| r.name.as_str()).unwrap_or("")
                )
            })
            .collect();
        v.sort();
        v
    }
}
