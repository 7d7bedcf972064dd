//! The parts of a VirtualService HTTP rule: matches, redirect, direct response, rewrite,
//! retries, fault injection, CORS and header operations.

use super::{check_duration, check_labels, check_percent, check_port};
use crate::kinds::common::StringMatch;
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;
use crate::validate::rules::{check_regex, is_dns1123_label};

use super::virtual_service::check_gateway_name;

pub(super) fn string_match(r: &mut Report, path: FieldPath, m: &StringMatch, require: bool) {
    if m.set_count() > 1 {
        r.error(
            path.clone(),
            "only one of exact, prefix or regex can be set",
        )
        .hint("keep one kind of match; use regex to express more complex conditions");
        return;
    }
    if require && m.is_empty() {
        r.warning(
            path.clone(),
            "empty match: set one of exact, prefix or regex",
        )
        .hint("remove the field to match everything");
    }
    if let Some(p) = &m.prefix
        && require
        && p.is_empty()
    {
        r.error(
            path.key("prefix"),
            "prefix string match should not be empty",
        )
        .hint("use `prefix: /` to match every path, or remove the match");
    }
    if let Some(re) = &m.regex {
        if re.is_empty() {
            r.error(path.key("regex"), "regex string match should not be empty")
                .hint("write a regex, or remove the match");
        } else if (re != "*" || require)
            && let Err(e) = check_regex(re)
        {
            r.error(path.key("regex"), e)
                .hint("Envoy uses RE2 syntax; lookarounds and backreferences are not supported");
        }
    }
}

pub(super) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) fn http_match(r: &mut Report, p: &FieldPath, m: &HTTPMatchRequest) {
    for (field, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(r, p.key(field), sm, true);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (k, sm) in map {
            let hp = p.key(field).key(k.as_str());
            if k.starts_with("@request.auth.claims") {
                check_claim_key(r, hp.clone(), k);
            } else if k.is_empty() {
                r.error(p.key(field), "header name cannot be empty");
            } else if !is_header_name(k) {
                r.error(hp.clone(), format!("`{k}` is not a valid header name"))
                    .hint("header names are letters, digits, '-' and '_'");
            } else if k.bytes().any(|b| b.is_ascii_uppercase()) {
                r.warning(hp.clone(), format!("header name `{k}` should be lowercase"))
                    .hint(format!(
                        "HTTP header names are case-insensitive and Istio expects lowercase: write `{}`",
                        k.to_ascii_lowercase()
                    ));
            }
            string_match(r, hp, sm, false);
        }
    }
    for (k, sm) in &m.query_params {
        let qp = p.key("queryParams").key(k.as_str());
        if k.is_empty() {
            r.error(p.key("queryParams"), "query parameter name cannot be empty");
        }
        string_match(r, qp, sm, false);
    }
    if let Some(port) = m.port {
        check_port(r, p.key("port"), port);
    }
    check_labels(r, &p.key("sourceLabels"), &m.source_labels);
    for (i, g) in m.gateways.iter().enumerate() {
        check_gateway_name(r, p.key("gateways").index(i), g);
    }
    if !m.source_namespace.is_empty() && !is_dns1123_label(&m.source_namespace) {
        r.error(
            p.key("sourceNamespace"),
            format!("invalid namespace `{}`", m.source_namespace),
        )
        .hint("namespaces are DNS labels: lowercase letters, digits and '-'");
    }
}

/// `@request.auth.claims.<name>` or `@request.auth.claims[a][b]`.
pub(super) fn check_claim_key(r: &mut Report, path: FieldPath, k: &str) {
    let rest = &k["@request.auth.claims".len()..];
    let ok = if let Some(name) = rest.strip_prefix('.') {
        !name.is_empty()
    } else if rest.starts_with('[') && rest.ends_with(']') {
        rest[1..rest.len() - 1]
            .split("][")
            .all(|s| !s.is_empty() && !s.contains(['[', ']']))
    } else {
        false
    };
    if !ok {
        r.error(path, format!("invalid JWT claim key `{k}`")).hint(
            "write `@request.auth.claims.<claim>` or `@request.auth.claims[<claim>][<nested>]`",
        );
    }
}

