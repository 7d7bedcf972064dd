//! The service index: every service the mesh knows (Kubernetes Services and ServiceEntry
//! hosts) with its ports, protocols, addresses and endpoints.
//!
//! Endpoints come from the registry's workload instances (selected by a Service selector or
//! a ServiceEntry `workloadSelector`), from WorkloadEntry objects and from inline ServiceEntry
//! endpoints. weft `Workload` objects are only the recipe for instances and are not read here.

use std::collections::{BTreeMap, HashMap};

use weft_config::kinds::common::IntOrString;
use weft_config::kinds::istio::{Resolution, ServiceEntry, WorkloadEntry};
use weft_config::kinds::k8s::ServiceSpec;
use weft_config::{Body, Object};

use crate::input::{Registry, WorkloadInstance};
use crate::order::by_age;

/// The DNS suffix of Kubernetes Service hosts.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// Istio's annotation giving a Kubernetes Service's `exportTo`.
const SERVICE_EXPORT_TO: &str = "networking.istio.io/exportTo";

/// What a service port speaks, from its name / `appProtocol` (Kubernetes) or `protocol`
/// (ServiceEntry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    GrpcWeb,
    /// TLS the mesh does not terminate (`https`, `tls`): routed by SNI or as opaque TCP.
    Tls,
    /// Opaque TCP, including server-first protocols (mongo, mysql, redis).
    Tcp,
    /// Nothing declared: sniffed at connection time.
    Unknown,
}

impl Protocol {
    /// Istio's protocol selection from a port name prefix or an explicit protocol value.
    pub fn parse(s: &str) -> Protocol {
        let s = s.to_ascii_lowercase();
        let s = s.strip_prefix("kubernetes.io/").unwrap_or(&s);
        match s {
            "http" | "ws" => Protocol::Http,
            "http2" | "h2c" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            "grpc-web" => Protocol::GrpcWeb,
            "https" | "tls" => Protocol::Tls,
            "tcp" | "mongo" | "mysql" | "redis" => Protocol::Tcp,
            _ => Protocol::Unknown,
        }
    }

    /// From a Kubernetes port: `appProtocol` first, then the name's `<proto>[-suffix]`.
    pub fn from_k8s(name: Option<&str>, app_protocol: Option<&str>) -> Protocol {
        if let Some(p) = app_protocol.filter(|p| !p.is_empty()) {
            let parsed = Protocol::parse(p);
            if parsed != Protocol::Unknown {
                return parsed;
            }
        }
        let name = name.unwrap_or("");
        let prefix = name.split('-').next().unwrap_or("");
        // `grpc-web` is a protocol whose name contains the separator.
        if name.to_ascii_lowercase().starts_with("grpc-web") {
            return Protocol::GrpcWeb;
        }
        Protocol::parse(prefix)
    }

    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http | Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub number: u16,
    pub name: String,
    pub protocol: Protocol,
}

/// One address a service port reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEndpoint {
    /// IP or (DNS resolution) hostname.
    pub host: String,
    /// Service port number → the port on this endpoint.
    pub ports: BTreeMap<u16, u16>,
    pub labels: BTreeMap<String, String>,
    pub identity: Option<String>,
    /// The mesh tunnel of the instance's proxy (`ip:port`), when it accepts one.
    pub tunnel: Option<String>,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceSource {
    Kubernetes,
    ServiceEntry(Resolution),
}

#[derive(Debug, Clone)]
pub struct Service {
    /// `reviews.default.svc.cluster.local`, or a ServiceEntry host as written.
    pub fqdn: String,
    pub namespace: String,
    pub source: ServiceSource,
    pub ports: Vec<ServicePort>,
    /// Cluster IP(s) or ServiceEntry addresses (IPs or CIDRs).
    pub addresses: Vec<String>,
    pub export_to: Vec<String>,
    pub endpoints: Vec<ServiceEndpoint>,
    /// The object that declared it, for ordering and error messages.
    pub origin: weft_api::Origin,
    pub created: String,
}

impl Service {
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.number == number)
    }

    /// The short name of a Kubernetes Service (`reviews`), none for ServiceEntry hosts.
    pub fn k8s_name(&self) -> Option<&str> {
        match self.source {
            ServiceSource::Kubernetes => self.fqdn.split('.').next(),
            ServiceSource::ServiceEntry(_) => None,
        }
    }

    /// Whether `host` (a resolved FQDN, possibly `*.suffix`) names this service.
    pub fn matches_host(&self, host: &str) -> bool {
        host_matches(host, &self.fqdn)
    }
}

