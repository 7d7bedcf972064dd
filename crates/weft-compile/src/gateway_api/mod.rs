//! Kubernetes Gateway API routes: HTTPRoute and GRPCRoute, attached to a Service (GAMMA mesh
//! routes, [`mesh`]) or to the listeners of a Gateway API `Gateway` ([`gateway`]).
//!
//! Both parents share the rule translation ([`rules`]): every match of every rule of every
//! route attached to one parent becomes one weft [`Route`], and the routes are sorted by
//! Gateway API precedence (exact path > longest prefix > regex > method > most headers >
//! most query params > oldest route > `ns/name` > rule order > match order). A GRPCRoute is
//! read as the HTTPRoute it stands for (method match → path `/service/method`).
//!
//! Backends that cannot be used (unknown kind, missing Service or port, a cross-namespace
//! reference without ReferenceGrant) keep their weight but point at a cluster name that
//! never exists (`invalid-backend|<reason>|<ns>/<name>`): the proxy answers its share with
//! 500 and the cluster name says why, as the Gateway API asks.

mod annotations;
pub mod gateway;
pub mod mesh;
mod rules;

use std::borrow::Cow;
use std::cmp::Reverse;

use weft_api::{Origin, Route};
use weft_config::kinds::gateway_api::{
    GrpcMethodMatch, GrpcRoute, HttpBackendRef, HttpHeaderMatch, HttpPathMatch, HttpRoute,
    HttpRouteFilter, HttpRouteFilterType, HttpRouteMatch, HttpRouteRule, MatchType, PathMatchType,
    ReferenceGrant, backend_group_kind,
};
use weft_config::{Body, Object};

use crate::context::Ctx;
use crate::destination::cluster_name;
use crate::order::created;
use crate::registry::CLUSTER_DOMAIN;
use crate::routes::origin_of;

pub use rules::translate;

const GROUP: &str = "gateway.networking.k8s.io";

/// An HTTPRoute or GRPCRoute, the latter already read as an HTTPRoute.
pub struct GwRoute<'a> {
    pub obj: &'a Object,
    pub spec: Cow<'a, HttpRoute>,
}

impl GwRoute<'_> {
    pub fn kind(&self) -> &'static str {
        self.obj.kind.name()
    }

    pub fn origin(&self) -> Origin {
        origin_of(self.obj)
    }

    /// `ns/name`, for messages.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.obj.namespace(), self.obj.name())
    }
}

/// Every HTTPRoute and GRPCRoute (and Linkerd's `policy.linkerd.io` HTTPRoute, same shape),
/// oldest first (`aged`: the snapshot's objects, oldest first).
pub fn all_routes<'a>(aged: &[&'a Object]) -> Vec<GwRoute<'a>> {
    aged.iter()
        .copied()
        .filter_map(|o| match &o.body {
            Body::HttpRoute(r) | Body::LinkerdHttpRoute(r) => Some(GwRoute {
                obj: o,
                spec: Cow::Borrowed(r),
            }),
            Body::GrpcRoute(g) => Some(GwRoute {
                obj: o,
                spec: Cow::Owned(grpc_as_http(g)),
            }),
            _ => None,
        })
        .collect()
}

/// A GRPCRoute as the HTTPRoute it stands for: gRPC calls are `POST /service/method`.
fn grpc_as_http(g: &GrpcRoute) -> HttpRoute {
    let header = |h: &weft_config::kinds::gateway_api::GrpcHeaderMatch| HttpHeaderMatch {
        match_type: h.match_type,
        name: h.name.clone(),
        value: h.value.clone(),
    };
    let filter = |f: &weft_config::kinds::gateway_api::GrpcRouteFilter| {
        use weft_config::kinds::gateway_api::GrpcRouteFilterType as G;
        HttpRouteFilter {
            filter_type: f.filter_type.map(|t| match t {
                G::RequestHeaderModifier => HttpRouteFilterType::RequestHeaderModifier,
                G::ResponseHeaderModifier => HttpRouteFilterType::ResponseHeaderModifier,
                G::RequestMirror => HttpRouteFilterType::RequestMirror,
                G::ExtensionRef => HttpRouteFilterType::ExtensionRef,
            }),
            request_header_modifier: f.request_header_modifier.clone(),
            response_header_modifier: f.response_header_modifier.clone(),
            request_mirror: f.request_mirror.clone(),
            extension_ref: f.extension_ref.clone(),
            ..Default::default()
        }
    };
    HttpRoute {
        parent_refs: g.parent_refs.clone(),
        hostnames: g.hostnames.clone(),
        use_default_gateways: g.use_default_gateways.clone(),
        rules: g
            .rules
            .iter()
            .map(|r| HttpRouteRule {
                name: r.name.clone(),
                matches: r
                    .matches
                    .iter()
                    .map(|m| HttpRouteMatch {
                        path: m.method.as_ref().map(grpc_path),
                        headers: m.headers.iter().map(header).collect(),
                        query_params: Vec::new(),
                        method: None,
                    })
                    .collect(),
                filters: r.filters.iter().map(filter).collect(),
                backend_refs: r
                    .backend_refs
                    .iter()
                    .map(|b| HttpBackendRef {
                        group: b.group.clone(),
                        kind: b.kind.clone(),
                        name: b.name.clone(),
                        namespace: b.namespace.clone(),
                        port: b.port,
                        weight: b.weight,
                        filters: b.filters.iter().map(filter).collect(),
                    })
                    .collect(),
                timeouts: None,
                retry: None,
                session_persistence: r.session_persistence.clone(),
            })
            .collect(),
    }
}

