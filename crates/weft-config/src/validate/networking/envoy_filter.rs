//! EnvoyFilter validation.

use super::{check_selector_labels, spec, spec_present};
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;
use crate::validate::rules::check_regex;

const HCM: &str = "envoy.filters.network.http_connection_manager";

/// The local rate limit HTTP filter, the one Envoy extension weft runs itself.
const LOCAL_RATE_LIMIT: &str = "envoy.filters.http.local_ratelimit";

pub fn envoy_filter(ef: &EnvoyFilter, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    let spec = spec();
    for (i, cp) in ef.config_patches.iter().enumerate() {
        if !is_local_rate_limit(cp) {
            unsupported_patch(r, &spec.key("configPatches").index(i), cp);
        }
    }
    if let Some(ws) = &ef.workload_selector {
        check_selector_labels(r, &spec.key("workloadSelector").key("labels"), &ws.labels);
        if !ef.target_refs.is_empty() {
            r.error(
                spec.key("targetRefs"),
                "only one of workloadSelector and targetRefs can be set",
            )
            .hint("select proxies either by pod labels or by attaching to a Gateway/Service");
        }
    }
    for (i, t) in ef.target_refs.iter().enumerate() {
        let p = spec.key("targetRefs").index(i);
        if t.kind.is_empty() {
            r.error(p.key("kind"), "targetRefs kind is required")
                .hint("e.g. `kind: Gateway` with `group: gateway.networking.k8s.io`");
        }
        if t.name.is_empty() {
            r.error(p.key("name"), "targetRefs name is required");
        }
        if t.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
            r.error(
                p.key("namespace"),
                "cross namespace referencing is not supported",
            )
            .hint("remove `namespace`: targets are in the EnvoyFilter's namespace");
        }
    }
    for (i, cp) in ef.config_patches.iter().enumerate() {
        patch(r, &spec.key("configPatches").index(i), cp);
    }
}

