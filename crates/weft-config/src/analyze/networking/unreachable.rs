//! The route-shadowing part of `schemaValidation` for VirtualServices: rules that can never
//! match because earlier rules take all their traffic (IST0130 VirtualServiceUnreachableRule)
//! and match blocks that repeat or are covered by an earlier one (IST0131
//! VirtualServiceIneffectiveMatch). Rules are evaluated in order and the first match wins.

use std::collections::{BTreeMap, HashMap};

use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::common::StringMatch;
use crate::kinds::istio::{HTTPMatchRequest, HTTPRoute, VirtualService};
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

pub struct UnreachableRules;

impl Analyzer for UnreachableRules {
    fn name(&self) -> &'static str {
        "schemaValidation"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for obj in ctx.of(Kind::VirtualService) {
            let Body::VirtualService(vs) = &obj.body else {
                continue;
            };
            analyze_vs(obj, vs, out);
        }
    }
}

/// How a rule is named in messages: its `name`, else its position.
fn rule_name(kind: &str, i: usize, name: &str) -> String {
    if name.is_empty() {
        format!("{kind}[{i}]")
    } else {
        format!("{kind}[{i}] \"{name}\"")
    }
}

fn match_name(j: usize, name: &str) -> String {
    if name.is_empty() {
        format!("match[{j}]")
    } else {
        format!("match[{j}] \"{name}\"")
    }
}

/// One rule's match blocks, as comparable keys (the match `name` does not affect routing).
struct Rule {
    name: String,
    keys: Vec<(String, String)>,
}

fn analyze_vs(obj: &Object, vs: &VirtualService, out: &mut Vec<Diagnostic>) {
    let spec = FieldPath::root().key("spec");
    let http: Vec<Rule> = vs
        .http
        .iter()
        .map(|h| Rule {
            name: h.name.clone(),
            keys: h
                .r#match
                .iter()
                .map(|m| (m.name.clone(), http_match_key(m)))
                .collect(),
        })
        .collect();
    check_rules(obj, &spec.key("http"), "http", &http, out);
    check_overlapping_prefixes(obj, &spec.key("http"), &vs.http, out);
    let tcp: Vec<Rule> = vs
        .tcp
        .iter()
        .map(|t| Rule {
            name: String::new(),
            keys: t
                .r#match
                .iter()
                .map(|m| (String::new(), format!("{m:?}")))
                .collect(),
        })
        .collect();
    check_rules(obj, &spec.key("tcp"), "tcp", &tcp, out);
    let tls: Vec<Rule> = vs
        .tls
        .iter()
        .map(|t| Rule {
            name: String::new(),
            keys: t
                .r#match
                .iter()
                .map(|m| (String::new(), format!("{m:?}")))
                .collect(),
        })
        .collect();
    check_rules(obj, &spec.key("tls"), "tls", &tls, out);
}

/// A canonical form of an HTTP match block without its name (unset and default values
/// compare equal).
fn http_match_key(m: &HTTPMatchRequest) -> String {
    let mut c = m.clone();
    c.name.clear();
    if c.ignore_uri_case == Some(false) {
        c.ignore_uri_case = None;
    }
    if c.port == Some(0) {
        c.port = None;
    }
    format!("{c:?}")
}

fn unreachable(obj: &Object, path: FieldPath, rule: &str, why: String, hint: &str) -> Diagnostic {
    finding(
        obj,
        "IST0130",
        Severity::Warning,
        path,
        format!("{rule} is unreachable: {why}"),
    )
    .with_hint(hint)
}

fn check_rules(
    obj: &Object,
    base: &FieldPath,
    kind: &str,
    rules: &[Rule],
    out: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut catch_all: Option<usize> = None;
    for (i, rule) in rules.iter().enumerate() {
        let name = rule_name(kind, i, &rule.name);
        let path = base.index(i);
        if rule.keys.is_empty() {
            if let Some(prev) = catch_all {
                out.push(unreachable(
                    obj,
                    path,
                    &name,
                    format!("{} before it has no match conditions and already takes all traffic", rule_name(kind, prev, &rules[prev].name)),
                    "only the last rule may omit `match`; add match conditions to the earlier rule or remove one of them",
                ));
            }
            catch_all = Some(i);
            continue;
        }
        if let Some(prev) = catch_all {
            out.push(unreachable(
                obj,
                path,
                &name,
                format!(
                    "{} before it has no match conditions and takes all traffic",
                    rule_name(kind, prev, &rules[prev].name)
                ),
                "move the rule without `match` to the end of the list",
            ));
            continue;
        }
        let mut duplicates = 0;
        for (j, (mname, key)) in rule.keys.iter().enumerate() {
            match seen.get(key.as_str()) {
                Some(&prev) => {
                    duplicates += 1;
                    out.push(
                        finding(obj, "IST0131", Severity::Info, path.key("match").index(j), format!(
                            "{} of {name} never applies: {} has the same conditions and is evaluated first",
                            match_name(j, mname),
                            rule_name(kind, prev, &rules[prev].name)
                        ))
                        .with_hint("remove the duplicate match block, or make its conditions more specific than the earlier rule's"),
                    );
                }
                None => {
                    seen.insert(key, i);
                }
            }
        }
        if duplicates == rule.keys.len() {
            out.push(unreachable(
                obj,
                path,
                &name,
                "every match block repeats one of an earlier rule".to_string(),
                "remove the rule or change its match conditions",
            ));
        }
    }
}

/// The comparable form of a URI-prefix match for the overlap check: port, method (GET when
/// unset), authority, headers, query parameters and absent headers as `exact:`/`prefix:`
/// strings.
struct PrefixMatch {
    rule: usize,
    index: usize,
    name: String,
    prefix: String,
    port: u32,
    method: String,
    authority: String,
    headers: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    without: BTreeMap<String, String>,
}

