//! Routes per service host and port, from every source that can contribute them.
//!
//! [`HostRoutes`] is the meeting point: VirtualServices (here) and other sources (Gateway API
//! routes, Linkerd ServiceProfiles, SMI TrafficSplits) offer the HTTP routes, TCP targets and
//! SNI routes of a `(host, port)`; the first contribution for a key wins, so callers decide
//! precedence by the order they contribute in. Listener assembly then reads the collection,
//! falling back to a default route to the service's own cluster.

use std::collections::BTreeMap;

use weft_api::{Forward, Origin, Route, RouteAction, SniRoute, WeightedCluster};
use weft_config::kinds::istio::{RouteDestination, VirtualService};
use weft_config::{Body, Object};

use crate::context::Ctx;
use crate::destination::cluster_name;
use crate::http_route::RouteEnv;
use crate::registry::{Protocol, Service, resolve_host};
use crate::retry::retry_policy;
use crate::scope::{export_or_default, exported_to};

/// A service host (FQDN) and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn new(host: &str, port: u16) -> HostPort {
        HostPort {
            host: host.to_string(),
            port,
        }
    }
}

/// The HTTP routes of one host and port, in order (first match wins).
#[derive(Debug, Clone)]
pub struct HttpRoutes {
    pub routes: Vec<Route>,
    pub origin: Origin,
}

/// Where opaque TCP for one host and port goes.
#[derive(Debug, Clone)]
pub struct TcpTarget {
    pub clusters: Vec<WeightedCluster>,
    pub origin: Origin,
}

#[derive(Debug, Default)]
pub struct HostRoutes {
    http: BTreeMap<HostPort, HttpRoutes>,
    tcp: BTreeMap<HostPort, TcpTarget>,
    tls: BTreeMap<HostPort, Vec<SniRoute>>,
}

impl HostRoutes {
    /// Offer the HTTP routes of `key`. The first contribution wins (Istio keeps the first
    /// VirtualService for a host on sidecars); returns whether this one was taken.
    pub fn contribute_http(&mut self, key: HostPort, routes: HttpRoutes) -> bool {
        if self.http.contains_key(&key) {
            return false;
        }
        self.http.insert(key, routes);
        true
    }

    pub fn contribute_tcp(&mut self, key: HostPort, target: TcpTarget) -> bool {
        if self.tcp.contains_key(&key) {
            return false;
        }
        self.tcp.insert(key, target);
        true
    }

    /// Offer SNI routes for TLS traffic to `key`'s port; first contribution per host wins.
    pub fn contribute_tls(&mut self, key: HostPort, routes: Vec<SniRoute>) -> bool {
        if self.tls.contains_key(&key) {
            return false;
        }
        self.tls.insert(key, routes);
        true
    }

    pub fn http(&self, host: &str, port: u16) -> Option<&HttpRoutes> {
        self.http.get(&HostPort::new(host, port))
    }

    pub fn tcp(&self, host: &str, port: u16) -> Option<&TcpTarget> {
        self.tcp.get(&HostPort::new(host, port))
    }

    /// All SNI routes contributed for `port`, by host.
    pub fn tls_for_port(&self, port: u16) -> impl Iterator<Item = (&str, &[SniRoute])> {
        self.tls
            .iter()
            .filter(move |(k, _)| k.port == port)
            .map(|(k, v)| (k.host.as_str(), v.as_slice()))
    }

    /// Every HTTP contribution, for checks across the collection.
    pub fn http_entries(&self) -> impl Iterator<Item = (&HostPort, &HttpRoutes)> {
        self.http.iter()
    }
}

/// The route a host without routing rules gets: everything to its cluster, with the
/// default retry policy and no timeout.
pub fn default_route(ctx: &Ctx, service: &Service, port: u16) -> Route {
    Route {
        name: "default".to_string(),
        origin: None,
        matches: Vec::new(),
        action: RouteAction::Forward(Forward {
            clusters: vec![WeightedCluster {
                cluster: cluster_name(port, "", &service.fqdn),
                weight: 100,
                ..Default::default()
            }],
            rewrite: None,
            timeout: None,
            retry: retry_policy(None, ctx.mesh),
            mirrors: Vec::new(),
        }),
        request_headers: Default::default(),
        response_headers: Default::default(),
        fault: None,
        cors: None,
        rate_limit: None,
    }
}

pub fn origin_of(o: &Object) -> Origin {
    Origin {
        kind: o.kind.name().to_string(),
        namespace: o.namespace().to_string(),
        name: o.name().to_string(),
    }
}

/// VirtualServices that apply to this sidecar, oldest first: bound to `mesh`, exported to
/// its namespace, with at least one host its Sidecar imports.
fn mesh_virtual_services<'a>(ctx: &Ctx<'a>) -> Vec<(&'a Object, &'a VirtualService)> {
    let default_export = ctx.mesh.default_virtual_service_export_to();
    ctx.aged
        .iter()
        .copied()
        .filter_map(|o| match &o.body {
            Body::VirtualService(vs) => Some((o, vs)),
            _ => None,
        })
        .filter(|(o, vs)| {
            vs.applies_to_mesh()
                && !vs.is_delegate()
                && exported_to(
                    &export_or_default(&vs.export_to, default_export.clone()),
                    o.namespace(),
                    ctx.namespace(),
                )
        })
        .collect()
}

