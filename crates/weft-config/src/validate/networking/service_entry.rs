//! ServiceEntry, WorkloadEntry and WorkloadGroup validation.

use std::collections::HashMap;

use super::{
    PROTOCOL_HINT, check_export_to, check_labels, check_port, check_selector_labels, is_cidr,
    is_ip, is_ip_or_cidr, is_known_protocol, spec, spec_present,
};
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;
use crate::validate::rules::{is_dns1123_subdomain, is_label_key, is_wildcard_dns_name};

pub fn service_entry(se: &ServiceEntry, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    let spec = spec();
    let resolution = se.resolution();
    if se.hosts.is_empty() {
        r.error(
            spec.key("hosts"),
            "hosts: Required value: a ServiceEntry needs at least one host",
        )
        .hint("list the host names clients use, e.g. `hosts: [api.example.com]`");
    }
    for (i, h) in se.hosts.iter().enumerate() {
        let p = spec.key("hosts").index(i);
        if h == "*" {
            r.error(p, "hostname cannot be wildcard `*`")
                .hint("name the external hosts, or a domain wildcard such as `*.example.com`");
        } else if h.is_empty() {
            r.error(p, "host must not be empty");
        } else if !is_wildcard_dns_name(h) {
            let rest = h.trim_start_matches('*');
            if h.starts_with('*')
                && !rest.is_empty()
                && is_wildcard_dns_name(rest.trim_start_matches('.'))
            {
                r.warning(
                    p,
                    format!("partial wildcard host `{h}` is not a valid DNS wildcard"),
                )
                .hint(format!(
                    "Istio's webhook rejects it: write `*.{}`",
                    rest.trim_start_matches('.')
                ));
            } else {
                r.error(p, format!("invalid host `{h}`"))
                    .hint("use a DNS name such as `api.example.com` or `*.example.com`");
            }
        } else if se.endpoints.is_empty()
            && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
            && h.starts_with('*')
        {
            r.error(
                p,
                format!("wildcard host `{h}` cannot be resolved: hosts must be FQDNs when resolution is DNS and there are no endpoints"),
            )
            .hint("list exact host names, add `endpoints`, or use `resolution: NONE` or `DYNAMIC_DNS` for wildcards");
        }
    }

    for (i, a) in se.addresses.iter().enumerate() {
        let p = spec.key("addresses").index(i);
        if !is_ip_or_cidr(a) {
            r.error(
                p,
                format!("invalid address `{a}`: must be an IP address or CIDR"),
            )
            .hint("e.g. `10.0.0.1` or `10.0.0.0/16`");
        } else if is_cidr(a) && !matches!(resolution, Resolution::None | Resolution::Static) {
            r.error(
                p,
                format!("CIDR addresses are allowed only for NONE/STATIC resolution types (`{a}`)"),
            )
            .hint("use a single IP address, or `resolution: NONE`/`STATIC`");
        }
    }

    let mut numbers: HashMap<u32, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, port) in se.ports.iter().enumerate() {
        let p = spec.key("ports").index(i);
        check_port(r, p.key("number"), port.number);
        if let Some(t) = port.target_port {
            check_port(r, p.key("targetPort"), t);
        }
        if let Some(first) = numbers.insert(port.number, i) {
            r.error(
                p.key("number"),
                format!(
                    "port number cannot be duplicated: {} is also ports[{first}]",
                    port.number
                ),
            )
            .hint("each port number appears once in a ServiceEntry");
        }
        if port.name.is_empty() {
            r.warning(p.key("name"), "port has no name")
                .hint("name the port, e.g. `name: http`; endpoints refer to ports by name");
        } else if let Some(first) = names.insert(port.name.as_str(), i) {
            r.error(
                p.key("name"),
                format!(
                    "Duplicate value: port name `{}` is also ports[{first}]",
                    port.name
                ),
            )
            .hint("give each port its own name");
        }
        if !port.protocol.is_empty() && !is_known_protocol(&port.protocol) {
            r.error(
                p.key("protocol"),
                format!("unsupported protocol `{}`", port.protocol),
            )
            .hint(PROTOCOL_HINT);
        }
    }

    if let Some(ws) = &se.workload_selector {
        check_selector_labels(r, &spec.key("workloadSelector").key("labels"), &ws.labels);
        if !se.endpoints.is_empty() {
            r.error(spec.key("workloadSelector"), "only one of WorkloadSelector or Endpoints can be set")
                .hint("either list `endpoints` inline or select WorkloadEntries/pods with `workloadSelector`");
        }
    }

    match resolution {
        Resolution::None if !se.endpoints.is_empty() => {
            r.error(spec.key("endpoints"), "NONE mode cannot set endpoints")
                .hint("use `resolution: STATIC` (IP endpoints) or `DNS` (host-name endpoints), or remove `endpoints`");
        }
        Resolution::DnsRoundRobin if se.endpoints.len() > 1 => {
            r.error(
                spec.key("endpoints"),
                "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
            )
            .hint("use `resolution: DNS` to spread over several endpoints");
        }
        _ => {}
    }
    for (i, ep) in se.endpoints.iter().enumerate() {
        let p = spec.key("endpoints").index(i);
        workload_entry_fields(r, &p, ep, true);
        if resolution == Resolution::Static
            && !ep.address.is_empty()
            && !is_ip(&ep.address)
            && !ep.is_uds()
        {
            r.error(
                p.key("address"),
                format!(
                    "endpoint address `{}` is not an IP address; STATIC resolution needs IPs",
                    ep.address
                ),
            )
            .hint("use `resolution: DNS` for host-name endpoints");
        }
        for name in ep.ports.keys() {
            if !se.ports.is_empty() && !se.ports.iter().any(|sp| &sp.name == name) {
                r.error(
                    p.key("ports").key(name.as_str()),
                    format!("endpoint port `{name}` is not defined by the service entry"),
                )
                .hint("endpoint ports are keyed by the name of a port in `spec.ports`");
            }
        }
    }
    check_export_to(r, spec.key("exportTo"), &se.export_to);
    for (i, s) in se.subject_alt_names.iter().enumerate() {
        if s.is_empty() {
            r.error(
                spec.key("subjectAltNames").index(i),
                "subject alt name must not be empty",
            );
        }
    }
}

