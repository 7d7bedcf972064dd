//! `weft-alerts.yaml`: Prometheus alerting rules (rule-file format: `groups:` of `rules:`).
//! Every alert waits (`for:`) so one bad scrape does not page, carries a `severity` label and
//! says in its description what to look at and what to do.

use yaml_rust2::{Yaml, YamlEmitter, yaml::Hash};

use super::promql::{Scrape, quote, sel};

/// The thresholds that are flags of `weft generate monitoring`.
#[derive(Clone, Debug)]
pub struct Thresholds {
    /// Alert when a proxy's resident memory stays above this.
    pub proxy_memory_bytes: u64,
    /// Alert when the CA's root or intermediate certificate expires sooner than this
    /// (seconds).
    pub cert_expiry_seconds: u64,
    /// Alert when a proxy's workload certificate expires sooner than this (seconds).
    pub workload_cert_expiry_seconds: u64,
}

struct Alert {
    name: &'static str,
    expr: String,
    wait: &'static str,
    severity: &'static str,
    summary: String,
    description: String,
}

/// `30 * 86400` reads better than `2592000` in an alert expression.
fn seconds_literal(s: u64) -> String {
    match s {
        s if s >= 86400 && s.is_multiple_of(86400) => format!("{} * 86400", s / 86400),
        s if s >= 3600 && s.is_multiple_of(3600) => format!("{} * 3600", s / 3600),
        s => s.to_string(),
    }
}

/// `256 MiB` when the value is whole mebibytes, the byte count otherwise.
fn bytes_text(b: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if b >= MIB && b.is_multiple_of(MIB) {
        format!("{} MiB", b / MIB)
    } else {
        format!("{b} bytes")
    }
}

