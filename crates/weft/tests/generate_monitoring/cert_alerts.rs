//! The two certificate alerts under promtool, with the default thresholds: the CA's
//! certificates (30 days) and the proxies' workload certificates (6 h: renewal, due at half
//! of a 24 h lifetime, keeps failing). promtool's clock starts at 0, so an expiry of
//! `5400 + d` is `d` away at the 90-minute evaluation.

use serde_json::{Value, json};

use super::{RULES, assert_promtool_ok, expected, generate, promtool, rules};

const DAY: u64 = 86_400;
const HOUR: u64 = 3_600;
/// The evaluation time of the firing checks, 90 minutes, in seconds.
const AT: u64 = 5_400;

fn constant(v: u64) -> String {
    format!("{}x120", AT + v)
}

#[test]
fn ca_and_workload_certificate_alerts_fire_only_when_close() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), &[]);
    let rules = rules(dir.path());
    let control = r#"job="weft-control", instance="127.0.0.1:15014""#;
    let proxy = |ip: &str, workload: &str| {
        format!(
            r#"weft_certificate_expiry_seconds{{job="weft-proxy", instance="{ip}:15020", namespace="shop", workload="{workload}"}}"#
        )
    };
    // The plugged-in intermediate expires in 10 days, the root in 60; cart's workload
    // certificate in 2 h (renewal failing), product's in 20 h (fresh enough).
    let series = [
        (
            format!(r#"weft_control_ca_cert_expiry_seconds{{{control}, cert="intermediate"}}"#),
            constant(10 * DAY),
        ),
        (
            format!(r#"weft_control_ca_cert_expiry_seconds{{{control}, cert="root"}}"#),
            constant(60 * DAY),
        ),
        (proxy("10.0.0.7", "cart"), constant(2 * HOUR)),
        (proxy("10.0.0.8", "product"), constant(20 * HOUR)),
    ];
    let input_series: Vec<Value> = series
        .iter()
        .map(|(s, v)| json!({ "series": s, "values": v }))
        .collect();
    let ca = "WeftCaCertificateExpiringSoon";
    let workload = "WeftWorkloadCertificateExpiringSoon";
    let ca_labels = [
        ("job", "weft-control"),
        ("instance", "127.0.0.1:15014"),
        ("cert", "intermediate"),
    ];
    let cart = [
        ("job", "weft-proxy"),
        ("instance", "10.0.0.7:15020"),
        ("namespace", "shop"),
        ("workload", "cart"),
    ];
    let rule_tests = json!([
        // `for: 1h`: still pending after 30 minutes.
        { "eval_time": "30m", "alertname": ca, "exp_alerts": [] },
        {
            "eval_time": "90m",
            "alertname": ca,
            "exp_alerts": [expected(&rules, ca, &ca_labels,
                &[("humanizeDuration", "10d 0h 0m 0s")])],
        },
        // `for: 15m`.
        { "eval_time": "10m", "alertname": workload, "exp_alerts": [] },
        {
            "eval_time": "90m",
            "alertname": workload,
            "exp_alerts": [expected(&rules, workload, &cart,
                &[("humanizeDuration", "2h 0m 0s")])],
        },
    ]);
    let unit = json!({
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": [{ "interval": "1m", "input_series": input_series, "alert_rule_test": rule_tests }],
    });
    std::fs::write(dir.path().join("cert-test.yaml"), unit.to_string()).unwrap();
    let out = assert_promtool_ok(&promtool(dir.path(), &["test", "rules", "cert-test.yaml"]));
    assert!(out.contains("SUCCESS"), "{out}");
}