pub(super) fn redirect(r: &mut Report, p: &FieldPath, rd: &HTTPRedirect) {
    if rd.uri.is_empty()
        && rd.authority.is_empty()
        && rd.scheme.is_empty()
        && rd.port.is_none()
        && rd.derive_port.is_none()
    {
        r.error(
            p.clone(),
            "redirect must specify URI, authority, scheme or port",
        )
        .hint("e.g. `redirect: {uri: /new-path}` or `redirect: {scheme: https}`");
    }
    if rd.port.is_some() && rd.derive_port.is_some() {
        r.error(
            p.key("derivePort"),
            "only one of port and derivePort can be set",
        )
        .hint("remove one of them");
    }
    if let Some(port) = rd.port {
        check_port(r, p.key("port"), port);
    }
    if let Some(code) = rd.redirect_code {
        if !(300..=399).contains(&code) {
            r.error(
                p.key("redirectCode"),
                format!("{code} is not a valid redirect code, must be 3xx"),
            )
            .hint("use 301 (default), 302, 303, 307 or 308");
        } else if !matches!(code, 301 | 302 | 303 | 307 | 308) {
            r.warning(
                p.key("redirectCode"),
                format!("redirect code {code} is not supported by Envoy"),
            )
            .hint("use 301, 302, 303, 307 or 308");
        }
    }
}

pub(super) fn direct_response(r: &mut Report, p: &FieldPath, dr: &HTTPDirectResponse) {
    if !(200..=599).contains(&dr.status) {
        r.error(
            p.key("status"),
            format!("status {} is out of range", dr.status),
        )
        .hint("use an HTTP status code from 200 to 599");
    }
    if let Some(b) = &dr.body {
        let bp = p.key("body");
        match (&b.string, &b.bytes) {
            (Some(_), Some(_)) => {
                r.error(bp.clone(), "only one of string and bytes can be set")
                    .hint("keep `string` for text or `bytes` for base64 data");
            }
            (None, None) => {
                r.error(bp.clone(), "body must set string or bytes")
                    .hint("e.g. `body: {string: \"not found\"}`");
            }
            _ => {}
        }
        let size = b.string.as_ref().map(String::len).unwrap_or(0)
            + b.bytes.as_ref().map(|s| s.len() * 3 / 4).unwrap_or(0);
        if size > 1024 * 1024 {
            r.error(bp, format!("direct response body is {size} bytes; it must be under 1MB"))
                .hint("large bodies slow the control plane down; serve the content from a service instead");
        }
    }
}

pub(super) fn rewrite(r: &mut Report, p: &FieldPath, rw: &HTTPRewrite) {
    if !rw.uri.is_empty() && rw.uri_regex_rewrite.is_some() {
        r.error(
            p.key("uriRegexRewrite"),
            "rewrite may only contain one of uri or uriRegexRewrite",
        )
        .hint("remove one of them");
    }
    if rw.uri.is_empty() && rw.uri_regex_rewrite.is_none() && rw.authority.is_empty() {
        r.error(
            p.clone(),
            "rewrite must specify at least one of uri, uriRegexRewrite or authority",
        )
        .hint("e.g. `rewrite: {uri: /}`, or remove `rewrite`");
    }
    if let Some(rr) = &rw.uri_regex_rewrite {
        let rp = p.key("uriRegexRewrite");
        if rr.r#match.is_empty() {
            r.error(rp.key("match"), "uriRegexRewrite.match is required")
                .hint("write the regex to match, e.g. `^/service/([^/]+)(/.*)$`");
        } else if let Err(e) = check_regex(&rr.r#match) {
            r.error(rp.key("match"), e).hint("Envoy uses RE2 syntax");
        }
        if rr.rewrite.is_empty() {
            r.error(rp.key("rewrite"), "uriRegexRewrite.rewrite is required")
                .hint("write the replacement, e.g. `\\2/instance/\\1`");
        }
    }
}

