//! Istio's own sample and end-to-end configuration (`istio/bookinfo`, `istio/e2e-config`) must
//! load and validate without errors: it is configuration Istio accepts. Each file is loaded
//! on its own, as the samples are alternatives applied one at a time (several redefine the
//! same VirtualService).

mod conformance;

use std::path::{Path, PathBuf};

use weft_config::{Bundle, Severity, validate::validate};

/// Files Istio itself would reject, with the reason. None so far.
const KNOWN_INVALID: &[(&str, &str)] = &[];

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
    {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Load every file of `rel` separately; return (objects loaded, error lines).
fn check_dir(rel: &str) -> (usize, Vec<String>) {
    let dir = conformance::conformance_dir().join(rel);
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    let (mut objects, mut offenders) = (0, Vec::new());
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if KNOWN_INVALID.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let bundle = Bundle::load_paths(&[&f]);
        objects += bundle.objects.len();
        let mut diags: Vec<_> = bundle.diagnostics.clone();
        for obj in &bundle.objects {
            diags.extend(validate(obj));
        }
        for d in diags.iter().filter(|d| d.severity == Severity::Error) {
            let at = d
                .span
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|| f.display().to_string());
            let field = d.field.as_ref().map(|p| p.to_string()).unwrap_or_default();
            offenders.push(format!("{at}: [{}] {field}: {}", d.code, d.message));
        }
    }
    (objects, offenders)
}

#[test]
fn bookinfo_loads_cleanly() {
    let (n, offenders) = check_dir("istio/bookinfo");
    println!("istio/bookinfo: {n} objects");
    assert!(n > 0, "nothing loaded from istio/bookinfo");
    assert!(
        offenders.is_empty(),
        "errors in istio/bookinfo:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn e2e_config_loads_cleanly() {
    let (n, offenders) = check_dir("istio/e2e-config");
    println!("istio/e2e-config: {n} objects");
    assert!(n > 0, "nothing loaded from istio/e2e-config");
    assert!(
        offenders.is_empty(),
        "errors in istio/e2e-config:\n{}",
        offenders.join("\n")
    );
}
