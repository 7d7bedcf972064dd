//! weft's own analyzers: checks `istioctl analyze` does not make (or makes only in some
//! cases), with `WEFT1xxx` codes.
//!
//! | code | severity | detects | fix |
//! |---|---|---|---|
//! | `WEFT1001` | warning | a mesh-bound VirtualService host (`gateways` empty or containing `mesh`) matches no known service: no Kubernetes Service, ServiceEntry host or weft Workload (`app` label, else name) | correct the host (the closest known host is suggested), or declare the Service / ServiceEntry |
//! | `WEFT1002` | warning | a workload selector that Istio's analyzers do not check (PeerAuthentication and RequestAuthentication `selector`; DestinationRule and EnvoyFilter `workloadSelector`) selects no workload in its namespace (in the root namespace: in any namespace); names the selector labels and the closest workload's labels. Selectors for Istio-installed gateways (`istio: *gateway`) are skipped | fix the labels to match the intended pods, or remove the selector |
//! | `WEFT1003` | warning | a short host (`reviews`) in a VirtualService or DestinationRule resolves to `reviews.<rule namespace>.svc.cluster.local`, which does not exist, while a Service `reviews` exists in another namespace | write the fully qualified name, e.g. `reviews.bookinfo.svc.cluster.local` |
//!
//! A route to an undefined subset is Istio's IST0101 (virtualservice.DestinationRuleAnalyzer),
//! and a subset that selects no pod is IST0173 (destinationrule.PodNotSelectedAnalyzer).
//!
//! The checks that need to know the workloads or services (WEFT1001, WEFT1002)
//! stay silent when the loaded configuration declares none at all: then weft cannot tell a
//! mistake from manifests that were simply not given to it.

mod hosts;
mod selectors;

use std::collections::{BTreeMap, BTreeSet};

use super::{Analyzer, Context};
use crate::kinds::Body;
use crate::kinds::Kind;

pub const UNKNOWN_HOST: &str = "WEFT1001";
pub const SELECTS_NOTHING: &str = "WEFT1002";
pub const SHORT_HOST_ELSEWHERE: &str = "WEFT1003";

pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![
        Box::new(hosts::UnknownHostAnalyzer),
        Box::new(selectors::SelectorAnalyzer),
        Box::new(hosts::ShortHostAnalyzer),
    ]
}

/// Whether a (possibly wildcard) host pattern covers `host`.
fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// Every host a client can address, as far as the loaded configuration tells: Kubernetes
/// Services, ServiceEntry hosts and weft Workloads.
struct KnownHosts {
    /// FQDN (or literal ServiceEntry host) → where it comes from.
    exact: BTreeMap<String, &'static str>,
    /// Wildcard ServiceEntry hosts (`*.example.com`).
    wildcard: Vec<String>,
    /// Short service name → namespaces it exists in.
    by_short_name: BTreeMap<String, BTreeSet<String>>,
}

impl KnownHosts {
    fn build(ctx: &Context<'_>) -> KnownHosts {
        let mut k = KnownHosts {
            exact: BTreeMap::new(),
            wildcard: Vec::new(),
            by_short_name: BTreeMap::new(),
        };
        for s in ctx.services() {
            k.exact.insert(s.hostname.clone(), "Service");
            k.by_short_name
                .entry(s.name.to_string())
                .or_default()
                .insert(s.namespace.to_string());
        }
        for obj in ctx.of(Kind::ServiceEntry) {
            let Body::ServiceEntry(se) = &obj.body else {
                continue;
            };
            for h in &se.hosts {
                if h.starts_with('*') {
                    k.wildcard.push(h.clone());
                } else {
                    k.exact
                        .insert(Context::fqdn(h, obj.namespace()), "ServiceEntry");
                    k.exact.entry(h.clone()).or_insert("ServiceEntry");
                }
            }
        }
        for obj in ctx.of(Kind::Workload) {
            let name = obj.label("app").unwrap_or(obj.name()).to_string();
            k.exact
                .entry(Context::fqdn(&name, obj.namespace()))
                .or_insert("Workload");
            k.by_short_name
                .entry(name)
                .or_default()
                .insert(obj.namespace().to_string());
        }
        k
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }

    fn contains(&self, fqdn: &str) -> bool {
        self.exact.contains_key(fqdn) || self.wildcard.iter().any(|w| host_matches(w, fqdn))
    }

    /// Known hosts sorted by closeness to `host`.
    fn closest(&self, host: &str) -> Vec<(usize, &str)> {
        let mut v: Vec<(usize, &str)> = self
            .exact
            .keys()
            .map(|k| (strsim::damerau_levenshtein(host, k), k.as_str()))
            .collect();
        v.sort();
        v
    }
}

/// `k=v, k2=v2` for messages.
fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(no labels)".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
fn run(analyzer: &dyn Analyzer, yaml: &str) -> Vec<crate::Diagnostic> {
    crate::testing::run_analyzer(analyzer, yaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_hosts() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("*", "anything"));
        assert!(host_matches("a.b", "A.b"));
    }

    #[test]
    fn codes_are_distinct() {
        let codes = [UNKNOWN_HOST, SELECTS_NOTHING, SHORT_HOST_ELSEWHERE];
        assert_eq!(codes.iter().collect::<BTreeSet<_>>().len(), codes.len());
        let names: BTreeSet<&str> = analyzers().iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), 3);
    }
}
