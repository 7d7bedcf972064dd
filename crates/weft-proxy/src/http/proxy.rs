//! One request through the proxy: control headers, rate limits, routing, CORS, faults,
//! then redirect, direct response or forward.

use std::borrow::Cow;
use std::sync::Arc;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use weft_api::{AbortStatus, Fault, HttpChain, NotFound, RouteAction, TokenBucket};

use super::body::{self, ProxyBody};
use super::cors::{self, Cors};
use super::forward::{self, Plan};
use super::observe::Observation;
use super::ratelimit;
use super::rewrite;
use super::route::{self, NoMatch, RouteRequest};
use super::{error_response, headers};
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::runtime::Runtime;

/// What is known about the downstream side of one request.
pub struct Downstream<'a> {
    pub conn: &'a ConnInfo,
    pub scheme: &'a str,
    pub authority: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

/// Per-connection context shared by the requests of a connection.
pub struct ConnCtx {
    pub chain: HttpChain,
    pub conn: ConnInfo,
    pub rt: crate::RuntimeHandle,
    pub drain: tokio::sync::watch::Receiver<bool>,
}

pub async fn handle(mut req: Request<Incoming>, ctx: Arc<ConnCtx>) -> Response<ProxyBody> {
    let rt = ctx.rt.load_full();
    let http1 = req.version() < Version::HTTP_2;
    let mut extra = Vec::new();
    if !ctx.chain.trust_control_headers {
        headers::strip_control_headers(req.headers_mut());
    }
    let mut obs = Observation::begin(rt.telemetry(), &mut req, &ctx.conn);
    let mut resp = match route_request(req, &ctx, &rt, &mut extra, &mut obs).await {
        Ok(r) => r,
        Err(e) => {
            obs.failed(&e);
            error_response(&e)
        }
    };
    for (n, v) in extra {
        resp.headers_mut().append(n, v);
    }
    if http1 && *ctx.drain.borrow() {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    obs.finish(resp)
}

/// `key` and `scope` are built only when some limit is configured: most proxies have none,
/// and formatting three keys per request is a measurable share of the hop's cost.
fn take_token(
    rt: &Runtime,
    key: impl FnOnce() -> String,
    scope: impl FnOnce() -> String,
    extra: &mut Vec<(HeaderName, HeaderValue)>,
) -> Result<(), ProxyError> {
    if rt.limiters().is_empty() {
        return Ok(());
    }
    let Some(bucket) = rt.limiters().get(&key()) else {
        return Ok(());
    };
    add_limit_headers(&bucket.spec, extra);
    if bucket.try_take() {
        Ok(())
    } else {
        Err(ProxyError::RateLimited {
            scope: scope(),
            origin: bucket.spec.origin.as_ref().map(|o| o.to_string()),
        })
    }
}

fn add_limit_headers(spec: &TokenBucket, extra: &mut Vec<(HeaderName, HeaderValue)>) {
    extra.extend(
        spec.response_headers
            .iter()
            .filter_map(|(n, v)| headers::parse(n, v)),
    );
}

async fn route_request(
    req: Request<Incoming>,
    ctx: &ConnCtx,
    rt: &Runtime,
    extra: &mut Vec<(HeaderName, HeaderValue)>,
    obs: &mut Observation,
) -> Result<Response<ProxyBody>, ProxyError> {
    if req.method() == http::Method::CONNECT {
        return Err(ProxyError::BadRequest {
            detail: "CONNECT tunnels are not supported on this listener".into(),
        });
    }
    // Cheap copies (shared buffers, no allocation) that outlive `req`, which moves on.
    let uri = req.uri().clone();
    let host = match uri.authority() {
        Some(_) => None,
        None => req.headers().get(header::HOST).cloned(),
    };
    let authority: &str = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| host.as_ref().and_then(|h| h.to_str().ok()))
        .ok_or_else(|| ProxyError::BadRequest {
            detail: "request has neither a Host header nor an :authority".into(),
        })?;
    let scheme = uri.scheme_str().unwrap_or("http");
    let path = uri.path();
    let query = uri.query();

    let table_name = &ctx.chain.route_table;
    take_token(
        rt,
        || ratelimit::chain_key(&ctx.conn.listener, table_name),
        || format!("listener {}", ctx.conn.listener),
        extra,
    )?;
    let not_found = |blocked| ProxyError::NoRoute {
        authority: authority.to_string(),
        path: path.to_string(),
        blocked,
    };
    let table = rt.route_table(table_name).ok_or_else(|| not_found(false))?;
    let blocked = table.table().not_found == NotFound::BlockedByPolicy502;
    let routed = route::select(
        table,
        &RouteRequest {
            authority,
            path,
            query,
            method: req.method().as_str(),
            scheme,
            headers: req.headers(),
        },
    );
    let sel = match routed {
        Ok(s) => s,
        Err(NoMatch::NoVirtualHost) => return Err(not_found(blocked)),
        Err(NoMatch::NoRoute { vhost }) => {
            tracing::debug!(%vhost, %path, "no route in virtual host");
            return Err(not_found(blocked));
        }
    };
    let route = sel.route;
    obs.route(&route.name);
    take_token(
        rt,
        || ratelimit::vhost_key(table_name, &sel.vhost.name),
        || format!("virtual host {}", sel.vhost.name),
        extra,
    )?;
    take_token(
        rt,
        || ratelimit::route_key(table_name, &sel.vhost.name, sel.route_index),
        || format!("route {}", route.name),
        extra,
    )?;

    if let Some(policy) = &route.cors {
        match cors::apply(policy, req.method(), req.headers()) {
            Cors::Answer(resp) => {
                obs.answered_locally();
                return Ok(resp);
            }
            Cors::Forward(h) => {
                extra.extend(h.into_iter().map(|(n, v)| (HeaderName::from_static(n), v)))
            }
        }
    }
    if let Some(fault) = &route.fault {
        inject_fault(fault, route, obs).await?;
    }

    let ds = Downstream {
        conn: &ctx.conn,
        scheme,
        authority,
        path,
        query,
    };
    let matched_path = sel
        .match_index
        .and_then(|i| route.matches.get(i))
        .and_then(|m| m.path.as_ref());
    let rewrite_regex = table.rewrite_regex(sel.vhost_index, sel.route_index);
    match &route.action {
        RouteAction::DirectResponse(d) => {
            obs.answered_locally();
            let mut resp = Response::new(match &d.body {
                Some(b) => body::full(b.clone()),
                None => body::empty(),
            });
            *resp.status_mut() = StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK);
            if d.body.is_some() {
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            }
            headers::apply_ops(resp.headers_mut(), &route.response_headers);
            Ok(resp)
        }
        RouteAction::Redirect(r) => {
            obs.answered_locally();
            let new_path = r
                .path
                .as_ref()
                .map(|p| rewrite::rewrite_path(path, p, matched_path, rewrite_regex));
            let location = rewrite::redirect_location(r, scheme, authority, path, query, new_path);
            let mut resp = Response::new(body::empty());
            *resp.status_mut() =
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
            let loc = HeaderValue::from_str(&location).map_err(|_| ProxyError::BadRequest {
                detail: format!("redirect location {location:?} is not a valid header"),
            })?;
            resp.headers_mut().insert(header::LOCATION, loc);
            headers::apply_ops(resp.headers_mut(), &route.response_headers);
            Ok(resp)
        }
        RouteAction::Forward(fwd) => {
            let destination = forward::choose_destination(&fwd.clusters).ok_or_else(|| {
                ProxyError::ClusterNotFound {
                    cluster: "(no destination with a non-zero weight)".into(),
                    route: route.name.clone(),
                }
            })?;
            let rewrite = fwd.rewrite.as_ref();
            let path_and_query = match (rewrite.and_then(|r| r.path.as_ref()), uri.path_and_query())
            {
                // Not rewritten: the request's own (a shared buffer, not a copy).
                (None, Some(pq)) if pq.as_str().starts_with('/') => pq.clone(),
                (None, _) => with_query(path.to_string(), query)?,
                (Some(p), _) => with_query(
                    rewrite::rewrite_path(path, p, matched_path, rewrite_regex),
                    query,
                )?,
            };
            let plan = Plan {
                route_name: &route.name,
                forward: fwd,
                destination,
                path_and_query,
                authority: match rewrite.and_then(|r| r.authority.as_ref()) {
                    Some(a) => Cow::Borrowed(a.as_str()),
                    None => Cow::Borrowed(authority),
                },
            };
            forward::forward(rt, route, plan, req, &ds, obs).await
        }
    }
}

