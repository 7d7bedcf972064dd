//! What a directory asks `weft up` to run: the Workloads (with the ports their Services
//! reach them on), the gateways the mesh config needs, and the TCP services apps may call.
//! Pure: objects in, a [`Topology`] out; placement ([`super::placement`]) decides where.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use weft_compile::{GATEWAY_NAME_LABEL, Protocol};
use weft_config::kinds::common::IntOrString;
use weft_config::kinds::istio::MtlsMode;
use weft_config::kinds::weft::WorkloadSpec;
use weft_config::{Body, Object};

use super::readiness::HttpProbe;

/// Where an Istio Gateway's default selector places its gateway (Istio's install).
pub const GATEWAY_NAMESPACE: &str = "istio-system";

/// Everything `weft up` runs for one set of objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    /// By `namespace/name`.
    pub workloads: BTreeMap<String, WorkloadDef>,
    pub gateways: Vec<GatewayDef>,
    /// Service ports whose protocol is opaque TCP: apps reach them on local ports.
    pub tcp_services: Vec<TcpService>,
    /// Every Service, sorted (`--netns` writes them into the namespaces' hosts files).
    pub services: Vec<ServiceDef>,
}

/// A Service's name and the cluster IP its manifest sets, if any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServiceDef {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Option<String>,
}

/// One `Workload` object and how the mesh reaches it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadDef {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: WorkloadSpecKey,
    /// The directory of the file it came from (`workingDir` and relative commands).
    pub dir: PathBuf,
    /// Ports the application serves: its declared ports and every Service target port
    /// that selects it, sorted, without duplicates.
    pub ports: Vec<u16>,
    /// Names of the Services selecting it.
    pub services: Vec<String>,
    /// Its `readinessProbe` (none: ready once its ports accept connections).
    pub readiness: Option<HttpProbe>,
}

/// The parts of a Workload's spec that decide how its processes run; compared to tell
/// whether a live edit needs a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpecKey {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub replicas: u32,
    pub service_account: String,
}

impl From<&WorkloadSpec> for WorkloadSpecKey {
    fn from(s: &WorkloadSpec) -> Self {
        WorkloadSpecKey {
            command: s.command.clone(),
            args: s.args.clone(),
            env: s.env.clone(),
            working_dir: s.working_dir.clone(),
            replicas: s.replicas(),
            service_account: s.service_account().to_string(),
        }
    }
}

impl WorkloadDef {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Replica names: `<workload>-<i>`, as a StatefulSet names its pods.
    pub fn replica_names(&self) -> Vec<String> {
        (0..self.spec.replicas)
            .map(|i| format!("{}-{i}", self.name))
            .collect()
    }

    pub fn version(&self) -> &str {
        self.labels.get("version").map_or("-", String::as_str)
    }

    /// Whether a change from `old` to `self` needs the proxies restarted too (their
    /// listeners follow the ports; their identity and labels come from the registry).
    pub fn proxy_changed(&self, old: &WorkloadDef) -> bool {
        self.ports != old.ports
            || self.labels != old.labels
            || self.spec.service_account != old.spec.service_account
    }
}