/// The routes of every source for a sidecar. For one host and port the first source that
/// has routes wins, in this order:
///
/// 1. VirtualServices: weft is Istio first, and Istio users who add a VirtualService next
///    to a Gateway API route expect the VirtualService to hold.
/// 2. Gateway API mesh (GAMMA) HTTPRoutes and GRPCRoutes: Linkerd ignores a Service's
///    ServiceProfile routes once an HTTPRoute is attached to it.
/// 3. Linkerd ServiceProfiles and SMI TrafficSplits, as one source (a TrafficSplit supplies
///    the backends of the profile's routes, as Linkerd's SMI extension does with
///    `dstOverrides`).
///
/// The sources that lose for a host and port are ignored there entirely (no merging).
pub fn sidecar_host_routes(ctx: &Ctx) -> HostRoutes {
    let mut out = HostRoutes::default();
    contribute_virtual_services(ctx, &mut out);
    crate::gateway_api::mesh::contribute(ctx, &mut out);
    crate::linkerd::contribute(ctx, &mut out);
    out
}

/// Contribute the routes of every VirtualService that applies to this sidecar. For each
/// (host, port) the oldest VirtualService wins; later ones for the same host are ignored
/// (Istio's IST0109 conflict).
pub fn contribute_virtual_services(ctx: &Ctx, out: &mut HostRoutes) {
    for (o, vs) in mesh_virtual_services(ctx) {
        let ns = o.namespace();
        let origin = origin_of(o);
        for host in &vs.hosts {
            let host = resolve_host(host, ns);
            if !ctx.scope.imports(ns, &host) {
                continue;
            }
            for svc in ctx.services.iter().filter(|s| s.matches_host(&host)) {
                for port in &svc.ports {
                    let env = RouteEnv {
                        ctx,
                        rule_ns: ns,
                        origin: origin.clone(),
                        port: Some(port.number),
                        gateway: None,
                    };
                    contribute_port(&env, o, vs, svc, port.number, port.protocol, out);
                }
            }
        }
    }
}

/// The routes one VirtualService gives one service port.
pub fn contribute_port(
    env: &RouteEnv,
    root: &Object,
    vs: &VirtualService,
    svc: &Service,
    port: u16,
    protocol: Protocol,
    out: &mut HostRoutes,
) {
    let key = HostPort::new(&svc.fqdn, port);
    if protocol.is_http() || protocol == Protocol::Unknown {
        let routes: Vec<Route> = crate::delegate::translate_http(env, root, vs);
        if !routes.is_empty() {
            out.contribute_http(
                key.clone(),
                HttpRoutes {
                    routes,
                    origin: env.origin.clone(),
                },
            );
        }
    }
    if !protocol.is_http() {
        let target = vs.tcp.iter().find_map(|t| {
            let selected = t.r#match.is_empty()
                || t.r#match.iter().any(|m| {
                    env.l4_selected(m.port, &m.source_labels, &m.source_namespace, &m.gateways)
                });
            if !selected {
                return None;
            }
            let clusters = weighted(env, &t.route);
            (!clusters.is_empty()).then_some(clusters)
        });
        if let Some(clusters) = target {
            out.contribute_tcp(
                key.clone(),
                TcpTarget {
                    clusters,
                    origin: env.origin.clone(),
                },
            );
        }
    }
    // `tls` routes apply to non-terminated TLS ports; elsewhere TLS is opaque TCP.
    if protocol == Protocol::Tls {
        let routes = sni_routes(env, &vs.tls);
        if !routes.is_empty() {
            out.contribute_tls(key, routes);
        }
    }
}

/// VirtualService `tls` routes selected for this proxy and port, in order.
pub fn sni_routes(env: &RouteEnv, tls: &[weft_config::kinds::istio::TLSRoute]) -> Vec<SniRoute> {
    tls.iter()
        .filter_map(|t| {
            let blocks: Vec<_> = t
                .r#match
                .iter()
                .filter(|m| {
                    env.l4_selected(m.port, &m.source_labels, &m.source_namespace, &m.gateways)
                })
                .collect();
            if blocks.is_empty() {
                return None;
            }
            let mut server_names: Vec<String> = blocks
                .iter()
                .flat_map(|m| m.sni_hosts.iter().cloned())
                .collect();
            server_names.sort();
            server_names.dedup();
            let clusters = weighted(env, &t.route);
            (!clusters.is_empty()).then(|| SniRoute {
                server_names,
                clusters,
                origin: Some(env.origin.clone()),
            })
        })
        .collect()
}

/// TCP/TLS route destinations with Istio's weight rules (a lone destination gets all,
/// zero weights are dropped).
pub fn weighted(env: &RouteEnv, route: &[RouteDestination]) -> Vec<WeightedCluster> {
    let lone = route.len() == 1;
    let mut out: Vec<WeightedCluster> = route
        .iter()
        .filter_map(|rd| {
            let cluster =
                env.ctx
                    .destination_cluster(rd.destination.as_ref()?, env.rule_ns, env.port)?;
            let weight = if lone {
                100
            } else {
                u32::try_from(rd.weight.unwrap_or(0)).unwrap_or(0)
            };
            Some(WeightedCluster {
                cluster,
                weight,
                ..Default::default()
            })
        })
        .collect();
    if out.iter().all(|c| c.weight == 0) {
        out.iter_mut().for_each(|c| c.weight = 1);
    } else {
        out.retain(|c| c.weight > 0);
    }
    out
}
