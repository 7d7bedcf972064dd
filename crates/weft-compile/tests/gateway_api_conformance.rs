//! The Gateway API conformance request → response tables (`conformance/gateway-api/
//! EXPECTED.json`) evaluated against compiled route tables.
//!
//! For every table row whose expectation is a backend, a 404/500 or a redirect status, the
//! test compiles the base manifests plus the test's manifests, picks the proxy the request
//! would cross (the gateway instance of the Gateway the test's routes attach to, or a mesh
//! client sidecar), and walks the route table with a small matcher written here (weft-proxy
//! owns the real one and weft-compile must not depend on it). Rows that need a live system
//! (timeouts, CORS responses, requests to a pod IP or with a Host header that differs from
//! the destination) are listed as skipped with the reason.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use weft_api::{
    PathMatch, ProxyConfig, RouteAction, RouteMatch, RouteTable, StringMatch, VirtualHost,
};
use weft_compile::{ProxySettings, Registry, Snapshot, WorkloadInstance, compile};
use weft_config::{Body, Bundle};

const MESH_NS: &str = "gateway-conformance-mesh";
const CONSUMER_NS: &str = "gateway-conformance-mesh-consumer";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/gateway-api")
}

fn conformance_dir() -> PathBuf {
    std::env::var("WEFT_CONFORMANCE")
        .map(|d| PathBuf::from(d).join("gateway-api"))
        .unwrap_or_else(|_| {
            let local = root();
            if local.exists() {
                local
            } else {
                PathBuf::from("/work/shared/conformance/gateway-api")
            }
        })
}

/// What a request ended in.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Backend(String),
    Status(u16),
}

struct Request {
    host: String,
    path: String,
    method: String,
    headers: BTreeMap<String, String>,
}

fn string_match(m: &StringMatch, v: Option<&str>) -> bool {
    match (m, v) {
        (StringMatch::Present, v) => v.is_some(),
        (_, None) => false,
        (StringMatch::Exact(e), Some(v)) => e == v,
        (StringMatch::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
        (StringMatch::Suffix(s), Some(v)) => v.ends_with(s.as_str()),
        (StringMatch::Regex(r), Some(v)) => regex::Regex::new(&format!("^(?:{r})$"))
            .map(|re| re.is_match(v))
            .unwrap_or(false),
    }
}

fn path_match(m: &PathMatch, path: &str) -> bool {
    match m {
        PathMatch::Exact { value, ignore_case } => {
            if *ignore_case {
                value.eq_ignore_ascii_case(path)
            } else {
                value == path
            }
        }
        PathMatch::Prefix { value, ignore_case } => {
            if *ignore_case {
                path.to_ascii_lowercase()
                    .starts_with(&value.to_ascii_lowercase())
            } else {
                path.starts_with(value.as_str())
            }
        }
        PathMatch::SegmentPrefix { value } => {
            let v = value.trim_end_matches('/');
            path == v || path.starts_with(&format!("{v}/")) || v.is_empty()
        }
        PathMatch::Regex { regex } => regex::Regex::new(&format!("^(?:{regex})$"))
            .map(|re| re.is_match(path))
            .unwrap_or(false),
    }
}

fn matches(m: &RouteMatch, req: &Request) -> bool {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .collect();
    m.path.as_ref().is_none_or(|p| path_match(p, path))
        && m.headers.iter().all(|h| {
            let v = req
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&h.name))
                .map(|(_, v)| v.as_str());
            if h.invert {
                !string_match(&h.value, Some(v.unwrap_or("")))
            } else {
                string_match(&h.value, v)
            }
        })
        && m.query_params.iter().all(|q| {
            let v = params.iter().find(|(k, _)| *k == q.name).map(|(_, v)| *v);
            string_match(&q.value, v)
        })
        && m.method
            .as_ref()
            .is_none_or(|me| string_match(me, Some(&req.method)))
        && m.authority
            .as_ref()
            .is_none_or(|a| string_match(a, Some(&req.host)))
}

/// Exact domain, then the longest matching `*.suffix`, then `*`.
fn virtual_host<'t>(table: &'t RouteTable, host: &str) -> Option<&'t VirtualHost> {
    let host = host.to_ascii_lowercase();
    let exact = table
        .virtual_hosts
        .iter()
        .find(|v| v.domains.iter().any(|d| d.eq_ignore_ascii_case(&host)));
    exact
        .or_else(|| {
            table
                .virtual_hosts
                .iter()
                .flat_map(|v| v.domains.iter().map(move |d| (v, d)))
                .filter_map(|(v, d)| {
                    let suffix = d.strip_prefix('*')?;
                    (!suffix.is_empty() && host.ends_with(&suffix.to_ascii_lowercase()))
                        .then_some((suffix.len(), v))
                })
                .max_by_key(|(len, _)| *len)
                .map(|(_, v)| v)
        })
        .or_else(|| {
            table
                .virtual_hosts
                .iter()
                .find(|v| v.domains.iter().any(|d| d == "*"))
        })
}

