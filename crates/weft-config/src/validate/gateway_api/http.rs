//! HTTPRoute validation (and the match/filter checks GRPCRoute shares).

use std::collections::HashSet;

use super::*;
use crate::kinds::gateway_api::{
    HttpPathModifier, HttpRoute, HttpRouteFilter, HttpRouteFilterType, HttpRouteMatch,
    HttpRouteRule, MatchType, PathMatchType, PathModifierType,
};

const MAX_MATCHES_PER_RULE: usize = 64;
const MAX_MATCHES_TOTAL: usize = 128;
pub(super) const MAX_FILTERS: usize = 16;
const REDIRECT_CODES: &[u32] = &[301, 302, 303, 307, 308];
const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*",
];

pub fn http_route(h: &HttpRoute, r: &mut Report) {
    check_parent_refs(r, &h.parent_refs);
    check_hostnames(r, spec().key("hostnames"), &h.hostnames);
    let base = spec().key("rules");
    rule_counts(
        r,
        &base,
        h.rules.iter().map(|x| (x.name.as_deref(), x.matches.len())),
    );
    for (i, rule) in h.rules.iter().enumerate() {
        http_rule(r, &base.index(i), rule);
    }
}

/// Limits on rules and matches, and unique rule names.
pub(super) fn rule_counts<'a>(
    r: &mut Report,
    base: &FieldPath,
    rules: impl Iterator<Item = (Option<&'a str>, usize)>,
) {
    let rules: Vec<_> = rules.collect();
    if rules.len() > MAX_RULES {
        r.error(
            base.clone(),
            format!("{} rules, more than the {MAX_RULES} allowed", rules.len()),
        )
        .hint("split the route into several routes");
    }
    let total: usize = rules.iter().map(|(_, n)| n).sum();
    if total > MAX_MATCHES_TOTAL {
        r.error(
            base.clone(),
            format!("{total} matches across all rules, more than the {MAX_MATCHES_TOTAL} allowed"),
        )
        .hint("split the route into several routes");
    }
    let mut names = HashSet::new();
    for (i, (name, n)) in rules.iter().enumerate() {
        if *n > MAX_MATCHES_PER_RULE {
            r.error(
                base.index(i).key("matches"),
                format!("{n} matches, more than the {MAX_MATCHES_PER_RULE} allowed in one rule"),
            );
        }
        if let Some(name) = name {
            check_section_name(r, base.index(i).key("name"), name);
            if !names.insert(*name) {
                r.error(
                    base.index(i).key("name"),
                    format!("rule name `{name}` is used twice"),
                )
                .hint("rule names must be unique within the route");
            }
        }
    }
}

fn http_rule(r: &mut Report, p: &FieldPath, rule: &HttpRouteRule) {
    for (j, m) in rule.matches.iter().enumerate() {
        http_match(r, &p.key("matches").index(j), m);
    }
    http_filters(r, &p.key("filters"), &rule.filters);
    if !rule.backend_refs.is_empty()
        && let Some(j) = rule
            .filters
            .iter()
            .position(|f| f.request_redirect.is_some())
    {
        r.error(p.key("filters").index(j), "a RequestRedirect filter cannot be combined with backendRefs")
                .hint("a redirect answers the request itself: remove `backendRefs`, or put the redirect in its own rule");
    }
    // ReplacePrefixMatch rewrites the part of the path a PathPrefix match matched, so it
    // needs exactly one match, of type PathPrefix.
    let single_prefix = rule.matches.len() == 1
        && rule.matches[0]
            .path
            .as_ref()
            .is_some_and(|m| m.match_type() == PathMatchType::PathPrefix);
    let check_prefix_rewrites = |r: &mut Report, fp: &FieldPath, filters: &[HttpRouteFilter]| {
        for (k, f) in filters.iter().enumerate() {
            for (field, m) in [
                (
                    "requestRedirect",
                    f.request_redirect.as_ref().and_then(|x| x.path.as_ref()),
                ),
                (
                    "urlRewrite",
                    f.url_rewrite.as_ref().and_then(|x| x.path.as_ref()),
                ),
            ] {
                if m.is_some_and(|m| m.modifier_type == Some(PathModifierType::ReplacePrefixMatch))
                    && !single_prefix
                {
                    r.error(fp.index(k).key(field).key("path"), "ReplacePrefixMatch needs the rule to have exactly one match, of type PathPrefix")
                        .hint("give the rule a single `matches: [{path: {type: PathPrefix, value: /prefix}}]`, or use ReplaceFullPath");
                }
            }
        }
    };
    check_prefix_rewrites(r, &p.key("filters"), &rule.filters);
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
        http_filters(r, &bp.key("filters"), &b.filters);
        check_prefix_rewrites(r, &bp.key("filters"), &b.filters);
    }
    if let Some(t) = &rule.timeouts
        && let (Some(req), Some(be)) = (t.request, t.backend_request)
        && !req.as_std().is_zero()
        && be > req
    {
        r.error(
            p.key("timeouts").key("backendRequest"),
            format!("backendRequest timeout {be} is longer than the request timeout {req}"),
        )
        .hint("the request timeout covers all backend attempts: make backendRequest ≤ request");
    }
    if let Some(retry) = &rule.retry {
        for (k, c) in retry.codes.iter().enumerate() {
            if !(400..=599).contains(c) {
                r.error(
                    p.key("retry").key("codes").index(k),
                    format!("retry code {c} is not an error status"),
                )
                .hint("retry codes range from 400 to 599");
            }
        }
        if let Some(a) = retry.attempts
            && a < 0
        {
            r.error(
                p.key("retry").key("attempts"),
                "attempts must not be negative",
            );
        }
    }
    if let Some(sp) = &rule.session_persistence {
        session_persistence(r, &p.key("sessionPersistence"), sp);
    }
}

