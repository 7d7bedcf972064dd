//! VirtualService delegation: a root route with `delegate: {name, namespace}` stands for the
//! HTTP routes of another VirtualService (one without `hosts`), each combined with the root
//! route. Istio allows one level of delegation only.
//!
//! Combining, as Istio does it:
//! - matches: every root match block with every delegate block, fields AND-ed; a field set on
//!   both keeps the delegate's (validation requires the delegate's to be narrower), maps are
//!   merged; blocks that contradict each other (different `port`) are dropped. A side
//!   without match blocks contributes none.
//! - everything else (rewrite, timeout, retries, fault, mirrors, CORS, headers) is the
//!   delegate's where it sets it, the root's otherwise.

use std::borrow::Cow;

use weft_config::kinds::istio::{HTTPMatchRequest, HTTPRoute, VirtualService};
use weft_config::{Body, Object};

/// One HTTP route of a VirtualService after delegation, with the object whose namespace
/// short names in it resolve against (the delegate's, for delegated routes).
pub struct Expanded<'a> {
    pub route: Cow<'a, HTTPRoute>,
    pub owner: &'a Object,
    /// The route's position in its own VirtualService (for generated route names).
    pub index: usize,
}

/// The HTTP routes of `vs` (defined by `root`), with delegate routes in place of each
/// delegating route. A delegate that does not exist, has hosts, or delegates again
/// contributes nothing (analyze reports it).
pub fn http_routes<'a>(
    objects: &'a [Object],
    root: &'a Object,
    vs: &'a VirtualService,
) -> Vec<Expanded<'a>> {
    let mut out = Vec::new();
    for (index, h) in vs.http.iter().enumerate() {
        let Some(d) = &h.delegate else {
            out.push(Expanded {
                route: Cow::Borrowed(h),
                owner: root,
                index,
            });
            continue;
        };
        let ns = if d.namespace.is_empty() {
            root.namespace()
        } else {
            d.namespace.as_str()
        };
        let Some((owner, delegate)) = objects.iter().find_map(|o| match &o.body {
            Body::VirtualService(v)
                if o.name() == d.name && o.namespace() == ns && v.is_delegate() =>
            {
                Some((o, v))
            }
            _ => None,
        }) else {
            continue;
        };
        for (i, dh) in delegate.http.iter().enumerate() {
            if dh.delegate.is_some() {
                continue;
            }
            if let Some(merged) = merge(h, dh) {
                out.push(Expanded {
                    route: Cow::Owned(merged),
                    owner,
                    index: i,
                });
            }
        }
    }
    out
}

/// A delegate route combined with its root route; None when no match block survives.
fn merge(root: &HTTPRoute, delegate: &HTTPRoute) -> Option<HTTPRoute> {
    let mut m = delegate.clone();
    m.r#match = match (root.r#match.is_empty(), delegate.r#match.is_empty()) {
        (true, _) => delegate.r#match.clone(),
        (false, true) => root.r#match.clone(),
        (false, false) => {
            let both: Vec<_> = root
                .r#match
                .iter()
                .flat_map(|r| {
                    delegate
                        .r#match
                        .iter()
                        .filter_map(move |d| merge_match(r, d))
                })
                .collect();
            if both.is_empty() {
                return None;
            }
            both
        }
    };
    if m.name.is_empty() {
        m.name = root.name.clone();
    }
    macro_rules! inherit {
        ($($f:ident),*) => {$( if m.$f.is_none() { m.$f = root.$f.clone(); } )*};
    }
    inherit!(
        rewrite,
        timeout,
        retries,
        fault,
        mirror,
        mirror_percentage,
        mirror_percent,
        cors_policy,
        headers
    );
    if m.mirrors.is_empty() && m.mirror.is_none() {
        m.mirrors = root.mirrors.clone();
    }
    Some(m)
}

fn merge_match(root: &HTTPMatchRequest, d: &HTTPMatchRequest) -> Option<HTTPMatchRequest> {
    if let (Some(a), Some(b)) = (root.port, d.port)
        && a != b
    {
        return None;
    }
    let mut m = d.clone();
    macro_rules! inherit {
        ($($f:ident),*) => {$( if m.$f.is_none() { m.$f = root.$f.clone(); } )*};
    }
    inherit!(uri, scheme, method, authority, port, ignore_uri_case);
    for (k, v) in &root.headers {
        m.headers.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in &root.without_headers {
        m.without_headers
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    for (k, v) in &root.query_params {
        m.query_params.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in &root.source_labels {
        m.source_labels
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    if m.gateways.is_empty() {
        m.gateways = root.gateways.clone();
    }
    if m.source_namespace.is_empty() {
        m.source_namespace = root.source_namespace.clone();
    }
    Some(m)
}

/// Translate every HTTP route of `vs` for `env`, delegation resolved: delegated routes
/// resolve short names in the delegate's namespace and name it as their origin.
pub fn translate_http(
    env: &crate::http_route::RouteEnv<'_, '_>,
    root: &Object,
    vs: &VirtualService,
) -> Vec<weft_api::Route> {
    http_routes(env.ctx.objects, root, vs)
        .into_iter()
        .filter_map(|e| {
            if std::ptr::eq(e.owner, root) {
                crate::http_route::translate(env, e.index, &e.route)
            } else {
                let delegated = crate::http_route::RouteEnv {
                    ctx: env.ctx,
                    rule_ns: e.owner.namespace(),
                    origin: crate::routes::origin_of(e.owner),
                    port: env.port,
                    gateway: env.gateway,
                };
                crate::http_route::translate(&delegated, e.index, &e.route)
            }
        })
        .collect()
}
