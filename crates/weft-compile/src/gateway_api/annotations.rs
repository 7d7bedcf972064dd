//! Linkerd's retry and timeout annotations on GAMMA routes and their parent Services
//! (Linkerd 2.16+): `retry.linkerd.io/{http,grpc,limit,timeout}` and
//! `timeout.linkerd.io/request`. They apply when the rule sets no `retry`/`timeouts` of its
//! own.

use std::time::Duration;

use weft_api::{RetryOn, RetryPolicy};

use super::{GwRoute, Parent};
use crate::context::Ctx;
use crate::retry::DEFAULT_BACKOFF;

/// Linkerd's `retry.linkerd.io/*` and `timeout.linkerd.io/request` annotations, from the
/// route or else from its parent Service (route annotations replace the Service's of the
/// same family). None when neither carries any.
pub fn linkerd_annotations(
    ctx: &Ctx,
    route: &GwRoute,
    parent: Parent,
) -> Option<(Option<Duration>, Option<RetryPolicy>)> {
    let service = match parent {
        Parent::Service { fqdn, .. } => ctx.objects.iter().find(|o| {
            matches!(o.body, weft_config::Body::Service(_))
                && format!(
                    "{}.{}.{}",
                    o.name(),
                    o.namespace(),
                    crate::registry::CLUSTER_DOMAIN
                ) == fqdn
        }),
        Parent::Gateway { .. } => None,
    };
    let family = |prefix: &str| {
        let of = |o: &weft_config::Object| {
            o.meta
                .annotations
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        let own = of(route.obj);
        if own.is_empty() {
            service.map(of).unwrap_or_default()
        } else {
            own
        }
    };
    let retries = family("retry.linkerd.io/");
    let timeouts = family("timeout.linkerd.io/");
    if retries.is_empty() && timeouts.is_empty() {
        return None;
    }
    let get = |list: &[(String, String)], k: &str| {
        list.iter()
            .find(|(key, _)| key.ends_with(k))
            .map(|(_, v)| v.clone())
    };
    let dur = |s: String| {
        weft_config::kinds::common::Duration::parse(&s)
            .ok()
            .map(|d| d.as_std())
    };
    let timeout = get(&timeouts, "/request").and_then(dur);
    let retry = (!retries.is_empty()).then(|| {
        let mut on = RetryOn::default();
        for item in get(&retries, "/http").unwrap_or_default().split(',') {
            match item.trim() {
                "5xx" => on.five_xx = true,
                "gateway-error" => on.gateway_error = true,
                range => {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    if let (Ok(lo), Ok(hi)) = (lo.trim().parse::<u16>(), hi.trim().parse::<u16>()) {
                        on.status_codes.extend(lo..=hi.min(599));
                    }
                }
            }
        }
        on.grpc = get(&retries, "/grpc")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        // Linkerd retries connection failures whatever the status list says.
        on.connect_failure = true;
        on.refused_stream = true;
        RetryPolicy {
            attempts: get(&retries, "/limit")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(1),
            per_try_timeout: get(&retries, "/timeout").and_then(dur),
            retry_on: on,
            backoff_base: DEFAULT_BACKOFF,
            other_host: true,
            budget: None,
        }
    });
    Some((timeout, retry))
}