/// Whether pattern `pattern` (exact or `*.suffix` / `*`) covers `host` (which may itself be a
/// wildcard: `*.foo.com` covers `*.bar.foo.com`).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" || pattern.eq_ignore_ascii_case(host) {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            let host = host.to_ascii_lowercase();
            host.len() > suffix.len() && host.ends_with(&suffix.to_ascii_lowercase())
        }
        None => false,
    }
}

/// Whether two host patterns (exact, `*.suffix` or `*`) can name a common host: the
/// over-approximation a control plane needs to tell which proxies a rule may touch.
pub fn hosts_overlap(a: &str, b: &str) -> bool {
    if a == "*" || b == "*" || a.eq_ignore_ascii_case(b) {
        return true;
    }
    let ends_with = |s: &str, suffix: &str| {
        s.len() >= suffix.len()
            && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => ends_with(sa, sb) || ends_with(sb, sa),
        (Some(sa), None) => ends_with(b, sa),
        (None, Some(sb)) => ends_with(a, sb),
        (None, None) => false,
    }
}

/// Resolve a host as written in a rule of namespace `ns`: a short name (`reviews`) means a
/// Service of the rule's namespace; names with dots and wildcards are kept.
pub fn resolve_host(host: &str, ns: &str) -> String {
    if host.contains('.') || host.contains('*') || host.parse::<std::net::IpAddr>().is_ok() {
        host.to_string()
    } else {
        format!("{host}.{ns}.{CLUSTER_DOMAIN}")
    }
}

/// `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
pub fn spiffe_id(trust_domain: &str, ns: &str, sa: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}")
}

/// Every service of the mesh, sorted by (fqdn, namespace).
#[derive(Debug, Default)]
pub struct ServiceIndex {
    pub services: Vec<Service>,
}

impl ServiceIndex {
    pub fn build(
        objects: &[Object],
        registry: &Registry,
        mesh_export: &[String],
        trust_domain: &str,
    ) -> ServiceIndex {
        Self::build_aged(&by_age(objects), registry, mesh_export, trust_domain)
    }

    /// [`ServiceIndex::build`] from the objects already sorted oldest first.
    pub(crate) fn build_aged(
        aged: &[&Object],
        registry: &Registry,
        mesh_export: &[String],
        trust_domain: &str,
    ) -> ServiceIndex {
        let objects = aged;
        let workload_entries: Vec<(&Object, &WorkloadEntry)> = objects
            .iter()
            .copied()
            .filter_map(|o| match &o.body {
                Body::WorkloadEntry(we) => Some((o, we)),
                _ => None,
            })
            .collect();
        // Instances by namespace, in registry order: a Service selects in its namespace
        // only, and scanning the whole registry per Service is quadratic.
        let mut by_namespace: HashMap<&str, Vec<&WorkloadInstance>> = HashMap::new();
        for i in &registry.instances {
            by_namespace
                .entry(i.namespace.as_str())
                .or_default()
                .push(i);
        }
        let mut services = Vec::new();
        for o in aged.iter().copied() {
            if let Body::Service(spec) = &o.body {
                services.push(k8s_service(
                    o,
                    spec,
                    by_namespace
                        .get(o.namespace())
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                    &workload_entries,
                    mesh_export,
                    trust_domain,
                ));
            }
        }
        for o in aged.iter().copied() {
            if let Body::ServiceEntry(se) = &o.body {
                for host in &se.hosts {
                    // A ServiceEntry for an existing Kubernetes Service only decorates it.
                    if services.iter().any(|s: &Service| {
                        s.source == ServiceSource::Kubernetes && s.fqdn.eq_ignore_ascii_case(host)
                    }) {
                        continue;
                    }
                    services.push(entry_service(
                        o,
                        se,
                        host,
                        registry,
                        &workload_entries,
                        mesh_export,
                        trust_domain,
                    ));
                }
            }
        }
        services.sort_by(|a, b| (&a.fqdn, &a.namespace).cmp(&(&b.fqdn, &b.namespace)));
        ServiceIndex { services }
    }

    /// Services whose host matches `pattern` (exact or wildcard).
    pub fn matching<'a>(&'a self, pattern: &'a str) -> impl Iterator<Item = &'a Service> + 'a {
        self.services
            .iter()
            .filter(move |s| host_matches(pattern, &s.fqdn))
    }
}

fn origin_of(o: &Object) -> weft_api::Origin {
    weft_api::Origin {
        kind: o.kind.name().to_string(),
        namespace: o.namespace().to_string(),
        name: o.name().to_string(),
    }
}

