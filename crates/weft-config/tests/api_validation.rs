//! Istio's CRD validation corpus (`istio/api-validation/*-{valid,invalid}.yaml`): every
//! valid document must load and validate cleanly; every invalid one (marked with an `_err`
//! key holding Istio's expected error) must be rejected.

mod conformance;

use weft_config::{Bundle, Severity, validate::validate};

struct Case {
    name: String,
    text: String,
    expected_error: Option<String>,
}

/// Split a corpus file into documents, taking out the `_err:` line each invalid one carries.
fn cases(file: &str, text: &str) -> Vec<Case> {
    let mut out = Vec::new();
    for (i, doc) in text.split("\n---").enumerate() {
        let mut expected = None;
        let mut body = String::new();
        for line in doc.lines() {
            if let Some(e) = line.strip_prefix("_err:") {
                expected = Some(e.trim().trim_matches(['\'', '"']).to_string());
            } else {
                body.push_str(line);
                body.push('\n');
            }
        }
        if body
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        out.push(Case {
            name: format!("{file}#{i}"),
            text: body,
            expected_error: expected,
        });
    }
    out
}

/// Errors weft reports for one document: load/schema errors plus validation errors.
fn errors_for(case: &Case) -> Vec<String> {
    let bundle = Bundle::load_str(&case.name, &case.text);
    let mut errors: Vec<String> = bundle
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            format!(
                "{} [{}]",
                d.message,
                d.field.as_ref().map(|f| f.to_string()).unwrap_or_default()
            )
        })
        .collect();
    for obj in &bundle.objects {
        errors.extend(
            validate(obj)
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| {
                    format!(
                        "{} [{}]",
                        d.message,
                        d.field.as_ref().map(|f| f.to_string()).unwrap_or_default()
                    )
                }),
        );
    }
    if bundle.objects.is_empty() && errors.is_empty() {
        errors.push("nothing was loaded".into());
    }
    errors
}

#[test]
fn istio_api_validation_corpus() {
    let dir = conformance::conformance_dir().join("istio/api-validation");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("api-validation corpus")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus files in {}", dir.display());
    let (mut passed, mut failed) = (0, Vec::new());
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let invalid_file = file.contains("-invalid");
        for case in cases(&file, &text) {
            let errors = errors_for(&case);
            let ok = match (&case.expected_error, invalid_file) {
                (Some(_), _) | (None, true) => !errors.is_empty(),
                (None, false) => errors.is_empty(),
            };
            let expectation = match &case.expected_error {
                Some(e) => format!("reject ({e})"),
                None if invalid_file => "reject".to_string(),
                None => "accept".to_string(),
            };
            if ok {
                passed += 1;
                println!(
                    "ok    {:<32} {expectation}: {}",
                    case.name,
                    errors.first().map(String::as_str).unwrap_or("accepted")
                );
            } else {
                println!(
                    "FAIL  {:<32} expected {expectation}, got {errors:?}",
                    case.name
                );
                failed.push(case.name.clone());
            }
        }
    }
    println!("{passed} passed, {} failed", failed.len());
    assert!(failed.is_empty(), "api-validation cases failed: {failed:?}");
}
