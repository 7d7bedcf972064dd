//! Sidecar validation.

use std::collections::HashSet;

use super::{
    PROTOCOL_HINT, check_connection_pool, check_destination, check_namespaced_host, check_port,
    check_selector_labels, check_server_tls, is_ip, is_known_protocol, spec, spec_present,
};
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;

pub fn sidecar(sc: &Sidecar, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    let spec = spec();
    if let Some(ws) = &sc.workload_selector {
        let p = spec.key("workloadSelector");
        if ws.labels.is_empty() {
            r.error(p.key("labels"), "workloadSelector cannot have empty labels")
                .hint("list the labels of the workloads, or remove `workloadSelector` to apply to the whole namespace");
        }
        check_selector_labels(r, &p.key("labels"), &ws.labels);
    }
    if sc.egress.is_empty()
        && sc.ingress.is_empty()
        && sc.outbound_traffic_policy.is_none()
        && sc.inbound_connection_pool.is_none()
    {
        r.error(spec.clone(), "sidecar: empty configuration provided")
            .hint("add `egress`, `ingress`, `outboundTrafficPolicy` or `inboundConnectionPool`");
    }

    let mut ingress_ports = HashSet::new();
    for (i, ing) in sc.ingress.iter().enumerate() {
        let p = spec.key("ingress").index(i);
        match &ing.port {
            None => {
                r.error(p.key("port"), "port is required for ingress listeners")
                    .hint("add `port: {number: 9080, protocol: HTTP, name: http}`");
            }
            Some(port) => {
                sidecar_port(r, &p.key("port"), port);
                let bind = if ing.bind.is_empty() {
                    "0.0.0.0"
                } else {
                    ing.bind.as_str()
                };
                if !ingress_ports.insert((bind.to_string(), port.number)) {
                    r.error(
                        p.key("port").key("number"),
                        format!("ports on IP bind {bind}:{} must be unique", port.number),
                    )
                    .hint("each ingress listener needs its own port");
                }
            }
        }
        if !ing.bind.is_empty() && !is_ip(&ing.bind) {
            r.error(
                p.key("bind"),
                format!("ingress bind `{}` must be an IP address", ing.bind),
            );
        }
        if !ing.default_endpoint.is_empty() && !valid_default_endpoint(&ing.default_endpoint) {
            r.error(
                p.key("defaultEndpoint"),
                format!("invalid defaultEndpoint `{}`", ing.default_endpoint),
            )
            .hint("write `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT`, `[::]:PORT` or `unix:///path`");
        }
        if let Some(tls) = &ing.tls {
            let tp = p.key("tls");
            if tls.https_redirect {
                r.error(
                    tp.key("httpsRedirect"),
                    "httpsRedirect is not supported on sidecar ingress",
                )
                .hint("remove `httpsRedirect`");
            }
            if !tls.credential_name.is_empty() || !tls.credential_names.is_empty() {
                r.error(
                    tp.key("credentialName"),
                    "credentialName is not supported on sidecar ingress",
                )
                .hint(
                    "mount the certificates into the pod and use `serverCertificate`/`privateKey`",
                );
            }
            if !matches!(tls.mode(), ServerTLSMode::Simple | ServerTLSMode::Mutual) {
                r.error(
                    tp.key("mode"),
                    "only SIMPLE and MUTUAL TLS modes are supported on sidecar ingress",
                )
                .hint("use `mode: SIMPLE` or `MUTUAL`");
            }
            check_server_tls(r, &tp, tls);
        }
        if let Some(cp) = &ing.connection_pool {
            check_connection_pool(r, &p.key("connectionPool"), cp);
        }
    }

    let mut egress_ports = HashSet::new();
    let mut catch_all_seen = false;
    for (i, eg) in sc.egress.iter().enumerate() {
        let p = spec.key("egress").index(i);
        match &eg.port {
            None => {
                if catch_all_seen {
                    r.error(
                        p.clone(),
                        "egress can have only one listener without a port",
                    )
                    .hint("merge the hosts into one listener");
                } else if i != sc.egress.len() - 1 {
                    r.error(
                        p.clone(),
                        "the egress listener without a port should be the last listener in the list",
                    )
                    .hint("move this catch-all listener to the end");
                }
                catch_all_seen = true;
            }
            Some(port) => {
                let uds = eg.bind.starts_with("unix://");
                if !(uds && port.number == 0) {
                    sidecar_port(r, &p.key("port"), port);
                } else if !port.protocol.is_empty() && !is_known_protocol(&port.protocol) {
                    r.error(
                        p.key("port").key("protocol"),
                        format!("invalid protocol `{}`", port.protocol),
                    )
                    .hint(PROTOCOL_HINT);
                }
                let bind = if eg.bind.is_empty() {
                    "0.0.0.0"
                } else {
                    eg.bind.as_str()
                };
                if !egress_ports.insert((bind.to_string(), port.number)) {
                    r.error(
                        p.key("port").key("number"),
                        format!("ports on IP bind {bind}:{} must be unique", port.number),
                    );
                }
            }
        }
        if !eg.bind.is_empty() && !is_ip(&eg.bind) && !eg.bind.starts_with("unix://") {
            r.error(
                p.key("bind"),
                format!(
                    "egress bind `{}` must be an IP address or unix:// path",
                    eg.bind
                ),
            );
        }
        if eg.hosts.is_empty() {
            r.error(
                p.key("hosts"),
                "egress listener must contain at least one host",
            )
            .hint("e.g. `hosts: [\"./*\", \"istio-system/*\"]`");
        }
        for (j, h) in eg.hosts.iter().enumerate() {
            check_namespaced_host(r, p.key("hosts").index(j), h, true);
        }
    }

    if let Some(cp) = &sc.inbound_connection_pool {
        check_connection_pool(r, &spec.key("inboundConnectionPool"), cp);
    }
    if let Some(otp) = &sc.outbound_traffic_policy {
        let p = spec.key("outboundTrafficPolicy");
        if let Some(ep) = &otp.egress_proxy {
            if otp.mode != Some(OutboundTrafficMode::AllowAny) {
                r.error(
                    p.key("egressProxy"),
                    "egressProxy can only be set with mode ALLOW_ANY",
                )
                .hint("add `mode: ALLOW_ANY`, or remove `egressProxy`");
            }
            check_destination(r, &p.key("egressProxy"), ep);
            if ep.port_number().is_none() {
                r.error(p.key("egressProxy").key("port"), "egressProxy needs a port")
                    .hint("add `port: {number: <port>}`");
            }
        }
    }
}