fn sm_key(sm: Option<&StringMatch>) -> String {
    match sm {
        Some(StringMatch { exact: Some(e), .. }) if !e.is_empty() => format!("exact:{e}"),
        Some(StringMatch {
            prefix: Some(p), ..
        }) if !p.is_empty() => format!("prefix:{p}"),
        _ => String::new(),
    }
}

fn map_keys(m: &BTreeMap<String, StringMatch>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| (k.clone(), sm_key(Some(v))))
        .collect()
}

/// Whether every value of `a` equals or starts with the value of `b` for the same key.
fn maps_covered(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, va)| {
            b.get(k)
                .is_some_and(|vb| va == vb || va.starts_with(vb.as_str()))
        })
}

/// Whether the earlier prefix match `a` takes all requests of the later `b`.
fn covers(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && (a.method == b.method || a.method.starts_with(&b.method))
        && (a.authority == b.authority || a.authority.starts_with(&b.authority))
        && maps_covered(&a.headers, &b.headers)
        && maps_covered(&a.query, &b.query)
        && maps_covered(&a.without, &b.without)
}

/// IST0131 for URI-prefix matches covered by an earlier, shorter prefix with the same other
/// conditions (`/api` before `/api/v1`).
fn check_overlapping_prefixes(
    obj: &Object,
    base: &FieldPath,
    routes: &[HTTPRoute],
    out: &mut Vec<Diagnostic>,
) {
    let mut list: Vec<PrefixMatch> = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut catch_all = false;
    for (i, r) in routes.iter().enumerate() {
        if r.r#match.is_empty() {
            catch_all = true;
            continue;
        }
        if catch_all {
            continue;
        }
        for (j, m) in r.r#match.iter().enumerate() {
            if seen.insert(http_match_key(m), ()).is_some() {
                continue;
            }
            let Some(prefix) = m
                .uri
                .as_ref()
                .and_then(|u| u.prefix.as_ref())
                .filter(|p| !p.is_empty())
            else {
                continue;
            };
            let method = sm_key(m.method.as_ref());
            list.push(PrefixMatch {
                rule: i,
                index: j,
                name: m.name.clone(),
                prefix: prefix.clone(),
                port: m.port.unwrap_or(0),
                method: if method.is_empty() {
                    "exact:GET".to_string()
                } else {
                    method
                },
                authority: sm_key(m.authority.as_ref()),
                headers: map_keys(&m.headers),
                query: map_keys(&m.query_params),
                without: map_keys(&m.without_headers),
            });
        }
    }
    // Quadratic in the prefix matches of one VirtualService only.
    for (x, a) in list.iter().enumerate() {
        for b in &list[x + 1..] {
            if a.prefix == b.prefix || !covers(a, b) {
                continue;
            }
            let rule_b = rule_name("http", b.rule, &routes[b.rule].name);
            let rule_a = rule_name("http", a.rule, &routes[a.rule].name);
            out.push(
                finding(obj, "IST0131", Severity::Info, base.index(b.rule).key("match").index(b.index), format!(
                    "{} of {rule_b} (prefix `{}`) never applies: {} of {rule_a} (prefix `{}`) matches the same requests first",
                    match_name(b.index, &b.name),
                    b.prefix,
                    match_name(a.index, &a.name),
                    a.prefix
                ))
                .with_hint(format!(
                    "put the more specific prefix `{}` before `{}`, or remove it",
                    b.prefix, a.prefix
                )),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::{Context, run_filtered};

    fn codes(yaml: &str) -> Vec<&'static str> {
        let bundle = crate::Bundle::load_str("t.yaml", yaml);
        let ctx = Context::new(&bundle.objects);
        let mut c: Vec<&str> = run_filtered(&ctx, |n| n == "schemaValidation")
            .into_iter()
            .filter(|d| d.code == "IST0130" || d.code == "IST0131")
            .map(|d| d.code)
            .collect();
        c.sort();
        c
    }

    fn vs(http: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs, namespace: default}}\nspec:\n  hosts: [web]\n  http:\n{http}"
        )
    }

    #[test]
    fn duplicate_and_shadowed_rules_are_reported() {
        let yaml = vs(
            "  - match: [{uri: {prefix: /api}}]\n    route: [{destination: {host: a}}]\n  - match: [{name: dup, uri: {prefix: /api}}]\n    route: [{destination: {host: b}}]\n  - match: [{uri: {prefix: /api/v1}}]\n    route: [{destination: {host: c}}]\n",
        );
        // Rule 1 repeats rule 0 (IST0131 + IST0130); rule 2's prefix is covered (IST0131).
        assert_eq!(codes(&yaml), ["IST0130", "IST0131", "IST0131"]);
    }

    #[test]
    fn catch_all_before_rules_makes_them_unreachable() {
        let yaml =
            vs("  - route: [{destination: {host: a}}]\n  - route: [{destination: {host: b}}]\n");
        assert_eq!(codes(&yaml), ["IST0130"]);
    }

    #[test]
    fn distinct_matches_in_specific_first_order_are_silent() {
        let yaml = vs(
            "  - match: [{uri: {prefix: /api/v1}}]\n    route: [{destination: {host: a}}]\n  - match: [{uri: {prefix: /api}}, {uri: {prefix: /api}, method: {exact: POST}}]\n    route: [{destination: {host: b}}]\n  - route: [{destination: {host: c}}]\n",
        );
        assert_eq!(codes(&yaml), Vec::<&str>::new());
    }
}
