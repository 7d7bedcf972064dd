//! `destinationrule.PodNotSelectedAnalyzer`: DestinationRules for a host no Service or
//! ServiceEntry provides (IST0174), and subsets whose labels select none of the service's
//! pods (IST0173), so traffic routed to them fails with 503 "no healthy upstream".
//!
//! Node topology labels (`topology.kubernetes.io/region` ...) are added to endpoints from
//! the node the pod runs on, which weft does not see: a subset selecting on one is assumed
//! to match unless its value is empty (no node carries an empty topology label).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::hosts::ServiceRegistry;
use crate::analyze::{Analyzer, Context, PodInfo, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::common::labels_match;
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;

/// Labels Istio copies from the pod's node onto its endpoints.
const NODE_LABELS: &[&str] = &[
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
    "kubernetes.io/hostname",
];

pub struct PodNotSelectedAnalyzer;

/// Pods by namespace and by (namespace, label, value).
struct PodIndex<'p, 'a> {
    by_ns: HashMap<&'a str, Vec<&'p PodInfo<'a>>>,
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'p PodInfo<'a>>>,
}

impl<'p, 'a> PodIndex<'p, 'a> {
    fn build(pods: &'p [PodInfo<'a>]) -> PodIndex<'p, 'a> {
        let mut by_ns: HashMap<&str, Vec<&PodInfo>> = HashMap::new();
        let mut by_label: HashMap<(&str, &str, &str), Vec<&PodInfo>> = HashMap::new();
        for p in pods {
            by_ns.entry(p.namespace).or_default().push(p);
            for (k, v) in p.labels {
                by_label
                    .entry((p.namespace, k.as_str(), v.as_str()))
                    .or_default()
                    .push(p);
            }
        }
        PodIndex { by_ns, by_label }
    }

    /// Pods in `ns` carrying every label of `selector`.
    fn selected(&self, ns: &str, selector: &BTreeMap<String, String>) -> Vec<&'p PodInfo<'a>> {
        let candidates: &[&PodInfo] = match selector.iter().next() {
            None => self.by_ns.get(ns).map(Vec::as_slice).unwrap_or(&[]),
            Some((k, v)) => self
                .by_label
                .get(&(ns, k.as_str(), v.as_str()))
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        };
        candidates
            .iter()
            .copied()
            .filter(|p| labels_match(selector, p.labels))
            .collect()
    }
}

impl Analyzer for PodNotSelectedAnalyzer {
    fn name(&self) -> &'static str {
        "destinationrule.PodNotSelectedAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let registry = ServiceRegistry::build(ctx);
        let pods = PodIndex::build(ctx.pods());
        for obj in ctx.of(Kind::DestinationRule) {
            let Body::DestinationRule(dr) = &obj.body else {
                continue;
            };
            let ns = obj.namespace();
            let Some(target) = registry.lookup(ns, &dr.export_to, &dr.host) else {
                out.push(
                    finding(obj, "IST0174", Severity::Warning, "spec.host", format!(
                        "host `{}` matches no Service or ServiceEntry visible from namespace `{ns}`: the DestinationRule has no effect",
                        dr.host
                    ))
                    .with_hint(registry.suggest(&dr.host, ns)),
                );
                continue;
            };
            if dr.subsets.is_empty() {
                continue;
            }
            // The pods behind the service: (namespace, base selector).
            let base: Option<(&str, BTreeMap<String, String>)> = match &target.source.body {
                Body::Service(s) => s
                    .selector
                    .clone()
                    .map(|sel| (target.source.namespace(), sel)),
                Body::ServiceEntry(se) => se
                    .workload_selector
                    .as_ref()
                    .map(|ws| (target.source.namespace(), ws.labels.clone())),
                _ => None,
            };
            let Some((pod_ns, base_sel)) = base else {
                continue;
            };
            let service_pods = pods.selected(pod_ns, &base_sel);
            for (i, subset) in dr.subsets.iter().enumerate() {
                let path = FieldPath::parse("spec.subsets").index(i);
                let empty_node_label = subset
                    .labels
                    .iter()
                    .find(|(k, v)| NODE_LABELS.contains(&k.as_str()) && v.is_empty());
                let mut selector = base_sel.clone();
                selector.extend(
                    subset
                        .labels
                        .iter()
                        .filter(|(k, _)| !NODE_LABELS.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                if empty_node_label.is_none() && !pods.selected(pod_ns, &selector).is_empty() {
                    continue;
                }
                let shown: Vec<String> = subset
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                let hint = if let Some((k, _)) = empty_node_label {
                    format!(
                        "`{k}` comes from the node's labels and is never empty; give it a value or remove it"
                    )
                } else if service_pods.is_empty() {
                    format!(
                        "no pod of {} is known; deploy pods labelled {} (or check the service's selector)",
                        target.describe(),
                        shown.join(", ")
                    )
                } else {
                    let mut have: BTreeSet<String> = BTreeSet::new();
                    for p in &service_pods {
                        for k in subset.labels.keys() {
                            if let Some(v) = p.labels.get(k) {
                                have.insert(format!("{k}={v}"));
                            }
                        }
                    }
                    if have.is_empty() {
                        "the service's pods carry none of these labels; label the pods or fix the subset".to_string()
                    } else {
                        format!(
                            "the service's pods have {}; fix the subset labels or label the pods",
                            have.into_iter().collect::<Vec<_>>().join(", ")
                        )
                    }
                };
                out.push(
                    finding(obj, "IST0173", Severity::Error, path, format!(
                        "subset `{}` (labels {}) selects no pod of {}: traffic routed to it fails with 503 (no healthy upstream)",
                        subset.name,
                        shown.join(", "),
                        target.describe()
                    ))
                    .with_hint(hint),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {

    fn run(yaml: &str) -> Vec<crate::Diagnostic> {
        crate::testing::run_named("destinationrule.PodNotSelectedAnalyzer", yaml)
    }

    const BASE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {app: web}\n  ports: [{port: 80, name: http}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web-v1, namespace: default}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web, version: v1}}\n    spec:\n      containers: [{name: web, image: web}]\n";

    fn dr(host: &str, subsets: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web, namespace: default}}\nspec:\n  host: {host}\n  subsets: {subsets}\n"
        )
    }

    #[test]
    fn subset_matching_pods_is_silent() {
        let got = run(&format!(
            "{BASE}{}",
            dr("web", "[{name: v1, labels: {version: v1}}]")
        ));
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn subset_without_pods_and_unknown_host_are_reported() {
        let got = run(&format!(
            "{BASE}{}",
            dr("web", "[{name: v2, labels: {version: v2}}]")
        ));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].code, "IST0173");
        assert!(got[0].hint.as_deref().unwrap().contains("version=v1"));
        let got = run(&format!("{BASE}{}", dr("wbe", "[]")));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].code, "IST0174");
    }
}
