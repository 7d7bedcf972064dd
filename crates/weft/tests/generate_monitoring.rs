//! `weft generate monitoring` as a user runs it: the real binary writes into a temp dir, the
//! dashboards are checked against Grafana's JSON model and the metric names weft and Istio
//! serve, and Prometheus' own `promtool` checks the PromQL and fires the alerts on series.
//!
//! promtool comes from the Debian package `prometheus`. A missing promtool fails these tests
//! (in CI and elsewhere): a skipped check would hide broken queries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use yaml_rust2::{Yaml, YamlLoader};

#[path = "generate_monitoring/cert_alerts.rs"]
mod cert_alerts;
#[path = "generate_monitoring/promql_text.rs"]
mod promql_text;

use promql_text::{expand, names};

const DASHBOARDS: [(&str, &str); 4] = [
    ("mesh-overview.json", "weft / Mesh overview"),
    ("service.json", "weft / Service"),
    ("workload.json", "weft / Workload"),
    ("control-plane.json", "weft / Control plane"),
];
const RULES: &str = "weft-alerts.yaml";

/// Every metric the dashboards and alerts may read: Istio's standard metrics, the weft proxy's
/// and control plane's, and Prometheus' `up`. Histograms are read through their series.
const KNOWN_METRICS: &[&str] = &[
    "istio_requests_total",
    "istio_request_duration_milliseconds_bucket",
    "istio_request_duration_milliseconds_sum",
    "istio_request_duration_milliseconds_count",
    "istio_request_bytes_bucket",
    "istio_request_bytes_sum",
    "istio_request_bytes_count",
    "istio_response_bytes_bucket",
    "istio_response_bytes_sum",
    "istio_response_bytes_count",
    "istio_tcp_sent_bytes_total",
    "istio_tcp_received_bytes_total",
    "istio_tcp_connections_opened_total",
    "istio_tcp_connections_closed_total",
    "weft_certificate_expiry_seconds",
    "weft_upstream_overflow_total",
    "process_resident_memory_bytes",
    "weft_config_rejected_total",
    "weft_config_applied_total",
    "weft_proxy_ready",
    "up",
    "weft_control_proxies_connected",
    "weft_control_push_duration_seconds_bucket",
    "weft_control_push_duration_seconds_sum",
    "weft_control_push_duration_seconds_count",
    "weft_control_pushes_total",
    "weft_control_acks_total",
    "weft_control_nacks_total",
    "weft_control_config_objects",
    "weft_control_disconnects_total",
    "weft_control_ca_cert_expiry_seconds",
];

/// Istio's standard labels, plus the labels of weft's own metrics and the target labels the
/// default scrape convention uses (docs/monitoring.md).
const KNOWN_LABELS: &[&str] = &[
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
    "le",
    "cluster",
    "status",
    "reason",
    "cert",
    "job",
    "instance",
    "namespace",
    "workload",
];

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .expect("weft runs")
}

/// Runs `weft generate monitoring --out DIR ARGS`; returns its stdout.
fn generate(dir: &Path, args: &[&str]) -> String {
    let out = dir.to_str().unwrap();
    let o = weft(&[&["generate", "monitoring", "--out", out], args].concat());
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect(
            "promtool must be on PATH (Debian package `prometheus`): these tests check the \
             generated PromQL with it and do not skip",
        )
}

fn assert_promtool_ok(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "promtool failed:\n{text}");
    text
}

