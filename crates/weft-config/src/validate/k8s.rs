//! Metadata rules shared by all kinds, and checks for Services and weft Workloads.

use std::collections::HashSet;

use super::Report;
use super::rules::{is_dns1123_label, is_dns1123_subdomain, is_label_key, is_label_value, is_port};
use crate::kinds::k8s::ServiceSpec;
use crate::kinds::weft::{Probe, WorkloadSpec};

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
    if let Some(probe) = &w.readiness_probe {
        readiness_probe(w, probe, r);
    }
}

/// `spec.readinessProbe`: an `httpGet` on an absolute path and on one of the Workload's
/// own ports (what `weft up` probes is the application itself, never another process).
fn readiness_probe(w: &WorkloadSpec, probe: &Probe, r: &mut Report) {
    let path = crate::FieldPath::root().key("spec").key("readinessProbe");
    for (field, value) in [
        ("periodSeconds", probe.period_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
    ] {
        if value == Some(0) {
            r.error(
                path.key(field),
                format!("invalid {field} 0: must be at least 1"),
            );
        }
    }
    let Some(get) = &probe.http_get else {
        r.error(
            path,
            "a readinessProbe needs `httpGet` (the only probe weft up runs)",
        )
        .hint("e.g. `readinessProbe: {httpGet: {path: /ready, port: http}}`");
        return;
    };
    let get_path = path.key("httpGet");
    if let Some(p) = &get.path
        && !p.starts_with('/')
    {
        r.error(
            get_path.key("path"),
            format!("invalid path `{p}`: must start with `/`"),
        )
        .hint(format!("try `/{p}`"));
    }
    let declared = || {
        let names: Vec<String> = w
            .ports
            .iter()
            .map(|p| match &p.name {
                Some(n) => format!("{n} ({})", p.port),
                None => p.port.to_string(),
            })
            .collect();
        if names.is_empty() {
            "the Workload declares no ports: add one to `spec.ports`".to_string()
        } else {
            format!("the Workload's ports: {}", names.join(", "))
        }
    };
    match &get.port {
        None => {
            r.error(get_path.key("port"), "httpGet needs a `port`")
                .hint(declared());
        }
        Some(port) if w.port_of(port).is_none() => {
            r.error(
                get_path.key("port"),
                format!("port `{port}` is not one of the Workload's ports"),
            )
            .hint(declared());
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{assert_one_error, validation_errors};

    fn workload(probe: &str) -> String {
        format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Workload\nmetadata: {{name: w, namespace: shop}}\nspec:\n  command: app\n  ports: [{{name: http, port: 3001}}, {{port: 9090}}]\n  readinessProbe: {probe}\n"
        )
    }

    #[test]
    fn a_readiness_probe_on_a_declared_port_by_name_or_number_is_valid() {
        for probe in [
            "{httpGet: {path: /ready, port: http}}",
            "{httpGet: {path: /ready, port: 3001}, periodSeconds: 1, timeoutSeconds: 2}",
            "{httpGet: {port: 9090}}",
        ] {
            assert_eq!(validation_errors(&workload(probe)), vec![], "{probe}");
        }
    }

    #[test]
    fn a_readiness_probe_path_must_be_absolute() {
        assert_one_error(
            &workload("{httpGet: {path: ready, port: http}}"),
            "spec.readinessProbe.httpGet.path",
            "must start with `/`",
        );
    }

    #[test]
    fn a_readiness_probe_port_must_be_one_of_the_workloads() {
        assert_one_error(
            &workload("{httpGet: {path: /ready, port: admin}}"),
            "spec.readinessProbe.httpGet.port",
            "port `admin` is not one of the Workload's ports",
        );
        assert_one_error(
            &workload("{httpGet: {path: /ready, port: 8080}}"),
            "spec.readinessProbe.httpGet.port",
            "port `8080` is not one of the Workload's ports",
        );
        assert_one_error(
            &workload("{httpGet: {path: /ready}}"),
            "spec.readinessProbe.httpGet.port",
            "needs a `port`",
        );
    }

    #[test]
    fn a_readiness_probe_needs_http_get_and_positive_periods() {
        assert_one_error(
            &workload("{periodSeconds: 1}"),
            "spec.readinessProbe",
            "needs `httpGet`",
        );
        assert_one_error(
            &workload("{httpGet: {path: /ready, port: http}, periodSeconds: 0}"),
            "spec.readinessProbe.periodSeconds",
            "must be at least 1",
        );
    }

    #[test]
    fn readiness_probe_fields_use_kubernetes_names_and_defaults() {
        let b =
            crate::Bundle::load_str("w.yaml", &workload("{httpGet: {path: /ready, port: http}}"));
        assert!(b.diagnostics.is_empty(), "{:?}", b.diagnostics);
        let crate::Body::Workload(spec) = &b.objects[0].body else {
            panic!("not a Workload");
        };
        let probe = spec.readiness_probe.as_ref().expect("probe");
        assert_eq!((probe.period_seconds(), probe.timeout_seconds()), (10, 1));
        let get = probe.http_get.as_ref().expect("httpGet");
        assert_eq!(get.path(), "/ready");
        assert_eq!(spec.port_of(get.port.as_ref().expect("port")), Some(3001));
        // An unknown field (a Kubernetes handler weft up does not run) is an error.
        let b = crate::Bundle::load_str("w.yaml", &workload("{exec: {command: [true]}}"));
        assert!(!b.diagnostics.is_empty(), "exec accepted");
    }
}