fn evaluate(cfg: &ProxyConfig, table: &str, req: &Request) -> Outcome {
    let Some(table) = cfg.route_table(table) else {
        return Outcome::Status(404);
    };
    let Some(vh) = virtual_host(table, &req.host) else {
        return Outcome::Status(404);
    };
    let Some(route) = vh
        .routes
        .iter()
        .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| matches(m, req)))
    else {
        return Outcome::Status(404);
    };
    match &route.action {
        RouteAction::Redirect(r) => Outcome::Status(r.status),
        RouteAction::DirectResponse(d) => Outcome::Status(d.status),
        RouteAction::Forward(f) => {
            let live: Vec<_> = f.clusters.iter().filter(|c| c.weight > 0).collect();
            let [only] = live.as_slice() else {
                return Outcome::Backend(format!("<split over {} clusters>", live.len()));
            };
            match cfg.cluster(&only.cluster).and_then(|c| c.service.clone()) {
                Some(fqdn) => Outcome::Backend(fqdn.split('.').next().unwrap_or("").to_string()),
                None => Outcome::Status(500),
            }
        }
    }
}

fn instance(
    name: &str,
    ns: &str,
    labels: &[(&str, &str)],
    proxy: ProxySettings,
) -> WorkloadInstance {
    WorkloadInstance {
        name: name.to_string(),
        namespace: ns.to_string(),
        workload: name.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        service_account: "default".into(),
        address: "10.99.0.1".parse().unwrap(),
        ports: BTreeMap::new(),
        proxy: Some(proxy),
    }
}

fn backend_name(v: &str) -> String {
    match v {
        "$confsuite.InfraBackendServiceNameV1" => "infra-backend-v1".into(),
        "$confsuite.InfraBackendServiceNameV2" => "infra-backend-v2".into(),
        "$confsuite.InfraBackendServiceNameV3" => "infra-backend-v3".into(),
        other => other.to_string(),
    }
}

/// The Gateways (ns, name) the test's routes attach to, first seen first.
fn gateways_of(manifests: &[PathBuf]) -> Vec<(String, String)> {
    let bundle = Bundle::load_paths(manifests);
    let mut out: Vec<(String, String)> = Vec::new();
    for o in &bundle.objects {
        let Body::HttpRoute(route) = &o.body else {
            continue;
        };
        for p in route.parent_refs.iter().filter(|p| p.kind() == "Gateway") {
            let gw = (
                p.namespace
                    .clone()
                    .unwrap_or_else(|| o.namespace().to_string()),
                p.name.clone(),
            );
            if !out.contains(&gw) {
                out.push(gw);
            }
        }
    }
    out
}

/// Why a row is not evaluated here, if it is not.
fn skip_reason(row: &Value) -> Option<&'static str> {
    let status = row
        .pointer("/Response/StatusCode")
        .and_then(Value::as_u64)
        .unwrap_or(200);
    let name = row
        .get("TestCaseName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let host = row
        .pointer("/Request/Host")
        .and_then(Value::as_str)
        .unwrap_or("");
    if row.pointer("/Request/Headers/Host").is_some() {
        return Some("Host header differs from the destination (listener matching)");
    }
    if host.starts_with('$') || name.contains("pod IP") {
        return Some("request to a pod address, not a Service");
    }
    if status == 504 {
        return Some("timeout: needs a slow backend");
    }
    if row.get("Backend").is_none() && !matches!(status, 301..=308 | 404 | 500) {
        return Some("expects a response (status 200, headers, CORS) but names no backend");
    }
    None
}