fn dashboard(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn rules(dir: &Path) -> Yaml {
    let text = std::fs::read_to_string(dir.join(RULES)).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// Every alerting or recording rule of a rule file.
fn rule_list(rules: &Yaml) -> Vec<&Yaml> {
    rules["groups"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_vec().unwrap())
        .collect()
}

/// (dashboard file, panel id, refId, expr) of every query, and the label_values selectors of
/// the template variables (panel id 0).
fn queries(dir: &Path) -> Vec<(String, u64, String, String)> {
    let mut out = Vec::new();
    for (file, _) in DASHBOARDS {
        let d = dashboard(dir, file);
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                let q = v["query"].as_str().unwrap();
                let inner = q
                    .strip_prefix("label_values(")
                    .and_then(|q| q.strip_suffix(')'))
                    .and_then(|q| q.rsplit_once(", "))
                    .unwrap_or_else(|| panic!("{file}: variable query {q}"))
                    .0;
                let name = v["name"].as_str().unwrap();
                out.push((file.to_string(), 0, name.to_string(), inner.to_string()));
            }
        }
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    file.to_string(),
                    p["id"].as_u64().unwrap(),
                    t["refId"].as_str().unwrap().to_string(),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    out
}

#[test]
fn writes_four_dashboards_and_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("monitoring");
    let stdout = generate(&out, &[]);
    for name in DASHBOARDS.map(|(f, _)| f).iter().chain([&RULES]) {
        let path = out.join(name);
        assert!(path.is_file(), "{} missing", path.display());
        assert!(
            stdout.contains(&format!("wrote {}", path.display())),
            "{stdout}"
        );
    }
    assert!(stdout.contains("13 alerts"), "{stdout}");
}

#[test]
fn dashboards_follow_grafanas_model_and_read_known_metrics() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), &[]);
    let mut used = BTreeSet::new();
    for (file, title) in DASHBOARDS {
        let d = dashboard(dir.path(), file);
        assert_eq!(d["title"], title, "{file}");
        assert_eq!(d["schemaVersion"], 39, "{file}");
        let vars: Vec<&str> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["name"].as_str().unwrap())
            .collect();
        let expected: &[&str] = match file {
            "service.json" => &["datasource", "service"],
            "workload.json" => &["datasource", "namespace", "workload"],
            _ => &["datasource"],
        };
        assert_eq!(vars, expected, "{file}");
        assert_eq!(d["templating"]["list"][0]["type"], "datasource");
        assert_eq!(d["templating"]["list"][0]["query"], "prometheus");

        let panels = d["panels"].as_array().unwrap();
        let ids: Vec<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        let unique: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "{file}: duplicate panel ids {ids:?}"
        );

        let grid: Vec<(u64, u64, u64, u64)> = panels
            .iter()
            .map(|p| {
                let n = |k: &str| p["gridPos"][k].as_u64().unwrap();
                (n("x"), n("y"), n("w"), n("h"))
            })
            .collect();
        for (i, a) in grid.iter().enumerate() {
            assert!(a.0 + a.2 <= 24 && a.2 > 0 && a.3 > 0, "{file}: {a:?}");
            for b in &grid[i + 1..] {
                let apart =
                    a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "{file}: panels overlap: {a:?} {b:?}");
            }
        }

        let mut queried = 0;
        for p in panels.iter().filter(|p| p["type"] != "row") {
            let title = p["title"].as_str().unwrap();
            assert!(
                ["stat", "timeseries"].contains(&p["type"].as_str().unwrap()),
                "{file}: {title}"
            );
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets {
                let expr = t["expr"].as_str().unwrap();
                assert!(!expr.trim().is_empty(), "{file}: {title}: empty expr");
                assert_eq!(t["datasource"]["uid"], "${datasource}");
                queried += 1;
            }
        }
        assert!(queried >= 10, "{file}: only {queried} queries");
    }
    for (file, id, ref_id, expr) in queries(dir.path()) {
        let (metrics, labels) = names(&expr);
        assert!(
            !metrics.is_empty(),
            "{file} panel {id}{ref_id}: no metric in {expr}"
        );
        for m in &metrics {
            assert!(
                KNOWN_METRICS.contains(&m.as_str()),
                "{file} panel {id}{ref_id}: unknown metric {m} in {expr}"
            );
        }
        for l in &labels {
            assert!(
                KNOWN_LABELS.contains(&l.as_str()),
                "{file} panel {id}{ref_id}: unknown label {l} in {expr}"
            );
        }
        used.extend(metrics);
    }
    // Each metric family of the contract appears on some dashboard.
    for m in KNOWN_METRICS
        .iter()
        .filter(|m| !m.ends_with("_sum") && !m.ends_with("_count"))
    {
        assert!(used.contains(*m), "no dashboard reads {m}");
    }
}