/// `{service, method}` → the path of the call: both exact → Exact `/s/m`; only the service
/// → PathPrefix `/s`; otherwise (or with `RegularExpression`) a regex over both parts.
fn grpc_path(m: &GrpcMethodMatch) -> HttpPathMatch {
    let regex = m.match_type == Some(MatchType::RegularExpression);
    let (service, method) = (m.service.as_deref(), m.method.as_deref());
    let (match_type, value) = match (regex, service, method) {
        (false, Some(s), Some(m)) => (PathMatchType::Exact, format!("/{s}/{m}")),
        (false, Some(s), None) => (PathMatchType::PathPrefix, format!("/{s}")),
        (false, None, Some(m)) => (
            PathMatchType::RegularExpression,
            format!("/[^/]+/{}", escape_regex(m)),
        ),
        (true, s, m) => (
            PathMatchType::RegularExpression,
            format!("/{}/{}", s.unwrap_or("[^/]+"), m.unwrap_or("[^/]+")),
        ),
        (false, None, None) => (PathMatchType::PathPrefix, "/".to_string()),
    };
    HttpPathMatch {
        match_type: Some(match_type),
        value: Some(value),
    }
}

pub fn escape_regex(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where the routes being compiled attach.
#[derive(Debug, Clone, Copy)]
pub enum Parent<'c> {
    /// GAMMA: traffic to this Service port. A rule without backendRefs forwards here.
    Service { fqdn: &'c str, port: u16 },
    /// A Gateway listener port.
    Gateway { port: u16 },
}

impl Parent<'_> {
    pub fn port(&self) -> u16 {
        match self {
            Parent::Service { port, .. } | Parent::Gateway { port } => *port,
        }
    }
}

/// Gateway API precedence of one (route, rule, match); smaller sorts first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    path_kind: Reverse<u8>,
    path_len: Reverse<usize>,
    method: Reverse<bool>,
    headers: Reverse<usize>,
    query: Reverse<usize>,
    created: String,
    namespace: String,
    name: String,
    rule: usize,
    r#match: usize,
}

impl Rank {
    fn new(r: &GwRoute, m: &HttpRouteMatch, rule: usize, r#match: usize) -> Rank {
        let path = m.path.clone().unwrap_or_default();
        let path_kind = match path.match_type() {
            PathMatchType::Exact => 3,
            PathMatchType::PathPrefix => 2,
            PathMatchType::RegularExpression => 1,
        };
        Rank {
            path_kind: Reverse(path_kind),
            path_len: Reverse(path.value().len()),
            method: Reverse(m.method.is_some()),
            headers: Reverse(m.headers.len()),
            query: Reverse(m.query_params.len()),
            created: created(r.obj),
            namespace: r.obj.namespace().to_string(),
            name: r.obj.name().to_string(),
            rule,
            r#match,
        }
    }
}

/// A translated route and its precedence.
pub struct Ranked {
    pub rank: Rank,
    pub route: Route,
}

/// Routes in precedence order; the same (route, rule, match) reached twice (through two
/// listeners) is kept once.
pub fn in_order(mut ranked: Vec<Ranked>) -> Vec<Route> {
    ranked.sort_by(|a, b| a.rank.cmp(&b.rank));
    ranked.dedup_by(|a, b| a.rank == b.rank);
    ranked.into_iter().map(|r| r.route).collect()
}