pub(super) fn session_persistence(
    r: &mut Report,
    p: &FieldPath,
    sp: &crate::kinds::gateway_api::SessionPersistence,
) {
    use crate::kinds::gateway_api::{CookieLifetimeType, SessionPersistenceType};
    let cookie = sp
        .persistence_type
        .unwrap_or(SessionPersistenceType::Cookie)
        == SessionPersistenceType::Cookie;
    let permanent = sp.cookie_config.as_ref().and_then(|c| c.lifetime_type)
        == Some(CookieLifetimeType::Permanent);
    if cookie && permanent && sp.absolute_timeout.is_none() {
        r.error(
            p.key("absoluteTimeout"),
            "a Permanent session cookie needs `absoluteTimeout`",
        )
        .hint("set `absoluteTimeout:` (e.g. `1h`) or use lifetimeType Session");
    }
    if !cookie && sp.cookie_config.is_some() {
        r.error(
            p.key("cookieConfig"),
            "cookieConfig applies only to `type: Cookie`",
        );
    }
}

fn path_value_problem(v: &str) -> Option<&'static str> {
    if !v.starts_with('/') {
        return Some("must be an absolute path starting with '/'");
    }
    if v.contains("//") {
        return Some("must not contain '//'");
    }
    if v.contains("/./") || v.ends_with("/.") {
        return Some("must not contain '/.' segments");
    }
    if v.contains("/../") || v.ends_with("/..") {
        return Some("must not contain '/..' segments");
    }
    if v.contains("%2f") || v.contains("%2F") {
        return Some("must not contain an encoded '/' (%2F)");
    }
    if v.contains('#') {
        return Some("must not contain '#'");
    }
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |k: usize| bytes.get(k).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Some("has a '%' not followed by two hex digits");
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@".contains(&b)) {
            return Some(
                "has a character that must be percent-encoded (allowed: letters, digits and -/._~!$&'()*+,;=:@)",
            );
        }
        i += 1;
    }
    None
}

fn http_match(r: &mut Report, p: &FieldPath, m: &HttpRouteMatch) {
    if let Some(path) = &m.path {
        let v = path.value();
        let vp = p.key("path").key("value");
        if v.len() > 1024 {
            r.error(vp.clone(), "path is longer than 1024 characters");
        }
        match path.match_type() {
            PathMatchType::Exact | PathMatchType::PathPrefix => {
                if let Some(problem) = path_value_problem(v) {
                    let hint = if v.starts_with('/') {
                        "write a normalized path such as `/api/v1`".to_string()
                    } else {
                        format!("write `/{v}`")
                    };
                    r.error(vp, format!("path `{v}` {problem}")).hint(hint);
                }
            }
            PathMatchType::RegularExpression => check_regex_at(r, vp, v),
        }
    }
    header_matches(
        r,
        &p.key("headers"),
        m.headers
            .iter()
            .map(|h| (h.match_type, h.name.as_str(), h.value.as_str())),
        "header",
    );
    header_matches(
        r,
        &p.key("queryParams"),
        m.query_params
            .iter()
            .map(|h| (h.match_type, h.name.as_str(), h.value.as_str())),
        "query parameter",
    );
}

