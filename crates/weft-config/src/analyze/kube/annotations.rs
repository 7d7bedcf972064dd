//! Istio's resource annotations and the two analyzers that check them:
//! `annotations.K8sAnalyzer` (unknown, misplaced, invalid and deprecated annotations) and
//! `maturity.AlphaAnalyzer` (annotations whose feature is still alpha).
//!
//! The annotation table itself is in `annotation_table.rs`.

use std::collections::BTreeMap;

use super::annotation_table::{
    ANNOTATIONS, CNI_DEFAULTS, Status, Target, check_value, is_istio_annotation, lookup,
};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::Kind;
use crate::object::Object;
use crate::path::FieldPath;

/// The annotation sets one object carries, with the kind they are checked as.
struct AnnotationSet<'a> {
    /// The kind the annotations apply to (`Pod` for a workload's pod template).
    as_kind: &'static str,
    annotations: &'a BTreeMap<String, String>,
    path: FieldPath,
    /// For pods: whether istio-cni sets up redirection (no `istio-init` init container).
    cni: bool,
}

fn annotation_sets(obj: &Object) -> Vec<AnnotationSet<'_>> {
    let meta = FieldPath::root().key("metadata").key("annotations");
    let own = |as_kind| AnnotationSet {
        as_kind,
        annotations: &obj.meta.annotations,
        path: meta.clone(),
        cni: false,
    };
    match &obj.body {
        crate::kinds::Body::Namespace(_) => vec![own("Namespace")],
        crate::kinds::Body::Service(_) => vec![own("Service")],
        crate::kinds::Body::Pod(spec) => {
            let mut s = own("Pod");
            s.cni = !spec.init_containers.iter().any(|c| c.name == "istio-init");
            vec![s]
        }
        crate::kinds::Body::Deployment(w) => vec![
            own("Deployment"),
            AnnotationSet {
                as_kind: "Pod",
                annotations: &w.template.metadata.annotations,
                path: FieldPath::parse("spec.template.metadata.annotations"),
                cni: !w
                    .template
                    .spec
                    .init_containers
                    .iter()
                    .any(|c| c.name == "istio-init"),
            },
        ],
        _ => vec![],
    }
}

fn objects<'a, 'c>(ctx: &'c Context<'a>) -> impl Iterator<Item = &'a Object> + 'c {
    [Kind::Namespace, Kind::Service, Kind::Pod, Kind::Deployment]
        .into_iter()
        .flat_map(|k| ctx.of(k))
}

fn describe(obj: &Object) -> String {
    match obj.kind.namespaced() {
        true => format!("{} {}/{}", obj.kind.name(), obj.namespace(), obj.name()),
        false => format!("{} {}", obj.kind.name(), obj.name()),
    }
}

/// `annotations.K8sAnalyzer`: IST0108 unknown, IST0107 misplaced, IST0125 invalid value,
/// IST0135 deprecated Istio annotations on Namespaces, Services, Pods and Deployments (and
/// the pod templates of Deployments).
pub struct K8sAnalyzer;