fn sidecar_port(r: &mut Report, p: &FieldPath, port: &SidecarPort) {
    check_port(r, p.key("number"), port.number);
    if !port.protocol.is_empty() && !is_known_protocol(&port.protocol) {
        r.error(
            p.key("protocol"),
            format!("invalid protocol `{}`", port.protocol),
        )
        .hint(PROTOCOL_HINT);
    }
    if let Some(t) = port.target_port {
        check_port(r, p.key("targetPort"), t);
    }
}

fn valid_default_endpoint(e: &str) -> bool {
    if let Some(path) = e.strip_prefix("unix://") {
        return path.starts_with('/') || path.starts_with('@');
    }
    let Some((host, port)) = e.rsplit_once(':') else {
        return false;
    };
    matches!(host, "127.0.0.1" | "0.0.0.0" | "[::1]" | "[::]")
        && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p))
}

#[cfg(test)]
mod tests {
    use crate::validate::networking::test_util::*;

    fn sc(body: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s, namespace: ns}}\nspec:\n{body}"
        )
    }

    #[test]
    fn valid_sidecar() {
        assert_clean(&sc(
            "  workloadSelector: {labels: {app: a}}\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n  egress:\n  - port: {number: 3306, protocol: MYSQL, name: mysql}\n    hosts: [\"*/mysql.example.com\"]\n  - hosts: [\"./*\", \"istio-system/*\", \"~/*.internal\"]\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
        ));
    }

    #[test]
    fn egress_hosts() {
        assert_error(
            &sc("  egress:\n  - hosts: [reviews]\n"),
            "spec.egress[0].hosts[0]",
            "namespace/dnsName",
        );
        assert_error(
            &sc("  egress:\n  - hosts: [\"Bad/x\"]\n"),
            "spec.egress[0].hosts[0]",
            "invalid namespace",
        );
        assert_error(
            &sc("  egress:\n  - hosts: []\n"),
            "spec.egress[0].hosts",
            "at least one host",
        );
        assert_error(
            &sc(
                "  egress:\n  - hosts: [\"./*\"]\n  - port: {number: 80, protocol: HTTP, name: h}\n    hosts: [\"./*\"]\n",
            ),
            "spec.egress[0]",
            "last listener",
        );
    }

    #[test]
    fn ingress_rules() {
        assert_error(
            &sc("  ingress:\n  - defaultEndpoint: 127.0.0.1:80\n"),
            "spec.ingress[0].port",
            "required",
        );
        assert_error(
            &sc(
                "  ingress:\n  - port: {number: 80, protocol: HTTP, name: h}\n    defaultEndpoint: 10.0.0.1:80\n",
            ),
            "spec.ingress[0].defaultEndpoint",
            "invalid defaultEndpoint",
        );
        assert_error(
            &sc(
                "  ingress:\n  - port: {number: 80, protocol: HTTPS, name: h}\n    tls: {mode: ISTIO_MUTUAL}\n",
            ),
            "spec.ingress[0].tls.mode",
            "SIMPLE and MUTUAL",
        );
    }

    #[test]
    fn selector_and_policy() {
        assert_error(
            &sc("  workloadSelector: {labels: {}}\n  egress: [{hosts: [\"./*\"]}]\n"),
            "spec.workloadSelector.labels",
            "empty labels",
        );
        assert_error(
            &sc(
                "  outboundTrafficPolicy:\n    mode: REGISTRY_ONLY\n    egressProxy: {host: proxy.example.com, port: {number: 3128}}\n",
            ),
            "spec.outboundTrafficPolicy.egressProxy",
            "ALLOW_ANY",
        );
        assert_error(&sc("  {}\n"), "spec", "empty configuration");
    }
}
