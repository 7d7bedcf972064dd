//! istioctl's analyzer test grid (`istio/analyzer-testdata/EXPECTED.json`): each case runs
//! one analyzer over its input files and must report exactly the expected messages (by code
//! and resource), no more and no fewer.

mod conformance;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use weft_config::analyze::{Context, analyzers, load_mesh_networks, run_filtered};
use weft_config::kinds::istio::MeshConfig;
use weft_config::{Bundle, Severity};

#[derive(Deserialize)]
struct Expected {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    input_files: Vec<String>,
    mesh_config_file: Option<String>,
    mesh_networks_file: Option<String>,
    analyzer: String,
    expected: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    code: String,
    resource: String,
}

/// Cases that do not apply to weft, with the reason. Everything else must match exactly.
const NOT_APPLICABLE: &[(&str, &str)] = &[];

/// `&virtualservice.GatewayAnalyzer{}` -> `virtualservice.GatewayAnalyzer`.
fn analyzer_name(go: &str) -> String {
    let s = go.trim_start_matches('&').trim_end_matches("{}");
    if s.starts_with("schemaValidation") {
        return "schemaValidation".to_string();
    }
    s.to_string()
}

/// A reported or expected message, normalised to `CODE Kind [ns/]name`.
fn key(code: &str, kind: &str, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) => format!("{code} {kind} {ns}/{name}"),
        None => format!("{code} {kind} {name}"),
    }
}

fn run_case(dir: &Path, case: &Case) -> (Vec<String>, Vec<String>) {
    let paths: Vec<_> = case.input_files.iter().map(|f| dir.join(f)).collect();
    let bundle = Bundle::load_paths(&paths);
    let mut ctx = match &case.mesh_config_file {
        Some(m) => {
            let mesh = MeshConfig::load_file(&dir.join(m)).expect("mesh config file loads");
            Context::with_mesh(&bundle.objects, mesh)
        }
        None => Context::new(&bundle.objects),
    };
    if let Some(n) = &case.mesh_networks_file {
        let networks = load_mesh_networks(&dir.join(n)).expect("mesh networks file loads");
        ctx = ctx.with_mesh_networks(networks);
    }
    let name = analyzer_name(&case.analyzer);
    let found = run_filtered(&ctx, |n| n == name);
    // Expected resources name the namespace only when the object sets one explicitly.
    let mut got = Vec::new();
    for d in found.iter().filter(|d| d.severity >= Severity::Info) {
        let Some(r) = &d.resource else { continue };
        got.push((
            d.code.to_string(),
            r.kind.clone(),
            r.namespace.clone(),
            r.name.clone(),
        ));
    }
    let mut expected_keys = Vec::new();
    let mut got_keys = Vec::new();
    for m in &case.expected {
        expected_keys.push(format!("{} {}", m.code, m.resource));
    }
    for (code, kind, ns, name) in got {
        // Match the expected spelling: with namespace if any expected entry for this object
        // names it, else without.
        let with_ns = key(&code, &kind, ns.as_deref(), &name);
        let without = key(&code, &kind, None, &name);
        got_keys.push(if expected_keys.contains(&with_ns) {
            with_ns
        } else {
            without
        });
    }
    expected_keys.sort();
    got_keys.sort();
    (expected_keys, got_keys)
}

#[test]
fn istio_analyzer_corpus() {
    let dir = conformance::conformance_dir().join("istio/analyzer-testdata");
    let expected: Expected =
        serde_json::from_str(&std::fs::read_to_string(dir.join("EXPECTED.json")).unwrap()).unwrap();
    let known: Vec<&str> = analyzers()
        .iter()
        .map(|a| a.name())
        .collect::<Vec<_>>()
        .leak()
        .to_vec();
    let not_applicable: BTreeMap<&str, &str> = NOT_APPLICABLE.iter().copied().collect();
    let (mut cases_ok, mut messages_total, mut messages_matched) = (0, 0, 0);
    let mut failed = Vec::new();
    for case in &expected.cases {
        messages_total += case.expected.len();
        if let Some(why) = not_applicable.get(case.name.as_str()) {
            println!("n/a   {}: {why}", case.name);
            continue;
        }
        let name = analyzer_name(&case.analyzer);
        if !known.contains(&name.as_str()) {
            println!("FAIL  {}: no analyzer `{name}`", case.name);
            failed.push(case.name.clone());
            continue;
        }
        let (want, got) = run_case(&dir, case);
        let mut remaining = got.clone();
        let mut matched = 0;
        for w in &want {
            if let Some(i) = remaining.iter().position(|g| g == w) {
                remaining.remove(i);
                matched += 1;
            }
        }
        messages_matched += matched;
        if matched == want.len() && remaining.is_empty() {
            cases_ok += 1;
            println!("ok    {} ({matched} messages)", case.name);
        } else {
            let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
            println!(
                "FAIL  {} [{name}]: missing {missing:?}, unexpected {remaining:?}",
                case.name
            );
            failed.push(case.name.clone());
        }
    }
    println!(
        "analyzer corpus: {cases_ok}/{} cases exact, {messages_matched}/{messages_total} expected messages matched, {} not applicable",
        expected.cases.len(),
        not_applicable.len()
    );
    println!("{cases_ok} passed, {} failed", failed.len());
    assert!(failed.is_empty(), "analyzer cases failed: {failed:?}");
}
