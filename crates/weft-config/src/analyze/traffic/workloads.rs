//! The workloads an Istio Gateway can select, indexed by label, and the Service ports that
//! expose them.
//!
//! Like `istioctl analyze` on files, weft assumes the default ingress gateway exists (a pod
//! labelled `istio: ingressgateway` in `istio-system` behind the `istio-ingressgateway`
//! Service, ports 80/443/31400/15443, with 80 and 443 forwarding to the unprivileged 8080
//! and 8443 the gateway listens on since Istio 1.7) unless the mesh turns the ingress controller off or
//! the files declare such workloads themselves: otherwise every Gateway written for the
//! stock ingress would be reported as selecting nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use crate::analyze::Context;
use crate::kinds::Body;
use crate::kinds::common::{IntOrString, labels_match};
use crate::kinds::istio::IngressControllerMode;
use crate::kinds::k8s::PodSpec;

/// The namespace the default ingress gateway runs in.
pub const INGRESS_NAMESPACE: &str = "istio-system";
const DEFAULT_INGRESS_SERVICE: &str = "istio-ingressgateway";
/// Ports of the default ingress gateway Service and the target ports they forward to.
const DEFAULT_INGRESS_PORTS: [u32; 6] = [80, 443, 31400, 15443, 8080, 8443];

static DEFAULT_INGRESS_LABELS: LazyLock<BTreeMap<String, String>> =
    LazyLock::new(|| BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]));

/// A pod (or pod template) a Gateway may select.
#[derive(Debug, Clone)]
pub struct GatewayPod<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub spec: Option<&'a PodSpec>,
    /// The assumed default ingress gateway, not declared in the files.
    pub assumed: bool,
}

struct SvcPort<'a> {
    port: u32,
    target: Option<&'a IntOrString>,
    tcp: bool,
}

struct Svc<'a> {
    selector: &'a BTreeMap<String, String>,
    ports: Vec<SvcPort<'a>>,
}

pub struct GatewayWorkloads<'a> {
    pub pods: Vec<GatewayPod<'a>>,
    by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
    services: HashMap<&'a str, Vec<Svc<'a>>>,
}

