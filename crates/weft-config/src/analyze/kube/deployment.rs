//! How Deployments relate to Services (`deployment.ServiceAssociationAnalyzer`) and
//! whether applications run as the proxy's UID (`deployment.ApplicationUIDAnalyzer`).

use std::collections::BTreeMap;

use super::index::{self, PROXY_CONTAINER};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::common::IntOrString;
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;

/// The UID the sidecar proxy runs as; traffic from it bypasses redirection.
pub const PROXY_UID: i64 = 1337;

/// `deployment.ServiceAssociationAnalyzer`: for a meshed Deployment, IST0116 when the
/// Services selecting it use one port number with different protocols, and IST0137 when
/// they route different service ports to the same target port.
pub struct ServiceAssociationAnalyzer;

impl Analyzer for ServiceAssociationAnalyzer {
    fn name(&self) -> &'static str {
        "deployment.ServiceAssociationAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for dep in ctx.of(Kind::Deployment) {
            let Body::Deployment(w) = &dep.body else {
                continue;
            };
            // Waypoints are managed by Istio and fronted by generated Services.
            if dep.label("gateway.istio.io/managed") == Some("istio.io-mesh-controller") {
                continue;
            }
            let t = &w.template;
            if !index::in_mesh(
                ctx,
                dep.namespace(),
                &t.metadata.labels,
                &t.metadata.annotations,
                &t.spec,
            ) {
                continue;
            }
            let services: Vec<_> = ctx
                .services()
                .iter()
                .filter(|s| s.namespace == dep.namespace())
                .filter(|s| {
                    s.selector.is_some_and(|sel| {
                        !sel.is_empty()
                            && crate::kinds::common::labels_match(sel, &t.metadata.labels)
                    })
                })
                .collect();
            // port -> protocol -> services
            let mut protocols: BTreeMap<u16, BTreeMap<String, Vec<String>>> = BTreeMap::new();
            // target port -> port -> service
            let mut targets: BTreeMap<String, BTreeMap<u16, String>> = BTreeMap::new();
            for s in &services {
                let Body::Service(spec) = &s.source.body else {
                    continue;
                };
                let full = format!("{}/{}", s.namespace, s.name);
                for p in &spec.ports {
                    let proto = p
                        .protocol
                        .clone()
                        .filter(|p| !p.is_empty())
                        .unwrap_or_else(|| "TCP".to_string());
                    protocols
                        .entry(p.port)
                        .or_default()
                        .entry(proto)
                        .or_default()
                        .push(full.clone());
                    let target = match &p.target_port {
                        Some(IntOrString::Int(0)) | None => p.port.to_string(),
                        Some(IntOrString::String(s)) if s.is_empty() => p.port.to_string(),
                        Some(t) => t.to_string(),
                    };
                    targets
                        .entry(target)
                        .or_default()
                        .insert(p.port, full.clone());
                }
            }
            let name_path = FieldPath::parse("metadata.name");
            for (port, by_proto) in &protocols {
                if by_proto.len() > 1 {
                    let mut names: Vec<&str> =
                        by_proto.values().flatten().map(String::as_str).collect();
                    names.sort();
                    let protos: Vec<&str> = by_proto.keys().map(String::as_str).collect();
                    out.push(
                        finding(dep, "IST0116", Severity::Warning, name_path.clone(), format!(
                            "Deployment {}/{} is selected by several Services that use port {port} with different protocols ({}): {}.",
                            dep.namespace(), dep.name(), protos.join(", "), names.join(", ")
                        ))
                        .with_hint("give each protocol its own port number, or use one protocol for the port in every Service selecting these pods"),
                    );
                }
            }
            for (target, by_port) in &targets {
                if by_port.len() > 1 {
                    let mut names: Vec<&str> = by_port.values().map(String::as_str).collect();
                    names.sort();
                    let ports: Vec<String> = by_port.keys().map(u16::to_string).collect();
                    out.push(
                        finding(dep, "IST0137", Severity::Warning, name_path.clone(), format!(
                            "Deployment {}/{} is selected by Services {} that send different ports ({}) to the same target port {target}.",
                            dep.namespace(), dep.name(), names.join(", "), ports.join(", ")
                        ))
                        .with_hint("use the same service port for the target port in every Service, or give each Service its own target port"),
                    );
                }
            }
        }
    }
}

