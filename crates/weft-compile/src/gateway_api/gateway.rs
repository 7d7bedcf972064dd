//! Gateway API `Gateway`s on weft gateway proxies.
//!
//! A weft gateway instance serves the Gateway API Gateway named by its
//! `gateway.networking.k8s.io/gateway-name` label in its own namespace (the label Istio puts
//! on the Deployments it creates for a Gateway). Each HTTP listener port becomes a
//! `gateway-<port>` listener with the route table `gateway|<port>`: one virtual host per
//! hostname that a listener's `hostname` and an attached route's `hostnames` have in
//! common (`*` when neither sets one), holding the rules of every route attached to a
//! listener for that hostname in Gateway API precedence order.
//!
//! A route attaches to a listener when a `parentRef` names the Gateway, its `sectionName`
//! (if set) is the listener's name, its `port` (if set) the listener's port, the listener's
//! `allowedRoutes.namespaces` admits the route's namespace (`Same` by default, `All`, or a
//! `Selector` over Namespace labels) and its `allowedRoutes.kinds` (if set) the route's kind.
//! Ports an Istio Gateway already serves on the same instance stay Istio's. HTTPS (TLS
//! termination needs certificates the data-plane model does not carry), TLS and TCP
//! listeners are not served.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use weft_api::{
    Capture, ChainMatch, ChainProtocol, Direction, Fallback, FilterChain, HttpChain, Listener,
    NotFound, ProxyConfig, RouteTable, VirtualHost,
};
use weft_config::kinds::gateway_api::{FromNamespaces, Gateway, Listener as GwListener};
use weft_config::{Body, Object};

use super::{GROUP, GwRoute, Parent, Ranked, all_routes, in_order, translate};
use crate::context::Ctx;
use crate::registry::host_matches;

/// The instance label naming the Gateway API Gateway a weft gateway proxy serves.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// Whether a parentRef of `route` names listener `l` of Gateway `gw`.
fn names_listener(
    p: &weft_config::kinds::gateway_api::ParentReference,
    route: &GwRoute,
    gw: &Object,
    l: &GwListener,
) -> bool {
    p.group() == GROUP
        && p.kind() == "Gateway"
        && p.name == gw.name()
        && p.namespace.as_deref().unwrap_or(route.obj.namespace()) == gw.namespace()
        && p.section_name.as_deref().is_none_or(|s| s == l.name)
        && p.port.is_none_or(|port| port == l.port)
}

/// `allowedRoutes` of a listener: namespaces and kinds.
fn admits(objects: &[Object], gw: &Object, l: &GwListener, route: &GwRoute) -> bool {
    let route_ns = route.obj.namespace();
    let namespaces = l
        .allowed_routes
        .as_ref()
        .and_then(|a| a.namespaces.as_ref());
    let ns_ok = match namespaces
        .and_then(|n| n.from)
        .unwrap_or(FromNamespaces::Same)
    {
        FromNamespaces::All => true,
        FromNamespaces::Same => route_ns == gw.namespace(),
        FromNamespaces::None => false,
        FromNamespaces::Selector => {
            let selector = namespaces.and_then(|n| n.selector.as_ref());
            let labels = objects
                .iter()
                .find(|o| matches!(o.body, Body::Namespace(_)) && o.name() == route_ns)
                .map(|o| o.meta.labels.clone())
                .unwrap_or_default();
            selector.is_some_and(|s| s.matches(&labels))
        }
    };
    let kinds = l
        .allowed_routes
        .as_ref()
        .map(|a| a.kinds.as_slice())
        .unwrap_or_default();
    let kind_ok = if kinds.is_empty() {
        matches!(route.kind(), "HTTPRoute" | "GRPCRoute")
    } else {
        kinds
            .iter()
            .any(|k| k.group.as_deref().unwrap_or(GROUP) == GROUP && k.kind == route.kind())
    };
    ns_ok && kind_ok
}

