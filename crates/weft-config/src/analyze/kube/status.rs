//! What the cluster wrote back: negative status conditions (`conditions.ConditionAnalyzer`)
//! and Gateway API CRD bundle versions (`k8sgateway.CRDVersionAnalyzer`).
//!
//! Both read fields that exist only in objects exported from a cluster (`kubectl get -o
//! yaml`); hand-written files simply have none.

use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::Kind;
use crate::object::Object;
use crate::path::FieldPath;
use crate::yaml::{Node, Value};

/// `conditions.ConditionAnalyzer`: IST0171 for each status condition that is `False` (or
/// accepted only partially) on Services, ServiceEntries, AuthorizationPolicies and Gateway
/// API Gateways and routes. On Services only Istio's own conditions (`istio.io/…`) count.
pub struct ConditionAnalyzer;

const KINDS: &[Kind] = &[
    Kind::Service,
    Kind::ServiceEntry,
    Kind::AuthorizationPolicy,
    Kind::KubeGateway,
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::TcpRoute,
    Kind::TlsRoute,
];

fn items(node: Option<&Node>) -> &[Node] {
    match node.map(|n| &n.value) {
        Some(Value::Seq(items)) => items,
        _ => &[],
    }
}

fn text<'a>(n: &'a Node, key: &str) -> &'a str {
    n.get(key)
        .and_then(|v| match &v.value {
            Value::Scalar(s) => Some(s.text.as_str()),
            _ => None,
        })
        .unwrap_or("")
}

fn check_conditions(obj: &Object, conditions: &[Node], base: FieldPath, out: &mut Vec<Diagnostic>) {
    for (i, c) in conditions.iter().enumerate() {
        let (ty, status, reason, message) = (
            text(c, "type"),
            text(c, "status"),
            text(c, "reason"),
            text(c, "message"),
        );
        if obj.kind == Kind::Service && !ty.starts_with("istio.io/") {
            continue;
        }
        if status != "False" && reason != "PartiallyInvalid" {
            continue;
        }
        let detail = match (reason.is_empty(), message.is_empty()) {
            (false, false) => format!(" ({reason}: {message})"),
            (false, true) => format!(" ({reason})"),
            (true, false) => format!(" ({message})"),
            (true, true) => String::new(),
        };
        out.push(
            finding(
                obj,
                "IST0171",
                Severity::Warning,
                base.index(i),
                format!(
                    "{} {}/{} reports condition {ty}={status}{detail}.",
                    obj.kind.name(),
                    obj.namespace(),
                    obj.name()
                ),
            )
            .with_hint("fix the cause the condition names; the control plane updates the status once the configuration is accepted"),
        );
    }
}

impl Analyzer for ConditionAnalyzer {
    fn name(&self) -> &'static str {
        "conditions.ConditionAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for &kind in KINDS {
            for obj in ctx.of(kind) {
                let Some(status) = obj.node.get("status") else {
                    continue;
                };
                let base = FieldPath::root().key("status");
                check_conditions(
                    obj,
                    items(status.get("conditions")),
                    base.key("conditions"),
                    out,
                );
                for (p, parent) in items(status.get("parents")).iter().enumerate() {
                    check_conditions(
                        obj,
                        items(parent.get("conditions")),
                        base.key("parents").index(p).key("conditions"),
                        out,
                    );
                }
            }
        }
    }
}

/// The oldest Gateway API bundle version (CRD annotation
/// `gateway.networking.k8s.io/bundle-version`) whose CRD the control plane still watches.
pub const MINIMUM_CRD_VERSIONS: &[(&str, (u64, u64, u64))] = &[
    ("grpcroutes.gateway.networking.k8s.io", (1, 1, 0)),
    ("backendtlspolicies.gateway.networking.k8s.io", (1, 4, 0)),
    ("tlsroutes.gateway.networking.k8s.io", (1, 5, 0)),
];

const BUNDLE_VERSION: &str = "gateway.networking.k8s.io/bundle-version";

/// `v1.4.1` / `1.4.1-rc.1` -> (1, 4, 1); the pre-release part is ignored.
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let v = v.trim().trim_start_matches('v');
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    let patch = parts.next().map_or(Some(0), |p| p.parse().ok())?;
    Some((major, minor, patch))
}

/// `k8sgateway.CRDVersionAnalyzer`: IST0176 when an installed Gateway API CRD is older than
/// the control plane needs; such CRDs are ignored, so their routes never take effect.
pub struct CrdVersionAnalyzer;

impl Analyzer for CrdVersionAnalyzer {
    fn name(&self) -> &'static str {
        "k8sgateway.CRDVersionAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for crd in ctx.of(Kind::CustomResourceDefinition) {
            let Some(&(_, min)) = MINIMUM_CRD_VERSIONS.iter().find(|(n, _)| *n == crd.name())
            else {
                continue;
            };
            let Some(raw) = crd.annotation(BUNDLE_VERSION) else {
                continue;
            };
            let Some(installed) = parse_version(raw) else {
                continue;
            };
            if installed < min {
                let min_s = format!("v{}.{}.{}", min.0, min.1, min.2);
                out.push(
                    finding(
                        crd,
                        "IST0176",
                        Severity::Warning,
                        FieldPath::root().key("metadata").key("annotations").key(BUNDLE_VERSION),
                        format!(
                            "CRD {} is Gateway API bundle {raw}, older than the minimum {min_s}: its resources are ignored.",
                            crd.name()
                        ),
                    )
                    .with_hint(format!("install the Gateway API CRDs {min_s} or newer")),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &dyn Analyzer, yaml: &str) -> Vec<Diagnostic> {
        crate::testing::run_analyzer(a, yaml)
    }

    #[test]
    fn negative_conditions() {
        let d = run(
            &ConditionAnalyzer,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nstatus:\n  conditions:\n  - {type: istio.io/WaypointBound, status: \"False\", reason: NoWaypoint}\n  - {type: other.io/Synced, status: \"False\"}\n",
        );
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message
                .contains("istio.io/WaypointBound=False (NoWaypoint)")
        );
        let silent = run(
            &ConditionAnalyzer,
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nstatus:\n  conditions:\n  - {type: istio.io/WaypointBound, status: \"True\"}\n",
        );
        assert!(silent.is_empty());
    }

    #[test]
    fn crd_versions() {
        let crd = |v: &str| {
            format!(
                "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: tlsroutes.gateway.networking.k8s.io\n  annotations:\n    gateway.networking.k8s.io/bundle-version: {v}\nspec:\n  group: gateway.networking.k8s.io\n"
            )
        };
        assert_eq!(run(&CrdVersionAnalyzer, &crd("v1.4.1")).len(), 1);
        assert!(run(&CrdVersionAnalyzer, &crd("v1.5.0-rc.1")).is_empty());
        assert_eq!(parse_version("v1.2"), Some((1, 2, 0)));
    }
}
