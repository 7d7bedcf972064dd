//! Cross-resource analysis: problems no single object shows on its own.
//!
//! Each analyzer is named after the `istioctl analyze` analyzer it corresponds to (so the
//! Istio analyzer corpus can run each one alone) and reports Istio's message codes where the
//! meaning is the same; weft's own checks use `WEFT1xxx` codes.

mod context;
mod kube;
mod networking;
mod security;
mod traffic;
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
    all.extend(traffic::analyzers());
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
pub fn finding_on(
    resource: ResourceRef,
    code: &'static str,
    severity: Severity,
    message: impl Into<String>,
) -> Diagnostic {
    let mut d = Diagnostic::new(code, severity, message);
    d.resource = Some(resource);
    d
}

/// Mesh-wide inputs that are not Kubernetes-style objects.
#[derive(Default)]
pub struct MeshInputs {
    /// `--mesh-config`: a MeshConfig document.
    pub mesh_config: Option<crate::kinds::istio::MeshConfig>,
    /// `--mesh-networks`: a MeshNetworks document.
    pub mesh_networks: Option<crate::yaml::Node>,
}

/// Read a mesh networks file (Istio's `meshNetworks` YAML: `networks: {...}`).
pub fn load_mesh_networks(path: &std::path::Path) -> Result<crate::yaml::Node, Diagnostic> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostic::error(
            crate::diag::codes::UNREADABLE,
            format!("cannot read mesh networks file {name}: {e}"),
        )
    })?;
    let file = std::sync::Arc::new(crate::source::SourceFile {
        name: name.clone(),
        text,
    });
    let docs = crate::yaml::parse_documents(&file)
        .map_err(|e| Diagnostic::error(crate::diag::codes::SYNTAX, e.message).with_span(e.span))?;
    docs.into_iter().next().ok_or_else(|| {
        Diagnostic::error(
            crate::diag::codes::UNREADABLE,
            format!("mesh networks file {name} is empty"),
        )
    })
}

/// Everything `weft analyze` reports for a loaded bundle: loading problems, schema
/// validation and every analyzer, sorted by position and without duplicates.
pub fn analyze_bundle(bundle: &crate::Bundle, inputs: MeshInputs) -> Vec<Diagnostic> {
    let mut ctx = match inputs.mesh_config {
        Some(m) => Context::with_mesh(&bundle.objects, m),
        None => Context::new(&bundle.objects),
    };
    if let Some(n) = inputs.mesh_networks {
        ctx = ctx.with_mesh_networks(n);
    }
    let mut all = bundle.diagnostics.clone();
    all.extend(run(&ctx));
    sort_and_dedup(&mut all);
    all
}

/// Sort diagnostics by file, line and column (those without a position last) and drop exact
/// repeats (two analyzers can reach the same conclusion).
pub fn sort_and_dedup(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| {
        let pos = |d: &Diagnostic| {
            d.span
                .as_ref()
                .map(|s| (0, s.file.name.clone(), s.start.line, s.start.col))
                .unwrap_or((1, String::new(), 0, 0))
        };
        pos(a)
            .cmp(&pos(b))
            .then_with(|| a.code.cmp(b.code))
            .then_with(|| a.message.cmp(&b.message))
    });
    diags.dedup_by(|a, b| {
        a.code == b.code && a.message == b.message && a.resource == b.resource && a.span == b.span
    });
}
