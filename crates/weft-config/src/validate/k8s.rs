//! Metadata rules shared by all kinds, and checks for Services and weft Workloads.

use std::collections::HashSet;

use super::Report;
use super::rules::{is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value, is_port};
use crate::kinds::k8s::ServiceSpec;
use crate::kinds::weft::WorkloadSpec;

/// Names, namespaces and labels as the Kubernetes API server checks them.
pub fn metadata(r: &mut Report) {
    let obj = r.object();
    let name = obj.meta.name.clone();
    let ns = obj.meta.namespace.clone();
    let labels: Vec<(String, String)> = obj
        .meta
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // ServiceProfile names are FQDNs and Services must be DNS labels; every other kind takes
    // a DNS subdomain.
    let kind = obj.kind;
    let ok = match kind {
        crate::Kind::Service | crate::Kind::Namespace => is_dns1123_label(&name),
        _ => is_dns1123_subdomain(&name),
    };
    if !ok {
        r.error("metadata.name", format!("invalid name `{name}`: must consist of lowercase letters, digits, '-' and '.', and start and end with a letter or digit"))
            .hint(format!("try `{}`", suggest_dns_name(&name)));
    }
    if let Some(ns) = ns
        && !ns.is_empty()
        && !is_dns1123_label(&ns)
    {
        r.error(
            "metadata.namespace",
            format!(
                "invalid namespace `{ns}`: must be a DNS label (lowercase letters, digits and '-')"
            ),
        );
    }
    for (k, v) in labels {
        let path = crate::FieldPath::root()
            .key("metadata")
            .key("labels")
            .key(k.as_str());
        if !is_label_key(&k) {
            r.error(path.clone(), format!("invalid label key `{k}`"))
                .hint("label keys are an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.'");
        }
        if !is_label_value(&v) {
            r.error(path, format!("invalid label value `{v}` for key `{k}`"))
                .hint("label values are up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit");
        }
    }
}

fn suggest_dns_name(name: &str) -> String {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches(['-', '.']).to_string()
}

pub fn service(s: &ServiceSpec, r: &mut Report) {
    let mut names = HashSet::new();
    for (i, p) in s.ports.iter().enumerate() {
        let path = crate::FieldPath::root().key("spec").key("ports").index(i);
        if !is_port(u32::from(p.port)) {
            r.error(
                path.key("port"),
                format!("invalid port {}: must be 1-65535", p.port),
            );
        }
        if let Some(name) = &p.name {
            if !names.insert(name.clone()) {
                r.error(path.key("name"), format!("duplicate port name `{name}`"));
            }
        } else if s.ports.len() > 1 {
            r.error(path.clone(), "a Service with more than one port must name every port")
                .hint("add `name: http` (or grpc, tcp, ...): the name's prefix also tells the mesh the protocol");
        }
        if let Some(proto) = &p.protocol
            && !matches!(proto.as_str(), "TCP" | "UDP" | "SCTP")
        {
            r.error(
                path.key("protocol"),
                format!("invalid protocol `{proto}`: must be TCP, UDP or SCTP"),
            )
            .hint(
                "the application protocol (http, grpc, ...) goes in `appProtocol` or the port name",
            );
        }
    }
}

pub fn weft_workload(w: &WorkloadSpec, r: &mut Report) {
    if w.command.trim().is_empty() {
        r.error("spec.command", "a Workload needs a `command` to run")
            .hint("e.g. `command: target/debug/shop-product`");
    }
    if let Some(sa) = &w.service_account
        && !is_dns1123_subdomain(sa)
    {
        r.error(
            "spec.serviceAccount",
            format!("invalid service account `{sa}`: must be a DNS name"),
        );
    }
    let mut seen = HashSet::new();
    for (i, p) in w.ports.iter().enumerate() {
        let path = crate::FieldPath::root().key("spec").key("ports").index(i);
        if !is_port(u32::from(p.port)) {
            r.error(
                path.key("port"),
                format!("invalid port {}: must be 1-65535", p.port),
            );
        } else if !seen.insert(p.port) {
            r.error(path.key("port"), format!("port {} is listed twice", p.port));
        }
    }
}
