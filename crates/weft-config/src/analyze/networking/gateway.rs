//! `virtualservice.GatewayAnalyzer`: the gateways a VirtualService binds to must exist
//! (IST0101), must serve at least one of its hosts (IST0132), and must not be the Istio
//! Gateways generated for Gateway API Gateways (IST0165).

use std::collections::HashMap;

use super::hosts::host_matches;
use super::{gateway_ref, is_internal_gateway_ref};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::istio::{MESH_GATEWAY, VirtualService};
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

pub struct GatewayAnalyzer;

/// Gateways by (namespace, name), Istio's and the Gateway API's.
pub struct GatewayIndex<'a> {
    istio: HashMap<(&'a str, &'a str), &'a Object>,
    kube: HashMap<(&'a str, &'a str), &'a Object>,
}

impl<'a> GatewayIndex<'a> {
    pub fn build(ctx: &Context<'a>) -> GatewayIndex<'a> {
        let index = |kind| {
            ctx.of(kind)
                .map(|o: &'a Object| ((o.namespace(), o.name()), o))
                .collect()
        };
        GatewayIndex {
            istio: index(Kind::Gateway),
            kube: index(Kind::KubeGateway),
        }
    }

    pub fn istio(&self, ns: &str, name: &str) -> Option<&'a Object> {
        self.istio.get(&(ns, name)).copied()
    }

    pub fn kube(&self, ns: &str, name: &str) -> Option<&'a Object> {
        self.kube.get(&(ns, name)).copied()
    }

    /// Gateway names in `ns`, for suggestions.
    fn names_in(&self, ns: &str) -> Vec<&'a str> {
        let mut v: Vec<&str> = self
            .istio
            .keys()
            .chain(self.kube.keys())
            .filter(|(n, _)| *n == ns)
            .map(|(_, g)| *g)
            .collect();
        v.sort();
        v
    }
}

/// The hosts an Istio Gateway serves to VirtualServices in `vs_ns`: `./h` only to the
/// gateway's namespace, `ns/h` only to `ns`, `*/h` and `h` to every namespace.
fn istio_gateway_hosts<'a>(gw: &'a Object, vs_ns: &str) -> Vec<&'a str> {
    let Body::Gateway(spec) = &gw.body else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for server in &spec.servers {
        for h in &server.hosts {
            match h.split_once('/') {
                None => out.push(h.as_str()),
                Some(("*", host)) => out.push(host),
                Some((".", host)) if gw.namespace() == vs_ns => out.push(host),
                Some((ns, host)) if ns == vs_ns => out.push(host),
                _ => {}
            }
        }
    }
    out
}

/// The hostnames of a Gateway API Gateway's listeners; `None` when a listener has no
/// hostname (it then accepts every host).
fn kube_gateway_hosts(gw: &Object) -> Option<Vec<&str>> {
    let Body::KubeGateway(spec) = &gw.body else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for l in &spec.listeners {
        match l.hostname.as_deref() {
            None | Some("") => return None,
            Some(h) => out.push(h),
        }
    }
    Some(out)
}

impl Analyzer for GatewayAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.GatewayAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let gateways = GatewayIndex::build(ctx);
        for obj in ctx.of(Kind::VirtualService) {
            let Body::VirtualService(vs) = &obj.body else {
                continue;
            };
            check(obj, vs, &gateways, out);
        }
    }
}

