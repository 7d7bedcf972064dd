//! `virtualservice.DestinationRuleAnalyzer`: destinations naming a subset that no
//! DestinationRule for the host defines (IST0101). Envoy has no cluster for such a
//! subset, so requests fail with 503 (NR / "no healthy upstream").

use std::collections::{BTreeSet, HashMap};

use super::hosts::{fqdn, host_matches};
use super::{DestKind, destinations};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::{Body, Kind};
use crate::object::Object;

pub struct DestinationRuleAnalyzer;

/// Subsets defined per DestinationRule host (FQDN), with the rules defining them.
#[derive(Default)]
struct SubsetIndex<'a> {
    exact: HashMap<String, Vec<(&'a Object, BTreeSet<&'a str>)>>,
    /// DestinationRules for wildcard hosts (few in practice).
    wildcard: Vec<(String, &'a Object, BTreeSet<&'a str>)>,
}

impl<'a> SubsetIndex<'a> {
    fn build(ctx: &Context<'a>) -> SubsetIndex<'a> {
        let mut idx = SubsetIndex::default();
        for obj in ctx.of(Kind::DestinationRule) {
            let Body::DestinationRule(dr) = &obj.body else {
                continue;
            };
            let host = fqdn(&dr.host, obj.namespace());
            let names: BTreeSet<&str> = dr.subsets.iter().map(|s| s.name.as_str()).collect();
            if host.starts_with('*') {
                idx.wildcard.push((host, obj, names));
            } else {
                idx.exact.entry(host).or_default().push((obj, names));
            }
        }
        idx
    }

    /// The rules that apply to `host` (exact ones, else the wildcard ones covering it).
    fn rules_for(&self, host: &str) -> Vec<(&'a Object, &BTreeSet<&'a str>)> {
        if let Some(list) = self.exact.get(host) {
            return list.iter().map(|(o, s)| (*o, s)).collect();
        }
        self.wildcard
            .iter()
            .filter(|(h, _, _)| host_matches(h, host))
            .map(|(_, o, s)| (*o, s))
            .collect()
    }
}

impl Analyzer for DestinationRuleAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.DestinationRuleAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let index = SubsetIndex::build(ctx);
        for obj in ctx.of(Kind::VirtualService) {
            let Body::VirtualService(vs) = &obj.body else {
                continue;
            };
            let ns = obj.namespace();
            for d in destinations(vs) {
                let Some(dest) = d.dest else { continue };
                let Some(subset) = dest.subset() else {
                    continue;
                };
                let host = fqdn(&dest.host, ns);
                let rules = index.rules_for(&host);
                if rules.iter().any(|(_, names)| names.contains(subset)) {
                    continue;
                }
                let what = if d.kind == DestKind::Mirror {
                    "mirror"
                } else {
                    "destination"
                };
                let (message, hint) = if rules.is_empty() {
                    (
                        format!(
                            "{what} `{}` uses subset `{subset}`, but no DestinationRule for host {host} defines subsets",
                            dest.host
                        ),
                        format!(
                            "create a DestinationRule with `host: {}` and a subset named `{subset}` (with the labels of its pods), or remove `subset`",
                            dest.host
                        ),
                    )
                } else {
                    let defined: BTreeSet<&str> =
                        rules.iter().flat_map(|(_, n)| n.iter().copied()).collect();
                    let drs: Vec<String> = rules
                        .iter()
                        .map(|(o, _)| format!("{}/{}", o.namespace(), o.name()))
                        .collect();
                    let list: Vec<&str> = defined.iter().copied().collect();
                    let hint = if list.is_empty() {
                        format!(
                            "add a subset named `{subset}` to DestinationRule {}",
                            drs.join(", ")
                        )
                    } else {
                        let guess = crate::de::did_you_mean(subset, &list)
                            .map(|b| format!("did you mean `{b}`? "))
                            .unwrap_or_default();
                        format!(
                            "{guess}defined subsets: {}; use one of them, or add `{subset}` to DestinationRule {}",
                            list.join(", "),
                            drs.join(", ")
                        )
                    };
                    (
                        format!(
                            "{what} `{}` uses subset `{subset}`, which DestinationRule {} does not define",
                            dest.host,
                            drs.join(", ")
                        ),
                        hint,
                    )
                };
                out.push(
                    finding(
                        obj,
                        "IST0101",
                        Severity::Error,
                        d.path.key("subset"),
                        message,
                    )
                    .with_hint(hint),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {

    fn run(yaml: &str) -> Vec<crate::Diagnostic> {
        crate::testing::run_named("virtualservice.DestinationRuleAnalyzer", yaml)
    }

    const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";

    #[test]
    fn unknown_subset_lists_defined_ones() {
        let got = run(&format!(
            "{DR}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews, subset: v3}}\n    mirror: {{host: reviews.default.svc.cluster.local, subset: v9}}\n"
        ));
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.iter().all(|d| d.code == "IST0101"));
        assert!(got[0].message.contains("v3"));
        let hint = got[0].hint.as_deref().unwrap();
        assert!(hint.contains("v2"), "{hint}");
        assert_eq!(
            got[1].field.as_ref().unwrap().to_string(),
            "spec.http[0].mirror.subset"
        );
    }

    #[test]
    fn defined_subset_is_silent() {
        let got = run(&format!(
            "{DR}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews.default.svc.cluster.local, subset: v2}}\n    - destination: {{host: reviews}}\n"
        ));
        assert!(got.is_empty(), "{got:?}");
    }
}
