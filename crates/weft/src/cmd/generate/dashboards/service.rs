//! `service.json`: one service (`$service`, a `destination_service` value): its golden
//! signals, what its clients see (`reporter="source"`) and how each of its workloads serves it
//! (`reporter="destination"`).

use serde_json::Value;

use super::{
    super::grafana::{Dashboard, stat, timeseries},
    super::promql::{RATE, quantile, sel},
    DST, DURATION_MS, FIVE_XX, NOT_5XX, REQUEST_BYTES, REQUESTS, RESPONSE_BYTES, SRC,
    SUCCESS_STEPS, Scrape,
};

const SERVICE: &str = r#"destination_service="$service""#;
const CLIENT: &str = "source_workload, source_workload_namespace";
const CLIENT_LEGEND: &str = "{{source_workload}}.{{source_workload_namespace}}";
const SERVER: &str = "destination_workload, destination_workload_namespace";
const SERVER_LEGEND: &str = "{{destination_workload}}.{{destination_workload_namespace}}";

pub fn service(_s: &Scrape) -> Value {
    let mut d = Dashboard::new(
        "weft-service",
        "weft / Service",
        "One service: golden signals, its clients (client-side proxies) and its workloads (server-side proxies).",
    );
    d.variable(
        "service",
        "Service",
        &sel(REQUESTS, &[DST]),
        "destination_service",
    );

    let server = [DST, SERVICE];
    let requests = sel(REQUESTS, &server);
    let ok = sel(REQUESTS, &[DST, SERVICE, NOT_5XX]);
    let received = sel("istio_tcp_received_bytes_total", &server);
    d.row("$service");
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
                "P50 latency",
                "ms",
                quantile(0.5, DURATION_MS, &server, "", RATE),
            ),
            stat(
                "P90 latency",
                "ms",
                quantile(0.9, DURATION_MS, &server, "", RATE),
            ),
            stat(
                "P99 latency",
                "ms",
                quantile(0.99, DURATION_MS, &server, "", RATE),
            ),
            stat(
                "TCP bytes received",
                "Bps",
                format!("sum(rate({received}[{RATE}]))"),
            ),
        ],
    );

    let client = [SRC, SERVICE];
    let requests = sel(REQUESTS, &client);
    let ok = sel(REQUESTS, &[SRC, SERVICE, NOT_5XX]);
    let failed = sel(REQUESTS, &[SRC, SERVICE, FIVE_XX]);
    d.row("Clients (reported by the client-side proxies)");
    d.line(
        8,
        vec![
            timeseries("Requests by client", "reqps").target(
                format!("sum by ({CLIENT}) (rate({requests}[{RATE}]))"),
                CLIENT_LEGEND,
            ),
            timeseries("Success rate by client (non-5xx)", "percentunit").target(
                format!(
                    "sum by ({CLIENT}) (rate({ok}[{RATE}]))\n/\nsum by ({CLIENT}) (rate({requests}[{RATE}]))"
                ),
                CLIENT_LEGEND,
            ),
            timeseries("P99 latency by client", "ms").target(
                quantile(0.99, DURATION_MS, &client, CLIENT, RATE),
                CLIENT_LEGEND,
            ),
        ],
    );
    d.line(
        8,
        vec![
            timeseries("5xx by code and response flag", "reqps")
                .target(
                    format!("sum by (response_code, response_flags) (rate({failed}[{RATE}]))"),
                    "{{response_code}} {{response_flags}}",
                )
                .describe("A flag other than \"-\" means the client-side proxy produced the error (UO: circuit breaker, NR: no route, UH: no healthy upstream, ...)."),
            timeseries("Request size", "decbytes")
                .target(quantile(0.5, REQUEST_BYTES, &client, "", RATE), "P50")
                .target(quantile(0.9, REQUEST_BYTES, &client, "", RATE), "P90")
                .target(quantile(0.99, REQUEST_BYTES, &client, "", RATE), "P99"),
            timeseries("Response size", "decbytes")
                .target(quantile(0.5, RESPONSE_BYTES, &client, "", RATE), "P50")
                .target(quantile(0.9, RESPONSE_BYTES, &client, "", RATE), "P90")
                .target(quantile(0.99, RESPONSE_BYTES, &client, "", RATE), "P99"),
        ],
    );

    let requests = sel(REQUESTS, &server);
    let ok = sel(REQUESTS, &[DST, SERVICE, NOT_5XX]);
    let sent = sel("istio_tcp_sent_bytes_total", &server);
    let opened = sel("istio_tcp_connections_opened_total", &server);
    let closed = sel("istio_tcp_connections_closed_total", &server);
    d.row("Service workloads (reported by the server-side proxies)");
    d.line(
        8,
        vec![
            timeseries("Requests by workload", "reqps").target(
                format!("sum by ({SERVER}, destination_version) (rate({requests}[{RATE}]))"),
                "{{destination_workload}}.{{destination_workload_namespace}} {{destination_version}}",
            ),
            timeseries("Success rate by workload (non-5xx)", "percentunit").target(
                format!(
                    "sum by ({SERVER}) (rate({ok}[{RATE}]))\n/\nsum by ({SERVER}) (rate({requests}[{RATE}]))"
                ),
                SERVER_LEGEND,
            ),
            timeseries("Latency by workload", "ms")
                .target(quantile(0.5, DURATION_MS, &server, SERVER, RATE), &format!("P50 {SERVER_LEGEND}"))
                .target(quantile(0.99, DURATION_MS, &server, SERVER, RATE), &format!("P99 {SERVER_LEGEND}")),
        ],
    );
    d.line(
        8,
        vec![
            timeseries("Requests by security policy", "reqps")
                .target(
                    format!("sum by (connection_security_policy) (rate({requests}[{RATE}]))"),
                    "{{connection_security_policy}}",
                )
                .describe("mutual_tls: the request arrived over mesh mTLS; none: plaintext."),
            timeseries("TCP bytes by workload", "Bps")
                .target(
                    format!("sum by ({SERVER}) (rate({received}[{RATE}]))"),
                    &format!("received {SERVER_LEGEND}"),
                )
                .target(
                    format!("sum by ({SERVER}) (rate({sent}[{RATE}]))"),
                    &format!("sent {SERVER_LEGEND}"),
                ),
            timeseries("TCP connections", "cps")
                .target(format!("sum(rate({opened}[{RATE}]))"), "opened")
                .target(format!("sum(rate({closed}[{RATE}]))"), "closed"),
        ],
    );
    d.to_json()
}
