//! WEFT1001 (VirtualService host matching no service) and WEFT1003 (short host resolving
//! to a namespace where the service does not exist).

use std::net::IpAddr;

use super::{KnownHosts, SHORT_HOST_ELSEWHERE, UNKNOWN_HOST};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

/// A short host that names a service existing only in other namespaces: those namespaces.
fn short_host_elsewhere(known: &KnownHosts, host: &str, ns: &str) -> Option<Vec<String>> {
    if host.contains('.') || host.contains('*') || host.is_empty() {
        return None;
    }
    if known.contains(&Context::fqdn(host, ns)) {
        return None;
    }
    let others: Vec<String> = known
        .by_short_name
        .get(host)?
        .iter()
        .filter(|n| n.as_str() != ns)
        .cloned()
        .collect();
    (!others.is_empty()).then_some(others)
}

pub struct UnknownHostAnalyzer;

impl Analyzer for UnknownHostAnalyzer {
    fn name(&self) -> &'static str {
        "weft.UnknownHostAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let known = KnownHosts::build(ctx);
        if known.is_empty() {
            return;
        }
        for obj in ctx.of(Kind::VirtualService) {
            let Body::VirtualService(vs) = &obj.body else {
                continue;
            };
            if !vs.applies_to_mesh() {
                continue;
            }
            let ns = obj.namespace();
            for (i, host) in vs.hosts.iter().enumerate() {
                if host.contains('*') || host.parse::<IpAddr>().is_ok() {
                    continue;
                }
                let fqdn = Context::fqdn(host, ns);
                // Short names of services in other namespaces are WEFT1003's.
                if known.contains(&fqdn) || short_host_elsewhere(&known, host, ns).is_some() {
                    continue;
                }
                let closest = known.closest(&fqdn);
                let hint = match closest.first() {
                    Some((dist, best)) if *dist <= best.len() / 3 => {
                        format!(
                            "did you mean `{best}`? Otherwise declare a Service or ServiceEntry for {fqdn}"
                        )
                    }
                    Some(_) => {
                        let some: Vec<&str> = closest.iter().take(3).map(|(_, h)| *h).collect();
                        format!(
                            "the closest known hosts are {}; declare a Service or ServiceEntry for {fqdn} if it is new",
                            some.join(", ")
                        )
                    }
                    None => format!("declare a Service or ServiceEntry for {fqdn}"),
                };
                let shown = if fqdn == *host {
                    format!("`{host}`")
                } else {
                    format!("`{host}` ({fqdn})")
                };
                let mut d = finding(
                    obj,
                    UNKNOWN_HOST,
                    Severity::Warning,
                    FieldPath::root().key("spec").key("hosts").index(i),
                    format!(
                        "host {shown} matches no known service (Kubernetes Service, ServiceEntry or weft Workload), so these rules apply to no traffic"
                    ),
                );
                d.hint = Some(hint);
                out.push(d);
            }
        }
    }
}

pub struct ShortHostAnalyzer;

impl ShortHostAnalyzer {
    fn check(
        known: &KnownHosts,
        obj: &Object,
        path: FieldPath,
        host: &str,
        out: &mut Vec<Diagnostic>,
    ) {
        let ns = obj.namespace();
        let Some(others) = short_host_elsewhere(known, host, ns) else {
            return;
        };
        let fqdns: Vec<String> = others.iter().map(|o| Context::fqdn(host, o)).collect();
        let mut d = finding(
            obj,
            SHORT_HOST_ELSEWHERE,
            Severity::Warning,
            path,
            format!(
                "short host `{host}` is resolved in the {}'s namespace `{ns}` to {}, which does not exist; a service `{host}` exists in namespace {}",
                obj.kind.name(),
                Context::fqdn(host, ns),
                others.join(", ")
            ),
        );
        d.hint = Some(format!(
            "short names always resolve in the namespace of the rule, not of the service: write the fully qualified name `{}`",
            fqdns.join("` or `")
        ));
        out.push(d);
    }
}