pub(super) fn header_matches<'a>(
    r: &mut Report,
    base: &FieldPath,
    items: impl Iterator<Item = (Option<MatchType>, &'a str, &'a str)>,
    what: &str,
) {
    let items: Vec<_> = items.collect();
    if items.len() > 16 {
        r.error(
            base.clone(),
            format!("{} {what} matches, more than the 16 allowed", items.len()),
        );
    }
    let mut seen = HashSet::new();
    for (i, (ty, name, value)) in items.into_iter().enumerate() {
        let p = base.index(i);
        if !is_header_name(name) {
            let hint = if name.is_empty() {
                format!("add the {what} name")
            } else {
                format!("{what} names are letters, digits and !#$%&'*+-.^_`|~")
            };
            r.error(p.key("name"), format!("invalid {what} name `{name}`"))
                .hint(hint);
        } else if !seen.insert(if what == "header" {
            name.to_ascii_lowercase()
        } else {
            name.to_string()
        }) {
            r.error(p.key("name"), format!("{what} `{name}` is matched twice"))
                .hint("all matches of one entry must hold together: combine them in one regular expression or split the match");
        }
        if value.is_empty() {
            r.error(
                p.key("value"),
                format!("{what} match `{name}` has no value"),
            )
            .hint("add `value:`");
        } else if value.len() > 4096 {
            r.error(p.key("value"), "value is longer than 4096 characters");
        }
        if ty == Some(MatchType::RegularExpression) {
            check_regex_at(r, p.key("value"), value);
        }
    }
}

fn http_filters(r: &mut Report, base: &FieldPath, filters: &[HttpRouteFilter]) {
    if filters.len() > MAX_FILTERS {
        r.error(
            base.clone(),
            format!(
                "{} filters, more than the {MAX_FILTERS} allowed",
                filters.len()
            ),
        );
    }
    let mut counts: Vec<(HttpRouteFilterType, usize)> = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let p = base.index(i);
        let set = f.set_fields();
        let Some(ty) = f.filter_type else {
            let hint = match set.as_slice() {
                [one] => format!("add the `type:` that matches `{one}`"),
                _ => "add `type:` (RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror, CORS, ExternalAuth or ExtensionRef) and its configuration field".into(),
            };
            r.error(p.key("type"), "filter has no `type`").hint(hint);
            continue;
        };
        filter_type_fields(r, &p, ty.name(), ty.field(), &set);
        match counts.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, n)) => {
                *n += 1;
                if *n == 2
                    && ty != HttpRouteFilterType::RequestMirror
                    && ty != HttpRouteFilterType::ExtensionRef
                {
                    r.error(p.clone(), format!("the {} filter is repeated", ty.name()))
                        .hint("merge both into one filter");
                }
            }
            None => counts.push((ty, 1)),
        }
        if let Some(h) = &f.request_header_modifier {
            check_header_filter(r, &p.key("requestHeaderModifier"), h);
        }
        if let Some(h) = &f.response_header_modifier {
            check_header_filter(r, &p.key("responseHeaderModifier"), h);
        }
        if let Some(rd) = &f.request_redirect {
            let rp = p.key("requestRedirect");
            if let Some(code) = rd.status_code
                && !REDIRECT_CODES.contains(&code)
            {
                r.error(
                    rp.key("statusCode"),
                    format!("redirect status code {code} is not allowed"),
                )
                .hint("use 301, 302 (default), 303, 307 or 308");
            }
            check_port(r, rp.key("port"), rd.port);
            if let Some(h) = &rd.hostname
                && let Some(e) = hostname_problem(h, false)
            {
                r.error(
                    rp.key("hostname"),
                    format!("invalid redirect hostname: {e}"),
                );
            }
            if let Some(m) = &rd.path {
                path_modifier(r, &rp.key("path"), m);
            }
        }
        if let Some(u) = &f.url_rewrite {
            let up = p.key("urlRewrite");
            if let Some(h) = &u.hostname
                && let Some(e) = hostname_problem(h, false)
            {
                r.error(up.key("hostname"), format!("invalid rewrite hostname: {e}"));
            }
            if let Some(m) = &u.path {
                path_modifier(r, &up.key("path"), m);
            }
        }
        if let Some(m) = &f.request_mirror {
            check_mirror(r, &p.key("requestMirror"), m);
        }
        if let Some(c) = &f.cors {
            let cp = p.key("cors");
            if c.allow_origins.len() > 64 {
                r.error(cp.key("allowOrigins"), "more than 64 allowOrigins");
            }
            for (k, m) in c.allow_methods.iter().enumerate() {
                if !CORS_METHODS.contains(&m.as_str()) {
                    r.error(
                        cp.key("allowMethods").index(k),
                        format!("unknown method `{m}`"),
                    )
                    .hint(format!("use one of {}", CORS_METHODS.join(", ")));
                }
            }
            if c.allow_methods.len() > 1 && c.allow_methods.iter().any(|m| m == "*") {
                r.error(
                    cp.key("allowMethods"),
                    "`*` must be the only entry of allowMethods",
                )
                .hint("keep either `*` or the list of methods");
            }
            for (field, list) in [
                ("allowHeaders", &c.allow_headers),
                ("exposeHeaders", &c.expose_headers),
            ] {
                for (k, h) in list.iter().enumerate() {
                    if h != "*" && !is_header_name(h) {
                        r.error(cp.key(field).index(k), format!("invalid header name `{h}`"));
                    }
                }
            }
            if let Some(a) = c.max_age
                && a < 1
            {
                r.error(
                    cp.key("maxAge"),
                    format!("maxAge {a} must be at least 1 second"),
                );
            }
        }
        if let Some(e) = &f.extension_ref {
            extension_ref(r, &p.key("extensionRef"), e);
        }
        if let Some(a) = &f.external_auth {
            let ap = p.key("externalAuth");
            let b = &a.backend_ref;
            check_backend_ref(
                r,
                &ap.key("backendRef"),
                BackendView {
                    group: b.group.as_deref(),
                    kind: b.kind.as_deref(),
                    name: &b.name,
                    namespace: b.namespace.as_deref(),
                    port: b.port,
                    weight: None,
                },
            );
            if a.protocol.is_none() {
                r.error(ap.key("protocol"), "externalAuth needs `protocol`")
                    .hint("set `protocol: GRPC` or `protocol: HTTP`");
            }
        }
    }
    let has = |t| counts.iter().any(|(c, _)| *c == t);
    if has(HttpRouteFilterType::RequestRedirect) && has(HttpRouteFilterType::UrlRewrite) {
        r.error(base.clone(), "a RequestRedirect and a URLRewrite filter cannot be used together")
            .hint("a redirect sends the client elsewhere, a rewrite changes the forwarded request: keep one");
    }
}