/// Grafana's variables in a query, replaced so that Prometheus can parse it.
fn as_promql(expr: &str) -> String {
    let e = expr
        .replace("$__rate_interval", "5m")
        .replace("$service", "reviews.default.svc.cluster.local")
        .replace("$namespace", "default")
        .replace("$workload", "reviews-v1");
    assert!(!e.contains('$'), "unhandled Grafana variable in {expr}");
    e
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), &[]);
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let all = queries(dir.path());
    for (file, id, ref_id, expr) in &all {
        let stem = file.trim_end_matches(".json").replace('-', "_");
        groups.entry(stem.clone()).or_default().push(json!({
            "record": format!("weft_dashboard:{stem}:panel_{id}_{ref_id}"),
            "expr": as_promql(expr),
        }));
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, rules)| json!({ "name": name, "rules": rules }))
        .collect();
    // JSON is YAML: promtool reads the rule file as it is.
    let file = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&file, json!({ "groups": groups }).to_string()).unwrap();
    let out = assert_promtool_ok(&promtool(
        dir.path(),
        &["check", "rules", "dashboard-queries.yaml"],
    ));
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", all.len())),
        "{out}"
    );
}

#[test]
fn alert_rules_pass_promtool_and_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), &[]);
    let out = assert_promtool_ok(&promtool(dir.path(), &["check", "rules", RULES]));
    assert!(out.contains("SUCCESS: 13 rules found"), "{out}");

    let rules = rules(dir.path());
    let mut alerts = Vec::new();
    for r in rule_list(&rules) {
        let name = r["alert"].as_str().expect("only alerting rules");
        alerts.push(name);
        assert!(
            r["for"].as_str().is_some_and(|f| f != "0s"),
            "{name}: no for"
        );
        let severity = r["labels"]["severity"].as_str().unwrap();
        assert!(["critical", "warning"].contains(&severity), "{name}");
        let summary = r["annotations"]["summary"].as_str().unwrap();
        let description = r["annotations"]["description"].as_str().unwrap();
        assert!(!summary.is_empty() && description.len() > 80, "{name}");
        let (metrics, labels) = names(r["expr"].as_str().unwrap());
        for m in &metrics {
            assert!(
                KNOWN_METRICS.contains(&m.as_str()),
                "{name}: unknown metric {m}"
            );
        }
        for l in &labels {
            assert!(
                KNOWN_LABELS.contains(&l.as_str()),
                "{name}: unknown label {l}"
            );
        }
    }
    for required in [
        "WeftServiceHighErrorRate",
        "WeftServiceHighLatency",
        "WeftCaCertificateExpiringSoon",
        "WeftWorkloadCertificateExpiringSoon",
        "WeftControlPlanePushRejected",
        "WeftConfigObjectsRejected",
        "WeftControlPlaneDown",
        "WeftProxyMemoryHigh",
        "WeftCircuitBreakerOverflow",
        "WeftGatewayHighErrorRate",
        "WeftGatewayDown",
    ] {
        assert!(
            alerts.contains(&required),
            "{required} missing from {alerts:?}"
        );
    }
}

/// One `exp_alerts` entry: the alert's labels (severity added from the rule) and its
/// annotations expanded from the generated templates.
fn expected(rules: &Yaml, alert: &str, labels: &[(&str, &str)], value: &[(&str, &str)]) -> Value {
    let rule = rule_list(rules)
        .into_iter()
        .find(|r| r["alert"].as_str() == Some(alert))
        .unwrap_or_else(|| panic!("{alert} not generated"));
    let severity = rule["labels"]["severity"].as_str().unwrap();
    let mut exp_labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    exp_labels.insert("severity", severity);
    let annotation = |k: &str| expand(rule["annotations"][k].as_str().unwrap(), labels, value);
    json!({
        "exp_labels": exp_labels,
        "exp_annotations": { "summary": annotation("summary"), "description": annotation("description") },
    })
}

