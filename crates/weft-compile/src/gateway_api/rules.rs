//! One Gateway API route rule → weft routes (one per match): matches, filters, backends,
//! timeouts and retries.

use std::time::Duration;

use weft_api::{
    CorsPolicy, DirectResponse, Forward, HeaderMatch, HeaderOps, Mirror, PathMatch, PathRewrite,
    QueryMatch, Redirect, RedirectPort, RetryOn, RetryPolicy, Rewrite, Route, RouteAction,
    RouteMatch, StringMatch, WeightedCluster,
};
use weft_config::kinds::gateway_api::{
    HttpHeaderFilter, HttpHeaderMatch, HttpPathModifier, HttpRouteFilter, HttpRouteFilterType,
    HttpRouteMatch, HttpRouteRule, MatchType, PathMatchType, PathModifierType, RedirectScheme,
};

use super::annotations::linkerd_annotations;
use super::{GwRoute, Parent, Rank, Ranked, backend_cluster};
use crate::context::Ctx;
use crate::destination::cluster_name;
use crate::retry::{DEFAULT_BACKOFF, DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_ON, parse_retry_on};

/// The Gateway API's default CORS `maxAge`.
const CORS_MAX_AGE: Duration = Duration::from_secs(5);

/// Every rule of `route` as ranked weft routes for `parent`.
pub fn translate(ctx: &Ctx, route: &GwRoute, parent: Parent) -> Vec<Ranked> {
    let mut out = Vec::new();
    for (ri, rule) in route.spec.rules.iter().enumerate() {
        let parts = rule_parts(ctx, route, parent, rule);
        let defaulted = [HttpRouteMatch::default()];
        let matches: &[HttpRouteMatch] = if rule.matches.is_empty() {
            &defaulted
        } else {
            &rule.matches
        };
        let base = match &rule.name {
            Some(n) if !n.is_empty() => {
                format!("{}.{}.{n}", route.obj.namespace(), route.obj.name())
            }
            _ => format!("{}.{}.{ri}", route.obj.namespace(), route.obj.name()),
        };
        for (mi, m) in matches.iter().enumerate() {
            let rm = route_match(m);
            out.push(Ranked {
                rank: Rank::new(route, m, ri, mi),
                route: Route {
                    name: if matches.len() > 1 {
                        format!("{base}.{mi}")
                    } else {
                        base.clone()
                    },
                    origin: Some(route.origin()),
                    matches: if rm == RouteMatch::default() {
                        Vec::new()
                    } else {
                        vec![rm]
                    },
                    action: parts.action.clone(),
                    request_headers: parts.request_headers.clone(),
                    response_headers: parts.response_headers.clone(),
                    fault: None,
                    cors: parts.cors.clone(),
                    rate_limit: None,
                },
            });
        }
    }
    out
}

/// One Gateway API match block. PathPrefix `/` matches everything and is left out.
fn route_match(m: &HttpRouteMatch) -> RouteMatch {
    let path = m.path.as_ref().and_then(|p| match p.match_type() {
        PathMatchType::Exact => Some(PathMatch::Exact {
            value: p.value().to_string(),
            ignore_case: false,
        }),
        PathMatchType::PathPrefix if p.value().trim_end_matches('/').is_empty() => None,
        PathMatchType::PathPrefix => Some(PathMatch::SegmentPrefix {
            value: p.value().to_string(),
        }),
        PathMatchType::RegularExpression => Some(PathMatch::Regex {
            regex: p.value().to_string(),
        }),
    });
    let value = |h: &HttpHeaderMatch| match h.match_type.unwrap_or_default() {
        MatchType::Exact => StringMatch::Exact(h.value.clone()),
        MatchType::RegularExpression => StringMatch::Regex(h.value.clone()),
    };
    // Repeated names: the first entry counts, later ones are ignored (the spec's rule).
    let mut headers: Vec<HeaderMatch> = Vec::new();
    for h in &m.headers {
        let name = h.name.to_ascii_lowercase();
        if !headers.iter().any(|x| x.name == name) {
            headers.push(HeaderMatch {
                name,
                value: value(h),
                invert: false,
            });
        }
    }
    let mut query_params: Vec<QueryMatch> = Vec::new();
    for q in &m.query_params {
        if !query_params.iter().any(|x| x.name == q.name) {
            query_params.push(QueryMatch {
                name: q.name.clone(),
                value: value(q),
            });
        }
    }
    RouteMatch {
        path,
        headers,
        query_params,
        method: m.method.map(|me| {
            // The variants are the method names (`Get` → `GET`).
            StringMatch::Exact(format!("{me:?}").to_ascii_uppercase())
        }),
        authority: None,
        scheme: None,
    }
}

