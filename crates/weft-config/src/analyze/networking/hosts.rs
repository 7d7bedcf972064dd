//! Host names as Istio compares them, and an index of every service a rule can address
//! (Kubernetes Services and ServiceEntry hosts) with the namespaces each is visible in.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::analyze::Context;
use crate::kinds::{Body, Kind};
use crate::object::Object;

/// The annotation that limits which namespaces see a Kubernetes Service.
pub const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

/// Whether two hosts overlap: equal, or one wildcard (`*.example.com`, `*`) covers the
/// other (which may itself be a wildcard).
pub fn host_matches(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (None, None) => a == b,
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (Some(sa), Some(sb)) => {
            if sa.len() < sb.len() {
                sb.ends_with(sa)
            } else {
                sa.ends_with(sb)
            }
        }
    }
}

/// Resolve a host as written in an object in namespace `ns`: short names take the
/// namespace (`reviews` -> `reviews.ns.svc.cluster.local`); FQDNs and wildcards stay.
pub fn fqdn(host: &str, ns: &str) -> String {
    Context::fqdn(host, ns)
}

/// Where a resource is visible, from its `exportTo` list: `None` = every namespace,
/// otherwise the namespaces (`.` resolved to the resource's own).
pub fn export_scopes(export_to: &[String], own_ns: &str) -> Option<Vec<String>> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return None;
    }
    let mut out: Vec<String> = export_to
        .iter()
        .map(|e| {
            if e == "." {
                own_ns.to_string()
            } else {
                e.clone()
            }
        })
        .collect();
    out.sort();
    out.dedup();
    Some(out)
}

/// The scopes of a Kubernetes Service, from its `networking.istio.io/exportTo` annotation.
pub fn service_export_scopes(obj: &Object) -> Option<Vec<String>> {
    let anno = obj.annotation(EXPORT_TO_ANNOTATION).unwrap_or("").trim();
    if anno.is_empty() {
        return None;
    }
    let list: Vec<String> = anno
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    export_scopes(&list, obj.namespace())
}

/// A service a destination can resolve to.
#[derive(Debug, Clone)]
pub struct ServiceTarget<'a> {
    /// The host as declared (FQDN for Kubernetes Services).
    pub host: String,
    pub ports: Vec<u32>,
    pub source: &'a Object,
}

impl ServiceTarget<'_> {
    /// `Service ns/name` or `ServiceEntry ns/name`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {}/{}",
            self.source.kind.name(),
            self.source.namespace(),
            self.source.name()
        )
    }
}

/// The scope an entry is visible in: every namespace or one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scope {
    All,
    Ns(String),
}

/// Every addressable host with the namespaces it is visible in, indexed for lookups by
/// exact host and by wildcard suffix.
pub struct ServiceRegistry<'a> {
    targets: Vec<ServiceTarget<'a>>,
    exact: HashMap<(Scope, String), usize>,
    /// Wildcard hosts by the suffix after `*` (`*.eu.example.com` -> `.eu.example.com`).
    wildcards: HashMap<String, Vec<(Scope, usize)>>,
    /// Hosts per namespace of the declaring object (sorted by host), for suggestions.
    by_namespace: BTreeMap<&'a str, Vec<usize>>,
    /// Hosts by their first label, for suggestions.
    by_name: HashMap<String, Vec<usize>>,
    /// Suggestions already computed, by (namespace, FQDN): the same typo often repeats.
    suggestions: RefCell<HashMap<(String, String), String>>,
}

