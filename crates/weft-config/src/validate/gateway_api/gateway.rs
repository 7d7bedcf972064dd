//! Gateway and GatewayClass validation.

use std::collections::HashSet;
use std::net::IpAddr;

use super::*;
use crate::kinds::gateway_api::{
    FromNamespaces, FrontendTlsValidation, Gateway, GatewayAddress, GatewayClass, Listener, TlsMode,
};

pub fn gateway(g: &Gateway, r: &mut Report) {
    let s = spec();
    if g.gateway_class_name.is_empty() {
        r.error(s.key("gatewayClassName"), "gatewayClassName is required")
            .hint("name the GatewayClass that implements this Gateway, e.g. `gatewayClassName: istio`");
    } else if g.gateway_class_name.len() > 253 {
        r.error(
            s.key("gatewayClassName"),
            "gatewayClassName is longer than 253 characters",
        );
    }
    let lpath = s.key("listeners");
    if g.listeners.is_empty() {
        r.error(lpath.clone(), "a Gateway needs at least one listener")
            .hint("add `listeners: [{name: http, port: 80, protocol: HTTP}]`");
    } else if g.listeners.len() > MAX_LISTENERS {
        r.error(
            lpath.clone(),
            format!(
                "{} listeners, more than the {MAX_LISTENERS} allowed",
                g.listeners.len()
            ),
        );
    }
    let mut names = HashSet::new();
    let mut combos = HashSet::new();
    for (i, l) in g.listeners.iter().enumerate() {
        let p = lpath.index(i);
        listener(r, &p, l);
        if !l.name.is_empty() && !names.insert(l.name.as_str()) {
            r.error(
                p.key("name"),
                format!("listener name `{}` is used twice", l.name),
            )
            .hint("listener names must be unique within the Gateway");
        }
        if !combos.insert((
            l.port,
            l.protocol.as_str(),
            l.hostname.as_deref().unwrap_or(""),
        )) {
            r.error(p.clone(), format!(
                "another listener already has port {}, protocol {} and hostname `{}`",
                l.port, l.protocol, l.hostname.as_deref().unwrap_or("")
            ))
            .hint("the combination of port, protocol and hostname must be unique; change one of them or merge the listeners");
        }
    }
    addresses(r, &g.addresses);
    if let Some(tls) = &g.tls
        && let Some(f) = &tls.frontend
    {
        if let Some(v) = f.default.as_ref().and_then(|d| d.validation.as_ref()) {
            ca_refs(
                r,
                &s.key("tls")
                    .key("frontend")
                    .key("default")
                    .key("validation"),
                v,
            );
        }
        let mut ports = HashSet::new();
        for (i, pp) in f.per_port.iter().enumerate() {
            let p = s.key("tls").key("frontend").key("perPort").index(i);
            check_port(r, p.key("port"), Some(pp.port));
            if !ports.insert(pp.port) {
                r.error(
                    p.key("port"),
                    format!("port {} appears twice in perPort", pp.port),
                );
            }
            if let Some(v) = &pp.tls.validation {
                ca_refs(r, &p.key("tls").key("validation"), v);
            }
        }
    }
    if let Some(infra) = &g.infrastructure {
        for k in infra.labels.keys().chain(infra.annotations.keys()) {
            if !is_label_key(&k.to_ascii_lowercase()) {
                r.error(
                    s.key("infrastructure"),
                    format!("invalid label or annotation key `{k}`"),
                );
            }
        }
    }
}

