//! Linkerd ServiceProfiles and SMI TrafficSplits, on sidecars.
//!
//! A ServiceProfile (`metadata.name` = the Service FQDN; one in the client's namespace wins
//! over one in the Service's) gives every client of that Service its routes, in order, on
//! each HTTP port: `condition` becomes match blocks (`all` one block, `any` one block per
//! alternative), `timeout` the route timeout (Linkerd's default 10 s), `isRetryable` a retry
//! policy bounded by the profile's `retryBudget` (Linkerd's default 20 %, 10/s, 10 s) that
//! retries the responses its `responseClasses` mark as failures (5xx by default). A request
//! no route matches is forwarded with the mesh's default policy. Conditions using `not`, or
//! `all` of two different path regexes, cannot be expressed as weft match blocks: such a
//! route is left out (its requests fall through to later routes), which `analyze` reports.
//!
//! Traffic goes to the profile's `dstOverrides` (weighted by authority), else to the
//! backends of the oldest TrafficSplit whose apex (`spec.service`) is the Service (only
//! backends that have the port; weights are relative and may be quantities such as `500m`),
//! else to the Service itself. Linkerd's SMI extension implements TrafficSplit by writing
//! `dstOverrides`, which is why the two combine this way. A TrafficSplit also splits opaque
//! TCP ports.

use std::time::Duration;

use weft_api::{
    Forward, PathMatch, RetryBudget, RetryOn, RetryPolicy, Route, RouteAction, RouteMatch,
    StringMatch, WeightedCluster,
};
use weft_config::kinds::linkerd::{
    RequestMatch, ResponseMatch, ServiceProfile, ServiceProfileRoute, TrafficSplit,
};
use weft_config::{Body, Object};

use crate::context::Ctx;
use crate::destination::cluster_name;
use crate::registry::{CLUSTER_DOMAIN, Service, resolve_host};
use crate::retry::{DEFAULT_BACKOFF, retry_policy};
use crate::routes::{HostPort, HostRoutes, HttpRoutes, TcpTarget, origin_of};

/// Linkerd's timeout for ServiceProfile routes that set none.
const PROFILE_TIMEOUT: Duration = Duration::from_secs(10);
/// The budget bounds ServiceProfile retries; weft also stops one request after this many.
const PROFILE_RETRY_ATTEMPTS: u32 = 3;

fn default_budget() -> RetryBudget {
    RetryBudget {
        retry_ratio: 0.2,
        min_retries_per_second: 10,
        ttl: Duration::from_secs(10),
    }
}

/// Offer the ServiceProfile and TrafficSplit routes of every visible service.
pub fn contribute(ctx: &Ctx, out: &mut HostRoutes) {
    let objects = ctx.aged;
    let profiles: Vec<(&Object, &ServiceProfile)> = objects
        .iter()
        .filter_map(|o| match &o.body {
            Body::ServiceProfile(p) => Some((*o, p)),
            _ => None,
        })
        .collect();
    let splits: Vec<(&Object, &TrafficSplit)> = objects
        .iter()
        .filter_map(|o| match &o.body {
            Body::TrafficSplit(t) => Some((*o, t)),
            _ => None,
        })
        .collect();
    if profiles.is_empty() && splits.is_empty() {
        return;
    }
    for svc in &ctx.services {
        let for_svc = |ns: &str| {
            profiles
                .iter()
                .find(|(o, _)| o.namespace() == ns && o.name().eq_ignore_ascii_case(&svc.fqdn))
        };
        let profile = for_svc(ctx.namespace()).or_else(|| for_svc(&svc.namespace));
        let split = splits.iter().find(|(o, t)| {
            o.namespace() == svc.namespace && resolve_host(&t.service, o.namespace()) == svc.fqdn
        });
        if profile.is_none() && split.is_none() {
            continue;
        }
        for port in &svc.ports {
            let (clusters, origin) = match (profile, split) {
                (Some((o, p)), _) if !p.dst_overrides.is_empty() => {
                    (overrides(ctx, o.namespace(), p, port.number), origin_of(o))
                }
                (_, Some((o, t))) => (split_backends(ctx, o, t, port.number), origin_of(o)),
                (Some((o, _)), None) => (Vec::new(), origin_of(o)),
                (None, None) => continue,
            };
            let clusters = if clusters.is_empty() {
                vec![WeightedCluster {
                    cluster: cluster_name(port.number, "", &svc.fqdn),
                    weight: 1,
                    ..Default::default()
                }]
            } else {
                clusters
            };
            let key = HostPort::new(&svc.fqdn, port.number);
            if !(port.protocol.is_http() || port.protocol == crate::registry::Protocol::Unknown) {
                if split.is_some() {
                    out.contribute_tcp(key, TcpTarget { clusters, origin });
                }
                continue;
            }
            let mut routes: Vec<Route> = profile
                .map(|(o, p)| {
                    p.routes
                        .iter()
                        .filter_map(|r| profile_route(o, p, r, &clusters))
                        .collect()
                })
                .unwrap_or_default();
            routes.push(Route {
                name: "default".into(),
                origin: Some(origin.clone()),
                matches: Vec::new(),
                action: RouteAction::Forward(Forward {
                    clusters,
                    retry: retry_policy(None, ctx.mesh),
                    ..Default::default()
                }),
                request_headers: Default::default(),
                response_headers: Default::default(),
                fault: None,
                cors: None,
                rate_limit: None,
            });
            out.contribute_http(key, HttpRoutes { routes, origin });
        }
    }
}