const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(super) fn retries(r: &mut Report, p: &FieldPath, rt: &HTTPRetry) {
    if rt.attempts < 0 {
        r.error(
            p.key("attempts"),
            format!("attempts {} cannot be negative", rt.attempts),
        )
        .hint("use 0 to disable retries");
    }
    if let Some(t) = &rt.per_try_timeout {
        check_duration(r, p.key("perTryTimeout"), t);
    }
    if let Some(b) = &rt.backoff {
        check_duration(r, p.key("backoff"), b);
    }
    for v in rt.retry_on_list() {
        let code_ok = v.parse::<u32>().is_ok_and(|c| (100..=599).contains(&c));
        if !RETRY_ON.contains(&v) && !code_ok {
            let hint = match crate::de::did_you_mean(v, RETRY_ON) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("use HTTP status codes or: {}", RETRY_ON.join(", ")),
            };
            r.error(
                p.key("retryOn"),
                format!("`{v}` is not a valid retryOn policy"),
            )
            .hint(hint);
        }
    }
}

pub(super) fn fault(r: &mut Report, p: &FieldPath, f: &HTTPFaultInjection) {
    if f.delay.is_none() && f.abort.is_none() {
        r.error(
            p.clone(),
            "HTTP fault injection must have an abort and/or a delay",
        )
        .hint("e.g. `fault: {delay: {fixedDelay: 5s, percentage: {value: 100}}}`");
    }
    if let Some(d) = &f.delay {
        let dp = p.key("delay");
        match (&d.fixed_delay, &d.exponential_delay) {
            (None, None) => {
                r.error(dp.clone(), "delay must specify fixedDelay")
                    .hint("e.g. `fixedDelay: 5s`");
            }
            (Some(_), Some(_)) => {
                r.error(
                    dp.key("exponentialDelay"),
                    "only one of fixedDelay and exponentialDelay can be set",
                );
            }
            _ => {}
        }
        if let Some(fd) = &d.fixed_delay {
            check_duration(r, dp.key("fixedDelay"), fd);
        }
        if let Some(ed) = &d.exponential_delay {
            check_duration(r, dp.key("exponentialDelay"), ed);
        }
        if let Some(pc) = &d.percentage {
            check_percent(r, dp.key("percentage").key("value"), pc.value);
        }
        if let Some(pc) = d.percent {
            check_percent(r, dp.key("percent"), pc as f64);
        }
    }
    if let Some(a) = &f.abort {
        let ap = p.key("abort");
        let set = [
            a.http_status.is_some(),
            a.grpc_status.is_some(),
            a.http2_error.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set == 0 {
            r.error(ap.clone(), "abort must specify httpStatus or grpcStatus")
                .hint("e.g. `httpStatus: 503`");
        } else if set > 1 {
            r.error(
                ap.clone(),
                "only one of httpStatus, grpcStatus and http2Error can be set",
            );
        }
        if let Some(s) = a.http_status
            && !(200..=599).contains(&s)
        {
            r.error(
                ap.key("httpStatus"),
                format!("invalid abort http status {s}"),
            )
            .hint("use an HTTP status code from 200 to 599");
        }
        if let Some(g) = &a.grpc_status {
            let numeric = g.parse::<u32>().is_ok_and(|n| n <= 16);
            if !crate::kinds::common::GRPC_STATUS_NAMES.contains(&g.as_str()) && !numeric {
                let hint = match crate::de::did_you_mean(g, crate::kinds::common::GRPC_STATUS_NAMES)
                {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "use one of {}",
                        crate::kinds::common::GRPC_STATUS_NAMES.join(", ")
                    ),
                };
                r.error(
                    ap.key("grpcStatus"),
                    format!("`{g}` is not a gRPC status code"),
                )
                .hint(hint);
            }
        }
        if let Some(pc) = &a.percentage {
            check_percent(r, ap.key("percentage").key("value"), pc.value);
        }
    }
}

const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "*",
];

