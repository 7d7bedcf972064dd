//! Inbound: the ports an instance serves, and for each a chain, a route table
//! (`inbound|<port>`) and a cluster (`inbound|<port>||`) reaching the application.

use std::net::SocketAddr;
use std::time::Duration;

use weft_api::{
    ChainMatch, ChainProtocol, Cluster, ConnectionLimits, Discovery, Endpoint, FilterChain,
    Forward, HttpChain, LbPolicy, NotFound, ProxyConfig, RetryOn, RetryPolicy, Route, RouteAction,
    RouteTable, TcpChain, UpstreamProtocol, UpstreamTls, VirtualHost, WeightedCluster,
};

use crate::context::Ctx;
use crate::listeners::detect_timeout;
use crate::registry::Protocol;
use crate::retry::DEFAULT_BACKOFF;

/// The ports this instance serves, with their protocols: the target ports of the services
/// that select it (first service by host wins a port's protocol), then its named ports.
pub fn inbound_ports(ctx: &Ctx) -> Vec<(u16, Protocol)> {
    let i = ctx.instance;
    let address = i.address.to_string();
    let mut out: Vec<(u16, Protocol)> = Vec::new();
    for svc in ctx
        .index
        .services
        .iter()
        .filter(|s| s.namespace == i.namespace)
    {
        for e in svc
            .endpoints
            .iter()
            .filter(|e| e.host == address && e.labels == i.labels)
        {
            for (svc_port, target) in &e.ports {
                if !out.iter().any(|(p, _)| p == target) {
                    let protocol = svc
                        .port(*svc_port)
                        .map(|p| p.protocol)
                        .unwrap_or(Protocol::Unknown);
                    out.push((*target, protocol));
                }
            }
        }
    }
    for (name, port) in &i.ports {
        if !out.iter().any(|(p, _)| p == port) {
            out.push((*port, Protocol::from_k8s(Some(name), None)));
        }
    }
    out.sort();
    out
}

/// The service whose target port `port` of this instance is (the first by host), as
/// Istio's inbound cluster metadata names it: telemetry's `destination_service` on the
/// server side.
fn service_of_port(ctx: &Ctx, port: u16) -> Option<String> {
    let i = ctx.instance;
    let address = i.address.to_string();
    ctx.index
        .services
        .iter()
        .filter(|s| s.namespace == i.namespace)
        .find(|svc| {
            svc.endpoints.iter().any(|e| {
                e.host == address && e.labels == i.labels && e.ports.iter().any(|(_, t)| *t == port)
            })
        })
        .map(|svc| svc.fqdn.clone())
}

/// `inbound|<port>||`.
pub fn cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The chain for one inbound port; adds its route table and cluster to `cfg`.
/// `match_port` is the original destination port under transparent capture.
pub fn chain(
    ctx: &Ctx,
    port: u16,
    protocol: Protocol,
    app: SocketAddr,
    match_port: Option<u16>,
    cfg: &mut ProxyConfig,
) -> FilterChain {
    let table = format!("inbound|{port}");
    let cluster = cluster_name(port);
    cfg.clusters.push(Cluster {
        name: cluster.clone(),
        service: service_of_port(ctx, port),
        policy_origin: None,
        discovery: Discovery::Static,
        endpoints: vec![Endpoint {
            address: app.to_string(),
            weight: 1,
            labels: Default::default(),
            identity: None,
            tunnel: None,
        }],
        lb: LbPolicy::LeastRequest,
        connect_timeout: ctx.mesh.connect_timeout(),
        limits: ConnectionLimits::default(),
        max_requests_per_connection: 0,
        idle_timeout: Some(Duration::from_secs(3600)),
        tcp_keepalive: None,
        outlier_detection: None,
        protocol: match protocol {
            Protocol::Http => UpstreamProtocol::Http1,
            Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb => UpstreamProtocol::Http2,
            Protocol::Unknown => UpstreamProtocol::SameAsDownstream,
            Protocol::Tcp | Protocol::Tls => UpstreamProtocol::Tcp,
        },
        tls: UpstreamTls::Disabled,
    });
    let http = HttpChain {
        route_table: table.clone(),
        http_proxy: false,
        rate_limit: None,
        trust_control_headers: false,
    };
    let tcp = TcpChain {
        clusters: vec![WeightedCluster {
            cluster: cluster.clone(),
            weight: 100,
            ..Default::default()
        }],
        idle_timeout: None,
        origin: None,
    };
    if protocol.is_http() || protocol == Protocol::Unknown {
        cfg.route_tables.push(RouteTable {
            name: table.clone(),
            virtual_hosts: vec![VirtualHost {
                // Istio's inbound virtual host name, which EnvoyFilters match on.
                name: format!("inbound|http|{port}"),
                domains: vec!["*".into()],
                routes: vec![Route {
                    name: "default".into(),
                    origin: None,
                    matches: Vec::new(),
                    action: RouteAction::Forward(Forward {
                        clusters: vec![WeightedCluster {
                            cluster,
                            weight: 100,
                            ..Default::default()
                        }],
                        rewrite: None,
                        timeout: None,
                        retry: inbound_retry(protocol),
                        mirrors: Vec::new(),
                    }),
                    request_headers: Default::default(),
                    response_headers: Default::default(),
                    fault: None,
                    cors: None,
                    rate_limit: None,
                }],
                rate_limit: None,
            }],
            not_found: NotFound::NotFound404,
        });
    }
    let protocol = match protocol {
        p if p.is_http() => ChainProtocol::Http(http),
        Protocol::Unknown => ChainProtocol::Detect {
            http,
            tcp,
            timeout: detect_timeout(ctx),
        },
        _ => ChainProtocol::Tcp(tcp),
    };
    FilterChain {
        name: table,
        r#match: ChainMatch {
            destination_port: match_port,
            ..Default::default()
        },
        mtls: Some(ctx.peers.effective(ctx.namespace(), ctx.labels(), port)),
        protocol,
    }
}

/// Istio retries inbound requests the application reset before answering
/// (`reset-before-request`, 2 attempts), except on gRPC ports. weft's model has no
/// before-request distinction, so this is `reset`: the local application is retried when
/// the connection to it resets.
fn inbound_retry(protocol: Protocol) -> Option<RetryPolicy> {
    if matches!(protocol, Protocol::Grpc | Protocol::GrpcWeb) {
        return None;
    }
    Some(RetryPolicy {
        attempts: 2,
        per_try_timeout: None,
        retry_on: RetryOn {
            reset: true,
            ..Default::default()
        },
        backoff_base: DEFAULT_BACKOFF,
        other_host: false,
        budget: None,
    })
}
