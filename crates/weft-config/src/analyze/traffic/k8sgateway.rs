//! `k8sgateway.SelectorAnalyzer`: a policy (AuthorizationPolicy, RequestAuthentication,
//! Telemetry, WasmPlugin) whose `selector` picks the pods of a Kubernetes Gateway API
//! gateway is ignored for them: such gateways are addressed with `targetRefs` (IST0166).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::common::{PolicyTargetReference, WorkloadSelector, labels_match};
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

/// The label the Gateway API deployment controller puts on a gateway's pods.
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

pub struct SelectorAnalyzer;

type Selection<'a> = (
    &'a Option<WorkloadSelector>,
    &'a Option<PolicyTargetReference>,
    &'a [PolicyTargetReference],
);

fn selection(obj: &Object) -> Option<Selection<'_>> {
    match &obj.body {
        Body::AuthorizationPolicy(p) => Some((&p.selector, &p.target_ref, &p.target_refs)),
        Body::RequestAuthentication(p) => Some((&p.selector, &p.target_ref, &p.target_refs)),
        Body::Telemetry(p) => Some((&p.selector, &p.target_ref, &p.target_refs)),
        Body::WasmPlugin(p) => Some((&p.selector, &p.target_ref, &p.target_refs)),
        _ => None,
    }
}

impl Analyzer for SelectorAnalyzer {
    fn name(&self) -> &'static str {
        "k8sgateway.SelectorAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        // namespace -> labels of Gateway API gateway pods.
        let mut gateway_pods: HashMap<&str, Vec<&BTreeMap<String, String>>> = HashMap::new();
        for p in ctx.pods() {
            if p.labels.contains_key(GATEWAY_NAME_LABEL) {
                gateway_pods.entry(p.namespace).or_default().push(p.labels);
            }
        }
        if gateway_pods.is_empty() {
            return;
        }
        for kind in [
            Kind::AuthorizationPolicy,
            Kind::RequestAuthentication,
            Kind::Telemetry,
            Kind::WasmPlugin,
        ] {
            for obj in ctx.of(kind) {
                let Some((Some(selector), target_ref, target_refs)) = selection(obj) else {
                    continue;
                };
                if target_ref.is_some() || !target_refs.is_empty() {
                    continue;
                }
                let gateways: BTreeSet<&str> = gateway_pods
                    .get(obj.namespace())
                    .into_iter()
                    .flatten()
                    .filter(|labels| labels_match(&selector.match_labels, labels))
                    .map(|labels| labels[GATEWAY_NAME_LABEL].as_str())
                    .collect();
                for gw in gateways {
                    out.push(
                        finding(
                            obj,
                            "IST0166",
                            Severity::Warning,
                            FieldPath::root().key("spec").key("selector"),
                            format!(
                                "{} {}/{}: its selector matches the pods of Kubernetes Gateway {gw}, where selectors are not supported; the policy does not apply to that gateway",
                                obj.kind.name(),
                                obj.namespace(),
                                obj.name()
                            ),
                        )
                        .with_hint(format!(
                            "replace `selector` with `targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: {gw}}}]`"
                        )),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::traffic::test_util::{codes, run};

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: gw-abc, labels: {gateway.networking.k8s.io/gateway-name: web, app: gw}}\n---\n";

    #[test]
    fn fires_for_selector_on_gateway_pods() {
        let y = format!(
            "{POD}apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: ap}}\nspec:\n  selector: {{matchLabels: {{app: gw}}}}\n"
        );
        let d = run(&SelectorAnalyzer, &y);
        assert_eq!(codes(&d), ["IST0166 ap"]);
        assert!(d[0].message.contains("Kubernetes Gateway web"));
    }

    #[test]
    fn silent_with_target_refs_or_other_pods() {
        let y = format!(
            "{POD}apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: ap}}\nspec:\n  targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: web}}]\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: other}}\nspec:\n  selector: {{matchLabels: {{app: api}}}}\n"
        );
        assert!(run(&SelectorAnalyzer, &y).is_empty());
    }
}
