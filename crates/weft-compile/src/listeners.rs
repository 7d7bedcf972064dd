//! Sidecar listeners: transparent (`outbound` + `inbound`, as iptables capture gives them)
//! and explicit (`outbound-http-proxy`, one local port per TCP upstream, one inbound
//! listener per service port), with their route tables.

use std::net::SocketAddr;
use std::time::Duration;

use weft_api::{
    Capture, ChainMatch, ChainProtocol, Direction, Fallback, FilterChain, Forward, HttpChain,
    Listener, NotFound, ProxyConfig, Route, RouteAction, RouteTable, SniRoute, TcpChain,
    TlsPassthroughChain, VirtualHost, WeightedCluster,
};
use weft_config::kinds::istio::OutboundMode;

use crate::context::Ctx;
use crate::destination::cluster_name;
use crate::inbound::inbound_ports;
use crate::input::{InboundPort, TcpUpstream};
use crate::registry::{Protocol, Service, ServiceSource, resolve_host};
use crate::routes::{HostRoutes, default_route};

pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// The transparent inbound listener (Istio's virtualInbound, 15006).
pub const INBOUND_LISTENER: &str = "inbound";

/// The explicit-mode listener in front of the application's `port`.
pub fn explicit_inbound_listener(port: u16) -> String {
    format!("inbound|{port}")
}
/// How long an unknown-protocol connection is sniffed before it is treated as TCP.
pub const DETECT_TIMEOUT: Duration = Duration::from_millis(100);

pub fn detect_timeout(ctx: &Ctx) -> Duration {
    let t = ctx.mesh.protocol_detection_timeout();
    if t.is_zero() { DETECT_TIMEOUT } else { t }
}

/// What connections to unknown destinations get.
pub fn fallback(ctx: &Ctx) -> Fallback {
    match ctx.outbound_mode() {
        OutboundMode::AllowAny => Fallback::Passthrough,
        OutboundMode::RegistryOnly => {
            let source = match (&ctx.scope.outbound_mode, &ctx.scope.origin) {
                (Some(_), Some(o)) => o.to_string(),
                _ => "mesh config".to_string(),
            };
            Fallback::Blackhole {
                reason: format!(
                    "outboundTrafficPolicy REGISTRY_ONLY ({source}): destination is not in the service registry"
                ),
            }
        }
    }
}

/// The names a client in `client_ns` may use for a service, without port: for a Kubernetes
/// Service `name` (same namespace only), `name.ns`, `name.ns.svc` and the FQDN; for a
/// ServiceEntry host the host. Plus the service's IP addresses.
pub fn aliases(svc: &Service, client_ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let (ServiceSource::Kubernetes, Some(name)) = (svc.source, svc.k8s_name()) {
        if svc.namespace == client_ns {
            out.push(name.to_string());
        }
        out.push(format!("{name}.{}", svc.namespace));
        out.push(format!("{name}.{}.svc", svc.namespace));
    }
    out.push(svc.fqdn.clone());
    out.extend(svc.addresses.iter().filter(|a| !a.contains('/')).cloned());
    out
}

/// Transparent capture: every alias with and without `:port`.
fn transparent_domains(svc: &Service, port: u16, client_ns: &str) -> Vec<String> {
    aliases(svc, client_ns)
        .into_iter()
        .flat_map(|a| [format!("{a}:{port}"), a])
        .collect()
}

/// HTTP proxy requests name the port, except for 80.
fn explicit_domains(svc: &Service, port: u16, client_ns: &str) -> Vec<String> {
    aliases(svc, client_ns)
        .into_iter()
        .flat_map(|a| {
            let bare = (port == 80).then(|| a.clone());
            std::iter::once(format!("{a}:{port}")).chain(bare)
        })
        .collect()
}

fn vhost(
    ctx: &Ctx,
    routes: &HostRoutes,
    svc: &Service,
    port: u16,
    domains: Vec<String>,
) -> VirtualHost {
    let routes = match routes.http(&svc.fqdn, port) {
        Some(r) => r.routes.clone(),
        None => vec![default_route(ctx, svc, port)],
    };
    VirtualHost {
        name: format!("{}:{port}", svc.fqdn),
        domains,
        routes,
        rate_limit: None,
    }
}

