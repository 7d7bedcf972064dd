//! `sidecar.SelectorAnalyzer`: a Sidecar's workload selector must match a pod of its
//! namespace (IST0101); a pod must be selected by at most one Sidecar (IST0110); a namespace
//! may have at most one selector-less Sidecar (IST0111); and Sidecars that only apply to
//! ambient workloads or namespaces have no effect (IST0167).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::selector_text;
use super::workloads::NamespacedPods;
use crate::analyze::{Analyzer, Context, PodInfo, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::istio::Sidecar;
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";

fn pod_in_ambient(p: &PodInfo<'_>) -> bool {
    p.annotations
        .get(AMBIENT_REDIRECTION)
        .is_some_and(|v| v == "enabled")
}

/// A namespace enrolled in ambient mode and not also in sidecar injection.
fn namespace_in_ambient(ctx: &Context<'_>, ns: &str) -> bool {
    let Some(n) = ctx.of(Kind::Namespace).find(|o| o.name() == ns) else {
        return false;
    };
    if n.label("istio-injection") == Some("enabled")
        || n.label("istio.io/rev").is_some_and(|v| !v.is_empty())
    {
        return false;
    }
    n.label("istio.io/dataplane-mode") == Some("ambient")
}

fn name_path() -> FieldPath {
    FieldPath::root().key("metadata").key("name")
}

fn ineffective(obj: &Object, path: FieldPath, why: &str) -> Diagnostic {
    finding(
        obj,
        "IST0167",
        Severity::Warning,
        path,
        format!("Sidecar {}/{} has no effect: {why}", obj.namespace(), obj.name()),
    )
    .with_hint("ambient workloads have no sidecar proxy; configure them through a waypoint, or remove the Sidecar")
}

pub struct SelectorAnalyzer;

impl Analyzer for SelectorAnalyzer {
    fn name(&self) -> &'static str {
        "sidecar.SelectorAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let sidecars: Vec<(&Object, &Sidecar)> = ctx
            .of(Kind::Sidecar)
            .filter_map(|o| match &o.body {
                Body::Sidecar(s) => Some((o, s)),
                _ => None,
            })
            .collect();
        if sidecars.is_empty() {
            return;
        }
        let pods = ctx.pods();
        let index = NamespacedPods::new(pods);
        // pod -> sidecars selecting it; namespace -> selector-less sidecars.
        let mut by_pod: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut by_namespace: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (si, (obj, s)) in sidecars.iter().enumerate() {
            let Some(sel) = s
                .workload_selector
                .as_ref()
                .filter(|w| !w.labels.is_empty())
            else {
                by_namespace.entry(obj.namespace()).or_default().push(si);
                continue;
            };
            let hits = index.select(pods, obj.namespace(), &sel.labels);
            if hits.is_empty() {
                out.push(
                    finding(
                        obj,
                        "IST0101",
                        Severity::Error,
                        FieldPath::root().key("spec").key("workloadSelector").key("labels"),
                        format!(
                            "Sidecar {}/{}: no workload in namespace {} matches selector `{}`",
                            obj.namespace(),
                            obj.name(),
                            obj.namespace(),
                            selector_text(&sel.labels)
                        ),
                    )
                    .with_hint("a Sidecar selects pods of its own namespace only: fix the labels, or move the Sidecar to the workload's namespace"),
                );
            }
            for p in hits {
                by_pod.entry(p).or_default().push(si);
            }
        }

        let mut reported_ineffective = vec![false; sidecars.len()];
        // sidecar -> (other sidecars, workloads) it conflicts on.
        let mut conflicts: HashMap<usize, (BTreeSet<usize>, BTreeSet<String>)> = HashMap::new();
        for (&p, list) in &by_pod {
            let pod = &pods[p];
            if pod_in_ambient(pod) {
                for &si in list {
                    if !std::mem::replace(&mut reported_ineffective[si], true) {
                        out.push(ineffective(
                            sidecars[si].0,
                            FieldPath::root().key("spec").key("workloadSelector"),
                            &format!("the workload it selects ({}) is in ambient mode", pod.name),
                        ));
                    }
                }
                continue;
            }
            if list.len() < 2 {
                continue;
            }
            for &si in list {
                let e = conflicts.entry(si).or_default();
                e.0.extend(list.iter().copied().filter(|&o| o != si));
                e.1.insert(pod.name.clone());
            }
        }
        let mut conflicting: Vec<_> = conflicts.into_iter().collect();
        conflicting.sort_by_key(|(si, _)| *si);
        for (si, (others, workloads)) in conflicting {
            let obj = sidecars[si].0;
            let others: Vec<&str> = others.iter().map(|&o| sidecars[o].0.name()).collect();
            let workloads: Vec<&str> = workloads.iter().map(String::as_str).collect();
            out.push(
                finding(
                    obj,
                    "IST0110",
                    Severity::Error,
                    name_path(),
                    format!(
                        "Sidecar {}/{} and {} select the same workload ({}) in namespace {}: which one applies is undefined",
                        obj.namespace(),
                        obj.name(),
                        others.join(", "),
                        workloads.join(", "),
                        obj.namespace()
                    ),
                )
                .with_hint("make the workload selectors disjoint so each workload is selected by one Sidecar, or merge the Sidecars"),
            );
        }

        for (ns, list) in by_namespace {
            if namespace_in_ambient(ctx, ns) {
                for si in list {
                    if !std::mem::replace(&mut reported_ineffective[si], true) {
                        out.push(ineffective(
                            sidecars[si].0,
                            name_path(),
                            &format!("namespace {ns} is in ambient mode"),
                        ));
                    }
                }
                continue;
            }
            if list.len() < 2 {
                continue;
            }
            let names: Vec<&str> = list.iter().map(|&si| sidecars[si].0.name()).collect();
            for &si in &list {
                let obj = sidecars[si].0;
                out.push(
                    finding(
                        obj,
                        "IST0111",
                        Severity::Error,
                        name_path(),
                        format!(
                            "namespace {ns} has several Sidecars without a workload selector ({}): which one applies is undefined",
                            names.join(", ")
                        ),
                    )
                    .with_hint("keep one selector-less Sidecar per namespace and give the others a `workloadSelector`"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::traffic::test_util::{codes, run};

    const PODS: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: app, labels: {app: web, tier: front}}\n---\n";

    fn sc(name: &str, ns: &str, selector: Option<&str>) -> String {
        let sel = selector
            .map(|s| format!("  workloadSelector:\n    labels: {s}\n"))
            .unwrap_or_default();
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{sel}  egress:\n  - hosts: [\"./*\"]\n---\n"
        )
    }

    #[test]
    fn fires_for_no_match_overlap_and_duplicate_defaults() {
        let y = format!(
            "{PODS}{}{}{}{}{}",
            sc("a", "app", Some("{app: web}")),
            sc("b", "app", Some("{tier: front}")),
            sc("ghost", "app", Some("{app: ghost}")),
            sc("d1", "other", None),
            sc("d2", "other", None)
        );
        let d = run(&SelectorAnalyzer, &y);
        assert_eq!(
            codes(&d),
            [
                "IST0101 ghost",
                "IST0110 a",
                "IST0110 b",
                "IST0111 d1",
                "IST0111 d2"
            ]
        );
        assert!(
            d.iter()
                .any(|d| d.code == "IST0110" && d.message.contains("(web)"))
        );
    }

    #[test]
    fn silent_for_one_sidecar_per_workload_and_namespace() {
        let y = format!(
            "{PODS}{}{}",
            sc("a", "app", Some("{app: web}")),
            sc("default", "app", None)
        );
        assert!(run(&SelectorAnalyzer, &y).is_empty());
    }

    #[test]
    fn ambient_namespace_makes_sidecars_ineffective() {
        let y = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: amb, labels: {{istio.io/dataplane-mode: ambient}}}}\n---\n{}",
            sc("s", "amb", None)
        );
        assert_eq!(codes(&run(&SelectorAnalyzer, &y)), ["IST0167 s"]);
    }
}
