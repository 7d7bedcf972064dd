//! `virtualservice.DestinationHostAnalyzer`: destinations whose host no Service or
//! ServiceEntry provides (IST0101), whose port the service does not expose (IST0101), or
//! that omit the port of a multi-port service (IST0112); and gateway routes without a
//! subset to a host whose mesh routing uses subsets (IST0140).

use std::collections::HashMap;

use super::hosts::{ServiceRegistry, fqdn};
use super::{DestKind, destinations};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::istio::{MESH_GATEWAY, VirtualService};
use crate::kinds::{Body, Kind};
use crate::object::Object;

pub struct DestinationHostAnalyzer;

impl Analyzer for DestinationHostAnalyzer {
    fn name(&self) -> &'static str {
        "virtualservice.DestinationHostAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let registry = ServiceRegistry::build(ctx);
        let vss: Vec<(&Object, &VirtualService)> = ctx
            .of(Kind::VirtualService)
            .filter_map(|o| match &o.body {
                Body::VirtualService(vs) => Some((o, vs)),
                _ => None,
            })
            .collect();
        for &(obj, vs) in &vss {
            check_destinations(obj, vs, &registry, out);
        }
        check_ingress_subsets(&vss, out);
    }
}

fn check_destinations(
    obj: &Object,
    vs: &VirtualService,
    registry: &ServiceRegistry<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let ns = obj.namespace();
    for d in destinations(vs) {
        let what = match d.kind {
            DestKind::Route => "destination host",
            DestKind::Mirror => "mirror host",
        };
        let Some(dest) = d.dest else {
            out.push(
                finding(
                    obj,
                    "IST0101",
                    Severity::Error,
                    d.host_path(),
                    format!(
                        "{} has no destination: traffic for this route has nowhere to go",
                        d.path
                    ),
                )
                .with_hint(
                    "add `destination: {host: <service>}` to the route entry, or remove the entry",
                ),
            );
            continue;
        };
        let Some(target) = registry.lookup(ns, &vs.export_to, &dest.host) else {
            let full = fqdn(&dest.host, ns);
            let shown = if full == dest.host {
                format!("`{}`", dest.host)
            } else {
                format!("`{}` ({full})", dest.host)
            };
            out.push(
                finding(obj, "IST0101", Severity::Error, d.host_path(), format!(
                    "{what} {shown} is not a known service: no Kubernetes Service or ServiceEntry visible from namespace `{ns}` provides it"
                ))
                .with_hint(registry.suggest(&dest.host, ns)),
            );
            continue;
        };
        let ports = || {
            target
                .ports
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match dest.port_number() {
            None if target.ports.len() > 1 => out.push(
                finding(obj, "IST0112", Severity::Error, d.path.clone(), format!(
                    "{what} `{}` has several ports ({}) and the destination does not say which one to use",
                    dest.host,
                    ports()
                ))
                .with_hint(format!(
                    "add `port: {{number: <port>}}` to the destination, one of {} (from {})",
                    ports(),
                    target.describe()
                )),
            ),
            Some(p) if !target.ports.contains(&p) => out.push(
                finding(obj, "IST0101", Severity::Error, d.path.key("port").key("number"), format!(
                    "{what} `{}` has no port {p}: {} exposes {}",
                    dest.host,
                    target.describe(),
                    if target.ports.is_empty() { "no ports".to_string() } else { format!("port(s) {}", ports()) }
                ))
                .with_hint(if target.ports.is_empty() {
                    format!("declare port {p} on {}", target.describe())
                } else {
                    format!("use one of the service's ports ({}), or add port {p} to {}", ports(), target.describe())
                }),
            ),
            _ => {}
        }
    }
}

/// IST0140: a VirtualService bound to gateways routes to a host without a subset while
/// another VirtualService for that host routes the mesh by subset: the gateway traffic
/// skips the subset routing.
fn check_ingress_subsets(vss: &[(&Object, &VirtualService)], out: &mut Vec<Diagnostic>) {
    // FQDN host -> VirtualServices that route their own host to a subset.
    let mut subset_routed: HashMap<String, Vec<&Object>> = HashMap::new();
    for &(obj, vs) in vss {
        let ns = obj.namespace();
        let own: Vec<String> = vs.hosts.iter().map(|h| fqdn(h, ns)).collect();
        for h in &vs.http {
            for rd in &h.route {
                let Some(d) = &rd.destination else { continue };
                if d.subset.is_empty() {
                    continue;
                }
                let host = fqdn(&d.host, ns);
                if own.contains(&host) {
                    let list = subset_routed.entry(host).or_default();
                    if !list.iter().any(|o| std::ptr::eq(*o, obj)) {
                        list.push(obj);
                    }
                }
            }
        }
    }
    if subset_routed.is_empty() {
        return;
    }
    for &(obj, vs) in vss {
        if !vs.gateways.iter().any(|g| g != MESH_GATEWAY) {
            continue;
        }
        let ns = obj.namespace();
        for (i, h) in vs.http.iter().enumerate() {
            for (j, rd) in h.route.iter().enumerate() {
                let Some(d) = &rd.destination else { continue };
                if !d.subset.is_empty() {
                    continue;
                }
                let host = fqdn(&d.host, ns);
                let Some(others) = subset_routed.get(&host) else {
                    continue;
                };
                let names: Vec<String> = others
                    .iter()
                    .filter(|o| !std::ptr::eq(**o, obj))
                    .map(|o| format!("{}/{}", o.namespace(), o.name()))
                    .collect();
                if names.is_empty() {
                    continue;
                }
                let path = crate::path::FieldPath::parse("spec.http")
                    .index(i)
                    .key("route")
                    .index(j)
                    .key("destination")
                    .key("host");
                out.push(
                    finding(obj, "IST0140", Severity::Warning, path, format!(
                        "gateway traffic to `{}` is sent to the whole service: the subset routing of VirtualService {} applies to sidecars only, not to this gateway route",
                        d.host,
                        names.join(", ")
                    ))
                    .with_hint("set `subset` on this destination (the same subsets as the mesh route) if gateway traffic should follow the subset routing"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::{Context, run_filtered};

    fn codes(yaml: &str) -> Vec<(String, String)> {
        let bundle = crate::Bundle::load_str("t.yaml", yaml);
        let ctx = Context::new(&bundle.objects);
        run_filtered(&ctx, |n| n == "virtualservice.DestinationHostAnalyzer")
            .into_iter()
            .map(|d| (d.code.to_string(), d.message))
            .collect()
    }

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\nspec:\n  ports: [{port: 80, name: http}, {port: 443, name: https}]\n";

    #[test]
    fn missing_host_and_port_are_reported() {
        let got = codes(&format!(
            "{SVC}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviewz, port: {{number: 80}}}}\n    - destination: {{host: reviews}}\n    - destination: {{host: reviews, port: {{number: 8080}}}}\n"
        ));
        let c: Vec<&str> = got.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(c, ["IST0101", "IST0112", "IST0101"], "{got:?}");
        assert!(got[0].1.contains("reviewz"));
        assert!(got[2].1.contains("8080") && got[2].1.contains("80, 443"));
    }

    #[test]
    fn valid_destinations_are_silent() {
        let got = codes(&format!(
            "{SVC}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: ext, namespace: other}}\nspec:\n  hosts: ['*.example.com']\n  ports: [{{number: 443, name: tls, protocol: TLS}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: default}}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {{host: reviews.default.svc.cluster.local, port: {{number: 443}}}}\n    - destination: {{host: api.example.com}}\n"
        ));
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn service_export_to_limits_visibility() {
        let got = codes(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: details\n  namespace: default\n  annotations: {networking.istio.io/exportTo: banana}\nspec:\n  ports: [{port: 9080, name: http}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs, namespace: apple}\nspec:\n  hosts: [x]\n  http:\n  - route:\n    - destination: {host: details.default.svc.cluster.local}\n",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].1.contains("apple"));
    }

    #[test]
    fn gateway_route_without_subset_is_flagged() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: default}\nspec:\n  ports: [{port: 80, name: http}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: mesh, namespace: default}\nspec:\n  hosts: [ratings]\n  http:\n  - route:\n    - destination: {host: ratings, subset: v1}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ingress, namespace: default}\nspec:\n  hosts: [ratings.example.com]\n  gateways: [gw]\n  http:\n  - route:\n    - destination: {host: ratings}\n";
        let got = codes(yaml);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "IST0140");
        assert!(got[0].1.contains("default/mesh"));
        let silent = codes(&yaml.replace(
            "destination: {host: ratings}",
            "destination: {host: ratings, subset: v1}",
        ));
        assert!(silent.is_empty(), "{silent:?}");
    }
}
