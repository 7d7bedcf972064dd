//! `virtualservice.JWTClaimRouteAnalyzer` (IST0149): a VirtualService bound to a gateway
//! matches on `@request.auth.claims.*` headers, but no RequestAuthentication applies to
//! the gateway's workload. Without one the claims are never extracted and the route never
//! matches.

use std::collections::{BTreeMap, HashMap};

use super::gateway::GatewayIndex;
use super::gateway_ref;
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::istio::{MESH_GATEWAY, VirtualService};
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;

/// The header prefix Istio uses for JWT claim matches.
const CLAIM_PREFIX: &str = "@request.auth.claims";
/// RequestAuthentications in the root namespace apply mesh-wide.
const ROOT_NAMESPACE: &str = "istio-system";

pub struct JwtClaimRouteAnalyzer;

/// The first claim-based match key and its path.
fn claim_match(vs: &VirtualService) -> Option<(FieldPath, &str)> {
    for (i, h) in vs.http.iter().enumerate() {
        for (j, m) in h.r#match.iter().enumerate() {
            let base = FieldPath::parse("spec.http").index(i).key("match").index(j);
            if let Some(k) = m.headers.keys().find(|k| k.starts_with(CLAIM_PREFIX)) {
                return Some((base.key("headers").key(k.clone()), k));
            }
            if let Some(k) = m
                .without_headers
                .keys()
                .find(|k| k.starts_with(CLAIM_PREFIX))
            {
                return Some((base.key("withoutHeaders").key(k.clone()), k));
            }
        }
    }
    None
}

impl Analyzer for JwtClaimRouteAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.JWTClaimRouteAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        // RequestAuthentication selectors by namespace (empty selector = whole namespace).
        let mut authn: HashMap<&str, Vec<BTreeMap<String, String>>> = HashMap::new();
        for ra in ctx.of(Kind::RequestAuthentication) {
            let Body::RequestAuthentication(spec) = &ra.body else {
                continue;
            };
            let sel = spec
                .selector
                .as_ref()
                .map(|s| s.match_labels.clone())
                .unwrap_or_default();
            authn.entry(ra.namespace()).or_default().push(sel);
        }
        let covered = |ns: &str, labels: &BTreeMap<String, String>| {
            [ROOT_NAMESPACE, ns]
                .iter()
                .flat_map(|n| authn.get(n).into_iter().flatten())
                .any(|sel| crate::kinds::common::labels_match(sel, labels))
        };
        let gateways = GatewayIndex::build(ctx);
        // Gateway -> its pods without a RequestAuthentication ("" = the selected labels).
        let mut cache: HashMap<(&str, &str), Vec<String>> = HashMap::new();
        for obj in ctx.of(Kind::VirtualService) {
            let Body::VirtualService(vs) = &obj.body else {
                continue;
            };
            let Some((path, key)) = claim_match(vs) else {
                continue;
            };
            for reference in &vs.gateways {
                if reference == MESH_GATEWAY {
                    continue;
                }
                let (ns, name) = gateway_ref(reference, obj.namespace());
                // A missing gateway is the gateway analyzer's finding.
                let Some(gw) = gateways.istio(ns, name) else {
                    continue;
                };
                let Body::Gateway(spec) = &gw.body else {
                    continue;
                };
                let uncovered = cache.entry((ns, name)).or_insert_with(|| {
                    let pods: Vec<_> = ctx
                        .pods()
                        .iter()
                        .filter(|p| crate::kinds::common::labels_match(&spec.selector, p.labels))
                        .collect();
                    // Without known gateway pods, judge by the labels the gateway selects.
                    if pods.is_empty() {
                        if covered(gw.namespace(), &spec.selector) {
                            vec![]
                        } else {
                            vec![String::new()]
                        }
                    } else {
                        pods.iter()
                            .filter(|p| !covered(p.namespace, p.labels))
                            .map(|p| format!("{}/{}", p.namespace, p.name))
                            .collect()
                    }
                });
                if uncovered.is_empty() {
                    continue;
                }
                let workload = if uncovered.iter().all(String::is_empty) {
                    let sel: Vec<String> = spec
                        .selector
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!("the workload selected by {{{}}}", sel.join(", "))
                } else {
                    format!("pod(s) {}", uncovered.join(", "))
                };
                out.push(
                    finding(obj, "IST0149", Severity::Error, path.clone(), format!(
                        "the route matches on JWT claim `{key}` through gateway {ns}/{name}, but no RequestAuthentication applies to {workload}: the claim is never extracted, so the route never matches"
                    ))
                    .with_hint(format!(
                        "add a RequestAuthentication in namespace `{}` (or `{ROOT_NAMESPACE}`) whose selector matches the gateway's labels, with the JWT issuer whose claims you match",
                        gw.namespace()
                    )),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {

    fn run(yaml: &str) -> Vec<crate::Diagnostic> {
        crate::testing::run_named("virtualservice.JWTClaimRouteAnalyzer", yaml)
    }

    const BASE: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: default}\nspec:\n  hosts: [a.com]\n  gateways: [istio-system/gw]\n  http:\n  - match:\n    - headers: {'@request.auth.claims.group': {exact: admin}}\n    route:\n    - destination: {host: web}\n";

    #[test]
    fn claim_route_without_request_authentication_is_reported() {
        let got = run(BASE);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].code, "IST0149");
        assert!(got[0].message.contains("@request.auth.claims.group"));
    }

    #[test]
    fn request_authentication_on_gateway_silences() {
        let ra = "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  jwtRules:\n  - issuer: https://issuer.example.com\n";
        let got = run(&format!("{BASE}{ra}"));
        assert!(got.is_empty(), "{got:?}");
    }
}
