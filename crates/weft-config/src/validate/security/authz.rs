//! AuthorizationPolicy: rules, condition keys and values, and the DENY-on-TCP warning.

use std::net::IpAddr;

use super::scope::policy_scope;
use super::spec;
use crate::de::did_you_mean;
use crate::kinds::istio::*;
use crate::path::FieldPath;
use crate::validate::Report;

/// Condition keys that take a `[name]` suffix.
const MAP_KEYS: &[&str] = &[
    "request.headers",
    "request.experimental.inline.headers",
    "request.auth.claims",
];

/// Condition keys taken as they are.
const PLAIN_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.serviceAccount",
    "source.principal",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];

const ALL_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.serviceAccount",
    "source.principal",
    "source.trustDomain",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
    "request.headers",
    "request.experimental.inline.headers",
    "request.auth.claims",
];

fn is_map_key(key: &str) -> bool {
    let Some(open) = key.find('[') else {
        return false;
    };
    key.ends_with(']') && open > 0 && open < key.len() - 2
}

/// Check a condition's values against its key; Err carries (message, hint).
fn condition_values(key: &str, values: &[String]) -> Result<(), (String, String)> {
    let base = key.split('[').next().unwrap_or(key);
    if MAP_KEYS.contains(&base) || key.starts_with("experimental.envoy.filters.") {
        if !is_map_key(key) {
            return Err((
                format!("bad key `{key}`: should have the format a[b]"),
                format!("write e.g. `{base}[name]`"),
            ));
        }
        return Ok(());
    }
    match key {
        "source.ip" | "remote.ip" | "destination.ip" => {
            for v in values {
                check_ip(v).map_err(|m| {
                    (
                        m,
                        "write an IP address or CIDR range, e.g. 10.0.0.0/8".to_string(),
                    )
                })?;
            }
            Ok(())
        }
        "destination.port" => {
            for v in values {
                check_port(v)
                    .map_err(|m| (m, "write a port number between 0 and 65535".to_string()))?;
            }
            Ok(())
        }
        "source.serviceAccount" => check_service_accounts(values),
        k if PLAIN_KEYS.contains(&k) => Ok(()),
        "destination.namespace" => Err((
            format!("attribute {key} is replaced by the policy's metadata.namespace"),
            "create the policy in the destination namespace instead".to_string(),
        )),
        k if k.starts_with("destination.labels") => Err((
            format!("attribute {key} is replaced by the workload selector"),
            "use `selector.matchLabels` to choose the destination workloads".to_string(),
        )),
        "destination.name" | "destination.user" => Err((
            format!("deprecated attribute {key}: only supported in v1alpha1"),
            "use `selector` or `source.principal` instead".to_string(),
        )),
        _ => Err((
            format!("unknown attribute `{key}` in `when`"),
            match did_you_mean(base, ALL_KEYS) {
                Some(s) => {
                    format!("did you mean `{s}`? (Istio silently ignores unknown keys at runtime)")
                }
                None => format!(
                    "supported keys: {}, experimental.envoy.filters.*[…]",
                    ALL_KEYS.join(", ")
                ),
            },
        )),
    }
}

fn check_ip(v: &str) -> Result<(), String> {
    match v.split_once('/') {
        Some((addr, bits)) => {
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("bad CIDR range `{v}`: `{addr}` is not an IP address"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            match bits.parse::<u8>() {
                Ok(b) if b <= max => Ok(()),
                _ => Err(format!(
                    "bad CIDR range `{v}`: prefix length must be 0-{max}"
                )),
            }
        }
        None => v
            .parse::<IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("bad IP address `{v}`")),
    }
}

fn check_port(v: &str) -> Result<(), String> {
    match v.parse::<u32>() {
        Ok(p) if p <= 65535 => Ok(()),
        _ => Err(format!(
            "bad port `{v}`: ports are numbers between 0 and 65535, without wildcards"
        )),
    }
}