pub(super) fn cors(r: &mut Report, p: &FieldPath, c: &CorsPolicy) {
    for (i, o) in c.allow_origins.iter().enumerate() {
        string_match(r, p.key("allowOrigins").index(i), o, false);
    }
    if !c.allow_origin.is_empty() {
        r.warning(p.key("allowOrigin"), "allowOrigin is deprecated")
            .hint("use `allowOrigins: [{exact: <origin>}]`");
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if !HTTP_METHODS.contains(&m.as_str()) {
            r.error(
                p.key("allowMethods").index(i),
                format!("`{m}` is not a supported HTTP method"),
            )
            .hint("use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH (uppercase)");
        }
    }
    for (field, list) in [
        ("allowHeaders", &c.allow_headers),
        ("exposeHeaders", &c.expose_headers),
    ] {
        for (i, h) in list.iter().enumerate() {
            if h != "*" && !is_header_name(h) {
                r.error(
                    p.key(field).index(i),
                    format!("`{h}` is not a valid header name"),
                )
                .hint("header names are letters, digits, '-' and '_'");
            }
        }
    }
    if let Some(age) = &c.max_age
        && age.0.subsec_nanos() != 0
    {
        r.error(
            p.key("maxAge"),
            format!("maxAge `{age}` must be whole seconds"),
        )
        .hint("browsers cache preflights in whole seconds, e.g. `24h` or `600s`");
    }
}

/// Route- or destination-level header operations.
pub(super) fn headers(r: &mut Report, p: &FieldPath, h: &Headers) {
    if let Some(req) = &h.request {
        header_ops(r, &p.key("request"), req, true);
    }
    if let Some(resp) = &h.response {
        header_ops(r, &p.key("response"), resp, false);
    }
}

pub(super) fn header_ops(r: &mut Report, p: &FieldPath, ops: &HeaderOperations, request: bool) {
    for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
        check_op_names(r, &p.key(field), map.keys().map(String::as_str), request);
        for (k, v) in map {
            if let Err(e) = check_header_value(v) {
                r.error(p.key(field).key(k.as_str()), e)
                    .hint("write `%%` for a literal percent sign");
            }
        }
    }
    check_op_names(
        r,
        &p.key("remove"),
        ops.remove.iter().map(String::as_str),
        false,
    );
}

pub(super) fn check_op_names<'a>(
    r: &mut Report,
    p: &FieldPath,
    names: impl Iterator<Item = &'a str>,
    authority_ok: bool,
) {
    for (i, name) in names.enumerate() {
        // Map entries are addressed by key; `remove` is a list addressed by index.
        let path = if p.0.last() == Some(&crate::path::Segment::Key("remove".into())) {
            p.index(i)
        } else {
            p.key(name)
        };
        let lower = name.to_ascii_lowercase();
        if name.is_empty() {
            r.error(p.clone(), "header name cannot be empty");
        } else if lower == "host" || lower == ":authority" {
            if !authority_ok {
                r.error(path, format!("header `{name}` cannot be modified here"))
                    .hint("the host can only be rewritten on requests: use `request.set` or `rewrite.authority`");
            }
        } else if name.starts_with(':') {
            r.error(path, format!("pseudo-header `{name}` cannot be modified"))
                .hint("only `:authority` can be set, on requests");
        } else if !is_header_name(name) {
            r.error(path, format!("`{name}` is not a valid header name"))
                .hint("header names are letters, digits, '-' and '_'");
        }
    }
}

/// Envoy's header value formatting: `%OPERATOR%` / `%OPERATOR(args)%`, `%%` for a literal.
pub(super) fn check_header_value(v: &str) -> Result<(), String> {
    let mut rest = v;
    while let Some(i) = rest.find('%') {
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('%') {
            rest = r;
            continue;
        }
        let Some(end) = find_operator_end(after) else {
            return Err(format!(
                "invalid header value `{v}`: unterminated `%` variable"
            ));
        };
        let op = &after[..end];
        let name_end = op.find(['(', ':']).unwrap_or(op.len());
        let name = &op[..name_end];
        let name_ok = !name.is_empty()
            && name.as_bytes()[0].is_ascii_uppercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(format!(
                "invalid header value `{v}`: `%{op}%` is not a command operator"
            ));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// The closing `%` of an operator, skipping over a parenthesised argument list.
pub(super) fn find_operator_end(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '%' if depth <= 0 => return Some(i),
            _ => {}
        }
    }
    None
}