/// Relative weights as integers: kept when whole numbers, else scaled by 1000.
fn integer_weights(values: &[f64]) -> Vec<u32> {
    let scale = if values.iter().all(|v| v.fract() == 0.0) {
        1.0
    } else {
        1000.0
    };
    values
        .iter()
        .map(|v| (v * scale).round().clamp(0.0, f64::from(u32::MAX)) as u32)
        .collect()
}

/// A Service named by a Linkerd authority or SMI backend (`name`, `name.ns`, FQDN).
fn find_service<'a>(ctx: &Ctx<'a>, host: &str, ns: &str) -> Option<&'a Service> {
    ctx.service(host)
        .or_else(|| ctx.service(&resolve_host(host, ns)))
        .or_else(|| ctx.service(&format!("{host}.{CLUSTER_DOMAIN}")))
}

fn overrides(ctx: &Ctx, ns: &str, p: &ServiceProfile, port: u16) -> Vec<WeightedCluster> {
    let weights = integer_weights(
        &p.dst_overrides
            .iter()
            .map(|d| d.weight.value())
            .collect::<Vec<_>>(),
    );
    p.dst_overrides
        .iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0)
        .filter_map(|(d, weight)| {
            let (host, port) = match d.authority.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (d.authority.as_str(), port),
            };
            let svc = find_service(ctx, host, ns)?;
            svc.port(port)?;
            Some(WeightedCluster {
                cluster: cluster_name(port, "", &svc.fqdn),
                weight,
                ..Default::default()
            })
        })
        .collect()
}

fn split_backends(ctx: &Ctx, o: &Object, t: &TrafficSplit, port: u16) -> Vec<WeightedCluster> {
    let weights = integer_weights(
        &t.backends
            .iter()
            .map(|b| b.weight.value())
            .collect::<Vec<_>>(),
    );
    t.backends
        .iter()
        .zip(weights)
        .filter(|(_, w)| *w > 0)
        .filter_map(|(b, weight)| {
            let svc = find_service(ctx, &b.service, o.namespace())?;
            // Backends that do not share the apex's port are left out.
            svc.port(port)?;
            Some(WeightedCluster {
                cluster: cluster_name(port, "", &svc.fqdn),
                weight,
                ..Default::default()
            })
        })
        .collect()
}

fn profile_route(
    o: &Object,
    p: &ServiceProfile,
    r: &ServiceProfileRoute,
    clusters: &[WeightedCluster],
) -> Option<Route> {
    let blocks = condition_blocks(r.condition.as_ref()?)?;
    if blocks.is_empty() {
        return None;
    }
    let matches = if blocks.contains(&RouteMatch::default()) {
        Vec::new()
    } else {
        blocks
    };
    let retry = r.is_retryable.then(|| RetryPolicy {
        attempts: PROFILE_RETRY_ATTEMPTS,
        per_try_timeout: None,
        retry_on: failure_classes(r),
        backoff_base: DEFAULT_BACKOFF,
        other_host: true,
        budget: Some(match &p.retry_budget {
            Some(b) => {
                let d = default_budget();
                RetryBudget {
                    retry_ratio: b.retry_ratio.unwrap_or(d.retry_ratio),
                    min_retries_per_second: b
                        .min_retries_per_second
                        .unwrap_or(d.min_retries_per_second),
                    ttl: b.ttl.map(|t| t.as_std()).unwrap_or(d.ttl),
                }
            }
            None => default_budget(),
        }),
    });
    Some(Route {
        name: r.name.clone(),
        origin: Some(origin_of(o)),
        matches,
        action: RouteAction::Forward(Forward {
            clusters: clusters.to_vec(),
            rewrite: None,
            timeout: Some(r.timeout.map(|t| t.as_std()).unwrap_or(PROFILE_TIMEOUT))
                .filter(|t| !t.is_zero()),
            retry,
            mirrors: Vec::new(),
        }),
        request_headers: Default::default(),
        response_headers: Default::default(),
        fault: None,
        cors: None,
        rate_limit: None,
    })
}

