//! `authn.BlockedCIDRsAnalyzer` (IST0175): RequestAuthentications make istiod fetch
//! `jwksUri`s, so an istiod Deployment among the inputs should restrict which addresses
//! those fetches may reach (`BLOCKED_CIDRS_IN_JWKS_URIS`), or a policy author could make the
//! control plane call internal endpoints.
//!
//! weft's own control plane fetches JWKS itself and is not configured through istiod's
//! environment; this check only speaks when the inputs include an istiod Deployment (a mesh
//! still run by Istio, or being migrated), exactly as `istioctl analyze` does.

use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::Kind;
use crate::object::Object;
use crate::path::FieldPath;
use crate::yaml::{Node, Value};

pub struct BlockedCidrsAnalyzer;

const ENV: &str = "BLOCKED_CIDRS_IN_JWKS_URIS";

fn seq(node: Option<&Node>) -> &[Node] {
    match node.map(|n| &n.value) {
        Some(Value::Seq(items)) => items,
        _ => &[],
    }
}

/// Whether any container of the Deployment's pod template sets the variable to a
/// non-empty value. Read from the document itself: the typed pod spec keeps no `env`.
fn sets_blocked_cidrs(obj: &Object) -> bool {
    let containers = obj
        .node
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .and_then(|s| s.get("containers"));
    seq(containers).iter().any(|c| {
        seq(c.get("env")).iter().any(|e| {
            e.get("name").and_then(Node::as_str) == Some(ENV)
                && e.get("value")
                    .and_then(Node::as_str)
                    .is_some_and(|v| !v.is_empty())
        })
    })
}

impl Analyzer for BlockedCidrsAnalyzer {
    fn name(&self) -> &'static str {
        "authn.BlockedCIDRsAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let policies: Vec<String> = ctx
            .of(Kind::RequestAuthentication)
            .map(|o| format!("{}/{}", o.namespace(), o.name()))
            .collect();
        if policies.is_empty() {
            return;
        }
        let shown = if policies.len() > 5 {
            format!(
                "{}, and {} more",
                policies[..5].join(", "),
                policies.len() - 5
            )
        } else {
            policies.join(", ")
        };
        for obj in ctx.of(Kind::Deployment) {
            if obj.label("app") != Some("istiod") || sets_blocked_cidrs(obj) {
                continue;
            }
            out.push(
                finding(
                    obj,
                    "IST0175",
                    Severity::Warning,
                    FieldPath::root().key("spec").key("template").key("spec").key("containers"),
                    format!(
                        "istiod fetches the jwksUri of {} RequestAuthentication(s) ({shown}) without {ENV}, so a policy can make it call any address, including internal ones",
                        policies.len()
                    ),
                )
                .with_hint(format!(
                    "set the `{ENV}` env var on the discovery container, e.g. \"10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16\""
                )),
            );
        }
    }
}
