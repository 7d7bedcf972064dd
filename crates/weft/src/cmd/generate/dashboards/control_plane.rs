//! `control-plane.json`: is the control plane up, are proxies connected, are pushes fast and
//! accepted, is any config rejected, and when do the CA's certificates expire.

use serde_json::Value;

use super::{
    super::grafana::{Dashboard, label, stat, timeseries},
    super::promql::{RATE, quantile, sel},
    Scrape,
};

pub fn control_plane(s: &Scrape) -> Value {
    let mut d = Dashboard::new(
        "weft-control-plane",
        "weft / Control plane",
        "weft control: connected proxies, config pushes (change to ACK), ACK/NACK, rejected config, disconnects.",
    );
    let control = s.control();
    let control = [control.as_str()];
    let proxy = s.proxy();
    let connected = sel("weft_control_proxies_connected", &control);
    let accepted = sel(
        "weft_control_config_objects",
        &[control[0], r#"status="accepted""#],
    );
    let rejected = sel(
        "weft_control_config_objects",
        &[control[0], r#"status="rejected""#],
    );
    let nacks = sel("weft_control_nacks_total", &control);
    d.row("Summary");
    d.line(
        4,
        vec![
            stat("Up", "none", format!("sum({})", sel("up", &control)))
                .describe("Control plane instances Prometheus can scrape.")
                .thresholds(&[(None, "red"), (Some(1.0), "green")]),
            stat("Proxies connected", "none", format!("sum({connected})")),
            stat(
                "Config objects accepted",
                "none",
                format!("sum({accepted})"),
            ),
            stat(
                "Config objects rejected",
                "none",
                format!("sum({rejected}) or vector(0)"),
            )
            .describe("`weft status` lists them with the field and the reason.")
            .thresholds(&[(None, "green"), (Some(1.0), "red")]),
            stat(
                "P99 push time",
                "s",
                quantile(
                    0.99,
                    "weft_control_push_duration_seconds",
                    &control,
                    "",
                    RATE,
                ),
            ),
            stat(
                "NACKs (last hour)",
                "none",
                format!("sum(increase({nacks}[1h])) or vector(0)"),
            )
            .describe("`weft proxy-status` shows which proxy rejected what, and why.")
            .thresholds(&[(None, "green"), (Some(1.0), "red")]),
        ],
    );

    let pushes = sel("weft_control_pushes_total", &control);
    let acks = sel("weft_control_acks_total", &control);
    d.row("Config push");
    d.line(
        8,
        vec![
            timeseries("Pushes", "ops").target(format!("sum(rate({pushes}[{RATE}]))"), "pushes"),
            timeseries("ACK / NACK", "ops")
                .target(format!("sum(rate({acks}[{RATE}]))"), "ACK")
                .target(format!("sum(rate({nacks}[{RATE}]))"), "NACK"),
            timeseries("Push time (config change to ACK)", "s")
                .target(
                    quantile(
                        0.5,
                        "weft_control_push_duration_seconds",
                        &control,
                        "",
                        RATE,
                    ),
                    "P50",
                )
                .target(
                    quantile(
                        0.9,
                        "weft_control_push_duration_seconds",
                        &control,
                        "",
                        RATE,
                    ),
                    "P90",
                )
                .target(
                    quantile(
                        0.99,
                        "weft_control_push_duration_seconds",
                        &control,
                        "",
                        RATE,
                    ),
                    "P99",
                ),
        ],
    );

    let disconnects = sel("weft_control_disconnects_total", &control);
    let objects = sel("weft_control_config_objects", &control);
    d.row("Proxies and config");
    d.line(
        8,
        vec![
            timeseries("Connected proxies by instance", "none")
                .target(connected.clone(), &label("instance")),
            timeseries("Disconnects by reason", "ops").target(
                format!("sum by (reason) (rate({disconnects}[{RATE}]))"),
                "{{reason}}",
            ),
            timeseries("Config objects by status", "none")
                .target(format!("sum by (status) ({objects})"), "{{status}}"),
        ],
    );

    let memory = sel("process_resident_memory_bytes", &control);
    let not_ready = sel("weft_proxy_ready", &[&proxy]);
    let proxy_rejected = sel("weft_config_rejected_total", &[&proxy]);
    let ca_expiry = sel("weft_control_ca_cert_expiry_seconds", &control);
    d.line(
        8,
        vec![
            timeseries("Control plane memory", "bytes").target(memory, &label("instance")),
            timeseries("Proxies not ready", "none")
                .target(format!("count({not_ready} == 0) or vector(0)"), "not ready")
                .describe("Proxies without a first config or certificate (their /ready is false)."),
            timeseries("Configs rejected by proxies", "ops")
                .target(format!("sum(rate({proxy_rejected}[{RATE}]))"), "rejected")
                .describe("Proxies keep their last good config when they reject a push."),
            timeseries("CA certificates time to expiry", "s")
                .target(format!("min by (cert) ({ca_expiry} - time())"), "{{cert}}")
                .describe("The CA's root and plugged-in intermediate; workload certificates never outlive them. Renew or rotate well before zero."),
        ],
    );
    d.to_json()
}
