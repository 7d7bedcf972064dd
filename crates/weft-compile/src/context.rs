//! The per-proxy view every compilation step reads: the proxy's instance, the services it
//! can see, the Sidecar that scopes it and the DestinationRule index.

use std::collections::BTreeMap;

use weft_config::kinds::istio::Destination;
use weft_config::kinds::istio::{MeshConfig, OutboundMode};

use crate::Snapshot;
use crate::destination::{MergedRule, RuleIndex, cluster_name};
use crate::input::WorkloadInstance;
use crate::peer_auth::PeerPolicies;
use crate::registry::{Service, ServiceIndex, resolve_host};
use crate::scope::{SidecarScope, exported_to};

pub struct Ctx<'a> {
    pub objects: &'a [weft_config::Object],
    /// The same objects oldest first.
    pub aged: &'a [&'a weft_config::Object],
    pub mesh: &'a MeshConfig,
    pub instance: &'a WorkloadInstance,
    /// Visible services, one per host, sorted by host.
    pub services: Vec<&'a Service>,
    pub scope: SidecarScope,
    pub rules: &'a RuleIndex<'a>,
    /// PeerAuthentication, for this proxy's inbound ports and auto-mTLS to its peers.
    pub peers: &'a PeerPolicies<'a>,
    /// Every service of the mesh, visible or not (inbound ports come from here).
    pub index: &'a ServiceIndex,
}

impl<'a> Ctx<'a> {
    pub fn new(
        snapshot: &'a Snapshot<'a>,
        index: &'a ServiceIndex,
        instance: &'a WorkloadInstance,
        is_gateway: bool,
    ) -> Ctx<'a> {
        let mesh = &snapshot.mesh;
        let scope = if is_gateway {
            SidecarScope::default()
        } else {
            SidecarScope::for_instance(&snapshot.aged, mesh, instance)
        };
        let ns = instance.namespace.as_str();
        // One service per host: the proxy's own namespace first, then the oldest.
        let mut by_host: BTreeMap<&str, &Service> = BTreeMap::new();
        for s in &index.services {
            if !exported_to(&s.export_to, &s.namespace, ns) || !scope.imports(&s.namespace, &s.fqdn)
            {
                continue;
            }
            by_host
                .entry(s.fqdn.as_str())
                .and_modify(|cur| {
                    let rank =
                        |x: &Service| (x.namespace != ns, x.created.clone(), x.namespace.clone());
                    if rank(s) < rank(cur) {
                        *cur = s;
                    }
                })
                .or_insert(s);
        }
        Ctx {
            objects: snapshot.objects,
            aged: &snapshot.aged,
            mesh,
            instance,
            services: by_host.into_values().collect(),
            scope,
            rules: &snapshot.rules,
            peers: &snapshot.peers,
            index,
        }
    }

    /// The view for a sidecar's own part (inbound, tunnel): the services it sees are the
    /// outbound part's business ([`crate::parts`]), so they are not looked up.
    pub fn for_own_part(
        snapshot: &'a Snapshot<'a>,
        index: &'a ServiceIndex,
        instance: &'a WorkloadInstance,
    ) -> Ctx<'a> {
        let mesh = &snapshot.mesh;
        Ctx {
            objects: snapshot.objects,
            aged: &snapshot.aged,
            mesh,
            instance,
            services: Vec::new(),
            scope: SidecarScope::for_instance(&snapshot.aged, mesh, instance),
            rules: &snapshot.rules,
            peers: &snapshot.peers,
            index,
        }
    }

    pub fn namespace(&self) -> &str {
        &self.instance.namespace
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.instance.labels
    }

    pub fn service(&self, fqdn: &str) -> Option<&'a Service> {
        self.services
            .iter()
            .copied()
            .find(|s| s.fqdn.eq_ignore_ascii_case(fqdn))
    }

    pub fn outbound_mode(&self) -> OutboundMode {
        self.scope.outbound_mode(self.mesh)
    }

    pub fn rule_for(&self, service: &Service) -> Option<MergedRule> {
        self.rules.lookup(
            &service.fqdn,
            &service.namespace,
            self.namespace(),
            self.labels(),
        )
    }

    /// The cluster a route destination names. The port is the destination's, else the
    /// service's only port, else the port being routed (`current`) when the service has
    /// it, else the service's first port. None when no port can be known.
    pub fn destination_cluster(
        &self,
        d: &Destination,
        rule_ns: &str,
        current: Option<u16>,
    ) -> Option<String> {
        let host = resolve_host(&d.host, rule_ns);
        let svc = self.service(&host);
        let port = d
            .port_number()
            .and_then(|p| u16::try_from(p).ok())
            .or_else(|| {
                let svc = svc?;
                match svc.ports.as_slice() {
                    [only] => Some(only.number),
                    ports => current
                        .filter(|c| ports.iter().any(|p| p.number == *c))
                        .or_else(|| ports.first().map(|p| p.number)),
                }
            })
            .or(current)?;
        let host = svc.map(|s| s.fqdn.clone()).unwrap_or(host);
        Some(cluster_name(port, d.subset().unwrap_or(""), &host))
    }
}