/// `path` followed by the request's query (unless the rewritten path brought its own).
fn with_query(path: String, query: Option<&str>) -> Result<PathAndQuery, ProxyError> {
    let joined = match query {
        Some(q) if !path.contains('?') => format!("{path}?{q}"),
        _ => path,
    };
    PathAndQuery::try_from(joined).map_err(|e| ProxyError::BadRequest {
        detail: format!("cannot build upstream URI: {e}"),
    })
}

/// Delay, then abort, each with its own percentage.
async fn inject_fault(
    fault: &Fault,
    route: &weft_api::Route,
    obs: &mut Observation,
) -> Result<(), ProxyError> {
    let roll = |percent: f64| fastrand::f64() * 100.0 < percent;
    if let Some(d) = &fault.delay
        && roll(d.percent)
    {
        obs.delayed();
        tokio::time::sleep(d.delay).await;
    }
    if let Some(a) = &fault.abort
        && roll(a.percent)
    {
        let (status, grpc_status) = match a.status {
            AbortStatus::Http(s) => (s, None),
            AbortStatus::Grpc(code) => (200, Some(code)),
        };
        return Err(ProxyError::FaultAbort {
            route: route.name.clone(),
            origin: route.origin.as_ref().map(|o| o.to_string()),
            status,
            grpc_status,
        });
    }
    Ok(())
}
