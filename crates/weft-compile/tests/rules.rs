//! Focused checks of the rules most easily got wrong, compiled from inline YAML.

use weft_api::{ProxyConfig, RouteAction};
use weft_compile::{Snapshot, compile, parse_registry};
use weft_config::Bundle;

const REGISTRY: &str = "instances:
- {name: client-0, namespace: a, labels: {app: client}, address: 10.0.0.1, proxy: {capture: transparent}}
- {name: client-1, namespace: b, labels: {app: client}, address: 10.0.0.2, proxy: {capture: transparent}}
- {name: svc-v1, namespace: b, labels: {app: svc, version: v1}, address: 10.0.0.3}
- {name: svc-v2, namespace: b, labels: {app: svc, version: v2}, address: 10.0.0.4}
- {name: bare, namespace: b, labels: {app: bare}, address: 10.0.0.5}
";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: svc, namespace: b}
spec:
  selector: {app: svc}
  ports: [{name: http, port: 80}, {name: http-admin, port: 81}]
";

fn compile_for(config: &str, id: &str) -> ProxyConfig {
    let bundle = Bundle::load_str("t.yaml", &format!("{SERVICE}---\n{config}"));
    let errors: Vec<_> = bundle
        .diagnostics
        .iter()
        .filter(|d| d.severity == weft_config::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let registry = parse_registry("r.yaml", REGISTRY).unwrap();
    compile(&Snapshot::new(&bundle.objects), &registry, id).unwrap()
}

fn first_cluster(cfg: &ProxyConfig, table: &str, vhost: &str) -> String {
    let t = cfg
        .route_table(table)
        .unwrap_or_else(|| panic!("no table {table}"));
    let vh = t
        .virtual_hosts
        .iter()
        .find(|v| v.name == vhost)
        .unwrap_or_else(|| panic!("no vhost {vhost}"));
    match &vh.routes[0].action {
        RouteAction::Forward(f) => f.clusters[0].cluster.clone(),
        other => panic!("not a forward: {other:?}"),
    }
}

const HOST: &str = "svc.b.svc.cluster.local";

#[test]
fn destination_rule_lookup_prefers_client_then_service_then_root_namespace() {
    let dr = |ns: &str, lb: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: dr-{ns}, namespace: {ns}}}\nspec:\n  host: {HOST}\n  trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}\n---\n"
        )
    };
    let lb = |cfg: &ProxyConfig| {
        format!(
            "{:?}",
            cfg.cluster(&format!("outbound|80||{HOST}")).unwrap().lb
        )
    };
    let all = format!(
        "{}{}{}",
        dr("a", "RANDOM"),
        dr("b", "ROUND_ROBIN"),
        dr("istio-system", "LEAST_REQUEST")
    );
    assert_eq!(
        lb(&compile_for(&all, "client-0.a")),
        "Random",
        "client namespace first"
    );
    let no_client = format!("{}{}", dr("b", "ROUND_ROBIN"), dr("istio-system", "RANDOM"));
    assert_eq!(
        lb(&compile_for(&no_client, "client-0.a")),
        "RoundRobin",
        "then the service namespace"
    );
    let root_only = dr("istio-system", "RANDOM");
    assert_eq!(
        lb(&compile_for(&root_only, "client-0.a")),
        "Random",
        "then the root namespace"
    );
    // A rule in another, unrelated namespace never applies.
    let elsewhere = dr("c", "RANDOM");
    assert_eq!(lb(&compile_for(&elsewhere, "client-0.a")), "LeastRequest");
}

#[test]
fn port_level_settings_replace_the_top_level_policy() {
    let cfg = compile_for(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc, namespace: b}
spec:
  host: svc
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 7}}
    portLevelSettings:
    - port: {number: 81}
      outlierDetection: {consecutive5xxErrors: 1}
",
        "client-0.a",
    );
    let p80 = cfg.cluster(&format!("outbound|80||{HOST}")).unwrap();
    assert_eq!(p80.lb, weft_api::LbPolicy::RoundRobin);
    assert_eq!(p80.limits.max_connections, 7);
    assert!(p80.outlier_detection.is_none());
    let p81 = cfg.cluster(&format!("outbound|81||{HOST}")).unwrap();
    assert_eq!(
        p81.lb,
        weft_api::LbPolicy::LeastRequest,
        "not inherited from the top level"
    );
    assert_eq!(
        p81.limits.max_connections,
        u32::MAX,
        "not inherited from the top level"
    );
    assert_eq!(p81.outlier_detection.as_ref().unwrap().consecutive_5xx, 1);
    assert_eq!(
        p81.outlier_detection.as_ref().unwrap().max_ejection_percent,
        10,
        "Istio default"
    );
}