/// What every match of one rule shares.
#[derive(Default)]
struct Parts {
    request_headers: HeaderOps,
    response_headers: HeaderOps,
    cors: Option<CorsPolicy>,
    redirect: Option<Redirect>,
    rewrite: Option<Rewrite>,
    mirrors: Vec<Mirror>,
}

struct RuleParts {
    action: RouteAction,
    request_headers: HeaderOps,
    response_headers: HeaderOps,
    cors: Option<CorsPolicy>,
}

fn fail(status: u16, why: String) -> RouteAction {
    RouteAction::DirectResponse(DirectResponse {
        status,
        body: Some(why),
    })
}

fn rule_parts(ctx: &Ctx, route: &GwRoute, parent: Parent, rule: &HttpRouteRule) -> RuleParts {
    let mut p = Parts::default();
    let mut unsupported = None;
    for f in &rule.filters {
        if let Err(name) = apply_filter(ctx, route, parent, f, &mut p) {
            unsupported.get_or_insert(name);
        }
    }
    let action = if let Some(name) = unsupported {
        // The spec: a filter that cannot be applied must fail the request, not be skipped.
        fail(
            500,
            format!(
                "{} {}: filter {name} is not supported by weft",
                route.kind(),
                route.full_name()
            ),
        )
    } else {
        forward_action(ctx, route, parent, rule, &mut p)
    };
    RuleParts {
        action,
        request_headers: p.request_headers,
        response_headers: p.response_headers,
        cors: p.cors,
    }
}

fn forward_action(
    ctx: &Ctx,
    route: &GwRoute,
    parent: Parent,
    rule: &HttpRouteRule,
    p: &mut Parts,
) -> RouteAction {
    if let Some(r) = p.redirect.take() {
        return RouteAction::Redirect(r);
    }
    let active: Vec<_> = rule
        .backend_refs
        .iter()
        .filter(|b| b.weight.unwrap_or(1) > 0)
        .collect();
    let mut clusters = Vec::new();
    if rule.backend_refs.is_empty() {
        match parent {
            // Mesh rules without backends keep going to the Service they attach to (as
            // Linkerd does; the booksapp routes rely on it).
            Parent::Service { fqdn, port } => clusters.push(WeightedCluster {
                cluster: cluster_name(port, "", fqdn),
                weight: 1,
                ..Default::default()
            }),
            Parent::Gateway { .. } => {
                return fail(
                    500,
                    format!(
                        "{} {}: rule has no backendRefs",
                        route.kind(),
                        route.full_name()
                    ),
                );
            }
        }
    }
    for b in &active {
        let mut cluster = backend_cluster(
            ctx,
            route,
            parent,
            b.group.as_deref(),
            b.kind.as_deref(),
            &b.name,
            b.namespace.as_deref(),
            b.port,
        );
        let mut own = Parts::default();
        for f in &b.filters {
            let per_route_only = matches!(
                f.filter_type,
                Some(
                    HttpRouteFilterType::UrlRewrite
                        | HttpRouteFilterType::RequestRedirect
                        | HttpRouteFilterType::RequestMirror
                        | HttpRouteFilterType::Cors
                )
            );
            // Filters the model keeps per route apply to the route when this is its only
            // backend; with several backends they cannot be told apart and fail the share.
            let target = if per_route_only && active.len() == 1 {
                &mut *p
            } else if per_route_only {
                cluster = format!(
                    "invalid-backend|per-backend filter with several backends|{}",
                    b.name
                );
                continue;
            } else {
                &mut own
            };
            if apply_filter(ctx, route, parent, f, target).is_err() {
                cluster = format!("invalid-backend|unsupported filter|{}", b.name);
            }
        }
        clusters.push(WeightedCluster {
            cluster,
            weight: u32::try_from(b.weight.unwrap_or(1)).unwrap_or(u32::MAX),
            request_headers: own.request_headers,
            response_headers: own.response_headers,
        });
    }
    if let Some(r) = p.redirect.take() {
        return RouteAction::Redirect(r);
    }
    if clusters.is_empty() {
        return fail(
            500,
            format!(
                "{} {}: every backendRef has weight 0",
                route.kind(),
                route.full_name()
            ),
        );
    }
    let mut timeout = rule
        .timeouts
        .as_ref()
        .and_then(|t| t.request)
        .map(|d| d.as_std());
    let mut retry = retry_policy(ctx, rule);
    if rule.retry.is_none()
        && rule.timeouts.is_none()
        && let Some((t, r)) = linkerd_annotations(ctx, route, parent)
    {
        timeout = t.or(timeout);
        retry = r.or(retry);
    }
    RouteAction::Forward(Forward {
        clusters,
        rewrite: p.rewrite.take(),
        timeout: timeout.filter(|t| !t.is_zero()),
        retry,
        mirrors: std::mem::take(&mut p.mirrors),
    })
}

