//! DestinationRule validation.

use std::collections::HashSet;

use super::{
    check_connection_pool, check_duration, check_export_to, check_host, check_labels,
    check_opt_duration, check_percent, check_port, check_selector_labels, is_ip, spec,
    spec_present,
};
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;
use crate::validate::rules::{is_dns1123_label, is_wildcard_dns_name};

/// Istio's limit on `portLevelSettings` entries.
const MAX_PORT_LEVEL_SETTINGS: usize = 4096;

pub fn destination_rule(dr: &DestinationRule, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    let spec = spec();
    if dr.host.is_empty() {
        r.error(spec.key("host"), "host is required")
            .hint("name the service the rule applies to, e.g. `host: reviews` or `host: reviews.prod.svc.cluster.local`");
    } else {
        check_host(r, spec.key("host"), &dr.host);
    }
    if let Some(ws) = &dr.workload_selector {
        check_selector_labels(
            r,
            &spec.key("workloadSelector").key("matchLabels"),
            &ws.match_labels,
        );
        let ns = r.object().namespace().to_string();
        for (i, e) in dr.export_to.iter().enumerate() {
            if e != "." && *e != ns {
                r.error(
                    spec.key("exportTo").index(i),
                    format!("a DestinationRule with a workloadSelector cannot be exported to `{e}`"),
                )
                .hint(
                    "a workload selector only selects workloads in the rule's own namespace: use `exportTo: [\".\"]` or remove `exportTo`",
                );
            }
        }
    }
    if let Some(tp) = &dr.traffic_policy {
        traffic_policy(r, &spec.key("trafficPolicy"), tp);
    }
    let mut names = HashSet::new();
    for (i, s) in dr.subsets.iter().enumerate() {
        let sp = spec.key("subsets").index(i);
        if s.name.is_empty() {
            r.error(sp.key("name"), "subset name is required")
                .hint("name the subset, e.g. `name: v1`, and refer to it from routes");
        } else if !is_dns1123_label(&s.name) {
            r.error(
                sp.key("name"),
                format!("subset name `{}` is invalid", s.name),
            )
            .hint("subset names are DNS labels: lowercase letters, digits and '-', e.g. `v1`");
        } else if !names.insert(s.name.as_str()) {
            r.error(
                sp.key("name"),
                format!("duplicate subset name `{}`", s.name),
            )
            .hint("subset names must be unique within a DestinationRule");
        }
        check_labels(r, &sp.key("labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            traffic_policy(r, &sp.key("trafficPolicy"), tp);
        }
    }
    check_export_to(r, spec.key("exportTo"), &dr.export_to);
}

fn traffic_policy(r: &mut Report, p: &FieldPath, tp: &TrafficPolicy) {
    if tp.is_empty() {
        r.error(p.clone(), "traffic policy must have at least one field")
            .hint("set loadBalancer, connectionPool, outlierDetection, tls or portLevelSettings, or remove `trafficPolicy`");
    }
    core_policy(
        r,
        p,
        tp.load_balancer.as_ref(),
        tp.connection_pool.as_ref(),
        tp.outlier_detection.as_ref(),
        tp.tls.as_ref(),
    );
    if tp.port_level_settings.len() > MAX_PORT_LEVEL_SETTINGS {
        r.error(
            p.key("portLevelSettings"),
            format!(
                "{} portLevelSettings entries exceed the limit of {MAX_PORT_LEVEL_SETTINGS}",
                tp.port_level_settings.len()
            ),
        );
    }
    let mut ports = HashSet::new();
    for (i, pl) in tp.port_level_settings.iter().enumerate() {
        let pp = p.key("portLevelSettings").index(i);
        match pl.port.as_ref().and_then(|s| s.number) {
            None => {
                r.error(pp.key("port"), "portLevelSettings entries must have a port")
                    .hint("add `port: {number: <port>}`: the settings replace the rule's settings for that port");
            }
            Some(n) => {
                if check_port(r, pp.key("port").key("number"), n) && !ports.insert(n) {
                    r.warning(
                        pp.key("port").key("number"),
                        format!("port {n} appears twice in portLevelSettings"),
                    )
                    .hint("only the first entry for a port is used; merge them");
                }
            }
        }
        if pl.load_balancer.is_none()
            && pl.connection_pool.is_none()
            && pl.outlier_detection.is_none()
            && pl.tls.is_none()
        {
            r.error(pp.clone(), "port traffic policy must have at least one field")
                .hint("set loadBalancer, connectionPool, outlierDetection or tls for the port, or remove the entry");
        }
        core_policy(
            r,
            &pp,
            pl.load_balancer.as_ref(),
            pl.connection_pool.as_ref(),
            pl.outlier_detection.as_ref(),
            pl.tls.as_ref(),
        );
    }
    if let Some(t) = &tp.tunnel {
        let tp_ = p.key("tunnel");
        if !t.protocol.is_empty()
            && !matches!(t.protocol.to_ascii_uppercase().as_str(), "CONNECT" | "POST")
        {
            r.error(
                tp_.key("protocol"),
                format!("tunnel protocol `{}` is not supported", t.protocol),
            )
            .hint("use CONNECT or POST");
        }
        if t.target_host.is_empty() {
            r.error(tp_.key("targetHost"), "tunnel targetHost is required")
                .hint("name the host the tunnel proxy connects to");
        } else if !is_ip(&t.target_host)
            && (!is_wildcard_dns_name(&t.target_host) || t.target_host.contains('*'))
        {
            r.error(
                tp_.key("targetHost"),
                format!(
                    "tunnel targetHost `{}` is not a host name or IP address",
                    t.target_host
                ),
            );
        }
        match t.target_port {
            None => {
                r.error(tp_.key("targetPort"), "tunnel targetPort is required")
                    .hint("add the port the tunnel proxy connects to");
            }
            Some(n) => {
                check_port(r, tp_.key("targetPort"), n);
            }
        }
    }
    if let Some(b) = &tp.retry_budget {
        let bp = p.key("retryBudget");
        if let Some(v) = b.percent {
            check_percent(r, bp.key("percent"), v);
        }
        check_opt_duration(r, bp.key("budgetInterval"), &b.budget_interval);
    }
}

fn core_policy(
    r: &mut Report,
    p: &FieldPath,
    lb: Option<&LoadBalancerSettings>,
    cp: Option<&ConnectionPoolSettings>,
    od: Option<&OutlierDetection>,
    tls: Option<&ClientTLSSettings>,
) {
    if let Some(lb) = lb {
        load_balancer(r, &p.key("loadBalancer"), lb);
    }
    if let Some(cp) = cp {
        check_connection_pool(r, &p.key("connectionPool"), cp);
    }
    if let Some(od) = od {
        outlier(r, &p.key("outlierDetection"), od);
    }
    if let Some(t) = tls {
        client_tls(r, &p.key("tls"), t);
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut i = 2;
    while i * i <= n {
        if n.is_multiple_of(i) {
            return false;
        }
        i += 1;
    }
    true
}

fn load_balancer(r: &mut Report, p: &FieldPath, lb: &LoadBalancerSettings) {
    if lb.simple.is_some() && lb.consistent_hash.is_some() {
        r.error(
            p.key("consistentHash"),
            "only one of simple and consistentHash can be set",
        )
        .hint("`simple` picks an algorithm; `consistentHash` makes requests sticky: keep one");
    }
    if let Some(ch) = &lb.consistent_hash {
        let cp = p.key("consistentHash");
        match ch.hash_key_count() {
            0 => {
                r.error(
                    cp.clone(),
                    "consistentHash needs one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName",
                )
                .hint("say what to hash on, e.g. `httpHeaderName: x-user` or `useSourceIp: true`");
            }
            1 => {}
            _ => {
                r.error(
                    cp.clone(),
                    "only one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName can be set",
                )
                .hint("keep the one hash key the stickiness should follow");
            }
        }
        if let Some(c) = &ch.http_cookie {
            if c.name.is_empty() {
                r.error(
                    cp.key("httpCookie").key("name"),
                    "name required for httpCookie",
                )
                .hint("name the cookie to hash on");
            }
            if c.ttl.is_none() {
                r.warning(
                    cp.key("httpCookie"),
                    "httpCookie without ttl: Envoy will not generate the cookie when it is missing",
                )
                .hint("add `ttl: 0s` for a session cookie, or a lifetime such as `ttl: 1h`");
            }
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            r.error(
                cp.key("maglev"),
                "only one of ringHash and maglev can be set",
            )
            .hint("pick one consistent-hash algorithm");
        }
        if ch.minimum_ring_size.is_some() {
            if ch.ring_hash.is_some() || ch.maglev.is_some() {
                r.error(
                    cp.key("minimumRingSize"),
                    "minimumRingSize cannot be combined with ringHash or maglev",
                )
                .hint("move it to `ringHash: {minimumRingSize: …}`");
            } else {
                r.warning(cp.key("minimumRingSize"), "minimumRingSize is deprecated")
                    .hint("use `ringHash: {minimumRingSize: …}`");
            }
        }
        if let Some(size) = ch.maglev.as_ref().and_then(|m| m.table_size)
            && !is_prime(size)
        {
            r.error(
                cp.key("maglev").key("tableSize"),
                format!("maglev tableSize {size} must be a prime number"),
            )
            .hint("use a prime such as 65537 (the default) or 131071");
        }
    }
    if let Some(l) = &lb.locality_lb_setting {
        locality(r, &p.key("localityLbSetting"), l);
    }
    if let Some(d) = &lb.warmup_duration_secs {
        r.warning(
            p.key("warmupDurationSecs"),
            "warmupDurationSecs is deprecated",
        )
        .hint(format!("use `warmup: {{duration: {d}}}`"));
        check_duration(r, p.key("warmupDurationSecs"), d);
    }
    if let Some(w) = &lb.warmup {
        let wp = p.key("warmup");
        match &w.duration {
            None => {
                r.error(wp.key("duration"), "warmup.duration: Required value")
                    .hint("add how long new endpoints ramp up, e.g. `duration: 60s`");
            }
            Some(d) => check_duration(r, wp.key("duration"), d),
        }
        if let Some(m) = w.minimum_percent
            && !(0.0..=100.0).contains(&m)
        {
            r.error(
                wp.key("minimumPercent"),
                format!("minimumPercent {m}: Invalid value: must be between 0 and 100"),
            )
            .hint("the starting share of traffic for a new endpoint, 0-100 (default 10)");
        }
        if let Some(a) = w.aggression
            && (a.is_nan() || a <= 0.0)
        {
            r.error(
                wp.key("aggression"),
                format!("aggression {a}: Invalid value: must be greater than 0"),
            )
            .hint("1.0 (default) ramps linearly; larger values ramp faster at the end");
        }
        if matches!(lb.simple, Some(SimpleLB::Random | SimpleLB::Passthrough))
            || lb.consistent_hash.is_some()
        {
            r.warning(
                wp.clone(),
                "warmup only applies to ROUND_ROBIN and LEAST_REQUEST load balancing",
            )
            .hint("use `simple: ROUND_ROBIN` or `LEAST_REQUEST`, or remove `warmup`");
        }
    }
}

fn locality(r: &mut Report, p: &FieldPath, l: &LocalityLoadBalancerSetting) {
    if !l.distribute.is_empty() && (!l.failover.is_empty() || !l.failover_priority.is_empty()) {
        r.error(p.clone(), "cannot set both `distribute` and `failover`/`failoverPriority`")
            .hint("`distribute` sets fixed weights per locality; failover moves traffic when a locality is unhealthy: pick one");
    }
    for (i, d) in l.distribute.iter().enumerate() {
        let dp = p.key("distribute").index(i);
        if d.from.is_empty() {
            r.error(dp.key("from"), "distribute.from is required")
                .hint("write the source locality `region/zone/subzone` (`*` allowed)");
        } else if !valid_locality(&d.from) {
            r.error(dp.key("from"), format!("invalid locality `{}`", d.from))
                .hint("write `region`, `region/zone` or `region/zone/subzone`; `*` only as the last part");
        }
        let mut total: u64 = 0;
        for (to, w) in &d.to {
            if !valid_locality(to) {
                r.error(
                    dp.key("to").key(to.as_str()),
                    format!("invalid locality `{to}`"),
                );
            }
            total += u64::from(*w);
        }
        if total != 100 {
            r.error(
                dp.key("to"),
                format!("distribute weights sum to {total}; they must total 100"),
            )
            .hint("give each destination locality a percentage, adding up to 100");
        }
    }
    for (i, f) in l.failover.iter().enumerate() {
        let fp = p.key("failover").index(i);
        if f.from.contains('*') || f.to.contains('*') {
            r.error(fp.clone(), "locality failover regions cannot contain `*`")
                .hint("name the regions explicitly");
        }
        if f.from == f.to {
            r.error(
                fp.key("to"),
                "failover must specify different regions in `from` and `to`",
            );
        }
        if f.from.contains('/') || f.to.contains('/') {
            r.error(
                fp.clone(),
                "failover `from` and `to` are regions, not zones",
            )
            .hint("write only the region, e.g. `us-east`");
        }
    }
}

fn valid_locality(s: &str) -> bool {
    let parts: Vec<&str> = s.split('/').collect();
    parts.len() <= 3
        && parts.iter().enumerate().all(|(i, p)| {
            !p.is_empty() && (!p.contains('*') || (*p == "*" && i == parts.len() - 1))
        })
}

fn outlier(r: &mut Report, p: &FieldPath, od: &OutlierDetection) {
    if let Some(c) = od.consecutive_errors {
        r.warning(
            p.key("consecutiveErrors"),
            "consecutiveErrors is deprecated",
        )
        .hint("use `consecutive5xxErrors`");
        if c < 0 {
            r.error(
                p.key("consecutiveErrors"),
                format!("consecutiveErrors {c} is negative"),
            )
            .hint("use 0 or more");
        }
    }
    check_opt_duration(r, p.key("interval"), &od.interval);
    check_opt_duration(r, p.key("baseEjectionTime"), &od.base_ejection_time);
    for (field, v) in [
        ("maxEjectionPercent", od.max_ejection_percent),
        ("minHealthPercent", od.min_health_percent),
    ] {
        if let Some(v) = v
            && !(0..=100).contains(&v)
        {
            r.error(
                p.key(field),
                format!("{field} {v} must be in range [0, 100]"),
            )
            .hint("use a percentage from 0 to 100");
        }
    }
    if od.consecutive_local_origin_failures.is_some_and(|v| v > 0)
        && od.split_external_local_origin_errors != Some(true)
    {
        r.error(
            p.key("consecutiveLocalOriginFailures"),
            "consecutiveLocalOriginFailures only applies when splitExternalLocalOriginErrors is true",
        )
        .hint("add `splitExternalLocalOriginErrors: true`, or remove the field");
    }
}

fn client_tls(r: &mut Report, p: &FieldPath, t: &ClientTLSSettings) {
    match t.mode() {
        ClientTLSMode::IstioMutual => {
            for (field, set) in [
                ("clientCertificate", !t.client_certificate.is_empty()),
                ("privateKey", !t.private_key.is_empty()),
                ("caCertificates", !t.ca_certificates.is_empty()),
                ("credentialName", !t.credential_name.is_empty()),
            ] {
                if set {
                    r.error(p.key(field), format!("cannot specify `{field}` when mode is ISTIO_MUTUAL"))
                        .hint(format!(
                            "Istio provides the certificates for ISTIO_MUTUAL: remove `{field}`, or use mode MUTUAL for your own"
                        ));
                }
            }
        }
        ClientTLSMode::Mutual if t.credential_name.is_empty() => {
            if t.client_certificate.is_empty() {
                r.error(p.key("clientCertificate"), "client certificate required for mutual TLS")
                    .hint("set `clientCertificate` and `privateKey` to file paths, or `credentialName` to a Secret");
            }
            if t.private_key.is_empty() {
                r.error(p.key("privateKey"), "private key required for mutual TLS")
                    .hint("set `privateKey` to a file path, or `credentialName` to a Secret");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::networking::test_util::*;

    const HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: ns}\nspec:\n";

    fn dr(body: &str) -> String {
        format!("{HEAD}{body}")
    }

    #[test]
    fn valid_rule() {
        assert_clean(&dr(
            "  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    connectionPool: {tcp: {maxConnections: 10, connectTimeout: 1s}}\n    outlierDetection: {consecutive5xxErrors: 3, interval: 5s, maxEjectionPercent: 50}\n    tls: {mode: ISTIO_MUTUAL, sni: x}\n  subsets:\n  - name: v1\n    labels: {version: v1}\n",
        ));
    }

    #[test]
    fn subsets() {
        assert_error(
            &dr("  host: reviews\n  subsets:\n  - name: v1\n  - name: v1\n"),
            "spec.subsets[1].name",
            "duplicate subset name",
        );
        assert_error(
            &dr("  host: reviews\n  subsets:\n  - name: V_1\n"),
            "spec.subsets[0].name",
            "invalid",
        );
        assert_error(
            &dr("  host: reviews\n  subsets:\n  - labels: {a: b}\n"),
            "spec.subsets[0].name",
            "required",
        );
    }

    #[test]
    fn tls_modes() {
        assert_error(
            &dr("  host: r\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL, privateKey: /k}\n"),
            "spec.trafficPolicy.tls.privateKey",
            "ISTIO_MUTUAL",
        );
        assert_error(
            &dr("  host: r\n  trafficPolicy:\n    tls: {mode: MUTUAL, privateKey: /k}\n"),
            "spec.trafficPolicy.tls.clientCertificate",
            "required",
        );
        assert_clean(&dr(
            "  host: r\n  trafficPolicy:\n    tls: {mode: MUTUAL, credentialName: c}\n",
        ));
    }

    #[test]
    fn load_balancer_rules() {
        assert_error(
            &dr(
                "  host: r\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {httpHeaderName: x, useSourceIp: true}\n",
            ),
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "only one of",
        );
        assert_error(
            &dr(
                "  host: r\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {useSourceIp: true, maglev: {tableSize: 100}}\n",
            ),
            "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
            "prime",
        );
        assert_error(
            &dr(
                "  host: r\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - from: us/*\n          to: {\"us/a/*\": 60, \"eu/*\": 30}\n",
            ),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
            "100",
        );
    }

    #[test]
    fn pools_and_ports() {
        assert_error(
            &dr("  host: r\n  trafficPolicy:\n    connectionPool: {http: {maxRetries: -1}}\n"),
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "negative",
        );
        assert_error(
            &dr(
                "  host: r\n  trafficPolicy:\n    portLevelSettings:\n    - loadBalancer: {simple: RANDOM}\n",
            ),
            "spec.trafficPolicy.portLevelSettings[0].port",
            "must have a port",
        );
        assert_error(
            &dr("  host: r\n  trafficPolicy:\n    outlierDetection: {maxEjectionPercent: 101}\n"),
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "[0, 100]",
        );
        assert_error(
            &dr("  host: r\n  trafficPolicy: {}\n"),
            "spec.trafficPolicy",
            "at least one field",
        );
        assert_error(
            &dr("  host: r\n  trafficPolicy:\n    connectionPool: {tcp: {connectTimeout: 0s}}\n"),
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "at least 1ms",
        );
    }

    #[test]
    fn host_and_export() {
        assert_error(&dr("  host: \"\"\n"), "spec.host", "required");
        assert_error(&dr("  host: a.*.com\n"), "spec.host", "invalid host");
        assert_error(
            &dr("  host: r\n  workloadSelector: {matchLabels: {app: a}}\n  exportTo: [other]\n"),
            "spec.exportTo[0]",
            "workloadSelector",
        );
        assert_error(
            &dr("  host: r\n  exportTo: [\"*\", ns]\n"),
            "spec.exportTo",
            "cannot combine",
        );
    }
}
