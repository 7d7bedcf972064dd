//! VirtualService validation.

use std::collections::BTreeMap;

use super::http_parts::{
    cors, direct_response, fault, headers, http_match, redirect, retries, rewrite,
};
use super::{
    check_destination, check_duration, check_export_to, check_host, check_labels, check_percent,
    check_port, hosts_overlap, is_ip, is_ip_or_cidr, spec, spec_present,
};
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;
use crate::validate::rules::{is_dns1123_label, is_dns1123_subdomain};

pub fn virtual_service(vs: &VirtualService, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    let spec = spec();
    let delegate = vs.is_delegate();
    if delegate {
        if !vs.gateways.is_empty() {
            r.error(spec.key("gateways"), "a delegate VirtualService (one without hosts) cannot list gateways")
                .hint("gateways are taken from the root VirtualService that delegates to this one; remove `gateways`, or add `hosts` if this is not a delegate");
        }
        if !vs.tcp.is_empty() {
            r.error(
                spec.key("tcp"),
                "a delegate VirtualService (one without hosts) cannot have tcp routes",
            )
            .hint("only http routes can be delegated; add `hosts` if this is not a delegate");
        }
        if !vs.tls.is_empty() {
            r.error(
                spec.key("tls"),
                "a delegate VirtualService (one without hosts) cannot have tls routes",
            )
            .hint("only http routes can be delegated; add `hosts` if this is not a delegate");
        }
    }

    let mut applies_to_gateway = false;
    for (i, g) in vs.gateways.iter().enumerate() {
        check_gateway_name(r, spec.key("gateways").index(i), g);
        if g != MESH_GATEWAY {
            applies_to_gateway = true;
        }
    }
    let applies_to_mesh = vs.applies_to_mesh();

    let mut all_hosts_valid = true;
    for (i, h) in vs.hosts.iter().enumerate() {
        let p = spec.key("hosts").index(i);
        if is_ip(h) {
            continue;
        }
        if !check_host(r, p.clone(), h) {
            all_hosts_valid = false;
        } else if h == "*" && applies_to_mesh {
            all_hosts_valid = false;
            r.error(p, "wildcard host `*` is not allowed for virtual services bound to the mesh")
                .hint("list the service hosts, or bind the VirtualService only to gateways with `gateways: [<gateway>]`");
        }
    }
    if all_hosts_valid {
        for i in 0..vs.hosts.len() {
            for j in i + 1..vs.hosts.len() {
                if hosts_overlap(&vs.hosts[i], &vs.hosts[j]) {
                    r.error(
                        spec.key("hosts").index(j),
                        format!("duplicate hosts in virtual service: `{}` overlaps `{}`", vs.hosts[i], vs.hosts[j]),
                    )
                    .hint("each host may appear once; a wildcard host already covers the names under it");
                }
            }
        }
    }

    if vs.http.is_empty() && vs.tcp.is_empty() && vs.tls.is_empty() {
        r.error(
            spec.clone(),
            "http, tcp or tls must be provided in virtual service",
        )
        .hint("add at least one route, e.g. `http: [{route: [{destination: {host: reviews}}]}]`");
    }

    if !applies_to_gateway {
        for (i, h) in vs.http.iter().enumerate() {
            for (j, m) in h.r#match.iter().enumerate() {
                let mp = spec.key("http").index(i).key("match").index(j);
                for (field, map) in [
                    ("headers", &m.headers),
                    ("withoutHeaders", &m.without_headers),
                ] {
                    for k in map.keys() {
                        if k.starts_with("@request.auth.claims") {
                            r.error(
                                mp.key(field).key(k.as_str()),
                                format!("JWT claim based routing (`{k}`) is only supported for gateways"),
                            )
                            .hint("bind the VirtualService to an ingress gateway with `gateways:`, where the JWT is validated");
                        }
                    }
                }
            }
        }
    }

    for (i, h) in vs.http.iter().enumerate() {
        http_route(r, &spec.key("http").index(i), h, delegate);
    }
    for (i, t) in vs.tls.iter().enumerate() {
        tls_route(r, &spec.key("tls").index(i), t, vs, all_hosts_valid);
    }
    for (i, t) in vs.tcp.iter().enumerate() {
        tcp_route(r, &spec.key("tcp").index(i), t);
    }
    check_export_to(r, spec.key("exportTo"), &vs.export_to);
}