/// The hostnames a listener and a route have in common; `*` stands for "any".
pub fn common_hostnames(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let listener = listener.filter(|h| !h.is_empty());
    match (listener, route.is_empty()) {
        (None, true) => vec!["*".to_string()],
        (None, false) => route.to_vec(),
        (Some(l), true) => vec![l.to_string()],
        (Some(l), false) => {
            let mut out: Vec<String> = route
                .iter()
                .filter_map(|h| {
                    if host_matches(l, h) {
                        Some(h.clone())
                    } else if host_matches(h, l) {
                        Some(l.to_string())
                    } else {
                        None
                    }
                })
                .collect();
            out.sort();
            out.dedup();
            out
        }
    }
}

pub fn build(ctx: &Ctx, ports: &BTreeMap<u16, SocketAddr>, cfg: &mut ProxyConfig) {
    let Some(name) = ctx.labels().get(GATEWAY_NAME_LABEL) else {
        return;
    };
    let gateways: Vec<(&Object, &Gateway)> = ctx
        .objects
        .iter()
        .filter_map(|o| match &o.body {
            Body::KubeGateway(g) if o.name() == name && o.namespace() == ctx.namespace() => {
                Some((o, g))
            }
            _ => None,
        })
        .collect();
    let mut by_port: BTreeMap<u16, Vec<(&Object, &GwListener)>> = BTreeMap::new();
    for (o, g) in &gateways {
        for l in g.listeners.iter().filter(|l| l.protocol == "HTTP") {
            if let Ok(port) = u16::try_from(l.port) {
                by_port.entry(port).or_default().push((o, l));
            }
        }
    }
    let routes = all_routes(ctx.aged);
    for (port, listeners) in by_port {
        let listener_name = format!("gateway-{port}");
        if cfg.listeners.iter().any(|l| l.name == listener_name) {
            continue;
        }
        let mut hosts: BTreeMap<String, Vec<Ranked>> = BTreeMap::new();
        for (gw, l) in &listeners {
            for r in &routes {
                if !r
                    .spec
                    .parent_refs
                    .iter()
                    .any(|p| names_listener(p, r, gw, l))
                    || !admits(ctx.objects, gw, l, r)
                {
                    continue;
                }
                for host in common_hostnames(l.hostname.as_deref(), &r.spec.hostnames) {
                    hosts.entry(host).or_default().extend(translate(
                        ctx,
                        r,
                        Parent::Gateway { port },
                    ));
                }
            }
        }
        let virtual_hosts = hosts
            .into_iter()
            .map(|(host, ranked)| VirtualHost {
                name: format!("{host}:{port}"),
                domains: if host == "*" {
                    vec![host]
                } else {
                    vec![host.clone(), format!("{host}:{port}")]
                },
                routes: in_order(ranked),
                rate_limit: None,
            })
            .collect();
        let table = format!("gateway|{port}");
        cfg.route_tables.push(RouteTable {
            name: table.clone(),
            virtual_hosts,
            not_found: NotFound::NotFound404,
        });
        cfg.listeners.push(Listener {
            name: listener_name,
            address: ports
                .get(&port)
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port))),
            direction: Direction::Gateway,
            capture: Capture::Explicit,
            chains: vec![FilterChain {
                name: table.clone(),
                r#match: ChainMatch::default(),
                mtls: None,
                protocol: ChainProtocol::Http(HttpChain {
                    route_table: table,
                    http_proxy: false,
                    rate_limit: None,
                    trust_control_headers: false,
                }),
            }],
            fallback: Fallback::Blackhole {
                reason: format!("no Gateway API listener on port {port}"),
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_intersection() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(common_hostnames(None, &[]), v(&["*"]));
        assert_eq!(common_hostnames(Some("*.bar.com"), &[]), v(&["*.bar.com"]));
        assert_eq!(
            common_hostnames(Some("*.example.com"), &v(&["a.example.com", "b.other.org"])),
            v(&["a.example.com"])
        );
        assert_eq!(
            common_hostnames(Some("very.specific.com"), &v(&["*.specific.com"])),
            v(&["very.specific.com"])
        );
        assert!(common_hostnames(Some("foo.com"), &v(&["bar.com"])).is_empty());
    }
}