#[test]
fn conformance_tables_route_to_the_expected_backend() {
    let dir = conformance_dir();
    let text = std::fs::read_to_string(dir.join("EXPECTED.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("EXPECTED.json").display()));
    let expected: Value = serde_json::from_str(&text).unwrap();
    let mut report = Vec::new();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for test in expected["tests"].as_array().unwrap() {
        let tables: Vec<&Vec<Value>> = test["expectedResponseTables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .collect();
        let all_manifests: Vec<PathBuf> = test["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|m| dir.join(m))
            .collect();
        let names: Vec<&str> = test["shortName"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        // Entries merging several Go files share one table, run against each file's
        // manifests.
        let runs: Vec<(String, Vec<PathBuf>)> =
            if names.len() > 1 && names.len() == all_manifests.len() {
                names
                    .iter()
                    .zip(&all_manifests)
                    .map(|(n, m)| (n.to_string(), vec![m.clone()]))
                    .collect()
            } else {
                vec![(
                    names.first().copied().unwrap_or("?").to_string(),
                    all_manifests.clone(),
                )]
            };
        for (name, manifests) in runs {
            let rows: Vec<&Value> = tables.iter().flat_map(|t| t.iter()).collect();
            if rows.is_empty() {
                continue;
            }
            let mesh = name.starts_with("Mesh");
            let base = dir.join(if mesh {
                "mesh/manifests.yaml"
            } else {
                "base/manifests.yaml"
            });
            let mut paths = vec![base];
            paths.extend(manifests.iter().cloned());
            let bundle = Bundle::load_paths(&paths);
            let errors: Vec<String> = bundle
                .diagnostics
                .iter()
                .filter(|d| d.severity == weft_config::Severity::Error)
                .map(|d| d.message.clone())
                .collect();
            assert!(
                errors.is_empty(),
                "{name}: manifests do not load: {errors:?}"
            );
            let snapshot = Snapshot::new(&bundle.objects);
            let mut registry = Registry::default();
            let transparent = || ProxySettings::Transparent {
                outbound: SocketAddr::from(([0, 0, 0, 0], 15001)),
                inbound: SocketAddr::from(([0, 0, 0, 0], 15006)),
                tunnel: SocketAddr::from(([0, 0, 0, 0], 15008)),
            };
            let gateway = if mesh {
                registry
                    .instances
                    .push(instance("client-0", MESH_NS, &[], transparent()));
                registry
                    .instances
                    .push(instance("client-0", CONSUMER_NS, &[], transparent()));
                None
            } else {
                let gateways = gateways_of(&manifests);
                if gateways.len() > 1 {
                    // The rows do not say which Gateway they are sent to.
                    skipped += rows.len();
                    report.push(format!(
                        "  skip {name}: {} rows address one of {} Gateways",
                        rows.len(),
                        gateways.len()
                    ));
                    continue;
                }
                let (ns, gw) = gateways.into_iter().next().unwrap_or_else(|| {
                    (
                        "gateway-conformance-infra".to_string(),
                        "same-namespace".to_string(),
                    )
                });
                registry.instances.push(instance(
                    "gw-0",
                    &ns,
                    &[(weft_compile::GATEWAY_NAME_LABEL, &gw)],
                    ProxySettings::Gateway {
                        ports: BTreeMap::new(),
                    },
                ));
                Some(ns)
            };
            let (mut ok, mut total) = (0, 0);
            for row in rows {
                if let Some(why) = skip_reason(row) {
                    skipped += 1;
                    report.push(format!("  skip {name}: {why}"));
                    continue;
                }
                total += 1;
                let req = &row["Request"];
                let default_host = if mesh {
                    "echo"
                } else {
                    "gateway.conformance.invalid"
                };
                let host = req["Host"].as_str().unwrap_or(default_host).to_string();
                let port = host
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .unwrap_or(80);
                let request = Request {
                    host: host.clone(),
                    path: req["Path"].as_str().unwrap_or("/").to_string(),
                    method: req["Method"].as_str().unwrap_or("GET").to_string(),
                    headers: req["Headers"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect(),
                };
                let case = row
                    .get("TestCaseName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let (id, table) = match &gateway {
                    Some(ns) => (format!("gw-0.{ns}"), format!("gateway|{port}")),
                    None => {
                        let ns = if case.contains("from consumer") && !case.contains("not from") {
                            CONSUMER_NS
                        } else {
                            MESH_NS
                        };
                        (format!("client-0.{ns}"), format!("outbound|{port}"))
                    }
                };
                let cfg = compile(&snapshot, &registry, &id).unwrap();
                let got = evaluate(&cfg, &table, &request);
                let want = match row.get("Backend").and_then(Value::as_str) {
                    Some(b) => Outcome::Backend(backend_name(b)),
                    None => Outcome::Status(
                        row.pointer("/Response/StatusCode")
                            .and_then(Value::as_u64)
                            .and_then(|s| u16::try_from(s).ok())
                            .unwrap_or(200),
                    ),
                };
                if got == want {
                    ok += 1;
                } else {
                    report.push(format!(
                        "  FAIL {name} {host}{} {}: want {want:?}, got {got:?}",
                        request.path, request.method
                    ));
                }
            }
            passed += ok;
            failed += total - ok;
            report.push(format!("{name}: {ok}/{total} rows"));
        }
    }
    println!("{}", report.join("\n"));
    println!(
        "evaluated {} rows: {passed} as expected, {failed} not; {skipped} skipped",
        passed + failed
    );
    assert_eq!(failed, 0, "{}", report.join("\n"));
    // The tables hold far more routable rows than this; fewer means the harness lost some.
    assert!(passed >= 200, "only {passed} rows evaluated");
}
