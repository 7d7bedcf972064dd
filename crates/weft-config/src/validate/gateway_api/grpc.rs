//! GRPCRoute validation.

use super::http::{
    MAX_FILTERS, extension_ref, filter_type_fields, header_matches, rule_counts,
    session_persistence,
};
use super::*;
use crate::kinds::gateway_api::{GrpcRoute, GrpcRouteFilter, GrpcRouteFilterType, MatchType};

fn is_grpc_service(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty()
                && (part.as_bytes()[0].is_ascii_alphabetic() || part.as_bytes()[0] == b'_')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

fn is_grpc_method(s: &str) -> bool {
    !s.is_empty()
        && (s.as_bytes()[0].is_ascii_alphabetic() || s.as_bytes()[0] == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub fn grpc_route(g: &GrpcRoute, r: &mut Report) {
    check_parent_refs(r, &g.parent_refs);
    check_hostnames(r, spec().key("hostnames"), &g.hostnames);
    let base = spec().key("rules");
    rule_counts(
        r,
        &base,
        g.rules.iter().map(|x| (x.name.as_deref(), x.matches.len())),
    );
    for (i, rule) in g.rules.iter().enumerate() {
        let p = base.index(i);
        for (j, m) in rule.matches.iter().enumerate() {
            let mp = p.key("matches").index(j);
            if let Some(mm) = &m.method {
                let mpp = mp.key("method");
                if mm.service.is_none() && mm.method.is_none() {
                    r.error(mpp.clone(), "a method match needs `service`, `method` or both")
                        .hint("e.g. `{service: helloworld.Greeter, method: SayHello}`; omit `method:` to match every method");
                }
                match mm.match_type.unwrap_or_default() {
                    MatchType::Exact => {
                        if let Some(s) = mm.service.as_deref().filter(|s| !is_grpc_service(s)) {
                            r.error(mpp.key("service"), format!("invalid gRPC service name `{s}`"))
                                .hint("a service is a dotted name such as `helloworld.Greeter` (no leading '/')");
                        }
                        if let Some(m) = mm.method.as_deref().filter(|m| !is_grpc_method(m)) {
                            r.error(mpp.key("method"), format!("invalid gRPC method name `{m}`"))
                                .hint("a method is a single identifier such as `SayHello`");
                        }
                    }
                    MatchType::RegularExpression => {
                        for (field, v) in [("service", &mm.service), ("method", &mm.method)] {
                            if let Some(v) = v {
                                check_regex_at(r, mpp.key(field), v);
                            }
                        }
                    }
                }
            }
            header_matches(
                r,
                &mp.key("headers"),
                m.headers
                    .iter()
                    .map(|h| (h.match_type, h.name.as_str(), h.value.as_str())),
                "header",
            );
        }
        grpc_filters(r, &p.key("filters"), &rule.filters);
        if rule.backend_refs.len() > MAX_BACKEND_REFS {
            r.error(
                p.key("backendRefs"),
                format!(
                    "{} backendRefs, more than the {MAX_BACKEND_REFS} allowed",
                    rule.backend_refs.len()
                ),
            );
        }
        for (j, b) in rule.backend_refs.iter().enumerate() {
            let bp = p.key("backendRefs").index(j);
            check_backend_ref(
                r,
                &bp,
                BackendView {
                    group: b.group.as_deref(),
                    kind: b.kind.as_deref(),
                    name: &b.name,
                    namespace: b.namespace.as_deref(),
                    port: b.port,
                    weight: b.weight,
                },
            );
            grpc_filters(r, &bp.key("filters"), &b.filters);
        }
        if let Some(sp) = &rule.session_persistence {
            session_persistence(r, &p.key("sessionPersistence"), sp);
        }
    }
}

fn grpc_filters(r: &mut Report, base: &FieldPath, filters: &[GrpcRouteFilter]) {
    if filters.len() > MAX_FILTERS {
        r.error(
            base.clone(),
            format!(
                "{} filters, more than the {MAX_FILTERS} allowed",
                filters.len()
            ),
        );
    }
    let mut seen = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let p = base.index(i);
        let set = f.set_fields();
        let Some(ty) = f.filter_type else {
            r.error(p.key("type"), "filter has no `type`")
                .hint("add `type:` (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror or ExtensionRef)");
            continue;
        };
        filter_type_fields(r, &p, ty.name(), ty.field(), &set);
        if seen.contains(&ty)
            && matches!(
                ty,
                GrpcRouteFilterType::RequestHeaderModifier
                    | GrpcRouteFilterType::ResponseHeaderModifier
            )
        {
            r.error(p.clone(), format!("the {} filter is repeated", ty.name()))
                .hint("merge both into one filter");
        }
        seen.push(ty);
        if let Some(h) = &f.request_header_modifier {
            check_header_filter(r, &p.key("requestHeaderModifier"), h);
        }
        if let Some(h) = &f.response_header_modifier {
            check_header_filter(r, &p.key("responseHeaderModifier"), h);
        }
        if let Some(m) = &f.request_mirror {
            check_mirror(r, &p.key("requestMirror"), m);
        }
        if let Some(e) = &f.extension_ref {
            extension_ref(r, &p.key("extensionRef"), e);
        }
    }
}