fn listener(r: &mut Report, p: &FieldPath, l: &Listener) {
    if l.name.is_empty() {
        r.error(p.key("name"), "listener has no name")
            .hint("add `name:`, e.g. `name: http`");
    } else {
        check_section_name(r, p.key("name"), &l.name);
    }
    check_port(r, p.key("port"), Some(l.port));
    if l.protocol.is_empty() {
        r.error(p.key("protocol"), "listener has no protocol")
            .hint("set `protocol:` to HTTP, HTTPS, TLS, TCP or UDP");
    } else if !is_protocol(&l.protocol) {
        r.error(
            p.key("protocol"),
            format!("invalid protocol `{}`", l.protocol),
        )
        .hint("use HTTP, HTTPS, TLS, TCP, UDP or a domain-prefixed protocol (`example.com/proto`)");
    }
    let proto = l.protocol.as_str();
    if let Some(h) = &l.hostname {
        if matches!(proto, "TCP" | "UDP") && !h.is_empty() {
            r.error(
                p.key("hostname"),
                format!("hostname must not be set for protocol {proto}"),
            )
            .hint("TCP and UDP carry no host name to match; remove `hostname`");
        } else if !h.is_empty()
            && let Some(e) = hostname_problem(h, true)
        {
            r.error(p.key("hostname"), format!("invalid hostname: {e}"));
        }
    }
    match &l.tls {
        Some(_) if matches!(proto, "HTTP" | "TCP" | "UDP") => {
            r.error(
                p.key("tls"),
                format!("tls must not be set for protocol {proto}"),
            )
            .hint("remove `tls`, or use protocol HTTPS (or TLS) to terminate TLS");
        }
        Some(tls) => {
            let mode = tls.mode.unwrap_or(TlsMode::Terminate);
            if proto == "HTTPS" && mode == TlsMode::Passthrough {
                r.error(
                    p.key("tls").key("mode"),
                    "tls mode must be Terminate for protocol HTTPS",
                )
                .hint("use protocol TLS for passthrough, or `mode: Terminate`");
            }
            if mode == TlsMode::Terminate
                && tls.certificate_refs.is_empty()
                && tls.options.is_empty()
            {
                r.error(p.key("tls"), "tls mode Terminate needs a certificate")
                    .hint("add `certificateRefs: [{name: <secret>}]` naming the Secret with the certificate and key");
            }
            if tls.certificate_refs.len() > 64 {
                r.error(
                    p.key("tls").key("certificateRefs"),
                    "more than 64 certificateRefs",
                );
            }
            for (i, c) in tls.certificate_refs.iter().enumerate() {
                let cp = p.key("tls").key("certificateRefs").index(i);
                check_object_name(r, cp.key("name"), &c.name, "this certificateRef");
                check_group(r, cp.key("group"), c.group.as_deref());
                check_kind(r, cp.key("kind"), c.kind.as_deref());
                check_namespace(r, cp.key("namespace"), c.namespace.as_deref());
            }
            if tls.options.len() > 16 {
                r.error(p.key("tls").key("options"), "more than 16 tls options");
            }
            for k in tls.options.keys() {
                if !is_label_key(&k.to_ascii_lowercase()) {
                    r.error(
                        p.key("tls").key("options").key(k.as_str()),
                        format!("invalid option key `{k}`"),
                    )
                    .hint("option keys look like annotation keys: `example.com/name`");
                }
            }
            if let Some(v) = &tls.frontend_validation {
                ca_refs(r, &p.key("tls").key("frontendValidation"), v);
            }
        }
        None if proto == "HTTPS" || proto == "TLS" => {
            r.warning(p.key("protocol"), format!("{proto} listener `{}` has no `tls` settings", l.name))
                .hint("add `tls: {mode: Terminate, certificateRefs: [{name: <secret>}]}` (or `mode: Passthrough` for TLS)");
        }
        None => {}
    }
    if let Some(ar) = &l.allowed_routes {
        let ap = p.key("allowedRoutes");
        if let Some(ns) = &ar.namespaces
            && ns.from == Some(FromNamespaces::Selector)
            && ns.selector.is_none()
        {
            r.warning(
                ap.key("namespaces"),
                "`from: Selector` without a `selector` admits no route",
            )
            .hint("add `selector: {matchLabels: {...}}` or use `from: All` / `from: Same`");
        }
        if ar.kinds.len() > 8 {
            r.error(ap.key("kinds"), "more than 8 kinds");
        }
        for (i, k) in ar.kinds.iter().enumerate() {
            check_group(r, ap.key("kinds").index(i).key("group"), k.group.as_deref());
            check_kind(r, ap.key("kinds").index(i).key("kind"), Some(&k.kind));
        }
    }
}

fn ca_refs(r: &mut Report, p: &FieldPath, v: &FrontendTlsValidation) {
    for (i, c) in v.ca_certificate_refs.iter().enumerate() {
        let cp = p.key("caCertificateRefs").index(i);
        check_object_name(r, cp.key("name"), &c.name, "this caCertificateRef");
        check_group(r, cp.key("group"), Some(&c.group));
        check_kind(r, cp.key("kind"), Some(&c.kind));
        check_namespace(r, cp.key("namespace"), c.namespace.as_deref());
    }
}

fn addresses(r: &mut Report, addrs: &[GatewayAddress]) {
    let base = spec().key("addresses");
    if addrs.len() > 16 {
        r.error(
            base.clone(),
            format!("{} addresses, more than the 16 allowed", addrs.len()),
        );
    }
    let mut seen = HashSet::new();
    for (i, a) in addrs.iter().enumerate() {
        let p = base.index(i);
        let ty = a.address_type.as_deref().unwrap_or("IPAddress");
        match ty {
            "IPAddress" => {
                if !a.value.is_empty() && a.value.parse::<IpAddr>().is_err() {
                    r.error(
                        p.key("value"),
                        format!("`{}` is not an IP address", a.value),
                    )
                    .hint("write an IPv4 or IPv6 address, or set `type: Hostname` for a DNS name");
                }
            }
            "Hostname" => {
                if let Some(e) = hostname_problem(&a.value, true) {
                    r.error(p.key("value"), format!("invalid hostname address: {e}"));
                }
            }
            "NamedAddress" => {}
            other => {
                if !is_protocol(other) {
                    r.error(p.key("type"), format!("invalid address type `{other}`"))
                        .hint("use IPAddress, Hostname, NamedAddress or a domain-prefixed type");
                }
            }
        }
        if !a.value.is_empty()
            && matches!(ty, "IPAddress" | "Hostname")
            && !seen.insert((ty, a.value.as_str()))
        {
            r.error(
                p.key("value"),
                format!("address `{}` is listed twice", a.value),
            );
        }
    }
}

pub fn gateway_class(g: &GatewayClass, r: &mut Report) {
    let s = spec();
    if g.controller_name.is_empty() {
        r.error(s.key("controllerName"), "controllerName is required")
            .hint("name the controller, e.g. `istio.io/gateway-controller`");
    } else if !is_controller_name(&g.controller_name) {
        r.error(
            s.key("controllerName"),
            format!("invalid controllerName `{}`", g.controller_name),
        )
        .hint("a controller name is a domain and a path, e.g. `example.com/gateway-controller`");
    }
    if let Some(d) = &g.description
        && d.chars().count() > 64
    {
        r.error(
            s.key("description"),
            "description is longer than 64 characters",
        );
    }
    if let Some(p) = &g.parameters_ref {
        let pp = s.key("parametersRef");
        check_object_name(r, pp.key("name"), &p.name, "parametersRef");
        check_group(r, pp.key("group"), Some(&p.group));
        if p.kind.is_empty() {
            r.error(pp.key("kind"), "parametersRef has no kind");
        } else {
            check_kind(r, pp.key("kind"), Some(&p.kind));
        }
        check_namespace(r, pp.key("namespace"), p.namespace.as_deref());
    }
}
