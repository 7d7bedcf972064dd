//! Which proxies a change can affect, so that only those are recompiled.
//!
//! The rules over-approximate: a proxy outside the answer provably compiles to the same
//! config as before; a proxy inside may not change at all. Anything not understood here
//! (a kind without a rule, mesh config, a delegate VirtualService, a host no service
//! matches) affects every proxy: correctness first, speed for the common cases.
//!
//! - VirtualService / DestinationRule / Service / ServiceEntry: the proxies that can see a
//!   service matching one of the object's hosts (the service's `exportTo`, and the
//!   egress hosts of every Sidecar that may apply in the proxy's namespace), plus, for
//!   Service and ServiceEntry, the proxies of the object's namespace (inbound ports).
//! - Sidecar: the proxies of its namespace (the root namespace's: all).
//! - A service whose index entry changed (endpoints, ports, addresses): the proxies that
//!   can see it, and those whose own address is among the endpoints that came or went
//!   (their inbound ports).
//! - A registry instance that changed: its own proxy, plus the services it feeds (above).
//! - Gateways are few and see everything: any change affects them.

use std::collections::{BTreeMap, BTreeSet};

use weft_compile::deps::{
    CLUSTER_DOMAIN, exported_to, hosts_overlap, resolve_host, sidecar_may_import,
};
use weft_compile::{ProxySettings, Service, ServiceIndex, WorkloadInstance};
use weft_config::kinds::istio::Sidecar;
use weft_config::{Body, Object};

use crate::state::ObjectKey;

/// Changes accumulated since the last compile round.
#[derive(Debug, Default)]
pub struct Change {
    /// Recompile every connected proxy.
    pub all: bool,
    /// Per changed config object: its previous and current version.
    pub objects: BTreeMap<ObjectKey, (Option<Object>, Option<Object>)>,
    /// Proxy ids of registry instances that were added, removed or changed.
    pub instances: BTreeSet<String>,
    /// Proxies that need a compile whatever else changed (they just connected).
    pub proxies: BTreeSet<String>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        !self.all && self.objects.is_empty() && self.instances.is_empty() && self.proxies.is_empty()
    }

    /// Record an object's change, keeping the oldest previous version across merges.
    pub fn object(&mut self, key: ObjectKey, old: Option<Object>, new: Option<Object>) {
        self.objects
            .entry(key)
            .and_modify(|(_, cur)| *cur = new.clone())
            .or_insert((old, new));
    }
}

/// The answer: every proxy, or these.
#[derive(Debug, PartialEq, Eq)]
pub enum Affected {
    All,
    Some(BTreeSet<String>),
}

/// A connected proxy, as far as dependency analysis needs it.
pub struct Proxy<'a> {
    pub id: &'a str,
    pub instance: &'a WorkloadInstance,
}

impl Proxy<'_> {
    fn is_gateway(&self) -> bool {
        matches!(self.instance.proxy, Some(ProxySettings::Gateway { .. }))
    }
}

