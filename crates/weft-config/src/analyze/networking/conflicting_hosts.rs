//! `virtualservice.ConflictingMeshGatewayHostsAnalyzer` (IST0109): several VirtualServices
//! bound to the mesh (sidecars) for the same host, visible in the same namespaces. Sidecars
//! do not merge them: which one wins is undefined.
//!
//! Hosts are compared per visibility scope (`exportTo`): VirtualServices exported to the
//! same namespace conflict on an equal host, and one exported to a single namespace also
//! conflicts with any exported everywhere whose host overlaps (wildcards included).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::hosts::{export_scopes, fqdn, host_matches};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

pub struct ConflictingMeshGatewayHostsAnalyzer;

/// `None` = exported to every namespace.
type Scope = Option<String>;

/// Hosts of VirtualServices exported everywhere, indexed for overlap queries.
#[derive(Default)]
struct GlobalHosts {
    /// Exact host -> VirtualServices.
    exact: HashMap<String, Vec<usize>>,
    /// Wildcard hosts by the suffix after `*`.
    wild_suffix: HashMap<String, Vec<usize>>,
    /// Every host by its reversed form without a leading `*`, for "hosts under a suffix".
    by_reversed: BTreeMap<String, Vec<(String, usize)>>,
}

fn reversed(s: &str) -> String {
    s.chars().rev().collect()
}

impl GlobalHosts {
    fn add(&mut self, host: &str, vs: usize) {
        self.exact.entry(host.to_string()).or_default().push(vs);
        let bare = host.strip_prefix('*').unwrap_or(host);
        if host.starts_with('*') {
            self.wild_suffix
                .entry(bare.to_string())
                .or_default()
                .push(vs);
        }
        self.by_reversed
            .entry(reversed(bare))
            .or_default()
            .push((host.to_string(), vs));
    }

    /// VirtualServices whose host overlaps `host`.
    fn overlapping(&self, host: &str, out: &mut Vec<usize>) {
        let bare = host.strip_prefix('*').unwrap_or(host);
        let mut found: Vec<usize> = Vec::new();
        if let Some(v) = self.exact.get(host) {
            found.extend(v);
        }
        // Wildcards covering the host: `*X` with X a suffix of the host.
        for (i, _) in bare
            .char_indices()
            .chain(std::iter::once((bare.len(), ' ')))
        {
            if let Some(v) = self.wild_suffix.get(&bare[i..]) {
                found.extend(v);
            }
        }
        // Hosts covered by a wildcard host: those ending with its suffix.
        if host.starts_with('*') {
            let prefix = reversed(bare);
            for (_, entries) in self
                .by_reversed
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
            {
                for (h, vs) in entries {
                    if host_matches(host, h) {
                        found.push(*vs);
                    }
                }
            }
        }
        out.extend(found);
    }
}

impl Analyzer for ConflictingMeshGatewayHostsAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.ConflictingMeshGatewayHostsAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let vss: Vec<&Object> = ctx
            .of(Kind::VirtualService)
            .filter(|o| matches!(&o.body, Body::VirtualService(vs) if vs.applies_to_mesh()))
            .collect();
        let mut groups: BTreeMap<(Scope, String), Vec<usize>> = BTreeMap::new();
        let mut global = GlobalHosts::default();
        for (i, obj) in vss.iter().enumerate() {
            let Body::VirtualService(vs) = &obj.body else {
                continue;
            };
            let ns = obj.namespace();
            let scopes: Vec<Scope> = match export_scopes(&vs.export_to, ns) {
                None => vec![None],
                Some(list) => list.into_iter().map(Some).collect(),
            };
            for scope in &scopes {
                for h in &vs.hosts {
                    let host = fqdn(h, ns);
                    if scope.is_none() {
                        global.add(&host, i);
                    }
                    groups.entry((scope.clone(), host)).or_default().push(i);
                }
            }
        }
        let mut reported: HashSet<usize> = HashSet::new();
        for ((scope, host), members) in &groups {
            let mut all = members.clone();
            if scope.is_some() {
                global.overlapping(host, &mut all);
            }
            // Distinct VirtualServices, in load order.
            all.sort_unstable();
            all.dedup();
            if all.len() < 2 {
                continue;
            }
            let names: Vec<String> = all
                .iter()
                .map(|&i| format!("{}/{}", vss[i].namespace(), vss[i].name()))
                .collect();
            let visible = match scope {
                None => "every namespace".to_string(),
                Some(ns) => format!("namespace `{ns}`"),
            };
            for &i in &all {
                if !reported.insert(i) {
                    continue;
                }
                let obj = vss[i];
                let others: Vec<&str> = names
                    .iter()
                    .filter(|n| **n != format!("{}/{}", obj.namespace(), obj.name()))
                    .map(String::as_str)
                    .collect();
                out.push(
                    finding(obj, "IST0109", Severity::Error, host_path(obj, host), format!(
                        "VirtualServices {} all apply to sidecars (gateway `mesh`) for host `{host}` as seen from {visible}: sidecars use only one of them, and which one is undefined",
                        names.join(", ")
                    ))
                    .with_hint(format!(
                        "merge the routes into one VirtualService per host, or narrow their visibility with `exportTo` (conflicts with {})",
                        others.join(", ")
                    )),
                );
            }
        }
    }
}

/// The path of the `hosts` entry that resolves to `host`, else of `spec.hosts`.
fn host_path(obj: &Object, host: &str) -> FieldPath {
    let hosts = FieldPath::parse("spec.hosts");
    if let Body::VirtualService(vs) = &obj.body
        && let Some(i) = vs
            .hosts
            .iter()
            .position(|h| fqdn(h, obj.namespace()) == host)
    {
        return hosts.index(i);
    }
    hosts
}

#[cfg(test)]
mod tests {

    fn run(yaml: &str) -> Vec<crate::Diagnostic> {
        crate::testing::run_named("virtualservice.ConflictingMeshGatewayHostsAnalyzer", yaml)
    }

    fn vs(name: &str, ns: &str, extra: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{extra}  http:\n  - route:\n    - destination: {{host: web}}\n"
        )
    }

    #[test]
    fn same_host_in_mesh_conflicts() {
        let yaml = vs("a", "foo", "  hosts: [reviews]\n")
            + &vs("b", "bar", "  hosts: [reviews.foo.svc.cluster.local]\n");
        let got = run(&yaml);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got.iter()
                .all(|d| d.code == "IST0109" && d.message.contains("foo/a, bar/b"))
        );
    }

    #[test]
    fn gateway_only_or_private_exports_do_not_conflict() {
        let yaml = vs("a", "foo", "  hosts: [reviews]\n  exportTo: ['.']\n")
            + &vs(
                "b",
                "bar",
                "  hosts: [reviews.foo.svc.cluster.local]\n  exportTo: ['.']\n",
            )
            + &vs(
                "c",
                "baz",
                "  hosts: [reviews.foo.svc.cluster.local]\n  gateways: [gw]\n",
            );
        assert!(run(&yaml).is_empty());
    }

    #[test]
    fn scoped_host_overlapping_global_wildcard_conflicts() {
        let yaml = vs(
            "a",
            "foo",
            "  hosts: ['*.productpage.d']\n  exportTo: ['.']\n",
        ) + &vs("b", "bar", "  hosts: ['*.d']\n");
        assert_eq!(run(&yaml).len(), 2);
    }
}