impl Analyzer for K8sAnalyzer {
    fn name(&self) -> &'static str {
        "annotations.K8sAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for obj in objects(ctx) {
            for set in annotation_sets(obj) {
                for (name, value) in set.annotations {
                    if !is_istio_annotation(name) {
                        continue;
                    }
                    let path = set.path.key(name.as_str());
                    let where_ = if set.as_kind == "Pod" && obj.kind != Kind::Pod {
                        format!("the pod template of {}", describe(obj))
                    } else {
                        describe(obj)
                    };
                    let Some(def) = lookup(name) else {
                        let near = ANNOTATIONS
                            .iter()
                            .map(|a| (strsim::levenshtein(a.name, name), a.name))
                            .filter(|(d, _)| *d <= 4)
                            .min();
                        let hint = match near {
                            Some((_, n)) => {
                                format!("did you mean \"{n}\"? Otherwise remove it: Istio ignores annotations it does not know")
                            }
                            None => "remove it or fix its name: Istio ignores annotations it does not know".to_string(),
                        };
                        out.push(
                            finding(
                                obj,
                                "IST0108",
                                Severity::Warning,
                                path,
                                format!("Unknown Istio annotation \"{name}\" on {where_}."),
                            )
                            .with_hint(hint),
                        );
                        continue;
                    };
                    if def.set_by_istio {
                        continue;
                    }
                    if let Some(instead) = def.deprecated {
                        let also_label = set.as_kind == "Pod"
                            && name == "sidecar.istio.io/inject"
                            && pod_labels(obj).is_some_and(|l| l.contains_key(name.as_str()));
                        if !also_label {
                            let hint = if instead.is_empty() {
                                "remove it: it may stop working in a future release".to_string()
                            } else {
                                format!("use {instead} instead")
                            };
                            out.push(
                                finding(
                                    obj,
                                    "IST0135",
                                    Severity::Info,
                                    path.clone(),
                                    format!(
                                        "The annotation \"{name}\" on {where_} is deprecated and may not work in future Istio versions."
                                    ),
                                )
                                .with_hint(hint),
                            );
                        }
                    }
                    if !def.targets.contains(&Target::Any)
                        && !def.targets.iter().any(|t| t.name() == set.as_kind)
                    {
                        let allowed: Vec<&str> = def.targets.iter().map(|t| t.name()).collect();
                        let hint =
                            if obj.kind == Kind::Deployment && def.targets.contains(&Target::Pod) {
                                "move it to the pod template: spec.template.metadata.annotations"
                                    .to_string()
                            } else {
                                format!("move it to a {} or remove it", allowed.join(" or "))
                            };
                        out.push(
                            finding(
                                obj,
                                "IST0107",
                                Severity::Warning,
                                path,
                                format!(
                                    "The annotation \"{name}\" on {where_} has no effect: it belongs on {}.",
                                    allowed.join(", ")
                                ),
                            )
                            .with_hint(hint),
                        );
                        continue;
                    }
                    if let Err(why) = check_value(def.check, value) {
                        out.push(
                            finding(
                                obj,
                                "IST0125",
                                Severity::Warning,
                                path,
                                format!(
                                    "Invalid value for annotation \"{name}\" on {where_}: {why}."
                                ),
                            )
                            .with_hint(
                                "fix the value, or remove the annotation to use the default",
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn pod_labels(obj: &Object) -> Option<&BTreeMap<String, String>> {
    match &obj.body {
        crate::kinds::Body::Pod(_) => Some(&obj.meta.labels),
        crate::kinds::Body::Deployment(w) => Some(&w.template.metadata.labels),
        _ => None,
    }
}

/// `maturity.AlphaAnalyzer`: IST0136 for annotations whose feature is alpha (may change or
/// go away without the usual deprecation period).
pub struct AlphaAnalyzer;

impl Analyzer for AlphaAnalyzer {
    fn name(&self) -> &'static str {
        "maturity.AlphaAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for obj in objects(ctx) {
            for set in annotation_sets(obj) {
                for name in set.annotations.keys() {
                    if !is_istio_annotation(name) {
                        continue;
                    }
                    let Some(def) = lookup(name) else { continue };
                    if def.status != Status::Alpha || def.set_by_istio {
                        continue;
                    }
                    if set.cni && CNI_DEFAULTS.contains(&name.as_str()) {
                        continue;
                    }
                    out.push(
                        finding(
                            obj,
                            "IST0136",
                            Severity::Info,
                            set.path.key(name.as_str()),
                            format!(
                                "The annotation \"{name}\" on {} is part of an alpha-stage feature and may change or be removed.",
                                describe(obj)
                            ),
                        )
                        .with_hint("check the release notes when upgrading, or avoid it where a stable alternative exists"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &dyn Analyzer, yaml: &str) -> Vec<Diagnostic> {
        crate::testing::run_analyzer(a, yaml)
    }

    #[test]
    fn unknown_misplaced_invalid() {
        let d = run(
            &K8sAnalyzer,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  annotations:\n    networking.istio.io/exportTwo: x\n    sidecar.istio.io/proxyCPU: 100m\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    status.sidecar.istio.io/port: abc\nspec:\n  containers: [{name: a}]\n",
        );
        let codes: Vec<_> = d.iter().map(|d| d.code).collect();
        assert_eq!(codes, ["IST0108", "IST0107", "IST0125"], "{d:#?}");
        assert!(
            d[0].hint
                .as_deref()
                .unwrap()
                .contains("networking.istio.io/exportTo")
        );
    }

    #[test]
    fn valid_annotations_are_silent() {
        let d = run(
            &K8sAnalyzer,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    proxy.istio.io/config: '{\"holdApplicationUntilProxyStarts\": true}'\n    traffic.sidecar.istio.io/excludeOutboundIPRanges: 10.0.0.0/8,fd00::/8\n    example.com/foo: bar\n    istio.io/rev: canary\nspec:\n  containers: [{name: a}]\n",
        );
        assert!(d.is_empty(), "{d:#?}");
    }

    #[test]
    fn pod_template_annotations_are_checked_as_pod() {
        let d = run(
            &K8sAnalyzer,
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    metadata:\n      annotations:\n        sidecar.istio.io/interceptionMode: BOGUS\n    spec:\n      containers: [{name: a}]\n",
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].code, "IST0125");
        assert_eq!(
            d[0].field.as_ref().unwrap().to_string(),
            "spec.template.metadata.annotations[\"sidecar.istio.io/interceptionMode\"]"
        );
    }

    #[test]
    fn alpha_fires_and_skips_cni_defaults() {
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    sidecar.istio.io/interceptionMode: REDIRECT\n    sidecar.istio.io/logLevel: debug\n    proxy.istio.io/config: '{}'\nspec:\n  containers: [{name: a}]\n";
        let d = run(&AlphaAnalyzer, yaml);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(d[0].message.contains("sidecar.istio.io/logLevel"));
        let silent = run(
            &AlphaAnalyzer,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    proxy.istio.io/config: '{}'\nspec:\n  containers: [{name: a}]\n",
        );
        assert!(silent.is_empty());
    }
}