fn services() -> Vec<Alert> {
    let dst = r#"reporter="destination""#;
    let requests = sel("istio_requests_total", &[dst]);
    let errors = sel("istio_requests_total", &[dst, r#"response_code=~"5..""#]);
    let buckets = sel("istio_request_duration_milliseconds_bucket", &[dst]);
    let overflowed = sel(
        "istio_requests_total",
        &[r#"reporter="source""#, r#"response_flags=~".*UO.*""#],
    );
    vec![
        Alert {
            name: "WeftServiceHighErrorRate",
            expr: format!(
                "(\n  sum by (destination_service) (rate({errors}[5m]))\n/\n  sum by (destination_service) (rate({requests}[5m]))\n) > 0.05"
            ),
            wait: "5m",
            severity: "critical",
            summary: "{{ $labels.destination_service }}: {{ $value | humanizePercentage }} of requests fail with 5xx".into(),
            description: "More than 5% of the requests served by {{ $labels.destination_service }} over the last 5 minutes returned a 5xx status, as its server-side proxies report. Open the weft / Service dashboard for it: if response_flags is \"-\" the application answered 5xx (check its logs and recent deployments); any other flag means a proxy produced the error, and the x-weft-error header and the access log say why.".into(),
        },
        Alert {
            name: "WeftServiceHighLatency",
            expr: format!(
                "histogram_quantile(0.99, sum by (destination_service, le) (rate({buckets}[5m]))) > 1000"
            ),
            wait: "10m",
            severity: "warning",
            summary: "{{ $labels.destination_service }}: P99 latency is {{ $value | printf \"%.0f\" }} ms".into(),
            description: "The 99th percentile of request duration at {{ $labels.destination_service }} has been above 1 s for 10 minutes, as its server-side proxies measure it (application time included). Check the service's workloads (CPU, saturation, slow dependencies in the weft / Workload dashboard's outbound panels) and whether retries or timeouts in its VirtualService add to it.".into(),
        },
        Alert {
            name: "WeftCircuitBreakerOverflow",
            expr: format!(
                "sum by (source_workload, source_workload_namespace, destination_service) (rate({overflowed}[5m])) > 0"
            ),
            wait: "5m",
            severity: "warning",
            summary: "{{ $labels.source_workload }}.{{ $labels.source_workload_namespace }} -> {{ $labels.destination_service }}: circuit breaker rejects requests (UO)".into(),
            description: "Requests from {{ $labels.source_workload }} to {{ $labels.destination_service }} are refused by a connection-pool limit (response flag UO) for 5 minutes. The x-weft-error header names the limit and the DestinationRule. If the load is expected, raise connectionPool (http.http2MaxRequests, http.http1MaxPendingRequests, tcp.maxConnections) or scale {{ $labels.destination_service }}; otherwise find why the client sends more than usual.".into(),
        },
    ]
}

fn proxies(s: &Scrape, t: &Thresholds) -> Vec<Alert> {
    let proxy = s.proxy();
    let expiry = sel("weft_certificate_expiry_seconds", &[&proxy]);
    let memory = sel("process_resident_memory_bytes", &[&proxy]);
    let rejected = sel("weft_config_rejected_total", &[&proxy]);
    let ready = sel("weft_proxy_ready", &[&proxy]);
    vec![
        Alert {
            name: "WeftWorkloadCertificateExpiringSoon",
            expr: format!(
                "{expiry} - time() < {}",
                seconds_literal(t.workload_cert_expiry_seconds)
            ),
            wait: "15m",
            severity: "warning",
            summary: "Proxy {{ $labels.instance }}: workload certificate expires in {{ $value | humanizeDuration }}".into(),
            description: "The workload certificate of the proxy {{ $labels.instance }} expires in {{ $value | humanizeDuration }}. Proxies renew it at half its lifetime (12 h of the default 24 h), so one this close to expiry means renewal keeps failing: check that the proxy reaches the control plane's CA (weft_certificate_failures_total, the proxy's log), and that the CA's own certificate is not about to expire (it caps the lifetime of what it signs). An expired certificate stops all mTLS traffic of the workload.".into(),
        },
        Alert {
            name: "WeftProxyMemoryHigh",
            expr: format!("{memory} > {}", t.proxy_memory_bytes),
            wait: "15m",
            severity: "warning",
            summary: "Proxy {{ $labels.instance }} uses {{ $value | humanize1024 }}B of memory".into(),
            description: format!(
                "The proxy {{{{ $labels.instance }}}} has used more than {} of memory for 15 minutes. Compare with its connections (weft_downstream_connections_active) and its config size (weft proxy-config): limit what the proxy sees with a Sidecar resource if the mesh is large; if memory grows without traffic growing, restart the proxy and report a leak.",
                bytes_text(t.proxy_memory_bytes)
            ),
        },
        Alert {
            name: "WeftProxyConfigRejected",
            expr: format!("increase({rejected}[10m]) > 0"),
            wait: "5m",
            severity: "warning",
            summary: "Proxy {{ $labels.instance }} rejects the config it is sent".into(),
            description: "The proxy {{ $labels.instance }} rejected config pushes in the last 10 minutes and keeps running its last accepted config, so config changes do not reach it. `weft proxy-status` shows the NACK and its reason; `weft status` shows the config object responsible.".into(),
        },
        Alert {
            name: "WeftProxyNotReady",
            expr: format!("{ready} == 0"),
            wait: "10m",
            severity: "warning",
            summary: "Proxy {{ $labels.instance }} is not ready".into(),
            description: "The proxy {{ $labels.instance }} has reported not ready for 10 minutes: it has no config or no workload certificate yet. Check that it can reach the control plane (its log, `weft proxy-status`) and the CA.".into(),
        },
    ]
}

fn gateways(s: &Scrape) -> Vec<Alert> {
    let gateway = format!("source_workload=~{}", quote(&s.gateway_workloads));
    let src = r#"reporter="source""#;
    let requests = sel("istio_requests_total", &[src, &gateway]);
    let errors = sel(
        "istio_requests_total",
        &[src, &gateway, r#"response_code=~"5..""#],
    );
    let proxy = s.proxy();
    let target = format!("{}=~{}", s.workload_label, quote(&s.gateway_workloads));
    let up = sel("up", &[&proxy, &target]);
    let ready = sel("weft_proxy_ready", &[&proxy, &target]);
    let by = "source_workload, source_workload_namespace";
    vec![
        Alert {
            name: "WeftGatewayHighErrorRate",
            expr: format!(
                "(\n  sum by ({by}) (rate({errors}[5m]))\n/\n  sum by ({by}) (rate({requests}[5m]))\n) > 0.05"
            ),
            wait: "5m",
            severity: "critical",
            summary: "Gateway {{ $labels.source_workload }}.{{ $labels.source_workload_namespace }}: {{ $value | humanizePercentage }} of requests fail with 5xx".into(),
            description: "More than 5% of the requests the gateway {{ $labels.source_workload }} forwarded over the last 5 minutes got a 5xx, as the gateway reports them. Users see these errors. The weft / Workload dashboard for the gateway shows which backend fails (outbound panels) and whether the gateway produced the errors itself (response flags NR: no route, UH: no healthy backend, UO: circuit breaker).".into(),
        },
        Alert {
            name: "WeftGatewayDown",
            expr: format!("({up} == 0) or ({ready} == 0)"),
            wait: "5m",
            severity: "critical",
            summary: "Gateway proxy {{ $labels.instance }} is down or not ready".into(),
            description: "Prometheus cannot scrape the gateway proxy {{ $labels.instance }}, or it reports not ready, for 5 minutes: traffic entering the mesh through it fails. Check the gateway's process or pod, its log, and that it reaches the control plane.".into(),
        },
    ]
}

fn control_plane(s: &Scrape, t: &Thresholds) -> Vec<Alert> {
    let control = s.control();
    let up = sel("up", &[&control]);
    let ca_expiry = sel("weft_control_ca_cert_expiry_seconds", &[&control]);
    let nacks = sel("weft_control_nacks_total", &[&control]);
    let rejected = sel(
        "weft_control_config_objects",
        &[&control, r#"status=~"rejected|error""#],
    );
    vec![
        Alert {
            name: "WeftControlPlaneDown",
            expr: format!("{up} == 0 or absent({up})"),
            wait: "5m",
            severity: "critical",
            summary: format!(
                "weft control plane (job {}) is down or not scraped",
                s.control_job
            ),
            description: "Prometheus has not scraped the weft control plane for 5 minutes. Proxies keep serving with their last config, but config changes, new proxies and certificate renewals stop. Check the `weft control` process or pods and their logs, and that Prometheus' scrape job matches (`weft generate monitoring --control-job`).".into(),
        },
        Alert {
            name: "WeftControlPlanePushRejected",
            expr: format!("sum by (job) (increase({nacks}[10m])) > 0"),
            wait: "5m",
            severity: "warning",
            summary: "Proxies reject config pushes ({{ $value | printf \"%.0f\" }} NACKs in 10 minutes)".into(),
            description: "Proxies answered config pushes with NACKs in the last 10 minutes; they keep their last accepted config, so the change does not take effect on them. `weft proxy-status` lists the proxies and the reason; fix the config object it names.".into(),
        },
        Alert {
            name: "WeftConfigObjectsRejected",
            expr: format!("sum by (job) ({rejected}) > 0"),
            wait: "10m",
            severity: "warning",
            summary: "{{ $value | printf \"%.0f\" }} config objects are rejected or do not load".into(),
            description: "The control plane has rejected config objects (invalid fields or references), or could not load their files, for 10 minutes; they are not applied. `weft status` lists each one with the file, the field and the reason, and `weft analyze` checks a fix before you apply it.".into(),
        },
        Alert {
            name: "WeftCaCertificateExpiringSoon",
            expr: format!(
                "{ca_expiry} - time() < {}",
                seconds_literal(t.cert_expiry_seconds)
            ),
            wait: "1h",
            severity: "warning",
            summary: "The mesh CA's {{ $labels.cert }} certificate expires in {{ $value | humanizeDuration }}".into(),
            description: "The {{ $labels.cert }} certificate of the control plane's CA ({{ $labels.instance }}) expires in {{ $value | humanizeDuration }}. Workload certificates never outlive it, and once it expires no mTLS connection of the mesh verifies. A plugged-in intermediate: put a renewed ca-cert.pem, ca-key.pem and cert-chain.pem in the CA directory and restart the control plane. The root: roll a new one in first through root-cert-next.pem in the same directory, so every proxy trusts both roots before the CA switches to it (docs/monitoring.md, \"CA certificates\").".into(),
        },
    ]
}

fn string(s: &str) -> Yaml {
    Yaml::String(s.to_string())
}

fn map(pairs: Vec<(&str, Yaml)>) -> Yaml {
    let mut h = Hash::new();
    for (k, v) in pairs {
        h.insert(string(k), v);
    }
    Yaml::Hash(h)
}

fn rule(a: Alert) -> Yaml {
    map(vec![
        ("alert", string(a.name)),
        ("expr", string(&a.expr)),
        ("for", string(a.wait)),
        ("labels", map(vec![("severity", string(a.severity))])),
        (
            "annotations",
            map(vec![
                ("summary", string(&a.summary)),
                ("description", string(&a.description)),
            ]),
        ),
    ])
}

/// The rule file as YAML text (multi-line expressions as literal blocks), and its number of
/// alerts.
pub fn rules_yaml(s: &Scrape, t: &Thresholds) -> (String, usize) {
    let groups = [
        ("weft-services", services()),
        ("weft-proxies", proxies(s, t)),
        ("weft-gateways", gateways(s)),
        ("weft-control-plane", control_plane(s, t)),
    ];
    let count = groups.iter().map(|(_, alerts)| alerts.len()).sum();
    let groups: Vec<Yaml> = groups
        .into_iter()
        .map(|(name, alerts)| {
            map(vec![
                ("name", string(name)),
                ("rules", Yaml::Array(alerts.into_iter().map(rule).collect())),
            ])
        })
        .collect();
    let doc = map(vec![("groups", Yaml::Array(groups))]);
    let mut out = String::from(
        "# Prometheus alerting rules for weft, written by `weft generate monitoring`.\n\
         # Load with `rule_files:` in prometheus.yml; check with `promtool check rules`.\n",
    );
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    emitter
        .dump(&doc)
        .expect("emitting YAML into a String cannot fail");
    out.push('\n');
    (out, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_as_days_or_hours() {
        assert_eq!(seconds_literal(30 * 86400), "30 * 86400");
        assert_eq!(seconds_literal(6 * 3600), "6 * 3600");
        assert_eq!(seconds_literal(90), "90");
        assert_eq!(bytes_text(256 * 1024 * 1024), "256 MiB");
        assert_eq!(bytes_text(1000), "1000 bytes");
    }
}
