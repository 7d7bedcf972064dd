//! `mesh-overview.json`: the golden signals of every service, TCP traffic, and the health of
//! the proxies and the control plane at a glance.

use serde_json::Value;

use super::{
    super::grafana::{Dashboard, label, stat, timeseries},
    super::promql::{RATE, quantile, sel},
    DST, DURATION_MS, FIVE_XX, NOT_5XX, REQUESTS, SUCCESS_STEPS, Scrape,
};

pub fn mesh_overview(s: &Scrape) -> Value {
    let mut d = Dashboard::new(
        "weft-mesh-overview",
        "weft / Mesh overview",
        "Golden signals of every service in the mesh (Istio standard metrics), proxy and control plane health.",
    );
    let proxy = s.proxy();
    let ns = &s.namespace_label;
    let wl = &s.workload_label;

    let requests = sel(REQUESTS, &[DST]);
    let ok = sel(REQUESTS, &[DST, NOT_5XX]);
    let errors = sel(REQUESTS, &[DST, FIVE_XX]);
    let client_errors = sel(REQUESTS, &[DST, r#"response_code=~"4..""#]);
    d.row("Global traffic (reported by the server-side proxies)");
    d.line(
        4,
        vec![
            stat(
                "Request rate",
                "reqps",
                format!("sum(rate({requests}[{RATE}]))"),
            ),
            stat(
                "Success rate (non-5xx)",
                "percentunit",
                format!("sum(rate({ok}[{RATE}])) / sum(rate({requests}[{RATE}]))"),
            )
            .thresholds(SUCCESS_STEPS),
            stat(
                "4xx rate",
                "reqps",
                format!("sum(rate({client_errors}[{RATE}])) or vector(0)"),
            ),
            stat(
                "5xx rate",
                "reqps",
                format!("sum(rate({errors}[{RATE}])) or vector(0)"),
            )
            .thresholds(&[(None, "green"), (Some(0.001), "red")]),
            stat(
                "Proxies ready",
                "none",
                format!("sum({})", sel("weft_proxy_ready", &[&proxy])),
            )
            .describe(
                "Proxies whose /ready is true (first config and first certificate received).",
            ),
            stat(
                "Control plane up",
                "none",
                format!("sum({})", sel("up", &[&s.control()])),
            )
            .describe("Control plane instances Prometheus can scrape.")
            .thresholds(&[(None, "red"), (Some(1.0), "green")]),
        ],
    );

    d.row("Services");
    d.line(
        8,
        vec![
            timeseries("Request rate by service", "reqps").target(
                format!("sum by (destination_service) (rate({requests}[{RATE}]))"),
                "{{destination_service}}",
            ),
            timeseries("Success rate by service (non-5xx)", "percentunit").target(
                format!(
                    "sum by (destination_service) (rate({ok}[{RATE}]))\n/\nsum by (destination_service) (rate({requests}[{RATE}]))"
                ),
                "{{destination_service}}",
            ),
        ],
    );
    d.line(
        8,
        vec![
            timeseries("P99 latency by service", "ms").target(
                quantile(0.99, DURATION_MS, &[DST], "destination_service", RATE),
                "{{destination_service}}",
            ),
            timeseries("Mesh latency", "ms")
                .target(quantile(0.5, DURATION_MS, &[DST], "", RATE), "P50")
                .target(quantile(0.9, DURATION_MS, &[DST], "", RATE), "P90")
                .target(quantile(0.99, DURATION_MS, &[DST], "", RATE), "P99"),
        ],
    );

    let received = sel("istio_tcp_received_bytes_total", &[DST]);
    let sent = sel("istio_tcp_sent_bytes_total", &[DST]);
    let opened = sel("istio_tcp_connections_opened_total", &[DST]);
    let closed = sel("istio_tcp_connections_closed_total", &[DST]);
    d.row("TCP traffic (reported by the server-side proxies)");
    d.line(
        8,
        vec![
            timeseries("TCP bytes received by service", "Bps").target(
                format!("sum by (destination_service) (rate({received}[{RATE}]))"),
                "{{destination_service}}",
            ),
            timeseries("TCP bytes sent by service", "Bps").target(
                format!("sum by (destination_service) (rate({sent}[{RATE}]))"),
                "{{destination_service}}",
            ),
            timeseries("TCP connections by service", "cps")
                .target(
                    format!("sum by (destination_service) (rate({opened}[{RATE}]))"),
                    "opened {{destination_service}}",
                )
                .target(
                    format!("sum by (destination_service) (rate({closed}[{RATE}]))"),
                    "closed {{destination_service}}",
                ),
        ],
    );

    let expiry = sel("weft_certificate_expiry_seconds", &[&proxy]);
    let overflow = sel("weft_upstream_overflow_total", &[&proxy]);
    let memory = sel("process_resident_memory_bytes", &[&proxy]);
    let applied = sel("weft_config_applied_total", &[&proxy]);
    let rejected = sel("weft_config_rejected_total", &[&proxy]);
    d.row("Proxy health");
    d.line(
        8,
        vec![
            timeseries("Certificate time to expiry (soonest per namespace)", "s")
                .target(format!("min by ({ns}) ({expiry} - time())"), &label(ns))
                .describe("Workload certificates are refreshed at half their lifetime; a line that keeps falling means refreshes fail."),
            timeseries("Circuit-breaker overflows by cluster", "ops")
                .target(
                    format!("sum by (cluster) (rate({overflow}[{RATE}]))"),
                    "{{cluster}}",
                )
                .describe("Requests and connections refused by a DestinationRule connectionPool limit (response flag UO)."),
            timeseries("Proxy memory (top 10)", "bytes").target(
                format!("topk(10, {memory})"),
                &format!("{}/{} {}", label(ns), label(wl), label("instance")),
            ),
            timeseries("Proxy config updates", "ops")
                .target(format!("sum(rate({applied}[{RATE}]))"), "applied")
                .target(format!("sum(rate({rejected}[{RATE}]))"), "rejected"),
        ],
    );
    d.to_json()
}
