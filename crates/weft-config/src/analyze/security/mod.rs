//! Security and telemetry analyzers: AuthorizationPolicy scope and namespaces, the istiod
//! JWKS fetch restriction, and Telemetry providers and selectors.

mod authn;
mod authz;
mod telemetry;

use super::Analyzer;

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![
        Box::new(authz::AuthorizationPoliciesAnalyzer),
        Box::new(authn::BlockedCidrsAnalyzer),
        Box::new(telemetry::ProviderAnalyzer),
        Box::new(telemetry::SelectorAnalyzer),
        Box::new(telemetry::DefaultSelectorAnalyzer),
        Box::new(telemetry::LightstepAnalyzer),
    ]
}

use super::{Context, PodInfo};

/// Whether a workload is part of the mesh: everything weft sees is, unless it opts out
/// (`sidecar.istio.io/inject: "false"` on the pod, or its namespace labelled
/// `istio-injection: disabled`).
pub(crate) fn in_mesh(ctx: &Context<'_>, pod: &PodInfo<'_>) -> bool {
    const INJECT: &str = "sidecar.istio.io/inject";
    let opted_out = |v: Option<&String>| v.is_some_and(|v| v.eq_ignore_ascii_case("false"));
    if opted_out(pod.annotations.get(INJECT)) || opted_out(pod.labels.get(INJECT)) {
        return false;
    }
    let ns_disabled = ctx
        .find(crate::kinds::Kind::Namespace, "", pod.namespace)
        .and_then(|ns| ns.label("istio-injection"))
        .is_some_and(|v| v == "disabled");
    !ns_disabled
}

/// `k=v,k2=v2`, as Istio prints a selector in messages.
pub(crate) fn selector_string(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}