/// `mesh`, `<name>` or `<namespace>/<name>`.
pub(super) fn check_gateway_name(r: &mut Report, path: FieldPath, g: &str) {
    if g == MESH_GATEWAY {
        return;
    }
    match g.split_once('/') {
        Some((ns, name)) => {
            if !is_dns1123_label(ns) {
                r.error(
                    path.clone(),
                    format!("invalid namespace `{ns}` in gateway `{g}`"),
                )
                .hint("write `<namespace>/<gateway name>`, e.g. `istio-system/my-gateway`");
            }
            if !is_dns1123_subdomain(name) {
                r.error(path, format!("invalid gateway name `{name}` in `{g}`"))
                    .hint("gateway names are lowercase letters, digits, '-' and '.'");
            }
        }
        None => {
            if !is_dns1123_subdomain(g) {
                r.error(path, format!("invalid gateway name `{g}`")).hint(
                    "write `<gateway name>`, `<namespace>/<gateway name>` or `mesh` (all sidecars)",
                );
            }
        }
    }
}

fn http_route(r: &mut Report, p: &FieldPath, h: &HTTPRoute, in_delegate: bool) {
    let has_route = !h.route.is_empty();
    let actions: Vec<&str> = [
        (has_route, "route"),
        (h.redirect.is_some(), "redirect"),
        (h.direct_response.is_some(), "directResponse"),
        (h.delegate.is_some(), "delegate"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    match actions.len() {
        0 => {
            r.error(p.clone(), "HTTP route, redirect, direct response or delegate is required")
                .hint("add `route: [{destination: {host: <service>}}]`, `redirect:`, `directResponse:` or `delegate:`");
        }
        1 => {}
        _ => {
            r.error(p.key(actions[1]), format!("HTTP route cannot contain both `{}` and `{}`", actions[0], actions[1]))
                .hint("a rule does one thing: forward (`route`), `redirect`, answer directly (`directResponse`) or `delegate`; split it into two rules");
        }
    }
    for (field, other_set) in [
        ("redirect", h.redirect.is_some()),
        ("directResponse", h.direct_response.is_some()),
    ] {
        if !other_set {
            continue;
        }
        if h.fault.is_some() {
            r.error(
                p.key("fault"),
                format!("HTTP route cannot contain both `fault` and `{field}`"),
            )
            .hint(format!(
                "fault injection only applies to forwarded requests; remove `fault` or `{field}`"
            ));
        }
        if h.rewrite.is_some() {
            r.error(
                p.key("rewrite"),
                format!("HTTP route cannot contain both `rewrite` and `{field}`"),
            )
            .hint(format!(
                "a rewrite only applies to forwarded requests; remove `rewrite` or `{field}`"
            ));
        }
    }
    if h.mirror.is_some() && !h.mirrors.is_empty() {
        r.error(
            p.key("mirrors"),
            "HTTP route cannot contain both `mirror` and `mirrors`",
        )
        .hint("move the `mirror` destination into `mirrors: [{destination: …, percentage: …}]`");
    }

    if let Some(d) = &h.delegate {
        let dp = p.key("delegate");
        if in_delegate {
            r.error(
                dp.clone(),
                "a delegate VirtualService cannot delegate again: only one level of delegation is supported",
            )
            .hint("route directly here instead of delegating");
        }
        if d.name.is_empty() {
            r.error(dp.key("name"), "delegate name is required")
                .hint("name the delegate VirtualService");
        } else if !is_dns1123_subdomain(&d.name) {
            r.error(
                dp.key("name"),
                format!("invalid delegate name `{}`", d.name),
            );
        }
        if !d.namespace.is_empty() && !is_dns1123_label(&d.namespace) {
            r.error(
                dp.key("namespace"),
                format!("invalid delegate namespace `{}`", d.namespace),
            );
        }
    }

    for (j, m) in h.r#match.iter().enumerate() {
        http_match(r, &p.key("match").index(j), m);
    }

    let mut total: i64 = 0;
    for (j, rd) in h.route.iter().enumerate() {
        let rp = p.key("route").index(j);
        match &rd.destination {
            Some(d) => check_destination(r, &rp.key("destination"), d),
            None => {
                r.error(rp.key("destination"), "destination is required")
                    .hint("add `destination: {host: <service>}`");
            }
        }
        check_weight(r, rp.key("weight"), rd.weight);
        total += rd.weight.unwrap_or(0).max(0);
        if let Some(hd) = &rd.headers {
            headers(r, &rp.key("headers"), hd);
        }
    }
    if h.route.len() > 1 && total == 0 {
        r.error(p.key("route"), "total destination weight = 0")
            .hint("with several destinations, give each a `weight`; traffic is split in proportion to the weights");
    }

    if let Some(rd) = &h.redirect {
        redirect(r, &p.key("redirect"), rd);
    }
    if let Some(dr) = &h.direct_response {
        direct_response(r, &p.key("directResponse"), dr);
    }
    if let Some(rw) = &h.rewrite {
        rewrite(r, &p.key("rewrite"), rw);
    }
    if let Some(t) = &h.timeout {
        check_duration(r, p.key("timeout"), t);
    }
    if let Some(rt) = &h.retries {
        retries(r, &p.key("retries"), rt);
    }
    if let Some(f) = &h.fault {
        fault(r, &p.key("fault"), f);
    }
    if let Some(m) = &h.mirror {
        check_destination(r, &p.key("mirror"), m);
    }
    if let Some(mp) = h.mirror_percent {
        r.warning(p.key("mirrorPercent"), "mirrorPercent is deprecated")
            .hint(format!("use `mirrorPercentage: {{value: {mp}}}`"));
        if mp > 100 {
            r.error(
                p.key("mirrorPercent"),
                format!("mirror percentage {mp} is out of range"),
            )
            .hint("use a value from 0 to 100");
        }
    }
    if let Some(pc) = &h.mirror_percentage {
        check_percent(r, p.key("mirrorPercentage").key("value"), pc.value);
    }
    if (h.mirror_percent.is_some() || h.mirror_percentage.is_some()) && h.mirror.is_none() {
        r.warning(p.clone(), "mirrorPercentage has no effect without `mirror`")
            .hint("add `mirror: {host: <service>}`, or set the percentage inside `mirrors[]`");
    }
    for (j, m) in h.mirrors.iter().enumerate() {
        let mp = p.key("mirrors").index(j);
        match &m.destination {
            Some(d) => check_destination(r, &mp.key("destination"), d),
            None => {
                r.error(mp.key("destination"), "mirror destination is required")
                    .hint("add `destination: {host: <service>}`");
            }
        }
        if let Some(pc) = &m.percentage {
            check_percent(r, mp.key("percentage").key("value"), pc.value);
        }
    }
    if let Some(c) = &h.cors_policy {
        cors(r, &p.key("corsPolicy"), c);
    }
    if let Some(hd) = &h.headers {
        headers(r, &p.key("headers"), hd);
    }
    if h.websocket_upgrade.is_some() {
        r.warning(
            p.key("websocketUpgrade"),
            "websocketUpgrade is deprecated and ignored",
        )
        .hint("WebSocket upgrades are allowed automatically; remove the field");
    }
}

fn check_weight(r: &mut Report, path: FieldPath, w: Option<i64>) {
    let Some(w) = w else { return };
    if w < 0 {
        r.error(path, format!("weight {w} is negative"))
            .hint("weights are 0 or more; traffic is split in proportion to them");
    } else if w > i64::from(i32::MAX) {
        r.error(path, format!("weight {w} is too large"))
            .hint("weights are relative: use small numbers such as 80 and 20");
    } else if w > 100 {
        r.warning(path, format!("weight {w} is above 100"))
            .hint("weights are relative, but Istio's validation has required 0..100; use percentages such as 80 and 20");
    }
}

/// A StringMatch in a route match: at most one of exact/prefix/regex; regexes compile.
/// `require` rejects an empty match (uri, scheme, method, authority).
fn tls_route(r: &mut Report, p: &FieldPath, t: &TLSRoute, vs: &VirtualService, hosts_valid: bool) {
    if t.r#match.is_empty() {
        r.error(
            p.key("match"),
            "TLS route must have at least one match condition",
        )
        .hint("add `match: [{sniHosts: [<host>]}]`");
    }
    for (j, m) in t.r#match.iter().enumerate() {
        let mp = p.key("match").index(j);
        if m.sni_hosts.is_empty() {
            r.error(
                mp.key("sniHosts"),
                "TLS match must have at least one SNI host",
            )
            .hint("add `sniHosts: [<host>]`");
        }
        for (k, sni) in m.sni_hosts.iter().enumerate() {
            let sp = mp.key("sniHosts").index(k);
            if !check_host(r, sp.clone(), sni) {
                continue;
            }
            if hosts_valid && !vs.hosts.is_empty() && !vs.hosts.iter().any(|h| sni_within(sni, h)) {
                r.error(
                    sp,
                    format!(
                        "SNI host `{sni}` is not a compatible subset of any of the virtual service hosts: [{}]",
                        vs.hosts.join(", ")
                    ),
                )
                .hint("each SNI host must equal, or fall under a wildcard of, one of `spec.hosts`");
            }
        }
        l4_common(
            r,
            &mp,
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
            &m.source_namespace,
        );
    }
    route_destinations(r, p, &t.route, "TLS");
}

