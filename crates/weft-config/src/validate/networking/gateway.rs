//! Gateway validation.

use std::collections::HashMap;

use super::{
    PROTOCOL_HINT, check_namespaced_host, check_port, check_selector_labels, check_server_tls,
    is_ip, is_known_protocol, spec, spec_present,
};
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;

pub fn gateway(gw: &Gateway, r: &mut Report) {
    if !spec_present(r) {
        return;
    }
    let spec = spec();
    check_selector_labels(r, &spec.key("selector"), &gw.selector);
    if gw.servers.is_empty() {
        r.error(spec.key("servers"), "gateway must have at least one server")
            .hint(
                "add `servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]`",
            );
    }
    let mut port_names: HashMap<&str, usize> = HashMap::new();
    for (i, s) in gw.servers.iter().enumerate() {
        let sp = spec.key("servers").index(i);
        server(r, &sp, s);
        if let Some(port) = &s.port
            && !port.name.is_empty()
            && let Some(first) = port_names.insert(port.name.as_str(), i)
        {
            r.error(
                sp.key("port").key("name"),
                format!(
                    "port names in servers must be unique: `{}` is also used by servers[{first}]",
                    port.name
                ),
            )
            .hint("give each server's port its own name, e.g. `http`, `https`, `https-admin`");
        }
    }
}

fn server(r: &mut Report, sp: &FieldPath, s: &Server) {
    if s.hosts.is_empty() {
        r.error(sp.key("hosts"), "server config must contain at least one host")
            .hint("list the hosts this server accepts, e.g. `hosts: [\"bookinfo.example.com\"]`, or `\"*\"` for any");
    }
    for (j, h) in s.hosts.iter().enumerate() {
        check_namespaced_host(r, sp.key("hosts").index(j), h, false);
    }
    let Some(port) = &s.port else {
        r.error(sp.key("port"), "server port is required")
            .hint("add `port: {number: 80, name: http, protocol: HTTP}`");
        return;
    };
    let pp = sp.key("port");
    let uds_bind = s.bind.starts_with("unix://");
    if !(uds_bind && port.number == 0) {
        check_port(r, pp.key("number"), port.number);
    }
    if port.name.is_empty() {
        r.error(pp.key("name"), "port name must be set")
            .hint("name the port, e.g. `name: http`");
    }
    let protocol = port.protocol.to_ascii_uppercase();
    if port.protocol.is_empty() {
        r.error(pp.key("protocol"), "port protocol must be set")
            .hint(PROTOCOL_HINT);
    } else if !is_known_protocol(&protocol) || protocol == "UDP" {
        r.error(
            pp.key("protocol"),
            format!("invalid protocol `{}`", port.protocol),
        )
        .hint(PROTOCOL_HINT);
    }
    if !s.bind.is_empty() && !uds_bind && !is_ip(&s.bind) {
        r.error(
            sp.key("bind"),
            format!(
                "bind `{}` must be an IP address or a `unix://` path",
                s.bind
            ),
        );
    }
    let is_tls = matches!(protocol.as_str(), "HTTPS" | "TLS");
    let is_http = matches!(
        protocol.as_str(),
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY"
    );
    match &s.tls {
        None if is_tls => {
            r.error(sp.key("tls"), format!("server must have TLS settings for {protocol} ports"))
                .hint("add `tls: {mode: SIMPLE, credentialName: <secret>}`, or `tls: {mode: PASSTHROUGH}` to route by SNI");
        }
        None => {}
        Some(tls) => {
            let tp = sp.key("tls");
            if !is_tls && is_http {
                let passthrough = matches!(
                    tls.mode(),
                    ServerTLSMode::Passthrough | ServerTLSMode::AutoPassthrough
                );
                if !passthrough
                    || !tls.ca_certificates.is_empty()
                    || !tls.private_key.is_empty()
                    || !tls.server_certificate.is_empty()
                {
                    r.error(tp.clone(), "server cannot have TLS settings for plain text HTTP ports")
                        .hint("use `protocol: HTTPS` to terminate TLS, or keep only `tls: {httpsRedirect: true}` to redirect to HTTPS");
                }
            }
            if tls.https_redirect && !is_http {
                r.warning(
                    tp.key("httpsRedirect"),
                    "tls.httpsRedirect should only be used with HTTP servers",
                )
                .hint("put `httpsRedirect: true` on the plain HTTP (port 80) server");
            }
            check_server_tls(r, &tp, tls);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::validate::networking::test_util::*;

    const HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: ns}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n";

    fn gw(servers: &str) -> String {
        format!("{HEAD}{servers}")
    }

    #[test]
    fn valid_gateway() {
        assert_clean(&gw(
            "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n    tls: {httpsRedirect: true}\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"ns1/a.example.com\", \"./*.example.com\"]\n    tls: {mode: SIMPLE, credentialName: cert}\n  - port: {number: 15443, name: tls, protocol: TLS}\n    hosts: [\"*.local\"]\n    tls: {mode: AUTO_PASSTHROUGH}\n",
        ));
    }

    #[test]
    fn https_requires_tls() {
        assert_error(
            &gw("  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n"),
            "spec.servers[0].tls",
            "must have TLS settings",
        );
    }

    #[test]
    fn tls_on_http_port() {
        assert_error(
            &gw(
                "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [a.com]\n    tls: {mode: SIMPLE, credentialName: c}\n",
            ),
            "spec.servers[0].tls",
            "plain text HTTP",
        );
    }

    #[test]
    fn simple_needs_certs() {
        assert_error(
            &gw(
                "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE}\n",
            ),
            "spec.servers[0].tls.serverCertificate",
            "requires a server certificate",
        );
        assert_error(
            &gw(
                "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k}\n",
            ),
            "spec.servers[0].tls.caCertificates",
            "CA bundle",
        );
        assert_error(
            &gw(
                "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: ISTIO_MUTUAL, credentialName: c}\n",
            ),
            "spec.servers[0].tls.credentialName",
            "ISTIO_MUTUAL",
        );
    }

    #[test]
    fn ports_hosts_protocols() {
        assert_error(
            &gw("  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: []\n"),
            "spec.servers[0].hosts",
            "at least one host",
        );
        assert_error(
            &gw("  - port: {number: 70000, name: http, protocol: HTTP}\n    hosts: [a]\n"),
            "spec.servers[0].port.number",
            "1-65535",
        );
        assert_error(
            &gw("  - port: {number: 80, name: http, protocol: HTTPX}\n    hosts: [a]\n"),
            "spec.servers[0].port.protocol",
            "invalid protocol",
        );
        assert_error(
            &gw("  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"a/b/c\"]\n"),
            "spec.servers[0].hosts[0]",
            "invalid host",
        );
        assert_error(
            &gw(
                "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"Bad_NS/a.com\"]\n",
            ),
            "spec.servers[0].hosts[0]",
            "invalid namespace",
        );
        assert_error(
            &gw(
                "  - port: {number: 80, name: p, protocol: HTTP}\n    hosts: [a]\n  - port: {number: 81, name: p, protocol: HTTP}\n    hosts: [b]\n",
            ),
            "spec.servers[1].port.name",
            "unique",
        );
        assert_error(&gw("  - hosts: [a]\n"), "spec.servers[0].port", "required");
    }

    #[test]
    fn https_redirect_warns_on_https() {
        let y = gw(
            "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: SIMPLE, credentialName: c, httpsRedirect: true}\n",
        );
        assert_clean(&y);
        assert!(
            warnings(&y)
                .iter()
                .any(|w| w.starts_with("spec.servers[0].tls.httpsRedirect")),
            "{:?}",
            warnings(&y)
        );
    }
}