#[test]
fn sidecars_keep_the_oldest_virtual_service_for_a_host() {
    let vs = |name: &str, created: &str, subset: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: b, creationTimestamp: \"{created}\"}}\nspec:\n  hosts: [svc]\n  http:\n  - route: [{{destination: {{host: svc, subset: {subset}}}}}]\n---\n"
        )
    };
    let config = format!(
        "{}{}",
        vs("a-newer", "2024-05-01T00:00:00Z", "v2"),
        vs("z-older", "2024-01-01T00:00:00Z", "v1")
    );
    let cfg = compile_for(&config, "client-0.a");
    assert_eq!(
        first_cluster(&cfg, "outbound|80", &format!("{HOST}:80")),
        format!("outbound|80|v1|{HOST}")
    );
    // Without timestamps the name decides.
    let config = format!("{}{}", vs("a-first", "", "v2"), vs("b-second", "", "v1"));
    let cfg = compile_for(
        &config.replace("creationTimestamp: \"\", ", ""),
        "client-0.a",
    );
    assert_eq!(
        first_cluster(&cfg, "outbound|80", &format!("{HOST}:80")),
        format!("outbound|80|v2|{HOST}")
    );
}

#[test]
fn short_names_resolve_in_the_rule_namespace_and_are_not_domains_elsewhere() {
    // `svc` in a VirtualService of namespace b means svc.b; the same rule in namespace a
    // would name svc.a (which does not exist) and route nothing.
    let config = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: in-a, namespace: a}
spec:
  hosts: [svc]
  http:
  - directResponse: {status: 418}
";
    let cfg = compile_for(config, "client-0.a");
    let table = cfg.route_table("outbound|80").unwrap();
    let vh = table
        .virtual_hosts
        .iter()
        .find(|v| v.name == format!("{HOST}:80"))
        .unwrap();
    assert_eq!(
        vh.routes[0].name, "default",
        "a VirtualService for svc.a does not touch svc.b"
    );
    assert!(
        !vh.domains.contains(&"svc".to_string()),
        "no bare short name from another namespace"
    );
    assert!(vh.domains.contains(&"svc.b".to_string()));
    // From namespace b the bare name works.
    let cfg = compile_for(config, "client-1.b");
    let vh = cfg
        .route_table("outbound|80")
        .unwrap()
        .virtual_hosts
        .iter()
        .find(|v| v.name == format!("{HOST}:80"))
        .cloned()
        .unwrap();
    assert!(vh.domains.contains(&"svc".to_string()) && vh.domains.contains(&"svc:80".to_string()));
}

#[test]
fn match_port_limits_a_route_to_that_port() {
    let cfg = compile_for(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc, namespace: b}
spec:
  hosts: [svc]
  http:
  - match: [{port: 81}]
    route: [{destination: {host: svc, port: {number: 81}}}]
    timeout: 2s
",
        "client-0.a",
    );
    let vh81 = cfg
        .route_table("outbound|81")
        .unwrap()
        .virtual_hosts
        .iter()
        .find(|v| v.name == format!("{HOST}:81"))
        .cloned()
        .unwrap();
    assert_eq!(vh81.routes.len(), 1);
    assert!(
        vh81.routes[0].matches.is_empty(),
        "a port-only match is a catch-all on its port"
    );
    let vh80 = cfg
        .route_table("outbound|80")
        .unwrap()
        .virtual_hosts
        .iter()
        .find(|v| v.name == format!("{HOST}:80"))
        .cloned()
        .unwrap();
    assert_eq!(
        vh80.routes[0].name, "default",
        "port 80 keeps the default route"
    );
}

#[test]
fn unknown_and_proxyless_ids_are_errors() {
    let bundle = Bundle::load_str("t.yaml", SERVICE);
    let registry = parse_registry("r.yaml", REGISTRY).unwrap();
    let snapshot = Snapshot::new(&bundle.objects);
    let e = compile(&snapshot, &registry, "nope.a")
        .unwrap_err()
        .to_string();
    assert!(e.contains("client-0.a"), "{e}");
    let e = compile(&snapshot, &registry, "bare.b")
        .unwrap_err()
        .to_string();
    assert!(e.contains("runs no proxy"), "{e}");
}

#[test]
fn registry_only_blocks_unknown_http_with_502() {
    let cfg = compile_for(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
",
        "client-0.a",
    );
    let t = cfg.route_table("outbound|80").unwrap();
    assert_eq!(t.not_found, weft_api::NotFound::BlockedByPolicy502);
    assert!(t.virtual_hosts.iter().all(|v| v.name != "allow_any"));
    let outbound = cfg.listeners.iter().find(|l| l.name == "outbound").unwrap();
    assert!(
        matches!(&outbound.fallback, weft_api::Fallback::Blackhole { reason } if reason.contains("Sidecar a/default"))
    );
    // Other namespaces keep ALLOW_ANY.
    let cfg = compile_for(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n",
        "client-1.b",
    );
    assert_eq!(
        cfg.listeners
            .iter()
            .find(|l| l.name == "outbound")
            .unwrap()
            .fallback,
        weft_api::Fallback::Passthrough
    );
}
