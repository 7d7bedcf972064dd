//! What one proxy may see: `exportTo` on services, VirtualServices and DestinationRules, the
//! Sidecar resource's egress host imports, and the outbound traffic policy.

use weft_config::kinds::istio::{MeshConfig, OutboundMode, OutboundTrafficMode, Sidecar};
use weft_config::{Body, Object};

use crate::input::WorkloadInstance;
use crate::registry::host_matches;

/// Whether an object of namespace `obj_ns` with `export_to` (already defaulted) is visible
/// from `client_ns`: `.` is the object's own namespace, `*` all, `~` none, else names.
pub fn exported_to(export_to: &[String], obj_ns: &str, client_ns: &str) -> bool {
    export_to.iter().any(|e| match e.as_str() {
        "*" => true,
        "." => obj_ns == client_ns,
        "~" => false,
        ns => ns == client_ns,
    })
}

/// `exportTo` as written, or the mesh default when empty.
pub fn export_or_default(list: &[String], default: Vec<String>) -> Vec<String> {
    if list.is_empty() {
        default
    } else {
        list.to_vec()
    }
}

/// One parsed Sidecar egress host: `ns/dnsName`, or an exclusion `~ns/dnsName`.
#[derive(Debug, Clone)]
struct EgressHost {
    namespace: String,
    host: String,
    exclude: bool,
}

/// The Sidecar resource that applies to a proxy, reduced to what the compiler uses.
#[derive(Debug, Clone, Default)]
pub struct SidecarScope {
    /// None when no Sidecar applies: everything exported to the namespace is imported.
    imports: Option<Vec<EgressHost>>,
    pub outbound_mode: Option<OutboundMode>,
    pub origin: Option<weft_api::Origin>,
}

impl SidecarScope {
    /// The Sidecar for a sidecar proxy (`aged`: the snapshot's objects, oldest first): one in its namespace whose workloadSelector matches
    /// (oldest first), else the selector-less one of its namespace, else the root
    /// namespace's selector-less one. Gateways get no Sidecar.
    pub fn for_instance(
        aged: &[&Object],
        mesh: &MeshConfig,
        instance: &WorkloadInstance,
    ) -> SidecarScope {
        let sidecars: Vec<(&Object, &Sidecar)> = aged
            .iter()
            .copied()
            .filter_map(|o| match &o.body {
                Body::Sidecar(s) => Some((o, s)),
                _ => None,
            })
            .collect();
        let ns = instance.namespace.as_str();
        let selected = sidecars
            .iter()
            .find(|(o, s)| {
                o.namespace() == ns
                    && s.workload_selector.as_ref().is_some_and(|w| {
                        !w.labels.is_empty()
                            && weft_config::kinds::common::labels_match(&w.labels, &instance.labels)
                    })
            })
            .or_else(|| {
                sidecars.iter().find(|(o, s)| {
                    o.namespace() == ns
                        && s.workload_selector
                            .as_ref()
                            .is_none_or(|w| w.labels.is_empty())
                })
            })
            .or_else(|| {
                sidecars.iter().find(|(o, s)| {
                    o.namespace() == mesh.root_namespace()
                        && s.workload_selector
                            .as_ref()
                            .is_none_or(|w| w.labels.is_empty())
                })
            });
        let Some((o, s)) = selected else {
            return SidecarScope::default();
        };
        let imports = (!s.egress.is_empty()).then(|| {
            s.egress
                .iter()
                .flat_map(|e| e.hosts.iter())
                .filter_map(|h| parse_egress_host(h, ns))
                .collect()
        });
        SidecarScope {
            imports,
            outbound_mode: s.outbound_traffic_policy.as_ref().and_then(|p| p.mode).map(
                |m| match m {
                    OutboundTrafficMode::AllowAny => OutboundMode::AllowAny,
                    OutboundTrafficMode::RegistryOnly => OutboundMode::RegistryOnly,
                },
            ),
            origin: Some(weft_api::Origin {
                kind: "Sidecar".into(),
                namespace: o.namespace().into(),
                name: o.name().into(),
            }),
        }
    }

    /// Whether config for `host` declared in namespace `ns` is imported: some egress host
    /// matches and no exclusion does.
    pub fn imports(&self, ns: &str, host: &str) -> bool {
        let Some(imports) = &self.imports else {
            return true;
        };
        let matches = |e: &EgressHost| {
            (e.namespace == "*" || e.namespace == ns) && host_matches(&e.host, host)
        };
        imports.iter().any(|e| !e.exclude && matches(e))
            && !imports.iter().any(|e| e.exclude && matches(e))
    }

    /// The outbound policy: the Sidecar's when it sets one, else the mesh's.
    pub fn outbound_mode(&self, mesh: &MeshConfig) -> OutboundMode {
        self.outbound_mode.unwrap_or_else(|| mesh.outbound_mode())
    }
}

/// Whether Sidecar `s`, applying to a proxy of `proxy_ns`, may import config for the host
/// pattern `host` declared in `host_ns`: the egress hosts as [`SidecarScope::imports`]
/// reads them, but with patterns that merely overlap and without exclusions, so it errs
/// on importing (the control plane recompiles a proxy when unsure).
pub fn sidecar_may_import(s: &Sidecar, proxy_ns: &str, host_ns: &str, host: &str) -> bool {
    if s.egress.is_empty() {
        return true;
    }
    s.egress
        .iter()
        .flat_map(|e| e.hosts.iter())
        .filter_map(|h| parse_egress_host(h, proxy_ns))
        .any(|e| {
            !e.exclude
                && (e.namespace == "*" || e.namespace == host_ns)
                && crate::registry::hosts_overlap(&e.host, host)
        })
}

/// `ns/host` with `.` meaning the proxy's namespace and `~` no namespace; `~ns/host` is an
/// exclusion. A host without a namespace part is invalid and ignored.
fn parse_egress_host(h: &str, proxy_ns: &str) -> Option<EgressHost> {
    let (exclude, rest) = match h.strip_prefix('~') {
        Some(rest) if !rest.starts_with('/') => (true, rest),
        _ => (false, h),
    };
    let (ns, host) = rest.split_once('/')?;
    if ns == "~" {
        return None;
    }
    let namespace = if ns == "." { proxy_ns } else { ns };
    Some(EgressHost {
        namespace: namespace.to_string(),
        host: host.to_string(),
        exclude,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(hosts: &[&str]) -> SidecarScope {
        SidecarScope {
            imports: Some(
                hosts
                    .iter()
                    .filter_map(|h| parse_egress_host(h, "shop"))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn export_to_values() {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(exported_to(&v(&["*"]), "a", "b"));
        assert!(exported_to(&v(&["."]), "a", "a"));
        assert!(!exported_to(&v(&["."]), "a", "b"));
        assert!(exported_to(&v(&["b", "c"]), "a", "b"));
        assert!(!exported_to(&v(&["~"]), "a", "a"));
    }

    #[test]
    fn egress_hosts() {
        let s = scope(&["./*", "istio-system/*"]);
        assert!(s.imports("shop", "cart.shop.svc.cluster.local"));
        assert!(s.imports("istio-system", "x.istio-system.svc.cluster.local"));
        assert!(!s.imports("other", "x.other.svc.cluster.local"));
        let s = scope(&["*/*.example.com", "~*/bad.example.com"]);
        assert!(s.imports("any", "good.example.com"));
        assert!(!s.imports("any", "bad.example.com"));
        let s = scope(&["~/*"]);
        assert!(!s.imports("shop", "cart.shop.svc.cluster.local"));
        assert!(SidecarScope::default().imports("x", "y"));
    }
}
