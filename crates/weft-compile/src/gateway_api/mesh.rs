//! GAMMA: HTTPRoutes and GRPCRoutes whose parent is a Service, on sidecars.
//!
//! A route in the Service's namespace (producer route) applies to every client; a route in
//! another namespace (consumer route) only to clients in its own namespace, and for them it
//! replaces the producer routes of that Service port. A `parentRef.port` limits the route
//! to that Service port. Once a route applies to a Service port, requests no rule matches
//! get 404; Service ports without routes keep default routing.

use weft_config::kinds::gateway_api::ParentReference;

use super::{GwRoute, Parent, all_routes, in_order, translate};
use crate::context::Ctx;
use crate::registry::{Protocol, Service};
use crate::routes::{HostPort, HostRoutes, HttpRoutes};

/// Whether `p` (written in a route of namespace `route_ns`) names `svc` port `port`.
fn names_service(p: &ParentReference, route_ns: &str, svc: &Service, port: u16) -> bool {
    p.is_service()
        && Some(p.name.as_str()) == svc.k8s_name()
        && p.namespace.as_deref().unwrap_or(route_ns) == svc.namespace
        && p.port.is_none_or(|pp| pp == u32::from(port))
}

/// The routes that apply to traffic from this sidecar to `svc` port `port`.
fn attached<'r, 'a>(
    routes: &'r [GwRoute<'a>],
    client_ns: &str,
    svc: &Service,
    port: u16,
) -> Vec<&'r GwRoute<'a>> {
    let on_port: Vec<&GwRoute> = routes
        .iter()
        .filter(|r| {
            r.spec
                .parent_refs
                .iter()
                .any(|p| names_service(p, r.obj.namespace(), svc, port))
        })
        .collect();
    let consumer: Vec<&GwRoute> = on_port
        .iter()
        .copied()
        .filter(|r| r.obj.namespace() == client_ns && client_ns != svc.namespace)
        .collect();
    if !consumer.is_empty() {
        return consumer;
    }
    on_port
        .into_iter()
        .filter(|r| r.obj.namespace() == svc.namespace)
        .collect()
}

/// Offer the GAMMA routes of every visible Kubernetes Service port speaking HTTP (or not
/// declaring a protocol).
pub fn contribute(ctx: &Ctx, out: &mut HostRoutes) {
    let routes = all_routes(ctx.aged);
    if routes.is_empty() {
        return;
    }
    for svc in &ctx.services {
        if svc.k8s_name().is_none() {
            continue;
        }
        for port in &svc.ports {
            if !(port.protocol.is_http() || port.protocol == Protocol::Unknown) {
                continue;
            }
            let chosen = attached(&routes, ctx.namespace(), svc, port.number);
            let Some(first) = chosen.first() else {
                continue;
            };
            let parent = Parent::Service {
                fqdn: &svc.fqdn,
                port: port.number,
            };
            let ranked = chosen
                .iter()
                .flat_map(|r| translate(ctx, r, parent))
                .collect();
            out.contribute_http(
                HostPort::new(&svc.fqdn, port.number),
                HttpRoutes {
                    routes: in_order(ranked),
                    origin: first.origin(),
                },
            );
        }
    }
}
