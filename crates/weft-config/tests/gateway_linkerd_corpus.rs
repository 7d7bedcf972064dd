//! Gateway API, Linkerd and SMI public manifests: every object of a kind weft models must
//! load and validate without errors. Kinds weft does not model are skipped (reported as
//! info by the loader), which is fine.
//!
//! Some Gateway API conformance files describe deliberately broken setups (references to
//! missing Services, Gateways or ReferenceGrants, unsupported backend kinds): those are
//! runtime status problems, not schema errors, so they must still load cleanly.

mod conformance;

use std::path::{Path, PathBuf};

use weft_config::{Bundle, Severity, validate::validate};

/// Files that are schema-invalid on purpose, with the reason. (None so far.)
const EXCLUDED: &[(&str, &str)] = &[];

/// Errors that are correct findings on inputs written for a controller's unit tests rather
/// than for the API server: (file name, field, start of the message).
const EXPECTED_ERRORS: &[(&str, &str, &str)] = &[
    // Istio's `invalid.yaml` golden input names routes `invalid-backendRef-kind` etc.: the
    // upper-case letters make them invalid Kubernetes object names (RFC 1123), which the API
    // server would refuse; Istio's converter test never goes through it.
    (
        "gatewayapi-to-istio-golden/invalid.yaml",
        "metadata.name",
        "invalid name `invalid-",
    ),
];

fn yaml_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recursive {
                yaml_files(&p, recursive, out);
            }
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

fn corpus() -> Vec<PathBuf> {
    let root = conformance::conformance_dir();
    let mut files = Vec::new();
    // gateway-api: base, mesh, tests, tests/mesh.
    yaml_files(&root.join("gateway-api"), true, &mut files);
    yaml_files(&root.join("linkerd"), true, &mut files);
    // The Gateway API → Istio golden cases: inputs are `<case>.yaml`; outputs are
    // `*.yaml.golden` / `*.status.yaml.golden` and are not picked up by the `.yaml` filter.
    yaml_files(
        &root.join("istio/gatewayapi-to-istio-golden"),
        false,
        &mut files,
    );
    files.retain(|f| !EXCLUDED.iter().any(|(name, _)| f.ends_with(name)));
    files
}

#[test]
fn gateway_api_and_linkerd_manifests_are_valid() {
    let files = corpus();
    assert!(
        files.len() > 80,
        "expected the whole corpus, found {} files",
        files.len()
    );
    let mut offenders = Vec::new();
    let (mut objects, mut skipped) = (0, 0);
    for f in &files {
        let bundle = Bundle::load_paths(&[f]);
        let mut diags: Vec<_> = bundle.diagnostics.clone();
        for obj in &bundle.objects {
            diags.extend(validate(obj));
        }
        objects += bundle.objects.len();
        skipped += bundle
            .diagnostics
            .iter()
            .filter(|d| d.code == "WEFT0003")
            .count();
        let expected = |d: &weft_config::Diagnostic| {
            let field = d.field.as_ref().map(|p| p.to_string()).unwrap_or_default();
            EXPECTED_ERRORS.iter().any(|(file, fp, msg)| {
                f.ends_with(file) && field == *fp && d.message.starts_with(msg)
            })
        };
        for d in diags
            .iter()
            .filter(|d| d.severity == Severity::Error && !expected(d))
        {
            offenders.push(format!(
                "{}: {} [{}] {}",
                f.display(),
                d.resource
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                d.field.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                d.message
            ));
        }
        for d in diags.iter().filter(|d| d.severity != Severity::Error) {
            println!("{}: {d}", f.display());
        }
    }
    println!(
        "{} files, {objects} objects loaded, {skipped} skipped-kind notes",
        files.len()
    );
    assert!(
        offenders.is_empty(),
        "{} errors:\n{}",
        offenders.len(),
        offenders.join("\n")
    );
    assert!(
        objects > 250,
        "too few objects loaded ({objects}); is the corpus complete?"
    );
}