/// `type` names the one configuration field that must be set.
pub(super) fn filter_type_fields(
    r: &mut Report,
    p: &FieldPath,
    type_name: &str,
    field: &str,
    set: &[&str],
) {
    if !set.contains(&field) {
        r.error(
            p.key(field),
            format!("a {type_name} filter needs its `{field}` configuration"),
        )
        .hint(match set {
            [other] => format!(
                "`{other}` is set instead: change `type` to match it, or rename it to `{field}`"
            ),
            _ => format!("add `{field}:`"),
        });
    }
    for other in set.iter().filter(|f| **f != field) {
        r.error(p.key(*other), format!("`{other}` is set on a filter of type {type_name}"))
            .hint(format!("a filter holds exactly the field matching its type: remove `{other}` or move it to its own filter"));
    }
}

pub(super) fn extension_ref(
    r: &mut Report,
    p: &FieldPath,
    e: &crate::kinds::gateway_api::LocalObjectReference,
) {
    check_object_name(r, p.key("name"), &e.name, "extensionRef");
    check_group(r, p.key("group"), Some(&e.group));
    if e.kind.is_empty() {
        r.error(p.key("kind"), "extensionRef has no kind");
    } else {
        check_kind(r, p.key("kind"), Some(&e.kind));
    }
}

fn path_modifier(r: &mut Report, p: &FieldPath, m: &HttpPathModifier) {
    match m.modifier_type {
        None => {
            r.error(p.key("type"), "path modifier has no `type`")
                .hint("set `type: ReplaceFullPath` or `type: ReplacePrefixMatch`");
        }
        Some(PathModifierType::ReplaceFullPath) => {
            if m.replace_full_path.is_none() {
                r.error(
                    p.key("replaceFullPath"),
                    "type ReplaceFullPath needs `replaceFullPath`",
                )
                .hint("add `replaceFullPath: /new/path`");
            }
            if m.replace_prefix_match.is_some() {
                r.error(
                    p.key("replacePrefixMatch"),
                    "`replacePrefixMatch` is set but type is ReplaceFullPath",
                )
                .hint("change `type` to ReplacePrefixMatch or remove `replacePrefixMatch`");
            }
        }
        Some(PathModifierType::ReplacePrefixMatch) => {
            if m.replace_prefix_match.is_none() {
                r.error(
                    p.key("replacePrefixMatch"),
                    "type ReplacePrefixMatch needs `replacePrefixMatch`",
                )
                .hint("add `replacePrefixMatch: /new-prefix`");
            }
            if m.replace_full_path.is_some() {
                r.error(
                    p.key("replaceFullPath"),
                    "`replaceFullPath` is set but type is ReplacePrefixMatch",
                )
                .hint("change `type` to ReplaceFullPath or remove `replaceFullPath`");
            }
        }
    }
    for (field, v) in [
        ("replaceFullPath", &m.replace_full_path),
        ("replacePrefixMatch", &m.replace_prefix_match),
    ] {
        if let Some(v) = v {
            if v.len() > 1024 {
                r.error(p.key(field), "path is longer than 1024 characters");
            }
            if !v.is_empty() && !v.starts_with('/') {
                r.error(p.key(field), format!("`{v}` must start with '/'"))
                    .hint(format!("write `/{v}`"));
            }
        }
    }
}
