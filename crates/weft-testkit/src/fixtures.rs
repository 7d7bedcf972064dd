//! Concise builders for `ProxyConfig` pieces in tests.

use std::net::SocketAddr;
use std::time::Duration;

use weft_api::{
    Cluster, ConnectionLimits, Discovery, Endpoint, Forward, HeaderOps, HttpChain, LbPolicy,
    PathMatch, ProxyConfig, Route, RouteAction, RouteMatch, RouteTable, UpstreamProtocol,
    VirtualHost, WeightedCluster,
};

/// A static HTTP/1 cluster over `endpoints`, round robin, 1 s connect timeout, Istio's
/// (unlimited) default limits.
pub fn cluster(name: &str, endpoints: &[SocketAddr]) -> Cluster {
    Cluster {
        name: name.to_string(),
        service: None,
        policy_origin: None,
        discovery: Discovery::Static,
        endpoints: endpoints
            .iter()
            .map(|a| Endpoint {
                address: a.to_string(),
                weight: 1,
                labels: Default::default(),
                identity: None,
                tunnel: None,
            })
            .collect(),
        lb: LbPolicy::RoundRobin,
        connect_timeout: Duration::from_secs(1),
        limits: ConnectionLimits::default(),
        max_requests_per_connection: 0,
        idle_timeout: None,
        tcp_keepalive: None,
        outlier_detection: None,
        protocol: UpstreamProtocol::Http1,
        tls: Default::default(),
    }
}

/// A destination with a weight.
pub fn weighted(cluster: &str, weight: u32) -> WeightedCluster {
    WeightedCluster {
        cluster: cluster.to_string(),
        weight,
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
    }
}

/// A forward action to the given destinations.
pub fn forward(clusters: Vec<WeightedCluster>) -> Forward {
    Forward {
        clusters,
        ..Forward::default()
    }
}

/// A route that takes every request to `cluster`.
pub fn route_to(name: &str, cluster: &str) -> Route {
    route(
        name,
        vec![],
        RouteAction::Forward(forward(vec![weighted(cluster, 100)])),
    )
}

pub fn route(name: &str, matches: Vec<RouteMatch>, action: RouteAction) -> Route {
    Route {
        name: name.to_string(),
        origin: None,
        matches,
        action,
        request_headers: HeaderOps::default(),
        response_headers: HeaderOps::default(),
        fault: None,
        cors: None,
        rate_limit: None,
    }
}

/// A match on a path prefix.
pub fn prefix(value: &str) -> RouteMatch {
    RouteMatch {
        path: Some(PathMatch::Prefix {
            value: value.to_string(),
            ignore_case: false,
        }),
        ..RouteMatch::default()
    }
}

pub fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.to_string(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        rate_limit: None,
    }
}

pub fn table(name: &str, virtual_hosts: Vec<VirtualHost>) -> RouteTable {
    RouteTable {
        name: name.to_string(),
        virtual_hosts,
        not_found: Default::default(),
    }
}

/// A config with route tables and clusters (no listeners: tests serve connections
/// themselves or add listeners).
pub fn config(route_tables: Vec<RouteTable>, clusters: Vec<Cluster>) -> ProxyConfig {
    ProxyConfig {
        version: "test".into(),
        route_tables,
        clusters,
        ..ProxyConfig::default()
    }
}

/// An HTTP chain routing with `route_table`.
pub fn http_chain(route_table: &str) -> HttpChain {
    HttpChain {
        route_table: route_table.to_string(),
        trust_control_headers: true,
        ..HttpChain::default()
    }
}

/// The common single-service setup: host `svc` (any port) → cluster `svc` on `endpoints`.
pub fn simple(endpoints: &[SocketAddr]) -> ProxyConfig {
    config(
        vec![table(
            "test",
            vec![vhost("svc", &["*"], vec![route_to("default", "svc")])],
        )],
        vec![cluster("svc", endpoints)],
    )
}
