//! Telemetry analyzers: access logging without a provider (IST0157), selectors that match
//! nothing or overlap (IST0101, IST0159), several namespace-wide Telemetries (IST0160), and
//! the deprecated Lightstep provider (IST0002).

use std::collections::BTreeMap;

use super::selector_string;
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::common::labels_match;
use crate::kinds::istio::{ProviderKind, Telemetry};
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

fn telemetries<'a, 'c>(
    ctx: &'c Context<'a>,
) -> impl Iterator<Item = (&'a Object, &'a Telemetry)> + 'c {
    ctx.of(Kind::Telemetry).filter_map(|o| match &o.body {
        Body::Telemetry(t) => Some((o, t)),
        _ => None,
    })
}

/// `telemetry.ProviderAnalyzer`: an access-logging entry that names no provider does
/// nothing unless the mesh config has default access-log providers.
pub struct ProviderAnalyzer;

impl Analyzer for ProviderAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.ProviderAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        if ctx
            .mesh
            .default_providers
            .as_ref()
            .is_some_and(|d| !d.access_logging.is_empty())
        {
            return;
        }
        for (obj, t) in telemetries(ctx) {
            for (i, a) in t.access_logging.iter().enumerate() {
                if a.disabled == Some(true) || !a.providers.is_empty() {
                    continue;
                }
                out.push(
                    finding(
                        obj,
                        "IST0157",
                        Severity::Warning,
                        FieldPath::root().key("spec").key("accessLogging").index(i),
                        format!(
                            "Telemetry {}/{} has an accessLogging entry without providers, and meshConfig.defaultProviders.accessLogging is empty: it has no effect",
                            obj.namespace(),
                            obj.name()
                        ),
                    )
                    .with_hint("add `providers: [{name: envoy}]`, or set meshConfig.defaultProviders.accessLogging"),
                );
            }
        }
    }
}

/// `telemetry.SelectorAnalyzer`: a selector must match a workload in the Telemetry's
/// namespace, and a workload must be selected by at most one Telemetry.
pub struct SelectorAnalyzer;

impl Analyzer for SelectorAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.SelectorAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        // workload (namespace, name) -> telemetries selecting it, in load order.
        let mut selected: BTreeMap<(String, String), Vec<&Object>> = BTreeMap::new();
        for (obj, t) in telemetries(ctx) {
            let Some(sel) = t.selector.as_ref().filter(|s| !s.match_labels.is_empty()) else {
                continue;
            };
            let ns = obj.namespace();
            let mut found = false;
            for p in ctx
                .pods()
                .iter()
                .filter(|p| p.namespace == ns && labels_match(&sel.match_labels, p.labels))
            {
                found = true;
                let entry = selected
                    .entry((p.namespace.to_string(), p.name.clone()))
                    .or_default();
                if !entry.iter().any(|o| std::ptr::eq(*o, obj)) {
                    entry.push(obj);
                }
            }
            if !found {
                out.push(
                    finding(
                        obj,
                        "IST0101",
                        Severity::Error,
                        FieldPath::root().key("spec").key("selector").key("matchLabels"),
                        format!(
                            "Referenced selector not found: \"{}\" matches no workload in namespace {ns}",
                            selector_string(&sel.match_labels)
                        ),
                    )
                    .with_hint(
                        "Telemetry selectors only match workloads in the Telemetry's own namespace; check the labels",
                    ),
                );
            }
        }
        // One finding per Telemetry, naming every workload it shares with others.
        let mut conflicts: Vec<(&Object, Vec<String>, Vec<String>)> = Vec::new();
        for ((ns, pod), objs) in &selected {
            if objs.len() < 2 {
                continue;
            }
            let names: Vec<String> = objs.iter().map(|o| o.name().to_string()).collect();
            for o in objs {
                match conflicts.iter_mut().find(|(c, _, _)| std::ptr::eq(*c, *o)) {
                    Some((_, pods, others)) => {
                        pods.push(format!("{ns}/{pod}"));
                        others.extend(
                            names
                                .iter()
                                .filter(|n| *n != o.name() && !others.contains(n))
                                .cloned()
                                .collect::<Vec<_>>(),
                        );
                    }
                    None => conflicts.push((
                        o,
                        vec![format!("{ns}/{pod}")],
                        names.iter().filter(|n| *n != o.name()).cloned().collect(),
                    )),
                }
            }
        }
        for (obj, pods, others) in conflicts {
            out.push(
                finding(
                    obj,
                    "IST0159",
                    Severity::Error,
                    FieldPath::root().key("spec").key("selector"),
                    format!(
                        "Telemetry {} selects workload(s) {} also selected by Telemetry {}; only one Telemetry may select a workload",
                        obj.name(),
                        pods.join(", "),
                        others.join(", ")
                    ),
                )
                .with_hint("narrow the selectors so that each workload is selected once, or merge the Telemetries"),
            );
        }
    }
}