const CART: &str = "cart.shop.svc.cluster.local";
const PRODUCT: &str = "product.shop.svc.cluster.local";

#[test]
fn alerts_fire_on_series_that_break_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), &[]);
    let rules = rules(dir.path());

    // One sample a minute for two hours. cart: 1 req/s OK, 0.5 req/s 503 (33 % errors).
    // product: 1 % errors, under the 5 % threshold. frontend -> cart: circuit breaker (UO).
    // The ingress gateway gets 503 for half of what it forwards (certificates: see
    // `cert_alerts`). One proxy uses 300 MiB (> 256 MiB), the other 100 MiB. The control plane is not
    // scraped (no `up`), but its metrics say a proxy NACKs every minute and two config
    // objects are rejected.
    let series = [
        (format!(r#"istio_requests_total{{reporter="destination", destination_service="{CART}", response_code="200"}}"#), "0+60x120"),
        (format!(r#"istio_requests_total{{reporter="destination", destination_service="{CART}", response_code="503"}}"#), "0+30x120"),
        (format!(r#"istio_requests_total{{reporter="destination", destination_service="{PRODUCT}", response_code="200"}}"#), "0+600x120"),
        (format!(r#"istio_requests_total{{reporter="destination", destination_service="{PRODUCT}", response_code="503"}}"#), "0+6x120"),
        (format!(r#"istio_requests_total{{reporter="source", source_workload="frontend", source_workload_namespace="shop", destination_service="{CART}", response_code="503", response_flags="UO"}}"#), "0+6x120"),
        (format!(r#"istio_requests_total{{reporter="source", source_workload="frontend", source_workload_namespace="shop", destination_service="{CART}", response_code="200", response_flags="-"}}"#), "0+60x120"),
        (format!(r#"istio_requests_total{{reporter="source", source_workload="istio-ingressgateway", source_workload_namespace="istio-system", destination_service="{PRODUCT}", response_code="200", response_flags="-"}}"#), "0+60x120"),
        (format!(r#"istio_requests_total{{reporter="source", source_workload="istio-ingressgateway", source_workload_namespace="istio-system", destination_service="{PRODUCT}", response_code="503", response_flags="-"}}"#), "0+60x120"),
        (r#"process_resident_memory_bytes{job="weft-proxy", instance="10.0.0.7:15020"}"#.into(), "314572800x120"),
        (r#"process_resident_memory_bytes{job="weft-proxy", instance="10.0.0.8:15020"}"#.into(), "104857600x120"),
        (r#"weft_control_nacks_total{job="weft-control", instance="127.0.0.1:15014"}"#.into(), "0+1x120"),
        (r#"weft_control_config_objects{job="weft-control", instance="127.0.0.1:15014", status="rejected"}"#.into(), "2x120"),
        (r#"weft_control_config_objects{job="weft-control", instance="127.0.0.1:15014", status="accepted"}"#.into(), "40x120"),
    ];
    let input_series: Vec<Value> = series
        .iter()
        .map(|(s, v)| json!({ "series": s, "values": v }))
        .collect();
    let rule_tests = json!([
        // Before `for: 5m` has passed the error-rate alert is only pending.
        { "eval_time": "3m", "alertname": "WeftServiceHighErrorRate", "exp_alerts": [] },
        {
            "eval_time": "20m",
            "alertname": "WeftServiceHighErrorRate",
            "exp_alerts": [expected(&rules, "WeftServiceHighErrorRate",
                &[("destination_service", CART)],
                &[("humanizePercentage", "33.33%")])],
        },
        {
            "eval_time": "20m",
            "alertname": "WeftCircuitBreakerOverflow",
            "exp_alerts": [expected(&rules, "WeftCircuitBreakerOverflow",
                &[("source_workload", "frontend"), ("source_workload_namespace", "shop"), ("destination_service", CART)],
                &[])],
        },
        {
            "eval_time": "20m",
            "alertname": "WeftGatewayHighErrorRate",
            "exp_alerts": [expected(&rules, "WeftGatewayHighErrorRate",
                &[("source_workload", "istio-ingressgateway"), ("source_workload_namespace", "istio-system")],
                &[("humanizePercentage", "50%")])],
        },
        {
            "eval_time": "20m",
            "alertname": "WeftProxyMemoryHigh",
            "exp_alerts": [expected(&rules, "WeftProxyMemoryHigh",
                &[("job", "weft-proxy"), ("instance", "10.0.0.7:15020")],
                &[("humanize1024", "300Mi")])],
        },
        {
            "eval_time": "20m",
            "alertname": "WeftControlPlanePushRejected",
            "exp_alerts": [expected(&rules, "WeftControlPlanePushRejected",
                &[("job", "weft-control")],
                &[("printf \"%.0f\"", "10")])],
        },
        {
            "eval_time": "20m",
            "alertname": "WeftConfigObjectsRejected",
            "exp_alerts": [expected(&rules, "WeftConfigObjectsRejected",
                &[("job", "weft-control")],
                &[("printf \"%.0f\"", "2")])],
        },
        {
            "eval_time": "10m",
            "alertname": "WeftControlPlaneDown",
            "exp_alerts": [expected(&rules, "WeftControlPlaneDown", &[("job", "weft-control")], &[])],
        },
    ]);
    let unit = json!({
        "rule_files": [RULES],
        "evaluation_interval": "1m",
        "tests": [{ "interval": "1m", "input_series": input_series, "alert_rule_test": rule_tests }],
    });
    std::fs::write(dir.path().join("alerts-test.yaml"), unit.to_string()).unwrap();
    let out = assert_promtool_ok(&promtool(
        dir.path(),
        &["test", "rules", "alerts-test.yaml"],
    ));
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn flags_set_jobs_labels_and_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        dir.path(),
        &[
            "--proxy-job",
            "mesh-sidecars",
            "--control-job",
            "mesh-cp",
            "--namespace-label",
            "kubernetes_namespace",
            "--workload-label",
            "app",
            "--proxy-memory-bytes",
            "536870912",
            "--cert-expiry-warning",
            "60d",
            "--workload-cert-expiry-warning",
            "90m",
        ],
    );
    let rules = rules(dir.path());
    let exprs: Vec<&str> = rule_list(&rules)
        .iter()
        .map(|r| r["expr"].as_str().unwrap())
        .collect();
    let has = |part: &str| exprs.iter().any(|e| e.contains(part));
    let panels = queries(dir.path());
    for e in exprs
        .iter()
        .copied()
        .chain(panels.iter().map(|q| q.3.as_str()))
    {
        assert!(
            !e.contains(r#"job="weft-proxy""#) && !e.contains(r#"job="weft-control""#),
            "default job left in {e}"
        );
    }
    assert!(
        has(r#"process_resident_memory_bytes{job="mesh-sidecars"} > 536870912"#),
        "{exprs:#?}"
    );
    assert!(
        has(r#"weft_control_ca_cert_expiry_seconds{job="mesh-cp"} - time() < 60 * 86400"#),
        "{exprs:#?}"
    );
    assert!(
        has(r#"weft_certificate_expiry_seconds{job="mesh-sidecars"} - time() < 5400"#),
        "{exprs:#?}"
    );
    assert!(has(r#"up{job="mesh-cp"} == 0"#), "{exprs:#?}");
    assert!(
        has(r#"up{job="mesh-sidecars", app=~".*gateway.*"} == 0"#),
        "{exprs:#?}"
    );
    assert!(
        panels.iter().any(|(file, _, _, e)| file == "workload.json"
            && e.contains(r#"process_resident_memory_bytes{job="mesh-sidecars", kubernetes_namespace="$namespace", app="$workload"}"#)),
    );
    assert_promtool_ok(&promtool(dir.path(), &["check", "rules", RULES]));
}

#[test]
fn a_bad_label_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = weft(&[
        "generate",
        "monitoring",
        "--out",
        out,
        "--namespace-label",
        "k8s-namespace",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("is not a Prometheus label name"),
        "{stderr}"
    );
    assert!(!dir.path().join(RULES).exists());
}
