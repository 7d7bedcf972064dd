//! `service.PortNameAnalyzer`: Service ports whose protocol Istio cannot tell from the port
//! name or `appProtocol` (IST0118), and ExternalName Services whose ports must name a
//! protocol for Istio to route them (IST0150).

use super::index;
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::k8s::ServicePort;
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;

/// Protocols Istio recognises as a port-name prefix or `appProtocol` (case-insensitive).
const PROTOCOLS: &[&str] = &[
    "tcp",
    "udp",
    "grpc",
    "grpc-web",
    "http",
    "http_proxy",
    "http2",
    "https",
    "tls",
    "mongo",
    "redis",
    "mysql",
    "hbone",
];

/// The protocol Istio derives for a Service port, or None when it cannot (it then sniffs).
pub fn port_protocol(port: &ServicePort) -> Option<String> {
    if port.protocol.as_deref() == Some("UDP") {
        return Some("udp".into());
    }
    let mut name = port.name.clone().unwrap_or_default();
    if let Some(app) = &port.app_protocol {
        match app.as_str() {
            "kubernetes.io/h2c" => return Some("http2".into()),
            "kubernetes.io/ws" | "kubernetes.io/wss" => return Some("http".into()),
            _ => name = app.clone(),
        }
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("grpc-web") {
        return Some("grpc-web".into());
    }
    let prefix = lower.split('-').next().unwrap_or("");
    PROTOCOLS.contains(&prefix).then(|| prefix.to_string())
}

pub struct PortNameAnalyzer;

impl Analyzer for PortNameAnalyzer {
    fn name(&self) -> &'static str {
        "service.PortNameAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for svc in ctx.of(Kind::Service) {
            let Body::Service(spec) = &svc.body else {
                continue;
            };
            if index::is_system_namespace(svc.namespace())
                || index::is_control_plane(&svc.meta.labels)
            {
                continue;
            }
            let external = spec.service_type.as_deref() == Some("ExternalName");
            for (i, port) in spec.ports.iter().enumerate() {
                let proto = port_protocol(port);
                let path = FieldPath::parse("spec.ports").index(i);
                let shown = port.name.as_deref().unwrap_or("");
                if external {
                    if proto.is_none() || proto.as_deref() == Some("tcp") {
                        out.push(
                            finding(svc, "IST0150", Severity::Warning, path, format!(
                                "ExternalName Service {}/{} port {} is named \"{shown}\", which does not name an application protocol: Istio treats it as opaque TCP and cannot route it by host.",
                                svc.namespace(), svc.name(), port.port
                            ))
                            .with_hint("name the port after its protocol, e.g. \"http\", \"https\" or \"tls\" (or set appProtocol)"),
                        );
                    }
                } else if proto.is_none() {
                    let target = port
                        .target_port
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| port.port.to_string());
                    out.push(
                        finding(svc, "IST0118", Severity::Info, path, format!(
                            "Port \"{shown}\" ({}, target port {target}) of Service {}/{} does not follow Istio's naming convention, so Istio sniffs its protocol.",
                            port.port, svc.namespace(), svc.name()
                        ))
                        .with_hint("name the port <protocol>[-<suffix>] (e.g. \"http-web\", \"grpc\", \"tcp-db\") or set appProtocol"),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> Vec<Diagnostic> {
        crate::testing::run_analyzer(&PortNameAnalyzer, yaml)
    }

    #[test]
    fn unnamed_and_unconventional_ports() {
        let d = run(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports: [{port: 80}, {port: 81, name: web}, {port: 82, name: http-web}, {port: 83, name: x, appProtocol: grpc}]\n",
        );
        assert_eq!(
            d.iter().map(|d| d.code).collect::<Vec<_>>(),
            ["IST0118", "IST0118"]
        );
        assert_eq!(d[1].field.as_ref().unwrap().to_string(), "spec.ports[1]");
    }

    #[test]
    fn external_name_and_system_namespaces() {
        let d = run(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  type: ExternalName\n  externalName: example.com\n  ports: [{port: 443, name: tcp}, {port: 444, name: https}]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: k\n  namespace: kube-system\nspec:\n  ports: [{port: 80}]\n",
        );
        assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["IST0150"]);
    }
}
