use std::collections::BTreeMap;
use std::time::Duration;

use weft_api::{LogSink, ReporterMode, TraceProtocol, TraceProvider};
use weft_config::Bundle;

use super::*;

fn instance(name: &str, ns: &str, labels: &[(&str, &str)]) -> WorkloadInstance {
    WorkloadInstance {
        name: format!("{name}-0"),
        namespace: ns.to_string(),
        workload: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        service_account: "default".into(),
        address: "10.0.0.1".parse().unwrap(),
        ports: BTreeMap::new(),
        proxy: None,
    }
}

fn telemetry_of(yaml: &str, inst: &WorkloadInstance) -> TelemetryConfig {
    let b = Bundle::load_str("t.yaml", yaml);
    assert!(
        b.diagnostics
            .iter()
            .all(|d| d.severity != weft_config::Severity::Error),
        "{:?}",
        b.diagnostics
    );
    let snapshot = Snapshot::new(&b.objects);
    compile(&snapshot, inst)
}

const OPERATOR: &str = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: io, namespace: istio-system}\nspec:\n  meshConfig:\n";

#[test]
fn a_lower_level_re_enables_what_a_parent_disabled() {
    let yaml = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: root, namespace: istio-system}\nspec:\n  metrics:\n  - overrides: [{match: {metric: REQUEST_SIZE}, disabled: true}]\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: w, namespace: shop}\nspec:\n  selector: {matchLabels: {app: cart}}\n  metrics:\n  - overrides: [{match: {metric: REQUEST_SIZE}, disabled: false}]\n";
    let t = telemetry_of(yaml, &instance("cart", "shop", &[("app", "cart")]));
    let disabled: Vec<Option<bool>> = t.metrics.overrides.iter().map(|o| o.disabled).collect();
    assert_eq!(disabled, [Some(true), Some(false)]);
    // Another workload only sees the root's.
    let t = telemetry_of(yaml, &instance("web", "shop", &[("app", "web")]));
    assert_eq!(t.metrics.overrides.len(), 1);
}

#[test]
fn metrics_follow_the_providers_in_scope() {
    // No Telemetry: the default provider (prometheus) is on.
    let t = telemetry_of("", &instance("a", "ns", &[]));
    assert!(t.metrics.enabled && t.is_default());
    // An explicit empty list: off (unset means Istio's Helm default, prometheus).
    let none = format!("{OPERATOR}    defaultProviders: {{metrics: []}}\n");
    assert!(
        !telemetry_of(&none, &instance("a", "ns", &[]))
            .metrics
            .enabled
    );
    let unset = format!("{OPERATOR}    defaultProviders: {{tracing: []}}\n");
    assert!(
        telemetry_of(&unset, &instance("a", "ns", &[]))
            .metrics
            .enabled
    );
    // defaultProviders names another provider only: off.
    let yaml = format!("{OPERATOR}    defaultProviders: {{metrics: [stackdriver]}}\n");
    assert!(
        !telemetry_of(&yaml, &instance("a", "ns", &[]))
            .metrics
            .enabled
    );
    // A namespace Telemetry naming prometheus turns it on there.
    let yaml = format!(
        "{yaml}---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: n, namespace: ns}}\nspec:\n  metrics: [{{providers: [{{name: prometheus}}]}}]\n"
    );
    assert!(
        telemetry_of(&yaml, &instance("a", "ns", &[]))
            .metrics
            .enabled
    );
    assert!(
        !telemetry_of(&yaml, &instance("a", "other", &[]))
            .metrics
            .enabled
    );
}

#[test]
fn access_log_file_only_without_telemetry_logging() {
    let yaml = format!("{OPERATOR}    accessLogFile: /dev/stderr\n");
    let t = telemetry_of(&yaml, &instance("a", "ns", &[]));
    assert_eq!(t.access_logs.len(), 1);
    assert_eq!(t.access_logs[0].sink, LogSink::Stderr);
    // A Telemetry that turns `envoy` off takes over: no log at all.
    let yaml = format!(
        "{yaml}---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: n, namespace: ns}}\nspec:\n  accessLogging: [{{providers: [{{name: envoy}}], disabled: true}}]\n"
    );
    assert!(
        telemetry_of(&yaml, &instance("a", "ns", &[]))
            .access_logs
            .is_empty()
    );
    // An invalid filter logs nothing rather than everything.
    let yaml = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: n, namespace: ns}\nspec:\n  accessLogging: [{providers: [{name: envoy}], filter: {expression: 'response.cod > 1'}}]\n";
    let t = telemetry_of(yaml, &instance("a", "ns", &[]));
    assert_eq!(t.access_logs[0].filter, Some(weft_api::Expr::Bool(false)));
    assert_eq!(t.access_logs[0].mode, ReporterMode::ClientAndServer);
}

#[test]
fn tracing_builtin_collector_and_enable_tracing() {
    let builtin = TraceProvider {
        name: "weft-control".into(),
        protocol: TraceProtocol::OtlpGrpc,
        endpoint: "127.0.0.1:15090".into(),
        path: String::new(),
        service_name: String::new(),
        max_queued_spans: 2048,
        max_batch: 512,
        flush_interval: Duration::from_secs(1),
    };
    let b = Bundle::load_str("t.yaml", "");
    let snapshot = Snapshot::new(&b.objects).with_builtin_trace_collector(Some(builtin.clone()));
    let t = compile(&snapshot, &instance("cart", "shop", &[("app", "cart")]));
    let tracing = t.tracing.expect("the built-in collector is used");
    assert_eq!(tracing.provider.endpoint, "127.0.0.1:15090");
    assert_eq!(tracing.provider.service_name, "cart.shop");
    assert_eq!(tracing.sampling_percent, 1.0);
    // Without it, no provider means no tracing.
    assert!(
        compile(&Snapshot::new(&b.objects), &instance("a", "ns", &[]))
            .tracing
            .is_none()
    );
    // enableTracing: false wins over everything.
    let b = Bundle::load_str("t.yaml", &format!("{OPERATOR}    enableTracing: false\n"));
    let snapshot = Snapshot::new(&b.objects).with_builtin_trace_collector(Some(builtin));
    assert!(
        compile(&snapshot, &instance("a", "ns", &[]))
            .tracing
            .is_none()
    );
}

#[test]
fn target_refs_select_through_services_and_gateways() {
    let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: cart, namespace: shop}\nspec:\n  selector: {app: cart}\n  ports: [{port: 80}]\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: by-svc, namespace: shop}\nspec:\n  targetRefs: [{kind: Service, group: '', name: cart}, {kind: Gateway, group: gateway.networking.k8s.io, name: edge}]\n  metrics: [{overrides: [{disabled: true}]}]\n";
    let t = telemetry_of(yaml, &instance("cart", "shop", &[("app", "cart")]));
    assert_eq!(t.metrics.overrides.len(), 1);
    let gw = instance("edge", "shop", &[(GATEWAY_NAME_LABEL, "edge")]);
    assert_eq!(telemetry_of(yaml, &gw).metrics.overrides.len(), 1);
    let t = telemetry_of(yaml, &instance("web", "shop", &[("app", "web")]));
    assert!(t.metrics.overrides.is_empty());
}

#[test]
fn cluster_id_defaults_to_kubernetes() {
    assert_eq!(cluster_id(&MeshConfig::default()), "Kubernetes");
    let m = MeshConfig::parse_str(
        "m",
        "defaultConfig: {proxyMetadata: {ISTIO_META_CLUSTER_ID: east}}\n",
    )
    .unwrap();
    assert_eq!(cluster_id(&m), "east");
}
