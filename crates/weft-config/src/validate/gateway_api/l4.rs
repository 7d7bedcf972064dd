//! TCPRoute, TLSRoute and ReferenceGrant validation.

use std::collections::HashSet;

use super::*;
use crate::kinds::gateway_api::{L4RouteRule, ReferenceGrant, TcpRoute, TlsRoute};

fn l4_rules(r: &mut Report, rules: &[L4RouteRule], kind: &str) {
    let base = spec().key("rules");
    if rules.is_empty() {
        r.error(base.clone(), format!("a {kind} needs at least one rule"))
            .hint("add `rules: [{backendRefs: [{name: <service>, port: <port>}]}]`");
    } else if rules.len() > MAX_RULES {
        r.error(
            base.clone(),
            format!("{} rules, more than the {MAX_RULES} allowed", rules.len()),
        );
    }
    let mut names = HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let p = base.index(i);
        if let Some(n) = &rule.name {
            check_section_name(r, p.key("name"), n);
            if !names.insert(n.as_str()) {
                r.error(p.key("name"), format!("rule name `{n}` is used twice"))
                    .hint("rule names must be unique within the route");
            }
        }
        if rule.backend_refs.is_empty() {
            r.error(p.key("backendRefs"), "a rule needs at least one backendRef");
        } else if rule.backend_refs.len() > MAX_BACKEND_REFS {
            r.error(
                p.key("backendRefs"),
                format!("more than {MAX_BACKEND_REFS} backendRefs"),
            );
        }
        for (j, b) in rule.backend_refs.iter().enumerate() {
            check_backend_ref(
                r,
                &p.key("backendRefs").index(j),
                BackendView {
                    group: b.group.as_deref(),
                    kind: b.kind.as_deref(),
                    name: &b.name,
                    namespace: b.namespace.as_deref(),
                    port: b.port,
                    weight: b.weight,
                },
            );
        }
    }
}

pub fn tcp_route(t: &TcpRoute, r: &mut Report) {
    check_parent_refs(r, &t.parent_refs);
    l4_rules(r, &t.rules, "TCPRoute");
}

pub fn tls_route(t: &TlsRoute, r: &mut Report) {
    check_parent_refs(r, &t.parent_refs);
    check_hostnames(r, spec().key("hostnames"), &t.hostnames);
    l4_rules(r, &t.rules, "TLSRoute");
}

pub fn reference_grant(g: &ReferenceGrant, r: &mut Report) {
    let s = spec();
    for (field, len) in [("from", g.from.len()), ("to", g.to.len())] {
        if len == 0 {
            r.error(s.key(field), format!("`{field}` needs at least one entry"))
                .hint("a ReferenceGrant lists which objects (`from`) may reference which (`to`)");
        } else if len > 16 {
            r.error(
                s.key(field),
                format!("{len} entries, more than the 16 allowed"),
            );
        }
    }
    for (i, f) in g.from.iter().enumerate() {
        let p = s.key("from").index(i);
        check_group(r, p.key("group"), Some(&f.group));
        if f.kind.is_empty() {
            r.error(p.key("kind"), "`kind` is required")
                .hint("e.g. `kind: HTTPRoute`");
        } else {
            check_kind(r, p.key("kind"), Some(&f.kind));
        }
        if f.namespace.is_empty() {
            r.error(p.key("namespace"), "`namespace` is required")
                .hint("name the namespace the referencing objects live in");
        } else {
            check_namespace(r, p.key("namespace"), Some(&f.namespace));
        }
    }
    for (i, t) in g.to.iter().enumerate() {
        let p = s.key("to").index(i);
        check_group(r, p.key("group"), Some(&t.group));
        if t.kind.is_empty() {
            r.error(p.key("kind"), "`kind` is required")
                .hint("e.g. `kind: Service`");
        } else {
            check_kind(r, p.key("kind"), Some(&t.kind));
        }
        if let Some(n) = &t.name {
            check_object_name(r, p.key("name"), n, "this entry");
        }
    }
}
