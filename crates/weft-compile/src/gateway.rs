//! Gateway proxies: the Istio Gateway servers that select the instance, one listener per
//! port, and the VirtualServices bound to each Gateway (merged across objects, unlike on
//! sidecars).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use weft_api::{
    Capture, ChainMatch, ChainProtocol, Direction, Fallback, FilterChain, HttpChain, Listener,
    NotFound, PathRewrite, ProxyConfig, Redirect, Route, RouteAction, RouteTable, TcpChain,
    TlsPassthroughChain, VirtualHost,
};
use weft_config::kinds::istio::{Gateway, Server, ServerTLSMode, VirtualService};
use weft_config::{Body, Object};

use crate::context::Ctx;
use crate::http_route::{RouteEnv, qualify_gateway};
use crate::registry::{host_matches, resolve_host};
use crate::routes::{origin_of, sni_routes, weighted};
use crate::scope::{export_or_default, exported_to};

/// What a gateway port serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    Http,
    TlsPassthrough,
    Tcp,
}

fn server_kind(s: &Server) -> Option<ServerKind> {
    match s.protocol().as_str() {
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" => Some(ServerKind::Http),
        // Terminating TLS needs server certificates the data-plane model does not carry.
        "HTTPS" | "TLS" => match s.tls_mode() {
            Some(ServerTLSMode::Passthrough | ServerTLSMode::AutoPassthrough) | None => {
                Some(ServerKind::TlsPassthrough)
            }
            _ => None,
        },
        "TCP" | "MONGO" | "MYSQL" | "REDIS" => Some(ServerKind::Tcp),
        _ => None,
    }
}

/// One server of one Gateway.
struct Bound<'a> {
    gateway: &'a Object,
    server: &'a Server,
}

impl Bound<'_> {
    fn gateway_name(&self) -> String {
        format!("{}/{}", self.gateway.namespace(), self.gateway.name())
    }
}

/// The host a VirtualService host and a server host have in common, if any.
fn intersect(vs_host: &str, server_host: &str) -> Option<String> {
    if host_matches(server_host, vs_host) {
        Some(vs_host.to_string())
    } else if host_matches(vs_host, server_host) {
        Some(server_host.to_string())
    } else {
        None
    }
}

/// Whether a server host's namespace part admits config from `vs_ns`.
fn namespace_admits(ns_part: &str, gateway_ns: &str, vs_ns: &str) -> bool {
    match ns_part {
        "*" => true,
        "." => vs_ns == gateway_ns,
        ns => ns == vs_ns,
    }
}

pub fn build(ctx: &Ctx, ports: &BTreeMap<u16, SocketAddr>, cfg: &mut ProxyConfig) {
    let gateways: Vec<(&Object, &Gateway)> = ctx
        .aged
        .iter()
        .copied()
        .filter_map(|o| match &o.body {
            Body::Gateway(g) => Some((o, g)),
            _ => None,
        })
        .filter(|(_, g)| weft_config::kinds::common::labels_match(&g.selector, ctx.labels()))
        .collect();
    let mut by_port: BTreeMap<u16, Vec<Bound>> = BTreeMap::new();
    for (o, g) in &gateways {
        for server in &g.servers {
            let Some(port) = server
                .port
                .as_ref()
                .and_then(|p| u16::try_from(p.number).ok())
            else {
                continue;
            };
            by_port
                .entry(port)
                .or_default()
                .push(Bound { gateway: o, server });
        }
    }
    let default_export = ctx.mesh.default_virtual_service_export_to();
    let virtual_services: Vec<(&Object, &VirtualService)> = ctx
        .aged
        .iter()
        .copied()
        .filter_map(|o| match &o.body {
            Body::VirtualService(vs) if !vs.is_delegate() => Some((o, vs)),
            _ => None,
        })
        .collect();
    for (port, servers) in by_port {
        // The first server on a port decides what the port speaks.
        let Some(kind) = server_kind(servers[0].server) else {
            continue;
        };
        let servers: Vec<&Bound> = servers
            .iter()
            .filter(|b| server_kind(b.server) == Some(kind))
            .collect();
        // (server, VirtualService, hosts in common), VirtualServices oldest first.
        let mut bindings = Vec::new();
        for b in &servers {
            let gw_name = b.gateway_name();
            let gw_ns = b.gateway.namespace();
            for (o, vs) in &virtual_services {
                let vs_ns = o.namespace();
                if !vs
                    .gateways
                    .iter()
                    .any(|g| qualify_gateway(g, vs_ns) == gw_name)
                    || !exported_to(
                        &export_or_default(&vs.export_to, default_export.clone()),
                        vs_ns,
                        gw_ns,
                    )
                {
                    continue;
                }
                let mut hosts = Vec::new();
                for h in &vs.hosts {
                    let h = resolve_host(h, vs_ns);
                    for (ns_part, sh) in b.server.host_parts() {
                        if namespace_admits(ns_part, gw_ns, vs_ns)
                            && let Some(common) = intersect(&h, sh)
                            && !hosts.contains(&common)
                        {
                            hosts.push(common);
                        }
                    }
                }
                if !hosts.is_empty() {
                    bindings.push((*b, *o, *vs, hosts));
                }
            }
        }
        let chain_name = format!("gateway|{port}");
        let protocol = match kind {
            ServerKind::Http => {
                cfg.route_tables.push(http_table(ctx, port, &bindings));
                ChainProtocol::Http(HttpChain {
                    route_table: chain_name.clone(),
                    http_proxy: false,
                    rate_limit: None,
                    trust_control_headers: false,
                })
            }
            ServerKind::TlsPassthrough => {
                let mut routes = Vec::new();
                for (b, o, vs, _) in &bindings {
                    let gw = b.gateway_name();
                    let env = env(ctx, o, port, &gw);
                    routes.extend(sni_routes(&env, &vs.tls));
                }
                ChainProtocol::TlsPassthrough(TlsPassthroughChain { routes })
            }
            ServerKind::Tcp => {
                let target = bindings.iter().find_map(|(b, o, vs, _)| {
                    let gw = b.gateway_name();
                    let env = env(ctx, o, port, &gw);
                    vs.tcp.iter().find_map(|t| {
                        let selected = t.r#match.is_empty()
                            || t.r#match.iter().any(|m| {
                                env.l4_selected(
                                    m.port,
                                    &m.source_labels,
                                    &m.source_namespace,
                                    &m.gateways,
                                )
                            });
                        let clusters = weighted(&env, &t.route);
                        (selected && !clusters.is_empty()).then(|| TcpChain {
                            clusters,
                            idle_timeout: None,
                            origin: Some(env.origin.clone()),
                        })
                    })
                });
                // A TCP server no VirtualService routes has nowhere to send bytes.
                let Some(tcp) = target else { continue };
                ChainProtocol::Tcp(tcp)
            }
        };
        cfg.listeners.push(Listener {
            name: format!("gateway-{port}"),
            address: ports
                .get(&port)
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port))),
            direction: Direction::Gateway,
            capture: Capture::Explicit,
            chains: vec![FilterChain {
                name: chain_name,
                r#match: ChainMatch::default(),
                mtls: None,
                protocol,
            }],
            fallback: Fallback::Blackhole {
                reason: format!("no Gateway server on port {port}"),
            },
        });
    }
}