impl Analyzer for ShortHostAnalyzer {
    fn name(&self) -> &'static str {
        "weft.ShortHostAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let known = KnownHosts::build(ctx);
        if known.by_short_name.is_empty() {
            return;
        }
        let spec = FieldPath::root().key("spec");
        for obj in ctx.of(Kind::VirtualService) {
            let Body::VirtualService(vs) = &obj.body else {
                continue;
            };
            if vs.applies_to_mesh() {
                for (i, h) in vs.hosts.iter().enumerate() {
                    Self::check(&known, obj, spec.key("hosts").index(i), h, out);
                }
            }
            for (path, dest) in vs.all_destinations() {
                Self::check(&known, obj, path.key("host"), &dest.host, out);
            }
        }
        for obj in ctx.of(Kind::DestinationRule) {
            let Body::DestinationRule(dr) = &obj.body else {
                continue;
            };
            Self::check(&known, obj, spec.key("host"), &dr.host, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::weft::run;

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: bookinfo}\nspec:\n  selector: {app: reviews}\n  ports: [{port: 9080}]\n";

    #[test]
    fn unknown_host_fires_with_suggestion() {
        let y = format!(
            "{SVC}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: bookinfo}}\nspec:\n  hosts: [reveiws]\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n"
        );
        let out = run(&UnknownHostAnalyzer, &y);
        assert_eq!(out.len(), 1, "{out:?}");
        let d = &out[0];
        assert_eq!(d.code, "WEFT1001");
        assert_eq!(
            d.resource.as_ref().unwrap().to_string(),
            "VirtualService bookinfo/r"
        );
        assert_eq!(d.field.as_ref().unwrap().to_string(), "spec.hosts[0]");
        assert!(
            d.hint
                .as_ref()
                .unwrap()
                .contains("did you mean `reviews.bookinfo.svc.cluster.local`"),
            "{:?}",
            d.hint
        );
    }

    #[test]
    fn known_hosts_are_silent() {
        let y = format!(
            "{SVC}---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: ext, namespace: bookinfo}}\nspec:\n  hosts: ['*.example.com']\n  ports: [{{number: 443, name: https, protocol: TLS}}]\n  resolution: DNS\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: bookinfo}}\nspec:\n  hosts: [reviews, api.example.com]\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: edge, namespace: bookinfo}}\nspec:\n  hosts: [shop.example.org]\n  gateways: [edge-gw]\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n"
        );
        assert!(run(&UnknownHostAnalyzer, &y).is_empty());
    }

    #[test]
    fn short_host_in_other_namespace_fires() {
        let y = format!(
            "{SVC}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews, namespace: default}}\nspec:\n  host: reviews\n"
        );
        let out = run(&ShortHostAnalyzer, &y);
        assert_eq!(out.len(), 1, "{out:?}");
        let d = &out[0];
        assert_eq!(d.code, "WEFT1003");
        assert_eq!(
            d.resource.as_ref().unwrap().to_string(),
            "DestinationRule default/reviews"
        );
        assert_eq!(d.field.as_ref().unwrap().to_string(), "spec.host");
        assert!(d.message.contains("reviews.default.svc.cluster.local"));
        assert!(
            d.hint
                .as_ref()
                .unwrap()
                .contains("reviews.bookinfo.svc.cluster.local")
        );
        // WEFT1001 leaves this case to WEFT1003.
        assert!(run(&UnknownHostAnalyzer, &y).is_empty());
    }

    #[test]
    fn short_host_in_same_namespace_is_silent() {
        let y = format!(
            "{SVC}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: r, namespace: bookinfo}}\nspec:\n  hosts: [reviews]\n  http: [{{route: [{{destination: {{host: reviews}}}}]}}]\n"
        );
        assert!(run(&ShortHostAnalyzer, &y).is_empty());
    }
}
