//! EnvoyFilter local rate limiting, the one EnvoyFilter shape weft runs:
//! an HTTP_FILTER insert of `envoy.filters.http.local_ratelimit` (its `token_bucket`, if any,
//! limits the whole chain) and HTTP_ROUTE / VIRTUAL_HOST MERGE patches whose
//! `typed_per_filter_config` carries a bucket for that route or virtual host.
//!
//! Per-route buckets take effect only where the filter is inserted for the same context
//! (as in Envoy, where per-route config without the filter does nothing). Descriptor
//! buckets (`descriptors`) are not modelled: only the top-level bucket applies.

use serde_json::Value;
use weft_api::{
    ChainProtocol, Direction, HttpChain, Origin, ProxyConfig, RouteAction, TokenBucket,
};
use weft_config::kinds::common::Duration;
use weft_config::kinds::istio::{
    ApplyTo, EnvoyConfigObjectPatch, EnvoyFilter, PatchContext, PatchOperation,
    RouteAction as RouteActionMatch,
};
use weft_config::{Body, Object};

use crate::context::Ctx;
use crate::order::age_key;

const LOCAL_RATE_LIMIT: &str = "envoy.filters.http.local_ratelimit";

/// Which side of the proxy a chain or route table is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Inbound,
    Outbound,
    Gateway,
}

fn context_admits(ctx: Option<PatchContext>, side: Side) -> bool {
    match ctx.unwrap_or(PatchContext::Any) {
        PatchContext::Any => true,
        PatchContext::SidecarInbound => side == Side::Inbound,
        PatchContext::SidecarOutbound => side == Side::Outbound,
        PatchContext::Gateway => side == Side::Gateway,
        PatchContext::Waypoint => false,
    }
}

/// EnvoyFilters for this proxy: root-namespace ones first (they apply everywhere), then the
/// proxy's namespace; within each by priority, then age. Selectors match the proxy labels.
fn filters<'a>(ctx: &Ctx<'a>) -> Vec<(&'a Object, &'a EnvoyFilter)> {
    let root = ctx.mesh.root_namespace();
    let mut v: Vec<(&Object, &EnvoyFilter)> = ctx
        .objects
        .iter()
        .filter_map(|o| match &o.body {
            Body::EnvoyFilter(ef) => Some((o, ef)),
            _ => None,
        })
        .filter(|(o, ef)| {
            (o.namespace() == root || o.namespace() == ctx.namespace())
                && ef.target_refs.is_empty()
                && ef.workload_selector.as_ref().is_none_or(|s| {
                    weft_config::kinds::common::labels_match(&s.labels, ctx.labels())
                })
        })
        .collect();
    v.sort_by_key(|(o, ef)| (o.namespace() != root, ef.priority, age_key(o)));
    v
}