fn check(
    obj: &Object,
    vs: &VirtualService,
    gateways: &GatewayIndex<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let vs_ns = obj.namespace();
    for (i, reference) in vs.gateways.iter().enumerate() {
        if reference == MESH_GATEWAY {
            continue;
        }
        let path = FieldPath::parse("spec.gateways").index(i);
        if is_internal_gateway_ref(reference) {
            out.push(
                finding(obj, "IST0165", Severity::Warning, path, format!(
                    "gateway `{reference}` is the Istio Gateway generated for a Gateway API Gateway: it is internal, and its name can change when the Gateway changes"
                ))
                .with_hint("route through the Gateway API Gateway with an HTTPRoute (or bind to an Istio Gateway you declare) instead of the generated one"),
            );
            continue;
        }
        let (ns, name) = gateway_ref(reference, vs_ns);
        let istio = gateways.istio(ns, name);
        let kube = if istio.is_none() {
            gateways.kube(ns, name)
        } else {
            None
        };
        if istio.is_none() && kube.is_none() {
            let known = gateways.names_in(ns);
            let hint = if let Some((legacy_name, legacy_ns)) = reference
                .split_once('.')
                .filter(|_| !reference.contains('/'))
                && (gateways.istio(legacy_ns, legacy_name).is_some()
                    || gateways.kube(legacy_ns, legacy_name).is_some())
            {
                format!("write the reference as `{legacy_ns}/{legacy_name}` (namespace/name)")
            } else if let Some(best) = crate::de::did_you_mean(name, &known) {
                format!("did you mean `{ns}/{best}`?")
            } else if known.is_empty() {
                format!(
                    "no Gateway is declared in namespace `{ns}`; create it, or reference a gateway in another namespace as `<namespace>/<name>`"
                )
            } else {
                format!("gateways in namespace `{ns}`: {}", known.join(", "))
            };
            out.push(
                finding(obj, "IST0101", Severity::Error, path.clone(), format!(
                    "gateway `{reference}` does not exist: no Gateway named `{name}` in namespace `{ns}`"
                ))
                .with_hint(hint),
            );
        }
        let (served, all_hosts): (Vec<&str>, bool) = match (istio, kube) {
            (Some(gw), _) => (istio_gateway_hosts(gw, vs_ns), false),
            (None, Some(gw)) => match kube_gateway_hosts(gw) {
                Some(h) => (h, false),
                None => (Vec::new(), true),
            },
            (None, None) => (Vec::new(), false),
        };
        if all_hosts
            || served
                .iter()
                .any(|g| vs.hosts.iter().any(|h| host_matches(g, h)))
        {
            continue;
        }
        let hint = if istio.is_none() && kube.is_none() {
            "create the gateway with a server for these hosts".to_string()
        } else if served.is_empty() {
            format!(
                "gateway {ns}/{name} serves no host visible to namespace `{vs_ns}`; add the VirtualService's hosts to a server of the gateway (`hosts: [\"{vs_ns}/<host>\"]` or `\"*/<host>\"`)"
            )
        } else {
            format!(
                "the gateway serves {}; add one of the VirtualService hosts to a gateway server, or change the VirtualService hosts",
                served.join(", ")
            )
        };
        out.push(
            finding(obj, "IST0132", Severity::Warning, path, format!(
                "none of the hosts [{}] is served by gateway {ns}/{name}, so the VirtualService has no effect on it",
                vs.hosts.join(", ")
            ))
            .with_hint(hint),
        );
    }
}

#[cfg(test)]
mod tests {

    fn run(yaml: &str) -> Vec<crate::Diagnostic> {
        crate::testing::run_named("virtualservice.GatewayAnalyzer", yaml)
    }

    const GW: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*.example.com', './internal.local']\n";

    fn vs(gateways: &str, hosts: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: default}}\nspec:\n  hosts: {hosts}\n  gateways: {gateways}\n  http:\n  - route:\n    - destination: {{host: web}}\n"
        )
    }

    #[test]
    fn bound_gateway_serving_the_host_is_silent() {
        let got = run(&format!(
            "{GW}{}",
            vs("[istio-system/gw, mesh]", "[shop.example.com]")
        ));
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn missing_gateway_and_unserved_host_are_reported() {
        let got = run(&format!(
            "{GW}{}",
            vs("[istio-system/gww, istio-system/gw]", "[internal.local]")
        ));
        let codes: Vec<&str> = got.iter().map(|d| d.code).collect();
        // gww: missing (IST0101) and so serves nothing (IST0132); gw: `./internal.local` is
        // only for istio-system.
        assert_eq!(codes, ["IST0101", "IST0132", "IST0132"], "{got:?}");
        assert!(got[0].hint.as_deref().unwrap().contains("istio-system/gw"));
    }

    #[test]
    fn generated_gateway_reference_is_flagged() {
        let got = run(&vs(
            "[istio-ingress/gateway-istio-autogenerated-k8s-gateway-http]",
            "[a.com]",
        ));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].code, "IST0165");
    }
}