/// Whether a ReferenceGrant in `to_ns` lets `from_kind` objects of `from_ns` reference the
/// `to_kind` (group `to_group`) named `to_name`.
pub fn reference_granted(
    objects: &[Object],
    from_kind: &str,
    from_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_ns: &str,
    to_name: &str,
) -> bool {
    objects.iter().any(|o| {
        let Body::ReferenceGrant(g) = &o.body else {
            return false;
        };
        o.namespace() == to_ns && grants(g, from_kind, from_ns, to_group, to_kind, to_name)
    })
}

fn grants(
    g: &ReferenceGrant,
    from_kind: &str,
    from_ns: &str,
    to_group: &str,
    to_kind: &str,
    to_name: &str,
) -> bool {
    let core = |s: &str| if s == "core" { "" } else { s }.to_string();
    g.from
        .iter()
        .any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
        && g.to.iter().any(|t| {
            core(&t.group) == to_group
                && t.kind == to_kind
                && t.name.as_deref().is_none_or(|n| n == to_name)
        })
}

/// A backend reference resolved to a cluster name; unusable references resolve to a name
/// no cluster has, so the proxy answers their share with 500.
#[allow(clippy::too_many_arguments)]
pub fn backend_cluster(
    ctx: &Ctx,
    route: &GwRoute,
    parent: Parent,
    group: Option<&str>,
    kind: Option<&str>,
    name: &str,
    namespace: Option<&str>,
    port: Option<u32>,
) -> String {
    let route_ns = route.obj.namespace();
    let ns = namespace.unwrap_or(route_ns);
    let invalid = |reason: &str| format!("invalid-backend|{reason}|{ns}/{name}");
    let (group, kind) = backend_group_kind(group, kind);
    if !group.is_empty() || kind != "Service" {
        return invalid(&format!("unsupported kind {group}/{kind}"));
    }
    let fqdn = format!("{name}.{ns}.{CLUSTER_DOMAIN}");
    // A consumer route points at the producer's Service it attaches to; that reference
    // needs no grant (it is the parent, which the route may already name).
    let is_parent = matches!(parent, Parent::Service { fqdn: p, .. } if p == fqdn);
    if ns != route_ns
        && !is_parent
        && !reference_granted(ctx.objects, route.kind(), route_ns, "", "Service", ns, name)
    {
        return invalid("no ReferenceGrant");
    }
    let Some(svc) = ctx.service(&fqdn) else {
        return invalid("Service not found");
    };
    let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
        return invalid("port required");
    };
    if svc.port(port).is_none() {
        return invalid(&format!("Service has no port {port}"));
    }
    cluster_name(port, "", &svc.fqdn)
}

/// Whether a cluster name is one of the never-existing invalid-backend names.
pub fn is_invalid_cluster(name: &str) -> bool {
    name.starts_with("invalid-backend|")
}

/// GRPCRoute backends speak HTTP/2 whatever their Service port declares.
pub fn grpc_upstreams(cfg: &mut weft_api::ProxyConfig) {
    let mut grpc = std::collections::BTreeSet::new();
    for table in &cfg.route_tables {
        for r in table.virtual_hosts.iter().flat_map(|v| v.routes.iter()) {
            if r.origin.as_ref().is_some_and(|o| o.kind == "GRPCRoute")
                && let weft_api::RouteAction::Forward(f) = &r.action
            {
                grpc.extend(f.clusters.iter().map(|c| c.cluster.clone()));
            }
        }
    }
    for c in cfg.clusters.iter_mut().filter(|c| grpc.contains(&c.name)) {
        if matches!(
            c.protocol,
            weft_api::UpstreamProtocol::Http1 | weft_api::UpstreamProtocol::SameAsDownstream
        ) {
            c.protocol = weft_api::UpstreamProtocol::Http2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_methods_become_paths() {
        let m = |s: Option<&str>, me: Option<&str>, t| GrpcMethodMatch {
            match_type: t,
            service: s.map(String::from),
            method: me.map(String::from),
        };
        let p = grpc_path(&m(Some("echo.Echo"), Some("Ping"), None));
        assert_eq!(p.match_type(), PathMatchType::Exact);
        assert_eq!(p.value(), "/echo.Echo/Ping");
        let p = grpc_path(&m(Some("echo.Echo"), None, None));
        assert_eq!(p.match_type(), PathMatchType::PathPrefix);
        assert_eq!(p.value(), "/echo.Echo");
        let p = grpc_path(&m(None, Some("Ping"), None));
        assert_eq!(p.value(), "/[^/]+/Ping");
        let p = grpc_path(&m(Some("e.*"), None, Some(MatchType::RegularExpression)));
        assert_eq!(p.value(), "/e.*/[^/]+");
    }
}
