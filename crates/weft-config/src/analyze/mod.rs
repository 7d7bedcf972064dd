//! Cross-resource analysis: problems no single object shows on its own.
//!
//! Each analyzer is named after the `istioctl analyze` analyzer it corresponds to (so the
//! Istio analyzer corpus can run each one alone) and reports Istio's message codes where the
//! meaning is the same; weft's own checks use `WEFT1xxx` codes.

mod context;
mod kube;
mod networking;
mod security;
mod weft;

pub use context::{Context, PodInfo, ServiceInfo, ServicePortInfo};

use crate::diag::{Diagnostic, ResourceRef, Severity};
use crate::object::Object;
use crate::path::FieldPath;

pub trait Analyzer: Send + Sync {
    /// The corresponding Istio analyzer (`virtualservice.GatewayAnalyzer`), or weft's own
    /// name (`weft.SubsetAnalyzer`).
    fn name(&self) -> &'static str;
    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>);
}

/// Every analyzer weft runs, in a stable order.
pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    let mut all: Vec<Box<dyn Analyzer>> = vec![Box::new(SchemaValidation)];
    all.extend(kube::analyzers());
    all.extend(networking::analyzers());
    all.extend(security::analyzers());
    all.extend(weft::analyzers());
    all
}

/// Runs per-object validation as an analyzer, as `istioctl analyze` does (IST0106/IST0133).
pub struct SchemaValidation;

impl Analyzer for SchemaValidation {
    fn name(&self) -> &'static str {
        "schemaValidation"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for obj in ctx.objects {
            out.extend(crate::validate::validate(obj));
        }
    }
}

/// Run the analyzers whose name passes `filter` over a loaded set of objects.
pub fn run_filtered(ctx: &Context<'_>, filter: impl Fn(&str) -> bool) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for a in analyzers() {
        if filter(a.name()) {
            a.analyze(ctx, &mut out);
        }
    }
    out
}

/// Run every analyzer.
pub fn run(ctx: &Context<'_>) -> Vec<Diagnostic> {
    run_filtered(ctx, |_| true)
}

/// A diagnostic about `obj` at `path` (use `FieldPath::root()` for the whole object).
pub fn finding(
    obj: &Object,
    code: &'static str,
    severity: Severity,
    path: impl Into<FieldPath>,
    message: impl Into<String>,
) -> Diagnostic {
    let path = path.into();
    let mut d = Diagnostic::new(code, severity, message);
    d.span = Some(obj.span_of(&path));
    d.resource = Some(obj.resource_ref());
    d.field = (!path.is_root()).then_some(path);
    d
}

/// A diagnostic about an object that has no position (e.g. derived from mesh config).
pub fn finding_on(resource: ResourceRef, code: &'static str, severity: Severity, message: impl Into<String>) -> Diagnostic {
    let mut d = Diagnostic::new(code, severity, message);
    d.resource = Some(resource);
    d
}