/// `retry` and `timeouts.backendRequest`; without `retry`, the mesh default policy (Istio
/// applies it to converted Gateway API routes as to VirtualServices).
fn retry_policy(ctx: &Ctx, rule: &HttpRouteRule) -> Option<RetryPolicy> {
    let mut policy = match &rule.retry {
        Some(r) => {
            let attempts = r.attempts.unwrap_or(i64::from(DEFAULT_RETRY_ATTEMPTS));
            u32::try_from(attempts)
                .ok()
                .filter(|a| *a > 0)
                .map(|attempts| {
                    let mut retry_on = parse_retry_on(DEFAULT_RETRY_ON);
                    retry_on
                        .status_codes
                        .extend(r.codes.iter().filter_map(|c| u16::try_from(*c).ok()));
                    retry_on.status_codes.sort_unstable();
                    retry_on.status_codes.dedup();
                    RetryPolicy {
                        attempts,
                        per_try_timeout: None,
                        retry_on,
                        backoff_base: r
                            .backoff
                            .map(|d| d.as_std())
                            .filter(|d| !d.is_zero())
                            .unwrap_or(DEFAULT_BACKOFF),
                        other_host: true,
                        budget: None,
                    }
                })
        }
        None => crate::retry::retry_policy(None, ctx.mesh),
    };
    if let Some(t) = rule.timeouts.as_ref().and_then(|t| t.backend_request) {
        let t = t.as_std();
        if !t.is_zero() {
            policy
                .get_or_insert_with(|| RetryPolicy {
                    attempts: 0,
                    per_try_timeout: None,
                    retry_on: RetryOn::default(),
                    backoff_base: DEFAULT_BACKOFF,
                    other_host: true,
                    budget: None,
                })
                .per_try_timeout = Some(t);
        }
    }
    policy
}

fn header_ops(h: &HttpHeaderFilter, into: &mut HeaderOps) {
    let pair = |x: &weft_config::kinds::gateway_api::HttpHeader| {
        (x.name.to_ascii_lowercase(), x.value.clone())
    };
    into.set.extend(h.set.iter().map(pair));
    into.add.extend(h.add.iter().map(pair));
    into.remove
        .extend(h.remove.iter().map(|r| r.to_ascii_lowercase()));
}

fn path_rewrite(m: &HttpPathModifier) -> Option<PathRewrite> {
    match m.modifier_type? {
        PathModifierType::ReplaceFullPath => Some(PathRewrite::Full(
            m.replace_full_path.clone().unwrap_or_else(|| "/".into()),
        )),
        PathModifierType::ReplacePrefixMatch => Some(PathRewrite::MatchedPrefix(
            m.replace_prefix_match.clone().unwrap_or_else(|| "/".into()),
        )),
    }
}

/// `*` any origin; `https://*.example.com` a wildcard host; else exact.
fn origin_match(o: &str) -> StringMatch {
    if o == "*" {
        StringMatch::Present
    } else if o.contains('*') {
        StringMatch::Regex(
            o.split('*')
                .map(super::escape_regex)
                .collect::<Vec<_>>()
                .join("[^/]*"),
        )
    } else {
        StringMatch::Exact(o.to_string())
    }
}