pub fn workload_entry(we: &WorkloadEntry, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    workload_entry_fields(r, &spec(), we, true);
}

/// A DNS name without wildcards.
fn is_hostname(s: &str) -> bool {
    is_wildcard_dns_name(s) && !s.contains('*')
}

/// A valid port name key (WorkloadEntry `ports`).
fn is_port_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn workload_entry_fields(
    r: &mut Report,
    p: &FieldPath,
    we: &WorkloadEntry,
    address_required: bool,
) {
    if we.address.is_empty() {
        if address_required && we.network.is_empty() {
            r.error(p.key("address"), "Address is required (unless `network` is set)")
                .hint("set the workload's IP address or DNS name, or `network` for a workload reachable through a network gateway");
        }
    } else if let Some(path) = we.address.strip_prefix("unix://") {
        if !(path.starts_with('/') || path.starts_with('@')) {
            r.error(
                p.key("address"),
                "UDS must be an absolute path or abstract socket",
            )
            .hint("write `unix:///path/to/socket` or `unix://@abstract-name`");
        } else if path.ends_with('/') {
            r.error(p.key("address"), "UDS may not be a dir")
                .hint("point at the socket file, not its directory");
        }
        if !we.ports.is_empty() {
            r.error(p.key("ports"), "UDS may not include ports")
                .hint("remove `ports`: a Unix socket has no port");
        }
    } else if !is_ip(&we.address) && !is_hostname(&we.address) {
        r.error(
            p.key("address"),
            format!(
                "address `{}` must be an IP address, DNS name or unix:// path",
                we.address
            ),
        );
    }
    for (name, port) in &we.ports {
        let pp = p.key("ports").key(name.as_str());
        if !is_port_name(name) {
            r.error(p.key("ports"), format!("Invalid value: port name `{name}` is not valid"))
                .hint("port names are letters, digits, '-' and '_', starting and ending with a letter or digit");
        }
        check_port(r, pp, *port);
    }
    check_labels(r, &p.key("labels"), &we.labels);
    if !we.service_account.is_empty() && !is_dns1123_subdomain(&we.service_account) {
        r.error(
            p.key("serviceAccount"),
            format!("invalid service account name `{}`", we.service_account),
        )
        .hint("service account names are lowercase letters, digits, '-' and '.'");
    }
    if !we.locality.is_empty()
        && (we.locality.split('/').count() > 3 || we.locality.split('/').any(str::is_empty))
    {
        r.error(
            p.key("locality"),
            format!("invalid locality `{}`", we.locality),
        )
        .hint("write `region`, `region/zone` or `region/zone/subzone`");
    }
}

pub fn workload_group(wg: &WorkloadGroup, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    let spec = spec();
    if let Some(m) = &wg.metadata {
        check_labels(r, &spec.key("metadata").key("labels"), &m.labels);
        for k in m.annotations.keys() {
            if !is_label_key(k) {
                r.error(
                    spec.key("metadata").key("annotations").key(k.as_str()),
                    format!("invalid annotation key `{k}`"),
                );
            }
        }
    }
    if let Some(t) = &wg.template {
        let tp = spec.key("template");
        if !t.address.is_empty() {
            r.error(
                tp.key("address"),
                "address cannot be set in a WorkloadGroup template",
            )
            .hint("each VM registers with its own address; remove `address`");
        }
        workload_entry_fields(r, &tp, t, false);
    }
    if let Some(probe) = &wg.probe {
        readiness_probe(r, &spec.key("probe"), probe);
    }
}