/// The proxies `change` can affect. `old_index` is the service index the proxies' current
/// configs were compiled from; none means they were compiled from nothing known.
pub fn affected(
    change: &Change,
    old_index: Option<&ServiceIndex>,
    new_index: &ServiceIndex,
    objects: &[Object],
    root_namespace: &str,
    proxies: &[Proxy<'_>],
) -> Affected {
    let Some(old_index) = old_index else {
        return Affected::All;
    };
    if change.all {
        return Affected::All;
    }
    let mut out: BTreeSet<String> = change.proxies.iter().cloned().collect();
    out.extend(change.instances.iter().cloned());
    let mut hosts: Vec<(String, bool)> = Vec::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    for (old, new) in change.objects.values() {
        for o in old.iter().chain(new.iter()) {
            match rule_for(o, root_namespace) {
                Rule::All => return Affected::All,
                Rule::Hosts {
                    hosts: h,
                    namespace,
                } => {
                    hosts.extend(h.into_iter().map(|h| (h, true)));
                    namespaces.extend(namespace);
                }
                Rule::Namespace(ns) => {
                    namespaces.insert(ns);
                }
                Rule::GatewaysOnly => {}
            }
        }
    }
    let mut addresses: BTreeSet<String> = BTreeSet::new();
    for (old, new) in changed_services(old_index, new_index) {
        for s in old.iter().chain(new.iter()) {
            hosts.push((s.fqdn.clone(), false));
        }
        addresses.extend(moved_endpoints(old, new));
    }
    let mut matching: Vec<&Service> = Vec::new();
    for (pattern, must_match) in &hosts {
        let before = matching.len();
        matching.extend(
            old_index
                .services
                .iter()
                .chain(new_index.services.iter())
                .filter(|s| hosts_overlap(pattern, &s.fqdn)),
        );
        // A host no service matches: nothing here can say whom it reaches.
        if *must_match && matching.len() == before {
            return Affected::All;
        }
    }
    let scopes = Scopes::new(objects, root_namespace);
    let mut by_namespace: BTreeMap<&str, bool> = BTreeMap::new();
    for p in proxies {
        let ns = p.instance.namespace.as_str();
        let sees = *by_namespace
            .entry(ns)
            .or_insert_with(|| matching.iter().any(|s| scopes.sees(ns, s)));
        if sees
            || p.is_gateway()
            || namespaces.contains(ns)
            || addresses.contains(&p.instance.address.to_string())
        {
            out.insert(p.id.to_string());
        }
    }
    Affected::Some(out)
}

enum Rule {
    All,
    /// Proxies seeing a service of these hosts (resolved), and those of `namespace`.
    Hosts {
        hosts: Vec<String>,
        namespace: Option<String>,
    },
    Namespace(String),
    GatewaysOnly,
}

fn rule_for(o: &Object, root_namespace: &str) -> Rule {
    let ns = o.namespace();
    match &o.body {
        Body::VirtualService(vs) if vs.is_delegate() => Rule::All,
        Body::VirtualService(vs) if !vs.applies_to_mesh() => Rule::GatewaysOnly,
        Body::VirtualService(vs) => Rule::Hosts {
            hosts: vs.hosts.iter().map(|h| resolve_host(h, ns)).collect(),
            namespace: None,
        },
        Body::DestinationRule(dr) => Rule::Hosts {
            hosts: vec![resolve_host(&dr.host, ns)],
            namespace: None,
        },
        Body::Service(_) => Rule::Hosts {
            hosts: vec![format!("{}.{ns}.{CLUSTER_DOMAIN}", o.name())],
            namespace: Some(ns.to_string()),
        },
        Body::ServiceEntry(se) => Rule::Hosts {
            hosts: se.hosts.clone(),
            namespace: Some(ns.to_string()),
        },
        Body::WorkloadEntry(_) => Rule::Namespace(ns.to_string()),
        Body::Sidecar(_) if ns == root_namespace => Rule::All,
        Body::Sidecar(_) => Rule::Namespace(ns.to_string()),
        _ => Rule::All,
    }
}

/// Services that differ between two indexes, as (old, new).
fn changed_services<'a>(
    old: &'a ServiceIndex,
    new: &'a ServiceIndex,
) -> Vec<(Option<&'a Service>, Option<&'a Service>)> {
    let key = |s: &'a Service| (s.fqdn.as_str(), s.namespace.as_str());
    let olds: BTreeMap<(&str, &str), &Service> = old.services.iter().map(|s| (key(s), s)).collect();
    let news: BTreeMap<(&str, &str), &Service> = new.services.iter().map(|s| (key(s), s)).collect();
    let mut out = Vec::new();
    for (k, n) in &news {
        match olds.get(k) {
            Some(o) if same_service(o, n) => {}
            o => out.push((o.copied(), Some(*n))),
        }
    }
    for (k, o) in &olds {
        if !news.contains_key(k) {
            out.push((Some(*o), None));
        }
    }
    out
}