fn patch(r: &mut Report, p: &FieldPath, cp: &EnvoyConfigObjectPatch) {
    let apply_to = match cp.apply_to {
        None | Some(ApplyTo::Invalid) => {
            r.error(p.key("applyTo"), "Envoy filter: missing applyTo")
                .hint("say what to patch, e.g. `applyTo: HTTP_FILTER`, `CLUSTER` or `LISTENER`");
            None
        }
        Some(a) => Some(a),
    };
    match &cp.patch {
        None => {
            r.error(p.key("patch"), "Envoy filter: missing patch")
                .hint("add `patch: {operation: …, value: …}`");
        }
        Some(pt) => {
            let pp = p.key("patch");
            match pt.operation {
                None | Some(PatchOperation::Invalid) => {
                    r.error(pp.key("operation"), "Envoy filter: missing patch operation")
                        .hint("use MERGE, ADD, REMOVE, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST, REPLACE or MERGE_AND_REPLACE_LIST");
                }
                Some(PatchOperation::Remove) => {
                    if pt.value.is_some() {
                        r.warning(pp.key("value"), "the value of a REMOVE patch is ignored")
                            .hint("remove `value`, or use MERGE/REPLACE if you meant to change the object");
                    }
                }
                Some(op) => {
                    if pt.value.as_ref().is_none_or(|v| v.is_null()) {
                        r.error(
                            pp.key("value"),
                            format!("Envoy filter: missing patch value for {op:?} operation"),
                        )
                        .hint("give the Envoy configuration to apply in `value:`");
                    }
                }
            }
            if let Some(fc) = pt.filter_class
                && fc != FilterClass::Unspecified
                && apply_to.is_some_and(|a| a != ApplyTo::HttpFilter)
            {
                r.warning(
                    pp.key("filterClass"),
                    "filterClass only applies to HTTP_FILTER patches",
                )
                .hint("remove `filterClass`");
            }
        }
    }
    let Some(m) = &cp.r#match else { return };
    let mp = p.key("match");
    let context = m.context.unwrap_or(PatchContext::Any);
    if m.waypoint.is_some() && context != PatchContext::Waypoint {
        r.error(
            mp.clone(),
            "only support waypointMatch when context is WAYPOINT",
        )
        .hint("set `context: WAYPOINT`, or match with `listener`/`routeConfiguration`/`cluster`");
    }
    if context == PatchContext::Waypoint
        && (m.listener.is_some() || m.route_configuration.is_some() || m.cluster.is_some())
    {
        r.error(
            mp.clone(),
            "only support waypointMatch when context is WAYPOINT: use `waypoint` instead of listener/routeConfiguration/cluster",
        )
        .hint("with `context: WAYPOINT`, match with `waypoint: {filter: …, route: …, portNumber: …}`");
    }
    let kinds = [
        m.listener.is_some(),
        m.route_configuration.is_some(),
        m.cluster.is_some(),
    ];
    if kinds.iter().filter(|b| **b).count() > 1 {
        r.error(
            mp.clone(),
            "only one of listener, routeConfiguration and cluster can be matched",
        )
        .hint("keep the match for the object class being patched");
    }
    if let Some(a) = apply_to {
        let listener_class = matches!(
            a,
            ApplyTo::Listener
                | ApplyTo::FilterChain
                | ApplyTo::NetworkFilter
                | ApplyTo::HttpFilter
                | ApplyTo::ListenerFilter
        );
        let route_class = matches!(
            a,
            ApplyTo::RouteConfiguration | ApplyTo::VirtualHost | ApplyTo::HttpRoute
        );
        if listener_class && (m.route_configuration.is_some() || m.cluster.is_some()) {
            r.error(
                mp.clone(),
                format!("Envoy filter: applyTo {a:?} is a listener object and cannot have a non-listener match"),
            )
            .hint("match with `listener:`");
        }
        if route_class && (m.listener.is_some() || m.cluster.is_some()) {
            r.error(
                mp.clone(),
                format!("Envoy filter: applyTo {a:?} is a route object and cannot have a non-routeConfiguration match"),
            )
            .hint("match with `routeConfiguration:`");
        }
        if a == ApplyTo::Cluster && (m.listener.is_some() || m.route_configuration.is_some()) {
            r.error(
                mp.clone(),
                "Envoy filter: applyTo CLUSTER cannot have a non-cluster match",
            )
            .hint("match with `cluster:`");
        }
        if let Some(l) = &m.listener
            && let Some(f) = l.filter_chain.as_ref().and_then(|fc| fc.filter.as_ref())
            && f.sub_filter.is_some()
        {
            let fp = mp.key("listener").key("filterChain").key("filter");
            if a != ApplyTo::HttpFilter {
                r.error(
                    fp.key("subFilter"),
                    "Envoy filter: subFilter match can only be used with applyTo HTTP_FILTER",
                );
            }
            if f.name != HCM {
                r.error(
                    fp.key("name"),
                    format!("Envoy filter: subFilter match requires the filter name {HCM}"),
                )
                .hint(format!("set `name: {HCM}`"));
            }
        }
    }
    if let Some(px) = &m.proxy
        && !px.proxy_version.is_empty()
        && let Err(e) = check_regex(&px.proxy_version)
    {
        r.error(
            mp.key("proxy").key("proxyVersion"),
            format!("Envoy filter: invalid regex for proxy version: {e}"),
        )
        .hint("e.g. `^1\\.2[0-9].*`");
    }
    let port_fields = [
        (m.listener.as_ref().map(|l| l.port_number), "listener"),
        (
            m.route_configuration.as_ref().map(|l| l.port_number),
            "routeConfiguration",
        ),
        (m.cluster.as_ref().map(|l| l.port_number), "cluster"),
        (m.waypoint.as_ref().map(|l| l.port_number), "waypoint"),
    ];
    for (n, key) in port_fields {
        if let Some(n) = n
            && n > 65535
        {
            r.error(
                mp.key(key).key("portNumber"),
                format!("port must be between 1-65535, got {n}"),
            )
            .hint("use a port number from 1 to 65535");
        }
    }
    if let Some(dp) = m
        .listener
        .as_ref()
        .and_then(|l| l.filter_chain.as_ref())
        .map(|f| f.destination_port)
        && dp > 65535
    {
        r.error(
            mp.key("listener").key("filterChain").key("destinationPort"),
            format!("port must be between 1-65535, got {dp}"),
        );
    }
}

/// Whether a patch is part of the local rate limiting shape Istio's docs teach: inserting
/// the `local_ratelimit` HTTP filter, or merging its per-route/per-vhost config (with the
/// route's `rate_limits` descriptors) into an HTTP_ROUTE or VIRTUAL_HOST.
fn is_local_rate_limit(cp: &EnvoyConfigObjectPatch) -> bool {
    let Some(patch) = &cp.patch else { return false };
    let value = patch.value.as_ref();
    match (cp.apply_to, patch.operation) {
        (
            Some(ApplyTo::HttpFilter),
            Some(
                PatchOperation::InsertBefore
                | PatchOperation::InsertAfter
                | PatchOperation::InsertFirst
                | PatchOperation::Add,
            ),
        ) => value.and_then(|v| v.get("name")).and_then(|n| n.as_str()) == Some(LOCAL_RATE_LIMIT),
        (Some(ApplyTo::HttpRoute | ApplyTo::VirtualHost), Some(PatchOperation::Merge)) => value
            .and_then(|v| v.get("typed_per_filter_config"))
            .and_then(|t| t.get(LOCAL_RATE_LIMIT))
            .is_some(),
        _ => false,
    }
}

