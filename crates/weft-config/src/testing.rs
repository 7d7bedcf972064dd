//! Helpers shared by unit tests: load a YAML fixture, then validate or analyze it.

use crate::analyze::{Analyzer, Context, run_filtered};
use crate::{Bundle, Diagnostic, Severity};

/// Load a fixture, failing the test if any part of it does not load: a fixture that is
/// silently dropped would make the test pass for the wrong reason.
pub fn load(yaml: &str) -> Bundle {
    let bundle = Bundle::load_str("t.yaml", yaml);
    let errors: Vec<_> = bundle
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "fixture does not load: {errors:?}");
    bundle
}

/// Run one analyzer over a fixture.
pub fn run_analyzer(analyzer: &dyn Analyzer, yaml: &str) -> Vec<Diagnostic> {
    let bundle = load(yaml);
    let ctx = Context::new(&bundle.objects);
    let mut out = Vec::new();
    analyzer.analyze(&ctx, &mut out);
    out
}

/// Run every analyzer with this (Istio-style) name over a fixture.
pub fn run_named(name: &str, yaml: &str) -> Vec<Diagnostic> {
    let bundle = load(yaml);
    let ctx = Context::new(&bundle.objects);
    run_filtered(&ctx, |n| n == name)
}

/// Validate a fixture of exactly one object: load problems and validation findings.
pub fn validate_one(yaml: &str) -> Vec<Diagnostic> {
    let bundle = Bundle::load_str("t.yaml", yaml);
    let mut out: Vec<Diagnostic> = bundle.diagnostics.clone();
    assert!(
        bundle.objects.len() <= 1,
        "expected one object, got {}",
        bundle.objects.len()
    );
    if let Some(obj) = bundle.objects.first() {
        out.extend(crate::validate::validate(obj));
    }
    out
}

/// The errors of [`validate_one`] as (field path, message).
pub fn validation_errors(yaml: &str) -> Vec<(String, String)> {
    validate_one(yaml)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            (
                d.field.map(|f| f.to_string()).unwrap_or_default(),
                d.message,
            )
        })
        .collect()
}

/// Assert exactly one validation error, at `field`, whose message contains `text`.
pub fn assert_one_error(yaml: &str, field: &str, text: &str) {
    let e = validation_errors(yaml);
    assert_eq!(e.len(), 1, "expected one error, got {e:?}");
    assert_eq!(e[0].0, field, "{e:?}");
    assert!(e[0].1.contains(text), "message {:?} lacks {text:?}", e[0].1);
}