/// A request condition as alternative match blocks (OR of ANDs). None when it cannot be
/// expressed (`not`, or two different path regexes that must both match).
fn condition_blocks(c: &RequestMatch) -> Option<Vec<RouteMatch>> {
    if c.not.is_some() {
        return None;
    }
    let mut acc = vec![RouteMatch::default()];
    if let Some(p) = &c.path_regex {
        let m = RouteMatch {
            path: Some(PathMatch::Regex { regex: p.clone() }),
            ..Default::default()
        };
        acc = and(&acc, &[m])?;
    }
    if let Some(method) = &c.method {
        let m = RouteMatch {
            method: Some(StringMatch::Exact(method.to_ascii_uppercase())),
            ..Default::default()
        };
        acc = and(&acc, &[m])?;
    }
    for child in &c.all {
        acc = and(&acc, &condition_blocks(child)?)?;
    }
    if !c.any.is_empty() {
        let mut alternatives = Vec::new();
        for child in &c.any {
            alternatives.extend(condition_blocks(child)?);
        }
        acc = and(&acc, &alternatives)?;
    }
    Some(acc)
}

/// Every block of `a` AND every block of `b`. Blocks asking for two methods never match
/// and are dropped; two different paths cannot be expressed (None).
fn and(a: &[RouteMatch], b: &[RouteMatch]) -> Option<Vec<RouteMatch>> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let path = match (&x.path, &y.path) {
                (Some(p), Some(q)) if p != q => return None,
                (p, q) => p.clone().or_else(|| q.clone()),
            };
            let method = match (&x.method, &y.method) {
                (Some(m), Some(n)) if m != n => continue,
                (m, n) => m.clone().or_else(|| n.clone()),
            };
            out.push(RouteMatch {
                path,
                method,
                ..Default::default()
            });
        }
    }
    Some(out)
}

/// The statuses `responseClasses` mark as failures; 5xx when none is marked.
fn failure_classes(r: &ServiceProfileRoute) -> RetryOn {
    let mut on = RetryOn::default();
    let mut any = false;
    for class in r.response_classes.iter().filter(|c| c.is_failure) {
        let mut ranges = Vec::new();
        if let Some(c) = &class.condition
            && status_ranges(c, &mut ranges)
        {
            for (lo, hi) in ranges {
                any = true;
                if lo <= 500 && hi >= 599 {
                    on.five_xx = true;
                } else {
                    on.status_codes.extend(lo.max(100)..=hi.min(599));
                }
            }
        }
    }
    if !any {
        on.five_xx = true;
    }
    on.status_codes.sort_unstable();
    on.status_codes.dedup();
    on
}

/// Status ranges a response condition accepts (`status` and `any` of them); false for `all`
/// and `not`, which a list of codes cannot stand for.
fn status_ranges(c: &ResponseMatch, out: &mut Vec<(u16, u16)>) -> bool {
    if c.not.is_some() || !c.all.is_empty() {
        return false;
    }
    if let Some(s) = &c.status {
        let lo = s.min.and_then(|v| u16::try_from(v).ok()).unwrap_or(100);
        let hi = s.max.and_then(|v| u16::try_from(v).ok()).unwrap_or(599);
        out.push((lo, hi));
    }
    c.any.iter().all(|a| status_ranges(a, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(yaml: &str) -> RequestMatch {
        let doc = format!(
            "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {{name: a.b.svc.cluster.local, namespace: b}}\nspec:\n  routes:\n  - name: r\n    condition: {yaml}\n"
        );
        let b = weft_config::Bundle::load_str("sp.yaml", &doc);
        match &b.objects[0].body {
            Body::ServiceProfile(p) => p.routes[0].condition.clone().unwrap(),
            _ => panic!("not a ServiceProfile"),
        }
    }

    #[test]
    fn conditions_become_blocks() {
        let blocks = condition_blocks(&cond("{method: get, pathRegex: '/a'}")).unwrap();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].method, Some(StringMatch::Exact("GET".into())));
        let blocks = condition_blocks(&cond(
            "{any: [{method: GET}, {method: HEAD}], pathRegex: '/x'}",
        ))
        .unwrap();
        assert_eq!(blocks.len(), 2);
        assert!(blocks.iter().all(|b| b.path.is_some()));
        // GET and POST at once never matches.
        let blocks = condition_blocks(&cond("{all: [{method: GET}, {method: POST}]}")).unwrap();
        assert!(blocks.is_empty());
        assert!(condition_blocks(&cond("{not: {method: GET}}")).is_none());
        assert!(condition_blocks(&cond("{all: [{pathRegex: '/a'}, {pathRegex: '/b'}]}")).is_none());
    }

    #[test]
    fn quantity_weights() {
        assert_eq!(integer_weights(&[0.5, 0.5]), vec![500, 500]);
        assert_eq!(integer_weights(&[1000.0, 500.0]), vec![1000, 500]);
        assert_eq!(integer_weights(&[1.0, 0.0]), vec![1, 0]);
    }
}