fn env<'c, 'a>(ctx: &'c Ctx<'a>, vs: &'c Object, port: u16, gateway: &'c str) -> RouteEnv<'c, 'a> {
    RouteEnv {
        ctx,
        rule_ns: vs.namespace(),
        origin: origin_of(vs),
        port: Some(port),
        gateway: Some(gateway),
    }
}

/// `gateway|<port>`: a virtual host per bound host, the routes of every VirtualService for
/// it in age order with catch-all routes moved last.
fn http_table(
    ctx: &Ctx,
    port: u16,
    bindings: &[(&Bound, &Object, &VirtualService, Vec<String>)],
) -> RouteTable {
    let mut hosts: BTreeMap<String, (Vec<Route>, Vec<Route>, bool)> = BTreeMap::new();
    for (b, o, vs, common) in bindings {
        let gw = b.gateway_name();
        let env = env(ctx, o, port, &gw);
        let routes: Vec<Route> = crate::delegate::translate_http(&env, o, vs);
        let redirect = b.server.tls.as_ref().is_some_and(|t| t.https_redirect);
        // A VirtualService with no HTTP route for this gateway adds no virtual host.
        if routes.is_empty() && !redirect {
            continue;
        }
        for h in common {
            let entry = hosts.entry(h.clone()).or_default();
            entry.2 |= redirect;
            for r in &routes {
                if r.matches.is_empty() {
                    entry.1.push(r.clone())
                } else {
                    entry.0.push(r.clone())
                }
            }
        }
    }
    let virtual_hosts = hosts
        .into_iter()
        .map(|(host, (mut routes, catch_all, redirect))| {
            routes.extend(catch_all);
            if redirect {
                routes = vec![https_redirect()];
            }
            // `*` already matches every authority, with or without a port.
            let domains = if host == "*" {
                vec![host.clone()]
            } else {
                vec![host.clone(), format!("{host}:{port}")]
            };
            VirtualHost {
                name: format!("{host}:{port}"),
                domains,
                routes,
                rate_limit: None,
            }
        })
        .collect();
    RouteTable {
        name: format!("gateway|{port}"),
        virtual_hosts,
        not_found: NotFound::NotFound404,
    }
}

/// `tls.httpsRedirect`: every request gets a 301 to https.
fn https_redirect() -> Route {
    Route {
        name: "https_redirect".into(),
        origin: None,
        matches: Vec::new(),
        action: RouteAction::Redirect(Redirect {
            scheme: Some("https".into()),
            host: None,
            port: None,
            path: None::<PathRewrite>,
            status: 301,
        }),
        request_headers: Default::default(),
        response_headers: Default::default(),
        fault: None,
        cors: None,
        rate_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_intersection() {
        assert_eq!(intersect("*", "*").as_deref(), Some("*"));
        assert_eq!(
            intersect("*", "shop.example.com").as_deref(),
            Some("shop.example.com")
        );
        assert_eq!(
            intersect("dev.example.com", "*.example.com").as_deref(),
            Some("dev.example.com")
        );
        assert_eq!(intersect("example.com", "*.example.com"), None);
        assert!(namespace_admits(".", "gw", "gw") && !namespace_admits(".", "gw", "other"));
    }
}