fn same_service(a: &Service, b: &Service) -> bool {
    a.ports == b.ports
        && a.addresses == b.addresses
        && a.export_to == b.export_to
        && a.endpoints == b.endpoints
        && a.source == b.source
        && a.origin == b.origin
        && a.created == b.created
}

/// The addresses of endpoints present in one version of a service and not the other.
fn moved_endpoints(old: Option<&Service>, new: Option<&Service>) -> Vec<String> {
    let eps = |s: Option<&Service>| s.map(|s| s.endpoints.clone()).unwrap_or_default();
    let (o, n) = (eps(old), eps(new));
    o.iter()
        .filter(|e| !n.contains(e))
        .chain(n.iter().filter(|e| !o.contains(e)))
        .map(|e| e.host.clone())
        .collect()
}

/// What the Sidecars of a namespace may import, over-approximated: the union of every
/// Sidecar that may apply there (any workload selector), the root namespace's default
/// when none in the namespace is selector-less, and "everything" when no default exists.
struct Scopes<'a> {
    sidecars: Vec<(&'a Object, &'a Sidecar)>,
    root: &'a str,
}

impl<'a> Scopes<'a> {
    fn new(objects: &'a [Object], root: &'a str) -> Scopes<'a> {
        let sidecars = objects
            .iter()
            .filter_map(|o| match &o.body {
                Body::Sidecar(s) => Some((o, s)),
                _ => None,
            })
            .collect();
        Scopes { sidecars, root }
    }

    /// Whether a proxy of namespace `ns` may see `service`.
    fn sees(&self, ns: &str, service: &Service) -> bool {
        exported_to(&service.export_to, &service.namespace, ns)
            && self.imports(ns, &service.namespace, &service.fqdn)
    }

    fn imports(&self, ns: &str, host_ns: &str, host: &str) -> bool {
        let selectorless = |s: &Sidecar| {
            s.workload_selector
                .as_ref()
                .is_none_or(|w| w.labels.is_empty())
        };
        let local: Vec<&Sidecar> = self
            .sidecars
            .iter()
            .filter(|(o, _)| o.namespace() == ns)
            .map(|(_, s)| *s)
            .collect();
        let mut candidates = local.clone();
        if !local.iter().any(|s| selectorless(s)) {
            candidates.extend(
                self.sidecars
                    .iter()
                    .filter(|(o, s)| o.namespace() == self.root && selectorless(s))
                    .map(|(_, s)| *s),
            );
            if !candidates.iter().any(|s| selectorless(s)) {
                return true;
            }
        }
        candidates
            .iter()
            .any(|s| sidecar_may_import(s, ns, host_ns, host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_overlap_both_ways() {
        assert!(hosts_overlap("*.example.com", "a.example.com"));
        assert!(hosts_overlap("a.example.com", "*.example.com"));
        assert!(hosts_overlap("*.b.example.com", "*.example.com"));
        assert!(hosts_overlap("*", "x"));
        assert!(hosts_overlap("A.Example.com", "a.example.com"));
        assert!(!hosts_overlap("a.example.com", "b.example.com"));
        assert!(!hosts_overlap("*.example.com", "example.org"));
    }

    #[test]
    fn kinds_without_a_rule_affect_everyone() {
        let bundle = weft_config::Bundle::load_str(
            "x.yaml",
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: a}\nspec: {mtls: {mode: STRICT}}\n",
        );
        let o = bundle.objects.into_iter().next().expect("one object");
        let mut change = Change::default();
        change.object(object_key_of(&o), None, Some(o));
        let index = ServiceIndex::default();
        assert_eq!(
            affected(&change, Some(&index), &index, &[], "istio-system", &[]),
            Affected::All
        );
    }

    fn object_key_of(o: &Object) -> ObjectKey {
        crate::state::object_key(o)
    }
}