/// A gateway proxy the mesh config asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayDef {
    pub namespace: String,
    /// The instance's workload name (`istio-ingressgateway`, or `<gateway>-gateway`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Server / listener ports.
    pub ports: BTreeSet<u16>,
    /// The objects it serves (`Gateway shop/shop-gateway`).
    pub serves: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TcpService {
    /// `db.shop.svc.cluster.local`.
    pub host: String,
    pub port: u16,
    /// The namespace/name of the workloads it selects (they do not call themselves).
    pub selects: Vec<String>,
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn dir_of(o: &Object) -> PathBuf {
    let name = PathBuf::from(&o.node.span.file.name);
    match name.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Build the topology of a set of (valid) objects.
pub fn topology(objects: &[Object]) -> Topology {
    let mut t = Topology::default();
    for o in objects {
        if let Body::Workload(spec) = &o.body {
            let mut labels = o.meta.labels.clone();
            // A Workload without labels is still selectable by its name, as `app`.
            labels
                .entry("app".to_string())
                .or_insert_with(|| o.name().to_string());
            let def = WorkloadDef {
                namespace: o.namespace().to_string(),
                name: o.name().to_string(),
                labels,
                spec: WorkloadSpecKey::from(spec),
                dir: dir_of(o),
                ports: spec.ports.iter().map(|p| p.port).collect(),
                services: Vec::new(),
                readiness: HttpProbe::of(spec),
            };
            t.workloads.insert(def.key(), def);
        }
    }
    let named_ports: BTreeMap<String, BTreeMap<String, u16>> = objects
        .iter()
        .filter_map(|o| match &o.body {
            Body::Workload(spec) => Some((
                format!("{}/{}", o.namespace(), o.name()),
                spec.ports
                    .iter()
                    .filter_map(|p| Some((p.name.clone()?, p.port)))
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    for o in objects {
        let Body::Service(svc) = &o.body else {
            continue;
        };
        // An ExternalName Service is a DNS alias, not an address of the mesh.
        if svc.service_type.as_deref() != Some("ExternalName") {
            t.services.push(ServiceDef {
                namespace: o.namespace().to_string(),
                name: o.name().to_string(),
                cluster_ip: svc.cluster_ip.clone(),
            });
        }
        let selector = svc.selector.clone().unwrap_or_default();
        let mut selected = Vec::new();
        for w in t.workloads.values_mut() {
            if w.namespace != o.namespace() || !selects(&selector, &w.labels) {
                continue;
            }
            selected.push(w.key());
            w.services.push(o.name().to_string());
            for p in &svc.ports {
                let target = match &p.target_port {
                    Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                    Some(IntOrString::String(name)) => {
                        named_ports.get(&w.key()).and_then(|m| m.get(name)).copied()
                    }
                    None => Some(p.port),
                };
                w.ports.extend(target);
            }
        }
        for p in &svc.ports {
            let protocol = Protocol::from_k8s(p.name.as_deref(), p.app_protocol.as_deref());
            if protocol == Protocol::Tcp {
                t.tcp_services.push(TcpService {
                    host: format!("{}.{}.svc.cluster.local", o.name(), o.namespace()),
                    port: p.port,
                    selects: selected.clone(),
                });
            }
        }
    }
    for w in t.workloads.values_mut() {
        w.ports.sort_unstable();
        w.ports.dedup();
        w.services.sort();
        w.services.dedup();
    }
    t.tcp_services.sort();
    t.services.sort();
    t.services.dedup();
    t.gateways = gateways(objects);
    t
}

/// One gateway per distinct Istio Gateway selector, one per Gateway API Gateway.
fn gateways(objects: &[Object]) -> Vec<GatewayDef> {
    let mut by_selector: BTreeMap<BTreeMap<String, String>, GatewayDef> = BTreeMap::new();
    let mut out = Vec::new();
    for o in objects {
        match &o.body {
            Body::Gateway(gw) => {
                let selector = if gw.selector.is_empty() {
                    BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())])
                } else {
                    gw.selector.clone()
                };
                let name = match selector.get("istio") {
                    Some(v) => format!("istio-{v}"),
                    None => format!("{}-gateway", o.name()),
                };
                // Istio's gateway deployments also carry `app: <name>`
                // (telemetry's `source_app` of the gateway).
                let mut labels = selector.clone();
                labels
                    .entry("app".to_string())
                    .or_insert_with(|| name.clone());
                let def = by_selector
                    .entry(selector.clone())
                    .or_insert_with(|| GatewayDef {
                        namespace: GATEWAY_NAMESPACE.to_string(),
                        name,
                        labels,
                        ports: BTreeSet::new(),
                        serves: Vec::new(),
                    });
                def.ports.extend(
                    gw.servers
                        .iter()
                        .filter_map(|s| s.port.as_ref())
                        .filter_map(|p| u16::try_from(p.number).ok()),
                );
                def.serves
                    .push(format!("Gateway {}/{}", o.namespace(), o.name()));
            }
            Body::KubeGateway(gw) => out.push(GatewayDef {
                namespace: o.namespace().to_string(),
                name: format!("{}-gateway", o.name()),
                labels: BTreeMap::from([(GATEWAY_NAME_LABEL.to_string(), o.name().to_string())]),
                ports: gw
                    .listeners
                    .iter()
                    .filter_map(|l| u16::try_from(l.port).ok())
                    .collect(),
                serves: vec![format!(
                    "Gateway {}/{} (Gateway API)",
                    o.namespace(),
                    o.name()
                )],
            }),
            _ => {}
        }
    }
    let mut all: Vec<GatewayDef> = by_selector.into_values().collect();
    all.extend(out);
    all
}

/// How PeerAuthentication sets mTLS, for the summary: `PERMISSIVE (default)`, or the
/// mesh-wide mode and each namespace / workload policy.
pub fn mtls_summary(objects: &[Object]) -> String {
    let mut parts = Vec::new();
    let mut mesh = None;
    for o in objects {
        let Body::PeerAuthentication(pa) = &o.body else {
            continue;
        };
        let mode = match pa.mtls.as_ref().map(|m| m.mode) {
            Some(MtlsMode::Strict) => "STRICT",
            Some(MtlsMode::Permissive) => "PERMISSIVE",
            Some(MtlsMode::Disable) => "DISABLE",
            Some(MtlsMode::Unset) | None => continue,
        };
        if o.namespace() == GATEWAY_NAMESPACE && !pa.has_selector() {
            mesh = Some(mode);
        } else if pa.has_selector() {
            parts.push(format!("{mode} for {}/{}", o.namespace(), o.name()));
        } else {
            parts.push(format!("{mode} in namespace {}", o.namespace()));
        }
    }
    let head = match mesh {
        Some(m) => format!("{m} (mesh-wide)"),
        None => "PERMISSIVE (default)".to_string(),
    };
    if parts.is_empty() {
        head
    } else {
        format!("{head}; {}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_config::Bundle;

    const DIR: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{name: http, port: 3002, targetPort: web}, {name: tcp-admin, port: 7000}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: cart, namespace: shop, labels: {app: cart, version: v2}}
spec:
  command: shop-cart
  replicas: 2
  ports: [{name: web, port: 3012}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: tool, namespace: shop}
spec: {command: tool}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gateway, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
"#;

    fn objects() -> Vec<Object> {
        let b = Bundle::load_str("dir/all.yaml", DIR);
        assert!(b.diagnostics.is_empty(), "{:?}", b.diagnostics);
        b.objects
    }

    #[test]
    fn workloads_get_service_target_ports_named_or_numbered() {
        let t = topology(&objects());
        let cart = &t.workloads["shop/cart"];
        assert_eq!(cart.ports, vec![3012, 7000]);
        assert_eq!(cart.services, vec!["cart"]);
        assert_eq!(cart.replica_names(), vec!["cart-0", "cart-1"]);
        assert_eq!(cart.version(), "v2");
        assert_eq!(cart.dir, PathBuf::from("dir"));
        let tool = &t.workloads["shop/tool"];
        assert_eq!(tool.labels.get("app").map(String::as_str), Some("tool"));
        assert!(tool.ports.is_empty());
        assert_eq!(
            t.tcp_services,
            vec![TcpService {
                host: "cart.shop.svc.cluster.local".into(),
                port: 7000,
                selects: vec!["shop/cart".into()],
            }]
        );
    }

    #[test]
    fn an_istio_gateway_asks_for_an_ingress_gateway_in_istio_system() {
        let t = topology(&objects());
        assert_eq!(t.gateways.len(), 1);
        let g = &t.gateways[0];
        assert_eq!(g.namespace, "istio-system");
        assert_eq!(g.name, "istio-ingressgateway");
        assert_eq!(g.ports, BTreeSet::from([80]));
        assert_eq!(
            g.labels.get("istio").map(String::as_str),
            Some("ingressgateway")
        );
    }

    #[test]
    fn mtls_summary_names_the_mesh_wide_mode() {
        assert_eq!(mtls_summary(&objects()), "STRICT (mesh-wide)");
        assert_eq!(mtls_summary(&[]), "PERMISSIVE (default)");
    }

    #[test]
    fn a_label_or_port_change_restarts_proxies_an_env_change_does_not() {
        let t = topology(&objects());
        let old = t.workloads["shop/cart"].clone();
        let mut new = old.clone();
        new.spec.env.insert("X".into(), "1".into());
        assert!(!new.proxy_changed(&old));
        new.labels.insert("version".into(), "v3".into());
        assert!(new.proxy_changed(&old));
    }
}