fn instance_identity(i: &WorkloadInstance, trust_domain: &str) -> Option<String> {
    i.proxy
        .as_ref()
        .map(|_| spiffe_id(trust_domain, &i.namespace, &i.service_account))
}

/// A WorkloadEntry runs a mesh proxy when it says so with Istio's tlsMode label.
fn entry_identity(we: &WorkloadEntry, ns: &str, trust_domain: &str) -> Option<String> {
    (we.labels
        .get("security.istio.io/tlsMode")
        .map(String::as_str)
        == Some("istio"))
    .then(|| {
        let sa = if we.service_account.is_empty() {
            "default"
        } else {
            &we.service_account
        };
        spiffe_id(trust_domain, ns, sa)
    })
}

fn k8s_service(
    o: &Object,
    spec: &ServiceSpec,
    instances: &[&WorkloadInstance],
    entries: &[(&Object, &WorkloadEntry)],
    mesh_export: &[String],
    trust_domain: &str,
) -> Service {
    let ns = o.namespace();
    let ports: Vec<(ServicePort, Option<&IntOrString>)> = spec
        .ports
        .iter()
        .filter(|p| {
            p.protocol
                .as_deref()
                .is_none_or(|p| p.eq_ignore_ascii_case("TCP"))
        })
        .map(|p| {
            (
                ServicePort {
                    number: p.port,
                    name: p.name.clone().unwrap_or_default(),
                    protocol: Protocol::from_k8s(p.name.as_deref(), p.app_protocol.as_deref()),
                },
                p.target_port.as_ref(),
            )
        })
        .collect();
    let mut endpoints = Vec::new();
    // A Service without a selector has no endpoints managed by the mesh.
    if let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) {
        for i in instances {
            if !weft_config::kinds::common::labels_match(selector, &i.labels) {
                continue;
            }
            let mut map = BTreeMap::new();
            for (p, target) in &ports {
                let port = match target {
                    None => Some(p.number),
                    Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                    Some(IntOrString::String(name)) => i.ports.get(name).copied(),
                };
                if let Some(port) = port {
                    map.insert(p.number, port);
                }
            }
            endpoints.push(ServiceEndpoint {
                host: i.address.to_string(),
                ports: map,
                labels: i.labels.clone(),
                identity: instance_identity(i, trust_domain),
                tunnel: i.tunnel_address().map(|a| a.to_string()),
                weight: 1,
            });
        }
        for (eo, we) in entries.iter().filter(|(eo, _)| eo.namespace() == ns) {
            let _ = eo;
            if !weft_config::kinds::common::labels_match(selector, &we.labels) {
                continue;
            }
            let mut map = BTreeMap::new();
            for (p, target) in &ports {
                let port = match we.ports.get(&p.name) {
                    Some(n) => u16::try_from(*n).ok(),
                    None => match target {
                        None => Some(p.number),
                        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                        Some(IntOrString::String(name)) => {
                            we.ports.get(name).and_then(|n| u16::try_from(*n).ok())
                        }
                    },
                };
                if let Some(port) = port {
                    map.insert(p.number, port);
                }
            }
            endpoints.push(ServiceEndpoint {
                host: we.address.clone(),
                ports: map,
                labels: we.labels.clone(),
                identity: entry_identity(we, ns, trust_domain),
                // weft cannot know where a WorkloadEntry's proxy takes the mesh tunnel.
                tunnel: None,
                weight: we.weight.unwrap_or(1).max(1),
            });
        }
    }
    sort_endpoints(&mut endpoints);
    let mut addresses: Vec<String> = spec
        .cluster_ip
        .iter()
        .chain(spec.cluster_ips.iter())
        .filter(|ip| !ip.is_empty() && !ip.eq_ignore_ascii_case("None"))
        .cloned()
        .collect();
    addresses.sort();
    addresses.dedup();
    let export_to = match o.annotation(SERVICE_EXPORT_TO) {
        Some(list) => list
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        None => mesh_export.to_vec(),
    };
    Service {
        fqdn: format!("{}.{ns}.{CLUSTER_DOMAIN}", o.name()),
        namespace: ns.to_string(),
        source: ServiceSource::Kubernetes,
        ports: ports.into_iter().map(|(p, _)| p).collect(),
        addresses,
        export_to,
        endpoints,
        origin: origin_of(o),
        created: crate::order::created(o),
    }
}

