//! `authz.AuthorizationPoliciesAnalyzer`: policies that select no workload (IST0127) and
//! source namespaces that match no namespace (IST0101).

use super::{in_mesh, selector_string};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::common::labels_match;
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;

pub struct AuthorizationPoliciesAnalyzer;

/// Istio's namespace match: `*`, `prefix*`, `*suffix`, or exact (case-insensitive).
fn namespace_matches(ns: &str, pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return ns.ends_with(suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return ns.starts_with(prefix);
    }
    ns.eq_ignore_ascii_case(pattern)
}

impl Analyzer for AuthorizationPoliciesAnalyzer {
    fn name(&self) -> &'static str {
        "authz.AuthorizationPoliciesAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let root = ctx.mesh.root_namespace().to_string();
        let pods: Vec<_> = ctx.pods().iter().filter(|p| in_mesh(ctx, p)).collect();
        let namespaces = ctx.namespaces();
        for obj in ctx.of(Kind::AuthorizationPolicy) {
            let Body::AuthorizationPolicy(ap) = &obj.body else {
                continue;
            };
            let ns = obj.namespace();

            // Workload scope. Policies attached with targetRefs are about Gateways and
            // Services, not pods: the route analyzers check those references.
            if ap.target_ref.is_none() && ap.target_refs.is_empty() {
                let labels = ap.selector.as_ref().map(|s| &s.match_labels);
                let mesh_wide = ns == root;
                let matched = match labels {
                    // A selector-less policy in the root namespace applies to the whole mesh.
                    None if mesh_wide => true,
                    None => pods.iter().any(|p| p.namespace == ns),
                    Some(sel) => pods
                        .iter()
                        .any(|p| (mesh_wide || p.namespace == ns) && labels_match(sel, p.labels)),
                };
                if !matched {
                    let (path, message, hint) = match labels {
                        Some(sel) => (
                            FieldPath::root().key("spec").key("selector"),
                            format!(
                                "No matching workloads for this resource with the following labels: {} (in namespace {})",
                                selector_string(sel),
                                if mesh_wide {
                                    "any, as a root-namespace policy"
                                } else {
                                    ns
                                }
                            ),
                            "check the selector's labels against the pods' labels; the policy has no effect until a workload matches",
                        ),
                        None => (
                            FieldPath::root().key("metadata").key("namespace"),
                            format!(
                                "No matching workloads for this resource: namespace {ns} has no workloads in the mesh"
                            ),
                            "deploy workloads to this namespace, or move the policy to the namespace it is meant for",
                        ),
                    };
                    out.push(
                        finding(obj, "IST0127", Severity::Warning, path, message).with_hint(hint),
                    );
                }
            }

            // Source namespaces that match no namespace.
            for (i, rule) in ap.rules.iter().flatten().enumerate() {
                for (j, from) in rule.from.iter().flatten().enumerate() {
                    let Some(src) = &from.source else { continue };
                    for (field, list) in [
                        ("namespaces", &src.namespaces),
                        ("notNamespaces", &src.not_namespaces),
                    ] {
                        for (k, pattern) in list.iter().enumerate() {
                            if namespaces.iter().any(|n| namespace_matches(n, pattern)) {
                                continue;
                            }
                            let path = FieldPath::root()
                                .key("spec")
                                .key("rules")
                                .index(i)
                                .key("from")
                                .index(j)
                                .key("source")
                                .key(field)
                                .index(k);
                            let known = namespaces.iter().copied().collect::<Vec<_>>().join(", ");
                            out.push(
                                finding(
                                    obj,
                                    "IST0101",
                                    Severity::Error,
                                    path,
                                    format!("Referenced namespace not found: \"{pattern}\" matches no namespace"),
                                )
                                .with_hint(format!("known namespaces: {known}")),
                            );
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_patterns() {
        assert!(namespace_matches("prod-httpbin", "prod-*"));
        assert!(namespace_matches("httpbin-test", "*-test"));
        assert!(namespace_matches("anything", "*"));
        assert!(!namespace_matches("httpbin", "*-bogus"));
        assert!(namespace_matches("HttpBin", "httpbin"));
    }

    #[test]
    fn reports_unmatched_selector_and_namespace() {
        let b = crate::Bundle::load_str(
            "t.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: app, labels: {app: a}}\nspec: {containers: [{name: a}]}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ok, namespace: app}\nspec:\n  selector: {matchLabels: {app: a}}\n  rules: [{from: [{source: {namespaces: [app]}}]}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: app}\nspec:\n  selector: {matchLabels: {app: b}}\n  rules: [{from: [{source: {namespaces: [nope]}}]}]\n",
        );
        let ctx = Context::new(&b.objects);
        let mut out = Vec::new();
        AuthorizationPoliciesAnalyzer.analyze(&ctx, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|d| (d.code, d.resource.as_ref().unwrap().name.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("IST0127", "bad".to_string()),
                ("IST0101", "bad".to_string())
            ]
        );
        assert_eq!(
            out[1].field.as_ref().unwrap().to_string(),
            "spec.rules[0].from[0].source.namespaces[0]"
        );
    }
}