/// The catch-all of outbound route tables under ALLOW_ANY: unknown hosts pass through.
fn allow_any_vhost() -> VirtualHost {
    VirtualHost {
        name: "allow_any".into(),
        domains: vec!["*".into()],
        routes: vec![Route {
            name: "allow_any".into(),
            origin: None,
            matches: Vec::new(),
            action: RouteAction::Forward(Forward {
                clusters: vec![WeightedCluster {
                    cluster: PASSTHROUGH_CLUSTER.into(),
                    weight: 100,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            request_headers: Default::default(),
            response_headers: Default::default(),
            fault: None,
            cors: None,
            rate_limit: None,
        }],
        rate_limit: None,
    }
}

fn outbound_table(ctx: &Ctx, name: String, mut vhosts: Vec<VirtualHost>) -> RouteTable {
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    let not_found = match ctx.outbound_mode() {
        OutboundMode::AllowAny => {
            vhosts.push(allow_any_vhost());
            NotFound::NotFound404
        }
        OutboundMode::RegistryOnly => NotFound::BlockedByPolicy502,
    };
    RouteTable {
        name,
        virtual_hosts: vhosts,
        not_found,
    }
}

fn tcp_chain(routes: &HostRoutes, svc: &Service, port: u16) -> TcpChain {
    match routes.tcp(&svc.fqdn, port) {
        Some(t) => TcpChain {
            clusters: t.clusters.clone(),
            idle_timeout: None,
            origin: Some(t.origin.clone()),
        },
        None => TcpChain {
            clusters: vec![WeightedCluster {
                cluster: cluster_name(port, "", &svc.fqdn),
                weight: 100,
                ..Default::default()
            }],
            idle_timeout: None,
            origin: None,
        },
    }
}

fn http_chain(table: &str) -> HttpChain {
    HttpChain {
        route_table: table.to_string(),
        http_proxy: false,
        rate_limit: None,
        trust_control_headers: true,
    }
}

/// The transparent `outbound` listener and its per-port route tables.
pub fn transparent_outbound(
    ctx: &Ctx,
    routes: &HostRoutes,
    bind: SocketAddr,
    cfg: &mut ProxyConfig,
) {
    let ns = ctx.namespace();
    let mut ports: Vec<u16> = ctx
        .services
        .iter()
        .flat_map(|s| s.ports.iter().map(|p| p.number))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let mut addressed = Vec::new();
    let mut port_wide = Vec::new();
    for port in ports {
        let on_port: Vec<(&Service, Protocol)> = ctx
            .services
            .iter()
            .filter_map(|s| s.port(port).map(|p| (*s, p.protocol)))
            .collect();
        let any = |f: fn(Protocol) -> bool| on_port.iter().any(|(_, p)| f(*p));
        let table = format!("outbound|{port}");
        let port_match = ChainMatch {
            destination_port: Some(port),
            ..Default::default()
        };
        if any(|p| p.is_http() || p == Protocol::Unknown) {
            let vhosts = on_port
                .iter()
                .filter(|(_, p)| p.is_http() || *p == Protocol::Unknown)
                .map(|(s, _)| vhost(ctx, routes, s, port, transparent_domains(s, port, ns)))
                .collect();
            cfg.route_tables
                .push(outbound_table(ctx, table.clone(), vhosts));
        }
        // Opaque services with addresses get their own chains; TLS ones route by SNI when
        // some VirtualService has `tls` routes for the port.
        let sni: Vec<SniRoute> = sni_routes_for_port(routes, &on_port, port);
        for (s, p) in on_port
            .iter()
            .filter(|(s, p)| !p.is_http() && !s.addresses.is_empty())
        {
            if *p == Protocol::Tls && !sni.is_empty() {
                continue;
            }
            let chain = tcp_chain(routes, s, port);
            let protocol = if *p == Protocol::Unknown {
                ChainProtocol::Detect {
                    http: http_chain(&table),
                    tcp: chain,
                    timeout: detect_timeout(ctx),
                }
            } else {
                ChainProtocol::Tcp(chain)
            };
            addressed.push(FilterChain {
                name: format!("outbound|{port}|{}", s.fqdn),
                r#match: ChainMatch {
                    destination_port: Some(port),
                    destination_addresses: s.addresses.clone(),
                    server_names: Vec::new(),
                },
                mtls: None,
                protocol,
            });
        }
        let protocol = if any(Protocol::is_http) {
            Some(ChainProtocol::Http(http_chain(&table)))
        } else if !sni.is_empty() {
            Some(ChainProtocol::TlsPassthrough(TlsPassthroughChain {
                routes: sni,
            }))
        } else if any(|p| p == Protocol::Unknown) {
            // Sniffed TCP goes to the only unknown-protocol service without addresses, or
            // to the original destination when several share the port.
            let candidates: Vec<_> = on_port
                .iter()
                .filter(|(s, p)| *p == Protocol::Unknown && s.addresses.is_empty())
                .collect();
            let tcp = match candidates.as_slice() {
                [(s, _)] => tcp_chain(routes, s, port),
                _ => TcpChain::default(),
            };
            Some(ChainProtocol::Detect {
                http: http_chain(&table),
                tcp,
                timeout: detect_timeout(ctx),
            })
        } else {
            // Opaque TCP without addresses: the first such service takes the port.
            on_port
                .iter()
                .find(|(s, _)| s.addresses.is_empty())
                .map(|(s, _)| ChainProtocol::Tcp(tcp_chain(routes, s, port)))
        };
        if let Some(protocol) = protocol {
            port_wide.push(FilterChain {
                name: table,
                r#match: port_match,
                mtls: None,
                protocol,
            });
        }
    }
    addressed.extend(port_wide);
    cfg.listeners.push(Listener {
        name: "outbound".into(),
        address: bind,
        direction: Direction::Outbound,
        capture: Capture::Transparent,
        chains: addressed,
        fallback: fallback(ctx),
    });
}

/// VirtualService SNI routes for `port`, then a route per TLS service without any.
fn sni_routes_for_port(
    routes: &HostRoutes,
    on_port: &[(&Service, Protocol)],
    port: u16,
) -> Vec<SniRoute> {
    let contributed: Vec<(&str, &[SniRoute])> = routes.tls_for_port(port).collect();
    if contributed.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<SniRoute> = contributed
        .iter()
        .flat_map(|(_, r)| r.iter().cloned())
        .collect();
    for (s, p) in on_port {
        if *p == Protocol::Tls && !contributed.iter().any(|(h, _)| *h == s.fqdn) {
            out.push(SniRoute {
                server_names: vec![s.fqdn.clone()],
                clusters: vec![WeightedCluster {
                    cluster: cluster_name(port, "", &s.fqdn),
                    weight: 100,
                    ..Default::default()
                }],
                origin: None,
            });
        }
    }
    out
}

/// The explicit `outbound-http-proxy` listener, one route table for every HTTP service
/// port, and one local listener per TCP upstream.
pub fn explicit_outbound(
    ctx: &Ctx,
    routes: &HostRoutes,
    bind: SocketAddr,
    tcp_upstreams: &[TcpUpstream],
    cfg: &mut ProxyConfig,
) {
    let ns = ctx.namespace();
    let vhosts = ctx
        .services
        .iter()
        .flat_map(|s| {
            s.ports
                .iter()
                .filter(|p| p.protocol.is_http() || p.protocol == Protocol::Unknown)
                .map(move |p| vhost(ctx, routes, s, p.number, explicit_domains(s, p.number, ns)))
        })
        .collect();
    let name = "outbound-http-proxy".to_string();
    cfg.route_tables
        .push(outbound_table(ctx, name.clone(), vhosts));
    cfg.listeners.push(Listener {
        name: name.clone(),
        address: bind,
        direction: Direction::Outbound,
        capture: Capture::Explicit,
        chains: vec![FilterChain {
            name: name.clone(),
            r#match: ChainMatch::default(),
            mtls: None,
            protocol: ChainProtocol::Http(HttpChain {
                http_proxy: true,
                ..http_chain(&name)
            }),
        }],
        fallback: fallback(ctx),
    });
    for up in tcp_upstreams {
        let host = resolve_host(&up.host, ns);
        // An upstream naming no visible service has nothing to connect to.
        let Some(svc) = ctx.service(&host) else {
            continue;
        };
        let name = format!("outbound-tcp|{}|{}", up.port, svc.fqdn);
        cfg.listeners.push(Listener {
            name: name.clone(),
            address: up.bind,
            direction: Direction::Outbound,
            capture: Capture::Explicit,
            chains: vec![FilterChain {
                name,
                r#match: ChainMatch::default(),
                mtls: None,
                protocol: ChainProtocol::Tcp(tcp_chain(routes, svc, up.port)),
            }],
            fallback: fallback(ctx),
        });
    }
}

/// The transparent `inbound` listener: a chain per port the instance serves.
pub fn transparent_inbound(ctx: &Ctx, bind: SocketAddr, cfg: &mut ProxyConfig) {
    let mut chains = Vec::new();
    for (port, protocol) in inbound_ports(ctx) {
        let app: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
        chains.push(crate::inbound::chain(
            ctx,
            port,
            protocol,
            app,
            Some(port),
            cfg,
        ));
    }
    cfg.listeners.push(Listener {
        name: INBOUND_LISTENER.into(),
        address: bind,
        direction: Direction::Inbound,
        capture: Capture::Transparent,
        chains,
        fallback: Fallback::Passthrough,
    });
}

/// Explicit inbound: one listener per declared port, forwarding to the application.
pub fn explicit_inbound(ctx: &Ctx, inbound: &[InboundPort], cfg: &mut ProxyConfig) {
    let known = inbound_ports(ctx);
    for ib in inbound {
        let protocol = known
            .iter()
            .find(|(p, _)| *p == ib.port)
            .map(|(_, p)| *p)
            .unwrap_or(Protocol::Unknown);
        let chain = crate::inbound::chain(ctx, ib.port, protocol, ib.app, None, cfg);
        cfg.listeners.push(Listener {
            name: explicit_inbound_listener(ib.port),
            address: ib.bind,
            direction: Direction::Inbound,
            capture: Capture::Explicit,
            chains: vec![chain],
            fallback: Fallback::Blackhole {
                reason: format!("no inbound chain for port {}", ib.port),
            },
        });
    }
}
