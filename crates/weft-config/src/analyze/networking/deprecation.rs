//! `deprecation.FieldAnalyzer` (IST0002): deprecated fields that still load but should be
//! replaced (VirtualService fault `delay.percent`, Sidecar `outboundTrafficPolicy.egressProxy`)
//! and CustomResourceDefinitions of removed Istio kinds.

use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;

/// Istio kinds whose CRDs were removed (`rbac.istio.io`).
const REMOVED_CRDS: &[(&str, &str)] = &[
    ("rbac.istio.io", "ClusterRbacConfig"),
    ("rbac.istio.io", "RbacConfig"),
    ("rbac.istio.io", "ServiceRole"),
    ("rbac.istio.io", "ServiceRoleBinding"),
];

pub struct FieldAnalyzer;

impl Analyzer for FieldAnalyzer {
    fn name(&self) -> &'static str {
        "deprecation.FieldAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for obj in ctx.of(Kind::VirtualService) {
            let Body::VirtualService(vs) = &obj.body else {
                continue;
            };
            for (i, h) in vs.http.iter().enumerate() {
                let Some(delay) = h.fault.as_ref().and_then(|f| f.delay.as_ref()) else {
                    continue;
                };
                let Some(percent) = delay.percent.filter(|p| *p > 0) else {
                    continue;
                };
                let path = FieldPath::parse("spec.http")
                    .index(i)
                    .key("fault")
                    .key("delay")
                    .key("percent");
                out.push(
                    finding(
                        obj,
                        "IST0002",
                        Severity::Warning,
                        path,
                        format!("`fault.delay.percent` is deprecated (here {percent})"),
                    )
                    .with_hint(format!("write `percentage: {{value: {percent}}}` instead")),
                );
            }
            for (i, h) in vs.http.iter().enumerate() {
                if let Some(p) = h.mirror_percent {
                    let path = FieldPath::parse("spec.http").index(i).key("mirrorPercent");
                    out.push(
                        finding(
                            obj,
                            "IST0002",
                            Severity::Warning,
                            path,
                            format!("`mirrorPercent` is deprecated (here {p})"),
                        )
                        .with_hint(format!("write `mirrorPercentage: {{value: {p}}}` instead")),
                    );
                }
            }
        }
        for obj in ctx.of(Kind::Sidecar) {
            let Body::Sidecar(sc) = &obj.body else {
                continue;
            };
            if sc
                .outbound_traffic_policy
                .as_ref()
                .is_some_and(|p| p.egress_proxy.is_some())
            {
                out.push(
                    finding(obj, "IST0002", Severity::Warning, "spec.outboundTrafficPolicy.egressProxy",
                        "`outboundTrafficPolicy.egressProxy` is deprecated and ignored: traffic to unknown destinations is not sent to it")
                    .with_hint("remove `egressProxy`; route egress traffic through an egress gateway with a ServiceEntry and VirtualService instead"),
                );
            }
        }
        for obj in ctx.of(Kind::CustomResourceDefinition) {
            let Body::CustomResourceDefinition(crd) = &obj.body else {
                continue;
            };
            if REMOVED_CRDS
                .iter()
                .any(|(g, k)| crd.group == *g && crd.names.kind == *k)
            {
                out.push(
                    finding(obj, "IST0002", Severity::Warning, FieldPath::root(), format!(
                        "custom resource type {} {} was removed from Istio: its resources have no effect",
                        crd.group, crd.names.kind
                    ))
                    .with_hint("migrate to AuthorizationPolicy (security.istio.io) and delete the CRD"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {

    fn run(yaml: &str) -> Vec<crate::Diagnostic> {
        crate::testing::run_named("deprecation.FieldAnalyzer", yaml)
    }

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: default}\nspec:\n  hosts: [web]\n  http:\n  - fault:\n      delay: {fixedDelay: 1s, DELAY}\n    route:\n    - destination: {host: web}\n";

    #[test]
    fn deprecated_delay_percent_is_reported() {
        let got = run(&VS.replace("DELAY", "percent: 50"));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].code, "IST0002");
        assert!(got[0].hint.as_deref().unwrap().contains("percentage"));
    }

    #[test]
    fn percentage_is_silent() {
        assert!(run(&VS.replace("DELAY", "percentage: {value: 50}")).is_empty());
    }
}
