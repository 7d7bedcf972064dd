//! What analyzers see: the objects, indexed, plus the workloads and services they imply.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;

use crate::kinds::istio::MeshConfig;
use crate::kinds::k8s::PodSpec;
use crate::kinds::{Body, Kind};
use crate::object::Object;

/// The cluster domain weft assumes, as Kubernetes and Istio do by default.
pub const DOMAIN_SUFFIX: &str = "svc.cluster.local";

pub struct Context<'a> {
    pub objects: &'a [Object],
    by_kind: HashMap<Kind, Vec<usize>>,
    pods: OnceLock<Vec<PodInfo<'a>>>,
    services: OnceLock<Vec<ServiceInfo<'a>>>,
    /// Mesh-wide settings: from `--mesh-config`, an `istio` ConfigMap or an IstioOperator.
    pub mesh: MeshConfig,
    /// A mesh networks document given on its own (`--mesh-networks`), as Istio's
    /// `meshNetworks` file.
    pub mesh_networks: Option<crate::yaml::Node>,
}

/// A workload instance: a Pod, the pod template of a Deployment-like object, or a weft
/// Workload.
#[derive(Debug, Clone)]
pub struct PodInfo<'a> {
    pub namespace: &'a str,
    pub name: String,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub service_account: &'a str,
    pub spec: Option<&'a PodSpec>,
    /// The object that declares it.
    pub source: &'a Object,
}

/// A service a client can address: a Kubernetes Service (ServiceEntry hosts are added by
/// the analyzers that need them).
#[derive(Debug, Clone)]
pub struct ServiceInfo<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// `name.namespace.svc.cluster.local`.
    pub hostname: String,
    pub ports: Vec<ServicePortInfo<'a>>,
    pub selector: Option<&'a BTreeMap<String, String>>,
    pub source: &'a Object,
}

#[derive(Debug, Clone)]
pub struct ServicePortInfo<'a> {
    pub name: Option<&'a str>,
    pub port: u16,
    pub protocol: Option<&'a str>,
    pub app_protocol: Option<&'a str>,
}

impl<'a> Context<'a> {
    /// A context whose mesh config comes from the objects themselves (or defaults).
    pub fn new(objects: &'a [Object]) -> Context<'a> {
        Context::with_mesh(objects, MeshConfig::from_objects(objects))
    }

    pub fn with_mesh(objects: &'a [Object], mesh: MeshConfig) -> Context<'a> {
        let mut by_kind: HashMap<Kind, Vec<usize>> = HashMap::new();
        for (i, o) in objects.iter().enumerate() {
            by_kind.entry(o.kind).or_default().push(i);
        }
        Context {
            objects,
            by_kind,
            pods: OnceLock::new(),
            services: OnceLock::new(),
            mesh,
            mesh_networks: None,
        }
    }

    /// Add a mesh networks document (Istio's `meshNetworks` file).
    pub fn with_mesh_networks(mut self, networks: crate::yaml::Node) -> Context<'a> {
        self.mesh_networks = Some(networks);
        self
    }

    /// Objects of one kind, in load order.
    pub fn of(&self, kind: Kind) -> impl Iterator<Item = &'a Object> + '_ {
        self.by_kind
            .get(&kind)
            .into_iter()
            .flatten()
            .map(|&i| &self.objects[i])
    }

    pub fn find(&self, kind: Kind, namespace: &str, name: &str) -> Option<&'a Object> {
        self.of(kind)
            .find(|o| o.name() == name && o.namespace() == namespace)
    }

    /// Namespaces that exist: declared ones and those any object lives in.
    pub fn namespaces(&self) -> BTreeSet<&'a str> {
        let mut set: BTreeSet<&'a str> = self.of(Kind::Namespace).map(|o| o.name()).collect();
        for o in self.objects {
            if o.kind.namespaced() {
                set.insert(o.namespace());
            }
        }
        set
    }

    /// Workload instances (pods), from Pods, Deployment-like templates and weft Workloads.
    pub fn pods(&self) -> &[PodInfo<'a>] {
        self.pods.get_or_init(|| {
            let mut out = Vec::new();
            for o in self.objects {
                let ns = o.namespace();
                match &o.body {
                    Body::Pod(spec) => out.push(PodInfo {
                        namespace: ns,
                        name: o.name().to_string(),
                        labels: &o.meta.labels,
                        annotations: &o.meta.annotations,
                        service_account: spec.service_account(),
                        spec: Some(spec),
                        source: o,
                    }),
                    Body::Deployment(w)
                    | Body::StatefulSet(w)
                    | Body::DaemonSet(w)
                    | Body::ReplicaSet(w) => out.push(PodInfo {
                        namespace: ns,
                        name: o.name().to_string(),
                        labels: &w.template.metadata.labels,
                        annotations: &w.template.metadata.annotations,
                        service_account: w.template.spec.service_account(),
                        spec: Some(&w.template.spec),
                        source: o,
                    }),
                    Body::Workload(w) => out.push(PodInfo {
                        namespace: ns,
                        name: o.name().to_string(),
                        labels: &o.meta.labels,
                        annotations: &o.meta.annotations,
                        service_account: w.service_account(),
                        spec: None,
                        source: o,
                    }),
                    _ => {}
                }
            }
            out
        })
    }

    /// Kubernetes Services.
    pub fn services(&self) -> &[ServiceInfo<'a>] {
        self.services.get_or_init(|| {
            self.of(Kind::Service)
                .filter_map(|o| match &o.body {
                    Body::Service(s) => Some(ServiceInfo {
                        namespace: o.namespace(),
                        name: o.name(),
                        hostname: format!("{}.{}.{DOMAIN_SUFFIX}", o.name(), o.namespace()),
                        ports: s
                            .ports
                            .iter()
                            .map(|p| ServicePortInfo {
                                name: p.name.as_deref(),
                                port: p.port,
                                protocol: p.protocol.as_deref(),
                                app_protocol: p.app_protocol.as_deref(),
                            })
                            .collect(),
                        selector: s.selector.as_ref(),
                        source: o,
                    }),
                    _ => None,
                })
                .collect()
        })
    }

    /// Pods in `namespace` whose labels include all of `selector`'s.
    pub fn pods_selected(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = &PodInfo<'a>> {
        let selector = selector.clone();
        let namespace = namespace.to_string();
        self.pods().iter().filter(move |p| {
            p.namespace == namespace && crate::kinds::common::labels_match(&selector, p.labels)
        })
    }

    /// Resolve a host as written in a rule in namespace `ns` to its FQDN: short names
    /// (`reviews`) take the rule's namespace; names with a dot are already qualified.
    pub fn fqdn(host: &str, ns: &str) -> String {
        if host.contains('.') || host.contains('*') {
            host.to_string()
        } else {
            format!("{host}.{ns}.{DOMAIN_SUFFIX}")
        }
    }
}