/// Apply one filter to `p`; Err(filter name) when weft cannot run it.
fn apply_filter(
    ctx: &Ctx,
    route: &GwRoute,
    parent: Parent,
    f: &HttpRouteFilter,
    p: &mut Parts,
) -> Result<(), &'static str> {
    let Some(t) = f.filter_type else {
        return Err("(no type)");
    };
    match t {
        HttpRouteFilterType::RequestHeaderModifier => {
            let h = f.request_header_modifier.as_ref().ok_or(t.name())?;
            // Host is the authority: a set becomes an authority rewrite.
            let mut ops = HeaderOps::default();
            header_ops(h, &mut ops);
            if let Some((_, host)) = ops.set.iter().find(|(k, _)| k == "host").cloned() {
                ops.set.retain(|(k, _)| k != "host");
                p.rewrite.get_or_insert_with(Rewrite::default).authority = Some(host);
            }
            p.request_headers.set.extend(ops.set);
            p.request_headers.add.extend(ops.add);
            p.request_headers.remove.extend(ops.remove);
        }
        HttpRouteFilterType::ResponseHeaderModifier => {
            let h = f.response_header_modifier.as_ref().ok_or(t.name())?;
            header_ops(h, &mut p.response_headers);
        }
        HttpRouteFilterType::RequestRedirect => {
            let r = f.request_redirect.as_ref().ok_or(t.name())?;
            let scheme = r.scheme.map(|s| match s {
                RedirectScheme::Http => "http".to_string(),
                RedirectScheme::Https => "https".to_string(),
            });
            // Without a port: the new scheme's well-known port, else the listener's (or
            // Service's) port.
            let port = match (r.port.and_then(|p| u16::try_from(p).ok()), &scheme) {
                (Some(port), _) => RedirectPort::Fixed(port),
                (None, Some(_)) => RedirectPort::FromProtocolDefault,
                (None, None) => RedirectPort::Fixed(parent.port()),
            };
            p.redirect = Some(Redirect {
                scheme,
                host: r.hostname.clone(),
                port: Some(port),
                path: r.path.as_ref().and_then(path_rewrite),
                status: r
                    .status_code
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(302),
            });
        }
        HttpRouteFilterType::UrlRewrite => {
            let u = f.url_rewrite.as_ref().ok_or(t.name())?;
            let rw = p.rewrite.get_or_insert_with(Rewrite::default);
            if let Some(h) = &u.hostname {
                rw.authority = Some(h.clone());
            }
            if let Some(path) = u.path.as_ref().and_then(path_rewrite) {
                rw.path = Some(path);
            }
        }
        HttpRouteFilterType::RequestMirror => {
            let m = f.request_mirror.as_ref().ok_or(t.name())?;
            let b = &m.backend_ref;
            let cluster = backend_cluster(
                ctx,
                route,
                parent,
                b.group.as_deref(),
                b.kind.as_deref(),
                &b.name,
                b.namespace.as_deref(),
                b.port,
            );
            let percent = match (&m.percent, &m.fraction) {
                (Some(p), _) => *p as f64,
                (None, Some(fr)) => {
                    let den = fr.denominator.unwrap_or(100).max(1) as f64;
                    fr.numerator as f64 * 100.0 / den
                }
                (None, None) => 100.0,
            };
            // A mirror to nowhere would only add errors nobody sees.
            if !super::is_invalid_cluster(&cluster) && percent > 0.0 {
                p.mirrors.push(Mirror {
                    cluster,
                    percent: percent.min(100.0),
                });
            }
        }
        HttpRouteFilterType::Cors => {
            let c = f.cors.as_ref().ok_or(t.name())?;
            p.cors = Some(CorsPolicy {
                allow_origins: c.allow_origins.iter().map(|o| origin_match(o)).collect(),
                allow_methods: c.allow_methods.clone(),
                allow_headers: c.allow_headers.clone(),
                expose_headers: c.expose_headers.clone(),
                max_age: Some(
                    c.max_age
                        .and_then(|s| u64::try_from(s).ok())
                        .map(Duration::from_secs)
                        .unwrap_or(CORS_MAX_AGE),
                ),
                allow_credentials: c.allow_credentials == Some(true),
                ignore_unmatched_preflights: false,
            });
        }
        HttpRouteFilterType::ExtensionRef | HttpRouteFilterType::ExternalAuth => {
            return Err(t.name());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_origins() {
        assert_eq!(origin_match("*"), StringMatch::Present);
        assert_eq!(
            origin_match("https://*.foo.com"),
            StringMatch::Regex("https://[^/]*\\.foo\\.com".into())
        );
        assert_eq!(
            origin_match("https://a.com"),
            StringMatch::Exact("https://a.com".into())
        );
    }

    #[test]
    fn prefix_slash_is_a_catch_all() {
        let m: HttpRouteMatch = HttpRouteMatch::default();
        assert_eq!(route_match(&m), RouteMatch::default());
    }
}