fn unsupported_patch(r: &mut Report, path: &FieldPath, cp: &EnvoyConfigObjectPatch) {
    let what = match (cp.apply_to, cp.patch.as_ref().and_then(|p| p.operation)) {
        (Some(a), Some(o)) => format!("{a:?} {o:?} patch"),
        (Some(a), None) => format!("{a:?} patch"),
        _ => "patch".to_string(),
    };
    r.push(
        crate::diag::codes::UNSUPPORTED_ENVOY_FILTER,
        crate::Severity::Warning,
        path.clone(),
        format!("unsupported EnvoyFilter {what}: weft is not Envoy and ignores it"),
    )
    .hint(format!(
        "weft runs only local rate limiting EnvoyFilters ({LOCAL_RATE_LIMIT}); express the rest with VirtualService, DestinationRule or Telemetry"
    ));
}

#[cfg(test)]
mod tests {
    use crate::validate::networking::test_util::*;

    fn ef(body: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: f, namespace: ns}}\nspec:\n{body}"
        )
    }

    #[test]
    fn other_patches_are_reported_as_unsupported() {
        let d = crate::testing::validate_one(&ef(
            "  configPatches:\n  - applyTo: CLUSTER\n    patch:\n      operation: MERGE\n      value: {connect_timeout: 1s}\n",
        ));
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, "WEFT0005");
        assert_eq!(d[0].severity, crate::Severity::Warning);
        assert_eq!(
            d[0].field.as_ref().unwrap().to_string(),
            "spec.configPatches[0]"
        );
        assert!(
            d[0].message.contains("Cluster Merge patch"),
            "{}",
            d[0].message
        );
    }

    #[test]
    fn local_rate_limit_shape_loads() {
        let yaml = ef(
            "  workloadSelector: {labels: {app: productpage}}\n  configPatches:\n  - applyTo: HTTP_FILTER\n    match:\n      context: SIDECAR_INBOUND\n      listener:\n        filterChain:\n          filter:\n            name: envoy.filters.network.http_connection_manager\n    patch:\n      operation: INSERT_BEFORE\n      value:\n        name: envoy.filters.http.local_ratelimit\n        typed_config:\n          \"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n          value: {stat_prefix: http_local_rate_limiter, token_bucket: {max_tokens: 4, tokens_per_fill: 4, fill_interval: 60s}}\n",
        );
        assert_clean(&yaml);
        let unsupported: Vec<_> = crate::testing::validate_one(&yaml)
            .into_iter()
            .filter(|d| d.code == "WEFT0005")
            .collect();
        assert!(unsupported.is_empty(), "{unsupported:?}");
    }

    #[test]
    fn patch_rules() {
        assert_error(
            &ef("  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: MERGE}\n"),
            "spec.configPatches[0].patch.value",
            "missing patch value",
        );
        assert_error(
            &ef("  configPatches:\n  - patch: {operation: REMOVE}\n"),
            "spec.configPatches[0].applyTo",
            "missing applyTo",
        );
        assert_error(
            &ef("  configPatches:\n  - applyTo: CLUSTER\n"),
            "spec.configPatches[0].patch",
            "missing patch",
        );
        assert_error(
            &ef(
                "  configPatches:\n  - applyTo: CLUSTER\n    match: {listener: {portNumber: 80}}\n    patch: {operation: REMOVE}\n",
            ),
            "spec.configPatches[0].match",
            "non-cluster match",
        );
        assert_error(
            &ef(
                "  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {proxy: {proxyVersion: \"(\"}}\n    patch: {operation: REMOVE}\n",
            ),
            "spec.configPatches[0].match.proxy.proxyVersion",
            "invalid regex",
        );
        assert!(
            !warnings(&ef(
                "  configPatches:\n  - applyTo: CLUSTER\n    patch: {operation: REMOVE, value: {a: 1}}\n"
            ))
            .is_empty()
        );
    }
}