/// `telemetry.DefaultSelectorAnalyzer`: at most one Telemetry per namespace without a
/// selector or targetRefs.
pub struct DefaultSelectorAnalyzer;

impl Analyzer for DefaultSelectorAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.DefaultSelectorAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let mut by_ns: BTreeMap<&str, Vec<&Object>> = BTreeMap::new();
        for (obj, t) in telemetries(ctx) {
            if !t.has_workload_scope() {
                by_ns.entry(obj.namespace()).or_default().push(obj);
            }
        }
        for (ns, objs) in by_ns {
            if objs.len() < 2 {
                continue;
            }
            let names: Vec<&str> = objs.iter().map(|o| o.name()).collect();
            for obj in objs {
                out.push(
                    finding(
                        obj,
                        "IST0160",
                        Severity::Error,
                        FieldPath::root().key("metadata").key("name"),
                        format!(
                            "The Telemetries {} in namespace {ns} have no workload selector; only one namespace-wide Telemetry takes effect",
                            names.join(", ")
                        ),
                    )
                    .with_hint("merge them into one, or add a `selector` to all but one"),
                );
            }
        }
    }
}

/// `telemetry.LightstepAnalyzer`: the Lightstep tracing provider is deprecated.
pub struct LightstepAnalyzer;

impl Analyzer for LightstepAnalyzer {
    fn name(&self) -> &'static str {
        "telemetry.LightstepAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let lightstep: Vec<&str> = ctx
            .mesh
            .extension_providers
            .iter()
            .filter(|p| {
                p.bodies()
                    .iter()
                    .any(|(_, k, _)| *k == ProviderKind::Lightstep)
            })
            .map(|p| p.name.as_str())
            .collect();
        if lightstep.is_empty() {
            return;
        }
        for (obj, t) in telemetries(ctx) {
            for (i, tr) in t.tracing.iter().enumerate() {
                for (j, p) in tr.providers.iter().enumerate() {
                    if lightstep.contains(&p.name.as_str()) {
                        out.push(
                            finding(
                                obj,
                                "IST0002",
                                Severity::Warning,
                                FieldPath::root()
                                    .key("spec")
                                    .key("tracing")
                                    .index(i)
                                    .key("providers")
                                    .index(j),
                                format!("Deprecated: the Lightstep provider `{}` is deprecated", p.name),
                            )
                            .with_hint("switch to an `opentelemetry` extension provider (Lightstep accepts OTLP)"),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &dyn Analyzer, yaml: &str) -> Vec<(String, String)> {
        crate::testing::run_analyzer(a, yaml)
            .iter()
            .map(|d| {
                (
                    d.code.to_string(),
                    d.resource.as_ref().unwrap().name.clone(),
                )
            })
            .collect()
    }

    const T: &str = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata:";

    #[test]
    fn default_selector_conflicts() {
        let y = format!(
            "{T} {{name: a, namespace: n}}\nspec: {{}}\n---\n{T} {{name: b, namespace: n}}\nspec: {{}}\n---\n{T} {{name: c, namespace: n}}\nspec: {{selector: {{matchLabels: {{x: y}}}}}}\n"
        );
        assert_eq!(
            run(&DefaultSelectorAnalyzer, &y),
            vec![
                ("IST0160".into(), "a".into()),
                ("IST0160".into(), "b".into())
            ]
        );
    }

    #[test]
    fn selector_overlap_and_missing() {
        let y = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: n, labels: {{app: a, v: '1'}}}}\n---\n{T} {{name: a, namespace: n}}\nspec: {{selector: {{matchLabels: {{app: a}}}}}}\n---\n{T} {{name: b, namespace: n}}\nspec: {{selector: {{matchLabels: {{v: '1'}}}}}}\n---\n{T} {{name: c, namespace: n}}\nspec: {{selector: {{matchLabels: {{app: zzz}}}}}}\n"
        );
        let mut got = run(&SelectorAnalyzer, &y);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("IST0101".into(), "c".into()),
                ("IST0159".into(), "a".into()),
                ("IST0159".into(), "b".into())
            ]
        );
    }

    #[test]
    fn provider_missing() {
        let y = format!(
            "{T} {{name: a, namespace: n}}\nspec: {{accessLogging: [{{disabled: true}}, {{filter: {{expression: 'true'}}}}]}}\n"
        );
        assert_eq!(
            run(&ProviderAnalyzer, &y),
            vec![("IST0157".into(), "a".into())]
        );
    }
}