/// A token bucket from a LocalRateLimit config (`typed_config` or its TypedStruct `value`).
fn bucket(config: &Value, origin: &Origin) -> Option<TokenBucket> {
    let config = config
        .get("value")
        .filter(|v| v.get("token_bucket").is_some())
        .unwrap_or(config);
    let tb = config.get("token_bucket")?;
    let num = |k: &str| {
        tb.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let max_tokens = num("max_tokens")?;
    let fill_interval = tb
        .get("fill_interval")
        .and_then(Value::as_str)
        .and_then(|s| Duration::parse(s).ok())?;
    let response_headers = config
        .get("response_headers_to_add")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    let h = h.get("header")?;
                    Some((
                        h.get("key")?.as_str()?.to_ascii_lowercase(),
                        h.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Some(TokenBucket {
        max_tokens,
        tokens_per_fill: num("tokens_per_fill").unwrap_or(1),
        fill_interval: fill_interval.as_std(),
        response_headers,
        origin: Some(origin.clone()),
    })
}

fn side_of_direction(d: Direction) -> Side {
    match d {
        Direction::Inbound => Side::Inbound,
        Direction::Outbound => Side::Outbound,
        Direction::Gateway => Side::Gateway,
    }
}

fn side_of_table(name: &str) -> Side {
    if name.starts_with("inbound") {
        Side::Inbound
    } else if name.starts_with("gateway") {
        Side::Gateway
    } else {
        Side::Outbound
    }
}

/// The port in a route table name (`outbound|9080`, `inbound|8000`, `gateway|80`).
fn table_port(name: &str) -> Option<u32> {
    name.rsplit_once('|').and_then(|(_, p)| p.parse().ok())
}

fn http_chains(cfg: &mut ProxyConfig) -> impl Iterator<Item = (Side, u16, &mut HttpChain)> {
    cfg.listeners.iter_mut().flat_map(|l| {
        let side = side_of_direction(l.direction);
        let listener_port = l.address.port();
        l.chains.iter_mut().filter_map(move |c| {
            let port = c.r#match.destination_port.unwrap_or(listener_port);
            match &mut c.protocol {
                ChainProtocol::Http(h) => Some((side, port, h)),
                ChainProtocol::Detect { http, .. } => Some((side, port, http)),
                _ => None,
            }
        })
    })
}

pub fn apply(ctx: &Ctx, cfg: &mut ProxyConfig) {
    let mut enabled: Vec<Side> = Vec::new();
    let mut route_patches: Vec<(&EnvoyConfigObjectPatch, Origin)> = Vec::new();
    for (o, ef) in filters(ctx) {
        let origin = crate::routes::origin_of(o);
        for cp in &ef.config_patches {
            let Some(patch) = &cp.patch else { continue };
            let Some(value) = &patch.value else { continue };
            let m = cp.r#match.as_ref();
            let context = m.and_then(|m| m.context);
            match (cp.apply_to, patch.operation) {
                (
                    Some(ApplyTo::HttpFilter),
                    Some(
                        PatchOperation::InsertBefore
                        | PatchOperation::InsertAfter
                        | PatchOperation::InsertFirst
                        | PatchOperation::Add,
                    ),
                ) if value.get("name").and_then(Value::as_str) == Some(LOCAL_RATE_LIMIT) => {
                    let listener_port = m
                        .and_then(|m| m.listener.as_ref())
                        .map(|l| l.port_number)
                        .filter(|p| *p != 0);
                    let b = value.get("typed_config").and_then(|c| bucket(c, &origin));
                    for (side, port, chain) in http_chains(cfg) {
                        if !context_admits(context, side)
                            || listener_port.is_some_and(|p| p != u32::from(port))
                        {
                            continue;
                        }
                        if !enabled.contains(&side) {
                            enabled.push(side);
                        }
                        if chain.rate_limit.is_none() {
                            chain.rate_limit = b.clone();
                        }
                    }
                }
                (Some(ApplyTo::HttpRoute | ApplyTo::VirtualHost), Some(PatchOperation::Merge)) => {
                    route_patches.push((cp, origin.clone()));
                }
                _ => {}
            }
        }
    }
    for (cp, origin) in route_patches {
        let Some(config) = cp
            .patch
            .as_ref()
            .and_then(|p| p.value.as_ref())
            .and_then(|v| v.get("typed_per_filter_config"))
            .and_then(|t| t.get(LOCAL_RATE_LIMIT))
        else {
            continue;
        };
        let Some(b) = bucket(config, &origin) else {
            continue;
        };
        let m = cp.r#match.as_ref();
        let context = m.and_then(|m| m.context);
        let rc = m.and_then(|m| m.route_configuration.as_ref());
        let vhost_name = rc
            .and_then(|r| r.vhost.as_ref())
            .map(|v| v.name.as_str())
            .filter(|n| !n.is_empty());
        let route_name = rc
            .and_then(|r| r.vhost.as_ref())
            .and_then(|v| v.route.as_ref())
            .map(|r| r.name.as_str())
            .filter(|n| !n.is_empty());
        let action = rc
            .and_then(|r| r.vhost.as_ref())
            .and_then(|v| v.route.as_ref())
            .and_then(|r| r.action)
            .unwrap_or(RouteActionMatch::Any);
        let port = rc.map(|r| r.port_number).filter(|p| *p != 0);
        let table_name = rc.map(|r| r.name.as_str()).filter(|n| !n.is_empty());
        for table in &mut cfg.route_tables {
            let side = side_of_table(&table.name);
            if !context_admits(context, side)
                || !enabled.contains(&side)
                || port.is_some_and(|p| table_port(&table.name) != Some(p))
                || table_name.is_some_and(|n| n != table.name)
            {
                continue;
            }
            for vh in table
                .virtual_hosts
                .iter_mut()
                .filter(|vh| vhost_name.is_none_or(|n| n == vh.name))
            {
                if cp.apply_to == Some(ApplyTo::VirtualHost) {
                    vh.rate_limit.get_or_insert_with(|| b.clone());
                    continue;
                }
                let admits = |r: &weft_api::Route| {
                    matches!(
                        (action, &r.action),
                        (RouteActionMatch::Any, _)
                            | (RouteActionMatch::Route, RouteAction::Forward(_))
                            | (RouteActionMatch::Redirect, RouteAction::Redirect(_))
                            | (
                                RouteActionMatch::DirectResponse,
                                RouteAction::DirectResponse(_)
                            )
                    )
                };
                for r in vh
                    .routes
                    .iter_mut()
                    .filter(|r| route_name.is_none_or(|n| n == r.name) && admits(r))
                {
                    r.rate_limit.get_or_insert_with(|| b.clone());
                }
            }
        }
    }
}
