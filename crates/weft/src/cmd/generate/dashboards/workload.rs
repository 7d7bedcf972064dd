//! `workload.json`: one workload (`$namespace`, `$workload`): inbound traffic as its own proxy
//! reports it, outbound traffic as its own proxy reports it (`reporter="source"`), and the
//! health of its proxies (selected by the scrape config's namespace and workload labels).

use serde_json::Value;

use super::{
    super::grafana::{Dashboard, label, stat, timeseries},
    super::promql::{RATE, quantile, sel},
    DST, DURATION_MS, NOT_5XX, REQUESTS, SRC, SUCCESS_STEPS, Scrape,
};

const IN: &[&str] = &[
    DST,
    r#"destination_workload_namespace="$namespace""#,
    r#"destination_workload="$workload""#,
];
const OUT: &[&str] = &[
    SRC,
    r#"source_workload_namespace="$namespace""#,
    r#"source_workload="$workload""#,
];
const CLIENT: &str = "source_workload, source_workload_namespace";
const CLIENT_LEGEND: &str = "{{source_workload}}.{{source_workload_namespace}}";

pub fn workload(s: &Scrape) -> Value {
    let mut d = Dashboard::new(
        "weft-workload",
        "weft / Workload",
        "One workload: inbound and outbound traffic as its own proxy reports them, and its proxies' health.",
    );
    d.variable(
        "namespace",
        "Namespace",
        &sel(REQUESTS, &[DST]),
        "destination_workload_namespace",
    );
    d.variable(
        "workload",
        "Workload",
        &sel(
            REQUESTS,
            &[DST, r#"destination_workload_namespace="$namespace""#],
        ),
        "destination_workload",
    );

    let inbound = sel(REQUESTS, IN);
    let inbound_ok = sel(REQUESTS, &[IN, &[NOT_5XX]].concat());
    let outbound = sel(REQUESTS, OUT);
    let outbound_ok = sel(REQUESTS, &[OUT, &[NOT_5XX]].concat());
    let ns_matcher = format!("{}=\"$namespace\"", s.namespace_label);
    let wl_matcher = format!("{}=\"$workload\"", s.workload_label);
    let proxy = [s.proxy(), ns_matcher, wl_matcher];
    let proxy: Vec<&str> = proxy.iter().map(String::as_str).collect();
    d.row("$workload.$namespace");
    d.line(
        4,
        vec![
            stat(
                "Incoming request rate",
                "reqps",
                format!("sum(rate({inbound}[{RATE}]))"),
            ),
            stat(
                "Incoming success rate (non-5xx)",
                "percentunit",
                format!("sum(rate({inbound_ok}[{RATE}])) / sum(rate({inbound}[{RATE}]))"),
            )
            .thresholds(SUCCESS_STEPS),
            stat(
                "Incoming P99 latency",
                "ms",
                quantile(0.99, DURATION_MS, IN, "", RATE),
            ),
            stat(
                "Outgoing request rate",
                "reqps",
                format!("sum(rate({outbound}[{RATE}]))"),
            ),
            stat(
                "Outgoing success rate (non-5xx)",
                "percentunit",
                format!("sum(rate({outbound_ok}[{RATE}])) / sum(rate({outbound}[{RATE}]))"),
            )
            .thresholds(SUCCESS_STEPS),
            stat(
                "Proxies ready",
                "none",
                format!("sum({})", sel("weft_proxy_ready", &proxy)),
            ),
        ],
    );

    let tcp_in = sel("istio_tcp_received_bytes_total", IN);
    d.row("Inbound (reported by this workload's proxies)");
    d.line(
        8,
        vec![
            timeseries("Incoming requests by client", "reqps").target(
                format!("sum by ({CLIENT}) (rate({inbound}[{RATE}]))"),
                CLIENT_LEGEND,
            ),
            timeseries("Incoming success rate by client (non-5xx)", "percentunit").target(
                format!(
                    "sum by ({CLIENT}) (rate({inbound_ok}[{RATE}]))\n/\nsum by ({CLIENT}) (rate({inbound}[{RATE}]))"
                ),
                CLIENT_LEGEND,
            ),
            timeseries("Incoming latency", "ms")
                .target(quantile(0.5, DURATION_MS, IN, "", RATE), "P50")
                .target(quantile(0.9, DURATION_MS, IN, "", RATE), "P90")
                .target(quantile(0.99, DURATION_MS, IN, "", RATE), "P99"),
            timeseries("Incoming TCP bytes by client", "Bps")
                .target(
                    format!("sum by ({CLIENT}) (rate({tcp_in}[{RATE}]))"),
                    CLIENT_LEGEND,
                )
                .stacked(),
        ],
    );

    let tcp_out = sel("istio_tcp_sent_bytes_total", OUT);
    let tcp_opened = sel("istio_tcp_connections_opened_total", OUT);
    let flagged = sel(REQUESTS, &[OUT, &[r#"response_flags!="-""#]].concat());
    d.row("Outbound (reported by this workload's proxies)");
    d.line(
        8,
        vec![
            timeseries("Outgoing requests by service", "reqps").target(
                format!("sum by (destination_service) (rate({outbound}[{RATE}]))"),
                "{{destination_service}}",
            ),
            timeseries("Outgoing success rate by service (non-5xx)", "percentunit").target(
                format!(
                    "sum by (destination_service) (rate({outbound_ok}[{RATE}]))\n/\nsum by (destination_service) (rate({outbound}[{RATE}]))"
                ),
                "{{destination_service}}",
            ),
            timeseries("Outgoing P99 latency by service", "ms").target(
                quantile(0.99, DURATION_MS, OUT, "destination_service", RATE),
                "{{destination_service}}",
            ),
            timeseries("Proxy-generated responses by flag", "reqps")
                .target(
                    format!("sum by (destination_service, response_flags) (rate({flagged}[{RATE}]))"),
                    "{{destination_service}} {{response_flags}}",
                )
                .describe("Responses the proxy produced itself, by Envoy response flag (UO: circuit breaker, NR: no route, UH: no healthy upstream, URX: retries exhausted, ...)."),
        ],
    );
    d.line(
        8,
        vec![
            timeseries("Outgoing TCP bytes by service", "Bps")
                .target(
                    format!("sum by (destination_service) (rate({tcp_out}[{RATE}]))"),
                    "{{destination_service}}",
                )
                .stacked(),
            timeseries("Outgoing TCP connections opened by service", "cps").target(
                format!("sum by (destination_service) (rate({tcp_opened}[{RATE}]))"),
                "{{destination_service}}",
            ),
        ],
    );

    let instance = label("instance");
    let expiry = sel("weft_certificate_expiry_seconds", &proxy);
    let memory = sel("process_resident_memory_bytes", &proxy);
    let applied = sel("weft_config_applied_total", &proxy);
    let rejected = sel("weft_config_rejected_total", &proxy);
    let overflow = sel("weft_upstream_overflow_total", &proxy);
    d.row("Proxies of this workload");
    d.line(
        8,
        vec![
            timeseries("Memory", "bytes").target(memory, &instance),
            timeseries("Certificate time to expiry", "s")
                .target(format!("{expiry} - time()"), &instance),
            timeseries("Config updates", "ops")
                .target(format!("sum(rate({applied}[{RATE}]))"), "applied")
                .target(format!("sum(rate({rejected}[{RATE}]))"), "rejected"),
            timeseries("Circuit-breaker overflows by cluster", "ops").target(
                format!("sum by (cluster) (rate({overflow}[{RATE}]))"),
                "{{cluster}}",
            ),
        ],
    );
    d.to_json()
}
