//! WEFT1002: a workload selector that selects no workload.

use std::collections::BTreeMap;

use super::{SELECTS_NOTHING, labels_text};
use crate::analyze::{Analyzer, Context, PodInfo, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::Body;
use crate::kinds::common::labels_match;
use crate::path::FieldPath;

pub struct SelectorAnalyzer;

/// The selector labels of an object that has one, with the path of the label map.
/// AuthorizationPolicy (IST0127), Sidecar and Telemetry (IST0101) selectors are Istio's own
/// analyzers' business; these are the kinds Istio does not check.
fn selector_of(body: &Body) -> Option<(&BTreeMap<String, String>, FieldPath)> {
    let spec = FieldPath::root().key("spec");
    let (labels, path) = match body {
        Body::PeerAuthentication(p) => (
            &p.selector.as_ref()?.match_labels,
            spec.key("selector").key("matchLabels"),
        ),
        Body::RequestAuthentication(p) => (
            &p.selector.as_ref()?.match_labels,
            spec.key("selector").key("matchLabels"),
        ),
        // DestinationRule's workloadSelector is the security-style `matchLabels` one.
        Body::DestinationRule(p) => (
            &p.workload_selector.as_ref()?.match_labels,
            spec.key("workloadSelector").key("matchLabels"),
        ),
        Body::EnvoyFilter(p) => (
            &p.workload_selector.as_ref()?.labels,
            spec.key("workloadSelector").key("labels"),
        ),
        _ => return None,
    };
    (!labels.is_empty()).then_some((labels, path))
}

/// The workload sharing the most selector labels (ties: fewest differing keys).
fn closest<'p, 'a>(
    pods: &[&'p PodInfo<'a>],
    selector: &BTreeMap<String, String>,
) -> Option<&'p PodInfo<'a>> {
    pods.iter()
        .max_by_key(|p| {
            let same = selector
                .iter()
                .filter(|(k, v)| p.labels.get(*k) == Some(*v))
                .count();
            let keys = selector
                .keys()
                .filter(|k| p.labels.contains_key(*k))
                .count();
            (same, keys)
        })
        .copied()
}

impl Analyzer for SelectorAnalyzer {
    fn name(&self) -> &'static str {
        "weft.SelectorAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        if ctx.pods().is_empty() {
            return;
        }
        let root = ctx.mesh.root_namespace().to_string();
        for obj in ctx.objects {
            let Some((selector, path)) = selector_of(&obj.body) else {
                continue;
            };
            // Istio's own gateways (`istio: ingressgateway`) are installed with Istio and
            // rarely part of the manifests being analyzed.
            if selector
                .get("istio")
                .is_some_and(|v| v.ends_with("gateway"))
            {
                continue;
            }
            let ns = obj.namespace();
            // In the root namespace a policy applies mesh-wide: look in every namespace.
            let mesh_wide = ns == root;
            let candidates: Vec<&PodInfo> = ctx
                .pods()
                .iter()
                .filter(|p| mesh_wide || p.namespace == ns)
                .collect();
            if candidates.iter().any(|p| labels_match(selector, p.labels)) {
                continue;
            }
            let scope = if mesh_wide {
                "any namespace".to_string()
            } else {
                format!("namespace `{ns}`")
            };
            let mut message = format!(
                "{} selects no workload: nothing in {scope} has labels {}",
                obj.kind.name(),
                labels_text(selector)
            );
            let hint = match closest(&candidates, selector) {
                Some(p) => {
                    let differing: Vec<String> = selector
                        .iter()
                        .filter(|(k, v)| p.labels.get(*k) != Some(*v))
                        .map(|(k, v)| match p.labels.get(k) {
                            Some(have) => format!("{k}={have} (not {v})"),
                            None => format!("no `{k}` label"),
                        })
                        .collect();
                    message.push_str(&format!(
                        "; the closest workload, {} {}/{}, has {}",
                        p.source.kind.name(),
                        p.namespace,
                        p.name,
                        labels_text(p.labels)
                    ));
                    format!(
                        "it differs in: {}; fix the selector labels, or remove the selector to apply to the whole namespace",
                        differing.join(", ")
                    )
                }
                None => format!(
                    "there are no workloads in {scope}; check the namespace of this {}",
                    obj.kind.name()
                ),
            };
            let mut d = finding(obj, SELECTS_NOTHING, Severity::Warning, path, message);
            d.hint = Some(hint);
            out.push(d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::weft::run;

    const POD: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: ratings-v1, namespace: shop}\nspec:\n  selector: {matchLabels: {app: ratings}}\n  template:\n    metadata: {labels: {app: ratings, version: v1}}\n    spec: {containers: [{name: app, image: ratings}]}\n";

    #[test]
    fn selector_matching_nothing_fires() {
        let y = format!(
            "{POD}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: rating}}}}\n  mtls: {{mode: STRICT}}\n"
        );
        let out = run(&SelectorAnalyzer, &y);
        assert_eq!(out.len(), 1, "{out:?}");
        let d = &out[0];
        assert_eq!(d.code, "WEFT1002");
        assert_eq!(
            d.resource.as_ref().unwrap().to_string(),
            "PeerAuthentication shop/p"
        );
        assert_eq!(
            d.field.as_ref().unwrap().to_string(),
            "spec.selector.matchLabels"
        );
        assert!(d.message.contains("app=rating"), "{}", d.message);
        assert!(
            d.message.contains("Deployment shop/ratings-v1"),
            "{}",
            d.message
        );
        assert!(
            d.hint
                .as_ref()
                .unwrap()
                .contains("app=ratings (not rating)"),
            "{:?}",
            d.hint
        );
    }

    #[test]
    fn envoy_filter_in_other_namespace_fires() {
        let y = format!(
            "{POD}---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: s, namespace: other}}\nspec:\n  workloadSelector: {{labels: {{app: ratings}}}}\n"
        );
        let out = run(&SelectorAnalyzer, &y);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].field.as_ref().unwrap().to_string(),
            "spec.workloadSelector.labels"
        );
    }

    #[test]
    fn matching_selector_and_root_namespace_are_silent() {
        let y = format!(
            "{POD}---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: p, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: ratings}}}}\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: mesh, namespace: istio-system}}\nspec:\n  selector: {{matchLabels: {{version: v1}}}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: ns-wide, namespace: shop}}\nspec: {{}}\n"
        );
        assert!(
            run(&SelectorAnalyzer, &y).is_empty(),
            "{:?}",
            run(&SelectorAnalyzer, &y)
        );
    }
}