/// `deployment.ApplicationUIDAnalyzer`: IST0144 when a Pod or workload runs application
/// containers as UID 1337, the proxy's UID, whose traffic bypasses the sidecar.
pub struct ApplicationUidAnalyzer;

impl Analyzer for ApplicationUidAnalyzer {
    fn name(&self) -> &'static str {
        "deployment.ApplicationUIDAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for view in index::pod_views(ctx) {
            let obj = view.obj;
            if index::is_control_plane(&obj.meta.labels) {
                continue;
            }
            let spec_path = FieldPath::parse(view.spec_path);
            let pod_uid = view
                .spec
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_user);
            // Each application container's effective UID: its own, else the pod's.
            let mut offenders = Vec::new();
            let mut path = None;
            for (i, c) in view.spec.containers.iter().enumerate() {
                if c.name == PROXY_CONTAINER || c.name == "istio-operator" {
                    continue;
                }
                let own = c.security_context.as_ref().and_then(|s| s.run_as_user);
                if own.or(pod_uid) == Some(PROXY_UID) {
                    offenders.push(c.name.as_str());
                    path.get_or_insert_with(|| match own {
                        Some(_) => spec_path
                            .key("containers")
                            .index(i)
                            .key("securityContext")
                            .key("runAsUser"),
                        None => spec_path.key("securityContext").key("runAsUser"),
                    });
                }
            }
            let Some(path) = path else { continue };
            out.push(
                finding(
                    obj,
                    "IST0144",
                    Severity::Warning,
                    path,
                    format!(
                        "{} {}/{} runs container(s) {} as UID {PROXY_UID}, the UID reserved for the Istio proxy: their traffic bypasses the sidecar.",
                        obj.kind.name(),
                        obj.namespace(),
                        obj.name(),
                        offenders.join(", ")
                    ),
                )
                .with_hint("run the application as another UID (securityContext.runAsUser)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &dyn Analyzer, yaml: &str) -> Vec<Diagnostic> {
        crate::testing::run_analyzer(a, yaml)
    }

    const DEP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    metadata:\n      labels: {app: a, sidecar.istio.io/inject: \"true\"}\n    spec:\n      containers: [{name: a}]\n---\n";

    fn svc(name: &str, port: u16, target: u16, proto: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: a}}\n  ports: [{{port: {port}, targetPort: {target}, protocol: {proto}}}]\n---\n"
        )
    }

    #[test]
    fn conflicting_protocols_and_target_ports() {
        let d = run(
            &ServiceAssociationAnalyzer,
            &format!(
                "{DEP}{}{}",
                svc("s1", 80, 8080, "TCP"),
                svc("s2", 80, 8080, "UDP")
            ),
        );
        assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["IST0116"]);
        let d = run(
            &ServiceAssociationAnalyzer,
            &format!(
                "{DEP}{}{}",
                svc("s1", 80, 8080, "TCP"),
                svc("s2", 81, 8080, "TCP")
            ),
        );
        assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["IST0137"]);
    }

    #[test]
    fn consistent_services_are_silent() {
        let d = run(
            &ServiceAssociationAnalyzer,
            &format!(
                "{DEP}{}{}",
                svc("s1", 80, 8080, "TCP"),
                svc("s2", 81, 8081, "TCP")
            ),
        );
        assert!(d.is_empty(), "{d:#?}");
    }

    #[test]
    fn uid_1337() {
        let d = run(
            &ApplicationUidAnalyzer,
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: s\nspec:\n  template:\n    spec:\n      containers: [{name: a, securityContext: {runAsUser: 1337}}, {name: istio-proxy, securityContext: {runAsUser: 1337}}]\n",
        );
        assert_eq!(d.len(), 1);
        assert_eq!(
            d[0].field.as_ref().unwrap().to_string(),
            "spec.template.spec.containers[0].securityContext.runAsUser"
        );
        let silent = run(
            &ApplicationUidAnalyzer,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  securityContext: {runAsUser: 1000}\n  containers: [{name: a}]\n",
        );
        assert!(silent.is_empty());
    }
}