impl<'a> GatewayWorkloads<'a> {
    pub fn new(ctx: &Context<'a>) -> GatewayWorkloads<'a> {
        let mut pods: Vec<GatewayPod<'a>> = ctx
            .pods()
            .iter()
            .map(|p| GatewayPod {
                namespace: p.namespace,
                labels: p.labels,
                spec: p.spec,
                assumed: false,
            })
            .collect();
        let ingress_on = ctx.mesh.ingress_controller_mode != Some(IngressControllerMode::Off);
        let ingress_service = ctx
            .mesh
            .ingress_service
            .as_deref()
            .unwrap_or(DEFAULT_INGRESS_SERVICE);
        if ingress_on
            && !pods
                .iter()
                .any(|p| labels_match(&DEFAULT_INGRESS_LABELS, p.labels))
        {
            pods.push(GatewayPod {
                namespace: INGRESS_NAMESPACE,
                labels: &DEFAULT_INGRESS_LABELS,
                spec: None,
                assumed: true,
            });
        }
        let mut by_label: HashMap<(&'a str, &'a str), Vec<usize>> = HashMap::new();
        for (i, p) in pods.iter().enumerate() {
            for (k, v) in p.labels {
                by_label
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        let mut services: HashMap<&'a str, Vec<Svc<'a>>> = HashMap::new();
        let mut have_ingress_service = false;
        for s in ctx.services() {
            let Body::Service(spec) = &s.source.body else {
                continue;
            };
            if s.namespace == INGRESS_NAMESPACE && s.name == ingress_service {
                have_ingress_service = true;
            }
            // A Service without a selector selects no pods (its endpoints are managed by hand).
            let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
                continue;
            };
            let ports = spec
                .ports
                .iter()
                .map(|p| SvcPort {
                    port: u32::from(p.port),
                    target: p.target_port.as_ref(),
                    tcp: p
                        .protocol
                        .as_deref()
                        .is_none_or(|proto| proto.eq_ignore_ascii_case("TCP")),
                })
                .collect();
            services
                .entry(s.namespace)
                .or_default()
                .push(Svc { selector, ports });
        }
        if ingress_on && !have_ingress_service {
            services.entry(INGRESS_NAMESPACE).or_default().push(Svc {
                selector: &DEFAULT_INGRESS_LABELS,
                ports: DEFAULT_INGRESS_PORTS
                    .iter()
                    .map(|&port| SvcPort {
                        port,
                        target: None,
                        tcp: true,
                    })
                    .collect(),
            });
        }
        GatewayWorkloads {
            pods,
            by_label,
            services,
        }
    }

    /// Indices of the pods, in any namespace, whose labels include all of `selector`'s.
    /// An empty selector selects every pod.
    pub fn select(&self, selector: &BTreeMap<String, String>) -> Vec<usize> {
        if selector.is_empty() {
            return (0..self.pods.len()).collect();
        }
        // Scan the shortest posting list among the selector's labels.
        let mut best: Option<&Vec<usize>> = None;
        for (k, v) in selector {
            match self.by_label.get(&(k.as_str(), v.as_str())) {
                None => return Vec::new(),
                Some(list) => {
                    if best.is_none_or(|b| list.len() < b.len()) {
                        best = Some(list);
                    }
                }
            }
        }
        best.map(|list| {
            list.iter()
                .copied()
                .filter(|&i| labels_match(selector, self.pods[i].labels))
                .collect()
        })
        .unwrap_or_default()
    }

    /// The TCP ports that Services selecting pod `i` expose for it: each Service port and
    /// its target port (named target ports resolve through the pod's container ports).
    pub fn exposed_ports(&self, i: usize) -> BTreeSet<u32> {
        let pod = &self.pods[i];
        let mut out = BTreeSet::new();
        for svc in self.services.get(pod.namespace).into_iter().flatten() {
            if !labels_match(svc.selector, pod.labels) {
                continue;
            }
            for p in svc.ports.iter().filter(|p| p.tcp) {
                out.insert(p.port);
                match p.target {
                    Some(IntOrString::Int(t)) => {
                        if let Ok(t) = u32::try_from(*t) {
                            out.insert(t);
                        }
                    }
                    Some(IntOrString::String(name)) => {
                        if let Some(n) = container_port(pod.spec, name) {
                            out.insert(n);
                        } else if let Ok(n) = name.parse::<u32>() {
                            out.insert(n);
                        }
                    }
                    None => {}
                }
            }
        }
        out
    }
}

/// Pods of the context indexed by (namespace, label), for selectors that select within
/// their own namespace.
pub struct NamespacedPods<'a> {
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<usize>>,
    by_namespace: HashMap<&'a str, Vec<usize>>,
}

impl<'a> NamespacedPods<'a> {
    pub fn new(pods: &[crate::analyze::PodInfo<'a>]) -> NamespacedPods<'a> {
        let mut by_label: HashMap<(&'a str, &'a str, &'a str), Vec<usize>> = HashMap::new();
        let mut by_namespace: HashMap<&'a str, Vec<usize>> = HashMap::new();
        for (i, p) in pods.iter().enumerate() {
            by_namespace.entry(p.namespace).or_default().push(i);
            for (k, v) in p.labels {
                by_label
                    .entry((p.namespace, k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
        }
        NamespacedPods {
            by_label,
            by_namespace,
        }
    }

    /// Indices (into the slice given to `new`) of the pods in `namespace` that `selector`
    /// selects; an empty selector selects the whole namespace.
    pub fn select(
        &self,
        pods: &[crate::analyze::PodInfo<'a>],
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Vec<usize> {
        let mut best = self.by_namespace.get(namespace);
        for (k, v) in selector {
            match self.by_label.get(&(namespace, k.as_str(), v.as_str())) {
                None => return Vec::new(),
                Some(list) => {
                    if best.is_none_or(|b| list.len() < b.len()) {
                        best = Some(list);
                    }
                }
            }
        }
        best.into_iter()
            .flatten()
            .copied()
            .filter(|&i| labels_match(selector, pods[i].labels))
            .collect()
    }
}

fn container_port(spec: Option<&PodSpec>, name: &str) -> Option<u32> {
    spec?
        .containers
        .iter()
        .flat_map(|c| &c.ports)
        .find(|p| p.name.as_deref() == Some(name))
        .map(|p| u32::from(p.container_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assumes_default_ingress_only_when_absent() {
        let b = crate::Bundle::load_str(
            "t.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: a}}\n",
        );
        let ctx = Context::new(&b.objects);
        let w = GatewayWorkloads::new(&ctx);
        let sel = DEFAULT_INGRESS_LABELS.clone();
        let hit = w.select(&sel);
        assert_eq!(hit.len(), 1);
        assert!(w.pods[hit[0]].assumed);
        assert_eq!(
            w.exposed_ports(hit[0]),
            BTreeSet::from([80, 443, 31400, 15443, 8080, 8443])
        );

        let b = crate::Bundle::load_str(
            "t.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: gw, namespace: ingress, labels: {istio: ingressgateway}}\n",
        );
        let ctx = Context::new(&b.objects);
        let w = GatewayWorkloads::new(&ctx);
        let hit = w.select(&sel);
        assert_eq!(hit.len(), 1);
        assert!(!w.pods[hit[0]].assumed);
        assert!(w.exposed_ports(hit[0]).is_empty());
    }

    #[test]
    fn named_target_port_resolves_through_container_ports() {
        let b = crate::Bundle::load_str(
            "t.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: gw, labels: {app: gw}}\nspec:\n  containers:\n  - name: c\n    ports: [{name: web, containerPort: 8443}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: gw}\nspec:\n  selector: {app: gw}\n  ports: [{port: 443, targetPort: web}]\n",
        );
        let ctx = Context::new(&b.objects);
        let w = GatewayWorkloads::new(&ctx);
        let hit = w.select(&BTreeMap::from([("app".to_string(), "gw".to_string())]));
        assert_eq!(w.exposed_ports(hit[0]), BTreeSet::from([443, 8443]));
    }
}