fn readiness_probe(r: &mut Report, p: &FieldPath, probe: &ReadinessProbe) {
    let kinds = [
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.exec.is_some(),
        probe.grpc.is_some(),
    ];
    match kinds.iter().filter(|b| **b).count() {
        0 => {
            r.error(
                p.clone(),
                "probe must set one of httpGet, tcpSocket, exec or grpc",
            )
            .hint("e.g. `tcpSocket: {port: 8080}`");
        }
        1 => {}
        _ => {
            r.error(
                p.clone(),
                "only one of httpGet, tcpSocket, exec and grpc can be set",
            )
            .hint("keep one health check");
        }
    }
    for (field, v) in [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ] {
        if v.is_some_and(|v| v < 0) {
            r.error(p.key(field), format!("{field} cannot be negative"));
        }
    }
    if let Some(h) = &probe.http_get {
        let hp = p.key("httpGet");
        check_port(r, hp.key("port"), h.port);
        for (i, hd) in h.http_headers.iter().enumerate() {
            let valid = !hd.name.is_empty()
                && hd
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                r.error(
                    hp.key("httpHeaders").index(i).key("name"),
                    format!(
                        "httpHeaders[{i}].name `{}` in body should match `^[-_A-Za-z0-9]+$`",
                        hd.name
                    ),
                )
                .hint("header names are letters, digits, '-' and '_'");
            }
        }
        if !h.scheme.is_empty()
            && !matches!(h.scheme.to_ascii_uppercase().as_str(), "HTTP" | "HTTPS")
        {
            r.error(
                hp.key("scheme"),
                format!("scheme `{}` must be HTTP or HTTPS", h.scheme),
            );
        }
    }
    if let Some(t) = &probe.tcp_socket {
        check_port(r, p.key("tcpSocket").key("port"), t.port);
    }
    if let Some(e) = &probe.exec
        && e.command.is_empty()
    {
        r.error(p.key("exec").key("command"), "exec probe needs a command")
            .hint("e.g. `command: [cat, /tmp/healthy]`");
    }
    if let Some(g) = &probe.grpc {
        check_port(r, p.key("grpc").key("port"), g.port);
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::networking::test_util::*;

    fn se(body: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: s, namespace: ns}}\nspec:\n{body}"
        )
    }

    #[test]
    fn service_entry_rules() {
        assert_clean(&se(
            "  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  resolution: DNS\n",
        ));
        assert_error(
            &se("  hosts: [\"*.example.com\"]\n  resolution: DNS\n"),
            "spec.hosts[0]",
            "FQDN",
        );
        assert_error(
            &se("  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: foo.com}]\n"),
            "spec.endpoints[0].address",
            "not an IP",
        );
        assert_error(
            &se(
                "  hosts: [a.com]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  endpoints: [{address: 1.1.1.1, ports: {grpc: 90}}]\n",
            ),
            "spec.endpoints[0].ports.grpc",
            "not defined",
        );
        assert_error(
            &se("  hosts: [a.com]\n  addresses: [\"1.2.3.4/99\"]\n"),
            "spec.addresses[0]",
            "invalid address",
        );
        assert!(
            warnings(&se("  hosts: [\"*x\"]\n"))
                .iter()
                .any(|w| w.contains("partial wildcard"))
        );
        // Go's YAML reads `2001:db8::` in a flow list as a string; so must weft.
        assert_clean(&se(
            "  hosts: [a.com]\n  addresses: [1.2.3.4, 2001:db8::, \"10.0.0.0/8\"]\n",
        ));
        assert_error(
            &se("  hosts: [a.com]\n  addresses: [80]\n"),
            "spec.addresses",
            "as a string",
        );
        assert_error(
            &se(
                "  hosts: [a.com]\n  workloadSelector: {labels: {app: a}}\n  endpoints: [{address: 1.1.1.1}]\n",
            ),
            "spec.workloadSelector",
            "only one of",
        );
    }

    #[test]
    fn workload_group_probe() {
        let wg = "apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: {name: g}\nspec:\n  template: {address: 1.2.3.4}\n  probe:\n    tcpSocket: {port: 80}\n    exec: {command: [x]}\n";
        assert_error(wg, "spec.template.address", "template");
        assert_error(wg, "spec.probe", "only one of");
    }

    #[test]
    fn workload_entry_address() {
        let we = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: w}\nspec:\n  address: \"bad address\"\n";
        assert_error(we, "spec.address", "must be an IP address");
    }
}
