//! `envoyfilter.EnvoyPatchAnalyzer`: EnvoyFilter patch operations that depend on ordering
//! without a `priority` (IST0151, IST0155 when a `proxyVersion` match makes the order change
//! on upgrade) and operations that are ignored for their `applyTo` (IST0152-IST0154).

use std::collections::{BTreeMap, HashSet};

use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::istio::{ApplyTo, EnvoyConfigObjectPatch, PatchOperation};
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;

pub struct EnvoyPatchAnalyzer;

/// The name a patch acts on: the `name` of its value, else the filter it matches.
fn patch_target_name(p: &EnvoyConfigObjectPatch) -> Option<String> {
    let value = p.patch.as_ref()?.value.as_ref()?;
    let obj = value.as_object()?;
    if let Some(name) = obj.get("name") {
        return Some(match name {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    }
    let filter = p
        .r#match
        .as_ref()?
        .listener
        .as_ref()?
        .filter_chain
        .as_ref()?
        .filter
        .as_ref()?;
    (!filter.name.is_empty()).then(|| filter.name.clone())
}

fn applies_to_routes(a: ApplyTo) -> bool {
    matches!(a, ApplyTo::RouteConfiguration | ApplyTo::HttpRoute)
}

fn message(code: &str, patches: &str) -> (Severity, String, String) {
    match code {
        "IST0151" => (
            Severity::Warning,
            format!(
                "{patches} use a relative operation (INSERT_BEFORE/INSERT_AFTER, REPLACE, REMOVE) but the EnvoyFilter has no `priority`: whether the filter it is relative to exists when it is applied depends on the order EnvoyFilters happen to be applied in"
            ),
            "set `spec.priority`, or use an absolute operation (INSERT_FIRST, ADD)".into(),
        ),
        "IST0155" => (
            Severity::Warning,
            format!(
                "{patches} use a relative operation on a filter that another patch matched by `proxyVersion` also targets, and the EnvoyFilter has no `priority`: after a proxy upgrade the order changes and the patch may not apply"
            ),
            "set `spec.priority`, or use an absolute operation (INSERT_FIRST, ADD)".into(),
        ),
        "IST0152" => (
            Severity::Error,
            format!(
                "{patches} use REPLACE, which only works on HTTP_FILTER, NETWORK_FILTER and VIRTUAL_HOST: the patch is ignored"
            ),
            "use MERGE to change this object, or REMOVE then ADD".into(),
        ),
        "IST0153" => (
            Severity::Error,
            format!(
                "{patches} use ADD with applyTo ROUTE_CONFIGURATION or HTTP_ROUTE, where it is ignored"
            ),
            "use MERGE to change a route configuration, or add routes through a VirtualService"
                .into(),
        ),
        _ => (
            Severity::Error,
            format!(
                "{patches} use REMOVE with applyTo ROUTE_CONFIGURATION or HTTP_ROUTE, where it is ignored"
            ),
            "remove routes by changing the VirtualService that generates them".into(),
        ),
    }
}

impl Analyzer for EnvoyPatchAnalyzer {
    fn name(&self) -> &'static str {
        "envoyfilter.EnvoyPatchAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        // Names targeted by patches that match on proxyVersion, in load order.
        let mut versioned: HashSet<String> = HashSet::new();
        for obj in ctx.of(Kind::EnvoyFilter) {
            let Body::EnvoyFilter(ef) = &obj.body else {
                continue;
            };
            let mut found: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
            for (i, p) in ef.config_patches.iter().enumerate() {
                let Some(patch) = &p.patch else { break };
                let name = patch_target_name(p);
                let apply_to = p.apply_to.unwrap_or(ApplyTo::Invalid);
                let relative = match patch.operation {
                    Some(PatchOperation::Add) => {
                        if applies_to_routes(apply_to) {
                            found.entry("IST0153").or_default().push(i);
                        }
                        false
                    }
                    Some(PatchOperation::Remove) => {
                        if applies_to_routes(apply_to) {
                            found.entry("IST0154").or_default().push(i);
                            false
                        } else {
                            true
                        }
                    }
                    Some(PatchOperation::Replace) => {
                        if matches!(
                            apply_to,
                            ApplyTo::HttpFilter | ApplyTo::NetworkFilter | ApplyTo::VirtualHost
                        ) {
                            true
                        } else {
                            found.entry("IST0152").or_default().push(i);
                            false
                        }
                    }
                    Some(PatchOperation::InsertBefore | PatchOperation::InsertAfter) => true,
                    _ => false,
                };
                if relative && ef.priority == 0 {
                    let code = if name.as_ref().is_some_and(|n| versioned.contains(n)) {
                        "IST0155"
                    } else {
                        "IST0151"
                    };
                    found.entry(code).or_default().push(i);
                }
                let has_version = p
                    .r#match
                    .as_ref()
                    .and_then(|m| m.proxy.as_ref())
                    .is_some_and(|px| !px.proxy_version.is_empty());
                if has_version && let Some(n) = name {
                    versioned.insert(n);
                }
            }
            for (code, idx) in found {
                let patches = if idx.len() == 1 {
                    format!(
                        "EnvoyFilter {}/{}: configPatches[{}]",
                        obj.namespace(),
                        obj.name(),
                        idx[0]
                    )
                } else {
                    let list: Vec<String> = idx.iter().map(usize::to_string).collect();
                    format!(
                        "EnvoyFilter {}/{}: configPatches [{}]",
                        obj.namespace(),
                        obj.name(),
                        list.join(", ")
                    )
                };
                let (severity, text, hint) = message(code, &patches);
                let path = FieldPath::root()
                    .key("spec")
                    .key("configPatches")
                    .index(idx[0]);
                out.push(finding(obj, code, severity, path, text).with_hint(hint));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::traffic::test_util::{codes, run};

    fn ef(name: &str, priority: i32, patches: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: {name}}}\nspec:\n  priority: {priority}\n  configPatches:\n{patches}---\n"
        )
    }

    const INSERT: &str = "  - applyTo: HTTP_FILTER\n    match: {context: SIDECAR_INBOUND, proxy: {proxyVersion: '^1\\.2.*'}}\n    patch: {operation: INSERT_BEFORE, value: {name: my.lua}}\n";
    const INSERT_SAME: &str =
        "  - applyTo: HTTP_FILTER\n    patch: {operation: INSERT_AFTER, value: {name: my.lua}}\n";
    const REPLACE_CLUSTER: &str =
        "  - applyTo: CLUSTER\n    patch: {operation: REPLACE, value: {name: c}}\n";
    const ADD_ROUTE: &str =
        "  - applyTo: HTTP_ROUTE\n    patch: {operation: ADD, value: {name: r}}\n";

    #[test]
    fn fires_for_relative_and_misused_operations() {
        let y = format!(
            "{}{}",
            ef("a", 0, &format!("{INSERT}{REPLACE_CLUSTER}{ADD_ROUTE}")),
            ef("b", 0, INSERT_SAME)
        );
        let d = run(&EnvoyPatchAnalyzer, &y);
        assert_eq!(
            codes(&d),
            ["IST0151 a", "IST0152 a", "IST0153 a", "IST0155 b"]
        );
        assert!(
            d.iter()
                .any(|d| d.code == "IST0152" && d.message.contains("configPatches[1]"))
        );
    }

    #[test]
    fn silent_with_priority_or_absolute_operations() {
        let absolute = "  - applyTo: HTTP_FILTER\n    patch: {operation: INSERT_FIRST, value: {name: x}}\n  - applyTo: CLUSTER\n    patch: {operation: ADD, value: {name: c}}\n";
        let y = format!("{}{}", ef("a", 10, INSERT), ef("b", 0, absolute));
        assert!(run(&EnvoyPatchAnalyzer, &y).is_empty());
    }
}