fn entry_service(
    o: &Object,
    se: &ServiceEntry,
    host: &str,
    registry: &Registry,
    entries: &[(&Object, &WorkloadEntry)],
    mesh_export: &[String],
    trust_domain: &str,
) -> Service {
    let ns = o.namespace();
    let ports: Vec<(ServicePort, u16)> = se
        .ports
        .iter()
        .filter_map(|p| {
            let number = u16::try_from(p.number).ok()?;
            let target = p
                .target_port
                .and_then(|t| u16::try_from(t).ok())
                .unwrap_or(number);
            Some((
                ServicePort {
                    number,
                    name: p.name.clone(),
                    protocol: Protocol::parse(&p.protocol),
                },
                target,
            ))
        })
        .collect();
    let resolution = se.resolution();
    let mut endpoints = Vec::new();
    let mut add_entry = |we: &WorkloadEntry| {
        let map = ports
            .iter()
            .filter_map(|(p, target)| {
                let port = match we.ports.get(&p.name) {
                    Some(n) => u16::try_from(*n).ok()?,
                    None => *target,
                };
                Some((p.number, port))
            })
            .collect();
        endpoints.push(ServiceEndpoint {
            host: we.address.clone(),
            ports: map,
            labels: we.labels.clone(),
            identity: entry_identity(we, ns, trust_domain),
            // weft cannot know where a WorkloadEntry's proxy takes the mesh tunnel.
            tunnel: None,
            weight: we.weight.unwrap_or(1).max(1),
        });
    };
    if matches!(
        resolution,
        Resolution::Static | Resolution::Dns | Resolution::DnsRoundRobin
    ) {
        for we in &se.endpoints {
            add_entry(we);
        }
        if let Some(sel) = &se.workload_selector {
            for (eo, we) in entries.iter().filter(|(eo, _)| eo.namespace() == ns) {
                let _ = eo;
                if weft_config::kinds::common::labels_match(&sel.labels, &we.labels) {
                    add_entry(we);
                }
            }
        }
    }
    if resolution == Resolution::Static
        && let Some(sel) = &se.workload_selector
    {
        for i in registry.instances.iter().filter(|i| i.namespace == ns) {
            if !weft_config::kinds::common::labels_match(&sel.labels, &i.labels) {
                continue;
            }
            let map = ports
                .iter()
                .map(|(p, target)| (p.number, i.ports.get(&p.name).copied().unwrap_or(*target)))
                .collect();
            endpoints.push(ServiceEndpoint {
                host: i.address.to_string(),
                ports: map,
                labels: i.labels.clone(),
                identity: instance_identity(i, trust_domain),
                tunnel: i.tunnel_address().map(|a| a.to_string()),
                weight: 1,
            });
        }
    }
    sort_endpoints(&mut endpoints);
    let mut addresses = se.addresses.clone();
    addresses.sort();
    addresses.dedup();
    Service {
        fqdn: host.to_string(),
        namespace: ns.to_string(),
        source: ServiceSource::ServiceEntry(resolution),
        ports: ports.into_iter().map(|(p, _)| p).collect(),
        addresses,
        export_to: if se.export_to.is_empty() {
            mesh_export.to_vec()
        } else {
            se.export_to.clone()
        },
        endpoints,
        origin: origin_of(o),
        created: crate::order::created(o),
    }
}

fn sort_endpoints(e: &mut [ServiceEndpoint]) {
    e.sort_by(|a, b| (&a.host, &a.ports).cmp(&(&b.host, &b.ports)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_from_name_and_app_protocol() {
        assert_eq!(Protocol::from_k8s(Some("http-web"), None), Protocol::Http);
        assert_eq!(
            Protocol::from_k8s(Some("grpc-web"), None),
            Protocol::GrpcWeb
        );
        assert_eq!(
            Protocol::from_k8s(Some("web"), Some("http2")),
            Protocol::Http2
        );
        assert_eq!(
            Protocol::from_k8s(Some("db"), Some("kubernetes.io/h2c")),
            Protocol::Http2
        );
        assert_eq!(Protocol::from_k8s(Some("mysql"), None), Protocol::Tcp);
        assert_eq!(Protocol::from_k8s(None, None), Protocol::Unknown);
    }

    #[test]
    fn wildcard_hosts() {
        assert!(host_matches("*.foo.com", "a.foo.com"));
        assert!(host_matches("*.foo.com", "*.b.foo.com"));
        assert!(!host_matches("*.foo.com", "foo.com"));
        assert!(!host_matches("a.foo.com", "*.foo.com"));
        assert!(host_matches("*", "x"));
    }

    #[test]
    fn short_names_resolve_against_the_rule_namespace() {
        assert_eq!(
            resolve_host("reviews", "default"),
            "reviews.default.svc.cluster.local"
        );
        assert_eq!(resolve_host("reviews.prod", "default"), "reviews.prod");
        assert_eq!(resolve_host("*.example.com", "default"), "*.example.com");
    }
}