impl<'a> ServiceRegistry<'a> {
    /// ServiceEntries first, then Kubernetes Services (a Service wins over a ServiceEntry
    /// for the same host, as in Istio's analyzers).
    pub fn build(ctx: &Context<'a>) -> ServiceRegistry<'a> {
        let mut reg = ServiceRegistry {
            targets: Vec::new(),
            exact: HashMap::new(),
            wildcards: HashMap::new(),
            by_namespace: BTreeMap::new(),
            by_name: HashMap::new(),
            suggestions: RefCell::new(HashMap::new()),
        };
        for obj in ctx.of(Kind::ServiceEntry) {
            let Body::ServiceEntry(se) = &obj.body else {
                continue;
            };
            let ns = obj.namespace();
            let scopes = export_scopes(&se.export_to, ns);
            let ports: Vec<u32> = se.ports.iter().map(|p| p.number).collect();
            for h in &se.hosts {
                let host = fqdn(h, ns);
                let idx = reg.push(ServiceTarget {
                    host: host.clone(),
                    ports: ports.clone(),
                    source: obj,
                });
                reg.insert(&host, &scopes, idx);
            }
        }
        for svc in ctx.services() {
            let scopes = service_export_scopes(svc.source);
            let ports: Vec<u32> = svc.ports.iter().map(|p| u32::from(p.port)).collect();
            let idx = reg.push(ServiceTarget {
                host: svc.hostname.clone(),
                ports,
                source: svc.source,
            });
            reg.insert(&svc.hostname, &scopes, idx);
        }
        let targets = &reg.targets;
        for list in reg.by_namespace.values_mut() {
            list.sort_by(|&a, &b| targets[a].host.cmp(&targets[b].host));
        }
        reg
    }

    fn push(&mut self, t: ServiceTarget<'a>) -> usize {
        let idx = self.targets.len();
        self.by_namespace
            .entry(t.source.namespace())
            .or_default()
            .push(idx);
        self.targets.push(t);
        idx
    }

    fn insert(&mut self, host: &str, scopes: &Option<Vec<String>>, idx: usize) {
        let scope_list: Vec<Scope> = match scopes {
            None => vec![Scope::All],
            Some(list) => list.iter().map(|s| Scope::Ns(s.clone())).collect(),
        };
        for scope in scope_list {
            if let Some(suffix) = host.strip_prefix('*') {
                self.wildcards
                    .entry(suffix.to_string())
                    .or_default()
                    .push((scope.clone(), idx));
            }
            self.exact.insert((scope, host.to_string()), idx);
        }
    }

    /// The service `host` (as written in an object in `source_ns` whose own `exportTo` is
    /// `export_to`) resolves to, as Istio's analyzers look it up: hosts visible everywhere,
    /// then hosts visible in the namespaces the rule is exported to (its own by default),
    /// then wildcard ServiceEntry hosts visible to the rule's namespace.
    pub fn lookup(
        &self,
        source_ns: &str,
        export_to: &[String],
        host: &str,
    ) -> Option<&ServiceTarget<'a>> {
        let full = fqdn(host, source_ns);
        if let Some(&i) = self.exact.get(&(Scope::All, full.clone())) {
            return Some(&self.targets[i]);
        }
        let scopes: Vec<String> = if export_to.is_empty() {
            vec![source_ns.to_string()]
        } else {
            export_to
                .iter()
                .map(|e| {
                    if e == "." {
                        source_ns.to_string()
                    } else {
                        e.clone()
                    }
                })
                .collect()
        };
        for s in scopes {
            if let Some(&i) = self.exact.get(&(Scope::Ns(s), full.clone())) {
                return Some(&self.targets[i]);
            }
        }
        // Wildcard entries: every suffix of the host (without its own leading `*`).
        let bare = full.strip_prefix('*').unwrap_or(&full);
        for (i, _) in bare
            .char_indices()
            .chain(std::iter::once((bare.len(), ' ')))
        {
            let Some(entries) = self.wildcards.get(&bare[i..]) else {
                continue;
            };
            let visible = entries.iter().find(|(scope, _)| match scope {
                Scope::All => true,
                Scope::Ns(n) => n == source_ns,
            });
            if let Some((_, idx)) = visible {
                return Some(&self.targets[*idx]);
            }
        }
        None
    }

    /// A hint naming hosts close to `host`: a likely typo, a service of that name in another
    /// namespace, or what exists in the namespace. Cheap enough to call for every miss.
    pub fn suggest(&self, host: &str, ns: &str) -> String {
        let full = fqdn(host, ns);
        let memo_key = (ns.to_string(), full.clone());
        if let Some(hint) = self.suggestions.borrow().get(&memo_key) {
            return hint.clone();
        }
        let hint = self.compute_suggestion(&full, ns);
        self.suggestions.borrow_mut().insert(memo_key, hint.clone());
        hint
    }

    fn compute_suggestion(&self, full: &str, ns: &str) -> String {
        let local_suffix = format!(".{ns}.{}", crate::analyze::context::DOMAIN_SUFFIX);
        let short = |h: &str| -> String { h.strip_suffix(&local_suffix).unwrap_or(h).to_string() };
        let same_ns: &[usize] = self.by_namespace.get(ns).map(Vec::as_slice).unwrap_or(&[]);
        // Typos: only hosts of similar length can be within the edit distance allowed; local
        // Service names are compared without their common namespace suffix.
        let key = short(full);
        let close: Vec<String> = same_ns
            .iter()
            .map(|&i| short(&self.targets[i].host))
            .filter(|h| h.len().abs_diff(key.len()) <= 3 && *h != key)
            .take(200)
            .collect();
        let refs: Vec<&str> = close.iter().map(String::as_str).collect();
        if let Some(best) = crate::de::did_you_mean(&key, &refs) {
            return format!("did you mean `{best}`?");
        }
        let name = full.split('.').next().unwrap_or("");
        let elsewhere: Vec<&str> = self
            .by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|&i| self.targets[i].host.as_str())
            .filter(|h| *h != full)
            .take(3)
            .collect();
        if !elsewhere.is_empty() {
            return format!(
                "a service of that name exists as {}; use its fully qualified name (and check its exportTo)",
                elsewhere.join(", ")
            );
        }
        if same_ns.is_empty() {
            return format!(
                "no Service or ServiceEntry is declared in namespace `{ns}`; create a Service (or a ServiceEntry for an external host) named by the host"
            );
        }
        // `by_namespace` lists are sorted by host at build time.
        let mut list: Vec<String> = Vec::new();
        for &i in same_ns {
            let h = short(&self.targets[i].host);
            if list.last() != Some(&h) {
                list.push(h);
            }
            if list.len() > 5 {
                break;
            }
        }
        let more = if list.len() > 5 {
            list.truncate(5);
            " ...".to_string()
        } else {
            String::new()
        };
        format!("hosts known in namespace `{ns}`: {}{more}", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_matching_is_symmetric_overlap() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("a.example.com", "*.example.com"));
        assert!(host_matches("*", "anything"));
        assert!(host_matches("*.productpage.d", "*.d"));
        assert!(!host_matches("a.example.com", "b.example.com"));
        assert!(!host_matches("*.example.com", "example.org"));
    }

    #[test]
    fn export_scopes_resolve_dot() {
        assert_eq!(export_scopes(&[], "a"), None);
        assert_eq!(export_scopes(&["*".into(), ".".into()], "a"), None);
        assert_eq!(
            export_scopes(&[".".into(), "b".into()], "a"),
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }
}