/// Whether `sni` names a subset of `host` (wildcards allowed on both).
fn sni_within(sni: &str, host: &str) -> bool {
    let (sni, host) = (sni.to_ascii_lowercase(), host.to_ascii_lowercase());
    if host == "*" || sni == host {
        return true;
    }
    match host.strip_prefix('*') {
        Some(suffix) => sni.ends_with(suffix) && sni.len() > suffix.len(),
        None => false,
    }
}

fn tcp_route(r: &mut Report, p: &FieldPath, t: &TCPRoute) {
    for (j, m) in t.r#match.iter().enumerate() {
        l4_common(
            r,
            &p.key("match").index(j),
            &m.destination_subnets,
            m.port,
            &m.source_labels,
            &m.gateways,
            &m.source_namespace,
        );
    }
    route_destinations(r, p, &t.route, "TCP");
}

fn l4_common(
    r: &mut Report,
    mp: &FieldPath,
    subnets: &[String],
    port: Option<u32>,
    labels: &BTreeMap<String, String>,
    gateways: &[String],
    source_ns: &str,
) {
    for (k, s) in subnets.iter().enumerate() {
        if !is_ip_or_cidr(s) {
            r.error(
                mp.key("destinationSubnets").index(k),
                format!("`{s}` is not an IP address or CIDR"),
            )
            .hint("e.g. `10.0.0.1` or `10.0.0.0/16`");
        }
    }
    if let Some(port) = port {
        check_port(r, mp.key("port"), port);
    }
    check_labels(r, &mp.key("sourceLabels"), labels);
    for (k, g) in gateways.iter().enumerate() {
        check_gateway_name(r, mp.key("gateways").index(k), g);
    }
    if !source_ns.is_empty() && !is_dns1123_label(source_ns) {
        r.error(
            mp.key("sourceNamespace"),
            format!("invalid namespace `{source_ns}`"),
        );
    }
}

fn route_destinations(r: &mut Report, p: &FieldPath, routes: &[RouteDestination], what: &str) {
    if routes.is_empty() {
        r.error(p.key("route"), format!("{what} route is required"))
            .hint("add `route: [{destination: {host: <service>}}]`");
    }
    let mut total = 0;
    for (j, rd) in routes.iter().enumerate() {
        let rp = p.key("route").index(j);
        match &rd.destination {
            Some(d) => check_destination(r, &rp.key("destination"), d),
            None => {
                r.error(rp.key("destination"), "destination is required")
                    .hint("add `destination: {host: <service>}`");
            }
        }
        check_weight(r, rp.key("weight"), rd.weight);
        total += rd.weight.unwrap_or(0).max(0);
    }
    if routes.len() > 1 && total == 0 {
        r.error(p.key("route"), "total destination weight = 0")
            .hint("with several destinations, give each a `weight`; traffic is split in proportion to the weights");
    }
}

#[cfg(test)]
#[path = "virtual_service_tests.rs"]
mod tests;