fn check_service_accounts(values: &[String]) -> Result<(), (String, String)> {
    let hint =
        || "write `serviceAccount` or `namespace/serviceAccount`, without wildcards".to_string();
    if values.len() > 16 {
        return Err((
            "serviceAccounts may not have more than 16 values".into(),
            "split the rule into several sources".into(),
        ));
    }
    for v in values {
        if v.contains('*') {
            return Err((
                format!("wildcard not allowed in service account `{v}`"),
                hint(),
            ));
        }
        if v.len() > 320 {
            return Err((
                format!("service account `{v}` exceeds 320 characters"),
                hint(),
            ));
        }
        match v.split_once('/') {
            Some((ns, sa)) if ns.is_empty() || sa.is_empty() || sa.contains('/') => {
                return Err((
                    format!(
                        "expected format 'serviceAccount' or 'namespace/serviceAccount', found `{v}`"
                    ),
                    hint(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Istio matches `abc*` (prefix), `*abc` (suffix) and `*` (present); a `*` anywhere else is
/// taken literally, which is almost never what was meant.
fn misplaced_wildcard(v: &str) -> bool {
    if v == "*" || !v.contains('*') {
        return false;
    }
    let inner = v
        .strip_prefix('*')
        .or_else(|| v.strip_suffix('*'))
        .unwrap_or(v);
    inner.contains('*')
}

fn check_path_template(path: &str) -> Result<(), String> {
    let has_template = path.contains("{*}") || path.contains("{**}");
    let mut seen_any = false;
    for glob in path.trim_matches('/').split('/') {
        match glob {
            "{*}" | "{**}" if seen_any => {
                return Err(format!(
                    "invalid path `{path}`: `{{**}}` must be the last operator"
                ));
            }
            "{*}" => continue,
            "{**}" => {
                seen_any = true;
                continue;
            }
            _ => {}
        }
        if glob.contains(['{', '}']) {
            return Err(format!(
                "invalid path `{path}`: `{{` or `}}` outside a `{{*}}`/`{{**}}` segment"
            ));
        }
        let literal_ok = !glob.is_empty()
            && glob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b));
        if has_template && !literal_ok {
            return Err(format!(
                "invalid path `{path}`: segment `{glob}` is not a valid literal in a path template"
            ));
        }
    }
    Ok(())
}

pub fn authorization_policy(ap: &AuthorizationPolicy, r: &mut Report) {
    policy_scope(
        r,
        ap.selector.as_ref(),
        ap.target_ref.as_ref(),
        &ap.target_refs,
    );
    let action = ap.action;
    let provider_name = ap.provider.as_ref().map(|p| p.name.as_str()).unwrap_or("");
    match action {
        AuthzAction::Custom if ap.rules.is_none() => {
            r.error(
                spec().key("action"),
                "CUSTOM action without `rules` is meaningless as it will never be triggered",
            )
            .hint("add an empty rule `rules: [{}]` to send every request to the provider");
        }
        AuthzAction::Custom if provider_name.is_empty() => {
            r.error(spec().key("provider"), "CUSTOM action needs `provider.name`")
                .hint("name an `extensionProviders` entry of the mesh config, e.g. `provider: {name: my-ext-authz}`");
        }
        AuthzAction::Deny if ap.rules.is_none() => {
            r.error(
                spec().key("action"),
                "DENY action without `rules` is meaningless as it will never be triggered",
            )
            .hint("add an empty rule `rules: [{}]` to deny every request");
        }
        _ => {}
    }
    if ap.provider.is_some() && action != AuthzAction::Custom {
        r.error(
            spec().key("provider"),
            format!(
                "`provider` is only allowed with CUSTOM action, found {}",
                action.as_str()
            ),
        )
        .hint("set `action: CUSTOM`, or remove `provider`");
    }
    for (i, rule) in ap.rules.iter().flatten().enumerate() {
        authz_rule(rule, action, spec().key("rules").index(i), r);
    }
}

fn authz_rule(rule: &Rule, action: AuthzAction, at: FieldPath, r: &mut Report) {
    let custom = action == AuthzAction::Custom;
    let (mut from_exists, mut to_exists, mut tcp_in_from, mut tcp_in_to) =
        (false, false, false, false);
    if let Some(from) = &rule.from {
        if from.is_empty() {
            r.error(at.key("from"), "`from` must not be empty")
                .hint("remove `from: []` to match any source");
        }
        for (j, f) in from.iter().enumerate() {
            let p = at.key("from").index(j).key("source");
            let Some(src) = &f.source else {
                r.error(p, "`from.source` must be set")
                    .hint("add `source:` with at least one field, or remove this entry");
                continue;
            };
            from_exists = true;
            source(src, custom, &p, r);
            tcp_in_from |= !(src.principals.is_empty()
                && src.not_principals.is_empty()
                && src.ip_blocks.is_empty()
                && src.not_ip_blocks.is_empty()
                && src.namespaces.is_empty()
                && src.not_namespaces.is_empty()
                && src.remote_ip_blocks.is_empty()
                && src.not_remote_ip_blocks.is_empty()
                && src.service_accounts.is_empty()
                && src.not_service_accounts.is_empty());
        }
    }
    if let Some(to) = &rule.to {
        if to.is_empty() {
            r.error(at.key("to"), "`to` must not be empty")
                .hint("remove `to: []` to match any operation");
        }
        for (j, t) in to.iter().enumerate() {
            let p = at.key("to").index(j).key("operation");
            let Some(op) = &t.operation else {
                r.error(p, "`to.operation` must be set")
                    .hint("add `operation:` with at least one field, or remove this entry");
                continue;
            };
            to_exists = true;
            operation(op, &p, r);
            tcp_in_to |= !op.ports.is_empty() || !op.not_ports.is_empty();
        }
    }
    for (j, c) in rule.when.iter().enumerate() {
        let p = at.key("when").index(j);
        if c.key.is_empty() {
            r.error(p.key("key"), "`key` must not be empty")
                .hint("name a condition key, e.g. `request.headers[x-token]`");
            continue;
        }
        if c.values.is_empty() && c.not_values.is_empty() {
            r.error(
                p.clone(),
                format!(
                    "at least one of `values` or `notValues` must be set for key {}",
                    c.key
                ),
            )
            .hint("add `values: [...]`");
            continue;
        }
        if custom
            && (matches!(
                c.key.as_str(),
                "source.namespace" | "source.serviceAccount" | "source.principal"
            ) || c.key.starts_with("request.auth."))
        {
            r.error(p.key("key"), format!("{} is currently not supported with CUSTOM action", c.key))
                .hint("the external authorizer sees the request before JWT and peer identity checks; move this condition to an ALLOW or DENY policy");
        }
        for (field, list) in [("values", &c.values), ("notValues", &c.not_values)] {
            if let Some(k) = list.iter().position(String::is_empty) {
                r.error(
                    p.key(field).index(k),
                    format!("empty value not allowed in `{field}` of key {}", c.key),
                )
                .hint("remove the empty entry");
                continue;
            }
            if let Err((m, h)) = condition_values(&c.key, list) {
                let field_path = if m.starts_with("bad key") || m.contains("attribute") {
                    p.key("key")
                } else {
                    p.key(field)
                };
                r.error(
                    field_path,
                    format!("invalid `{field}` for key {}: {m}", c.key),
                )
                .hint(h);
                break;
            }
            if !matches!(
                c.key.as_str(),
                "source.ip" | "remote.ip" | "destination.ip" | "destination.port"
            ) {
                wildcard_warnings(list, &p.key(field), r);
            }
        }
    }
    if action == AuthzAction::Deny
        && ((from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to))
    {
        r.warning(
            at,
            "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule",
        )
        .hint("it is recommended to explicitly specify the port (`to.operation.ports`) the rule is meant for");
    }
}

fn wildcard_warnings(list: &[String], at: &FieldPath, r: &mut Report) {
    for (k, v) in list.iter().enumerate() {
        if misplaced_wildcard(v) {
            r.warning(
                at.index(k),
                format!(
                    "`{v}`: a `*` only works as a prefix or suffix; here it is matched literally"
                ),
            )
            .hint("use `abc*` (prefix), `*abc` (suffix) or `*` (any non-empty value)");
        }
    }
}

fn source(src: &Source, custom: bool, at: &FieldPath, r: &mut Report) {
    if src.is_empty() {
        r.error(at.clone(), "`from.source` must not be empty")
            .hint("set at least one field, e.g. `principals` or `namespaces`");
        return;
    }
    let sa_set = !src.service_accounts.is_empty() || !src.not_service_accounts.is_empty();
    let ns_or_principals = !(src.principals.is_empty()
        && src.not_principals.is_empty()
        && src.namespaces.is_empty()
        && src.not_namespaces.is_empty());
    if sa_set && ns_or_principals {
        r.error(
            at.key(if src.service_accounts.is_empty() {
                "notServiceAccounts"
            } else {
                "serviceAccounts"
            }),
            "Cannot set serviceAccounts with namespaces or principals in the same source",
        )
        .hint("put `serviceAccounts` in a separate `from` entry (entries are OR'ed)");
    }
    for (field, list) in src.fields() {
        let p = at.key(field);
        if let Some(k) = list.iter().position(String::is_empty) {
            r.error(p.index(k), format!("empty value not allowed in `{field}`"))
                .hint("remove the empty entry");
            continue;
        }
        if custom
            && matches!(
                field,
                "principals"
                    | "notPrincipals"
                    | "requestPrincipals"
                    | "notRequestPrincipals"
                    | "namespaces"
                    | "notNamespaces"
                    | "serviceAccounts"
                    | "notServiceAccounts"
            )
            && !list.is_empty()
        {
            r.error(
                p.clone(),
                format!("from.{field} is currently not supported with CUSTOM action"),
            )
            .hint("match peers in an ALLOW or DENY policy instead");
        }
        match field {
            "ipBlocks" | "notIpBlocks" | "remoteIpBlocks" | "notRemoteIpBlocks" => {
                for (k, v) in list.iter().enumerate() {
                    if let Err(m) = check_ip(v) {
                        r.error(p.index(k), m)
                            .hint("write an IP address or CIDR range, e.g. 10.0.0.0/8; wildcards are not allowed");
                    }
                }
            }
            "serviceAccounts" | "notServiceAccounts" => {
                if let Err((m, h)) = check_service_accounts(list) {
                    r.error(p, m).hint(h);
                }
            }
            _ => wildcard_warnings(list, &p, r),
        }
    }
}

fn operation(op: &Operation, at: &FieldPath, r: &mut Report) {
    if op.is_empty() {
        r.error(at.clone(), "`to.operation` must not be empty")
            .hint("set at least one field, e.g. `methods` or `paths`");
        return;
    }
    for (field, list) in op.fields() {
        let p = at.key(field);
        if let Some(k) = list.iter().position(String::is_empty) {
            r.error(p.index(k), format!("empty value not allowed in `{field}`"))
                .hint("remove the empty entry");
            continue;
        }
        match field {
            "ports" | "notPorts" => {
                for (k, v) in list.iter().enumerate() {
                    if let Err(m) = check_port(v) {
                        r.error(p.index(k), m)
                            .hint("list ports as quoted numbers, e.g. [\"8080\"]");
                    }
                }
            }
            "paths" | "notPaths" => {
                for (k, v) in list.iter().enumerate() {
                    if let Err(m) = check_path_template(v) {
                        r.error(p.index(k), m).hint(
                            "`{*}` matches one segment and `{**}` any number, as the last operator",
                        );
                    } else if !v.contains('{') && misplaced_wildcard(v) {
                        wildcard_warnings(std::slice::from_ref(v), &p, r);
                    }
                }
            }
            _ => wildcard_warnings(list, &p, r),
        }
    }
}
