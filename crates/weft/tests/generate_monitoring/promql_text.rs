//! Reading PromQL and Prometheus' annotation templates just enough to check what the
//! generated files say: which metrics and labels a query uses, and what an annotation reads
//! once Prometheus has expanded it.

use std::collections::BTreeSet;

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Open,
    Close,
    Other,
}

/// Metric names and label names a PromQL expression uses. Strings, `[range]`s and the
/// contents of `{}` are not metric names; an identifier before `(` is a function, one before
/// `by`/`without` an aggregation; `by (...)` and friends list labels.
pub fn names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut outside = String::new();
    let mut labels = BTreeSet::new();
    let (mut in_str, mut escape, mut brace, mut bracket) = (false, false, false, false);
    let mut matcher = String::new();
    for c in expr.chars() {
        if in_str {
            match (escape, c) {
                (true, _) => escape = false,
                (false, '\\') => escape = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => brace = true,
            '}' => {
                brace = false;
                for m in matcher.split(',') {
                    let name: String = m
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(!name.is_empty(), "matcher without a label in {expr}");
                    labels.insert(name);
                }
                matcher.clear();
            }
            '[' => bracket = true,
            ']' => bracket = false,
            c if brace => matcher.push(c),
            _ if bracket => {}
            c => outside.push(c),
        }
    }
    let mut toks = Vec::new();
    let mut chars = outside.chars().peekable();
    while let Some(c) = chars.next() {
        let word = |first: char, chars: &mut std::iter::Peekable<std::str::Chars>| {
            let mut w = String::from(first);
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.' {
                    w.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            w
        };
        match c {
            '(' => toks.push(Tok::Open),
            ')' => toks.push(Tok::Close),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                toks.push(Tok::Ident(word(c, &mut chars)))
            }
            c if c.is_ascii_digit() => {
                word(c, &mut chars);
                toks.push(Tok::Other)
            }
            c if c.is_whitespace() => {}
            _ => toks.push(Tok::Other),
        }
    }
    let mut metrics = BTreeSet::new();
    let mut i = 0;
    while i < toks.len() {
        if let Tok::Ident(w) = &toks[i] {
            let next = toks.get(i + 1);
            match w.as_str() {
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" => {
                    if next == Some(&Tok::Open) {
                        i += 2;
                        while toks[i] != Tok::Close {
                            if let Tok::Ident(l) = &toks[i] {
                                labels.insert(l.clone());
                            }
                            i += 1;
                        }
                    }
                }
                "and" | "or" | "unless" | "bool" | "offset" => {}
                _ if next == Some(&Tok::Open) => {}
                _ if matches!(next, Some(Tok::Ident(n)) if n == "by" || n == "without") => {}
                _ => {
                    metrics.insert(w.clone());
                }
            }
        }
        i += 1;
    }
    (metrics, labels)
}

#[test]
fn name_extraction_sees_through_promql() {
    let (m, l) = names(
        r#"histogram_quantile(0.99, sum by (le, destination_service) (rate(a_bucket{reporter="x", b=~"{[$v]}"}[$__rate_interval]))) / on (job) group_left (b) x_total - time() > 30 * 86400 or absent(up{job="c"})"#,
    );
    assert_eq!(
        m,
        BTreeSet::from(["a_bucket".into(), "up".into(), "x_total".into()])
    );
    assert_eq!(
        l,
        BTreeSet::from([
            "b".into(),
            "destination_service".into(),
            "job".into(),
            "le".into(),
            "reporter".into(),
        ])
    );
}

/// Expands the Go templates the generated annotations use, as Prometheus would for an alert
/// with `labels` and a value whose formatted forms are `value` (filter name -> text).
pub fn expand(template: &str, labels: &[(&str, &str)], value: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").unwrap() + start;
        let inner = rest[start + 2..end].trim();
        let text = if let Some(label) = inner.strip_prefix("$labels.") {
            labels
                .iter()
                .find(|(k, _)| *k == label)
                .unwrap_or_else(|| panic!("no label {label} for {template}"))
                .1
        } else {
            let filter = inner
                .strip_prefix("$value | ")
                .unwrap_or_else(|| panic!("template {inner}"));
            value
                .iter()
                .find(|(k, _)| *k == filter)
                .unwrap_or_else(|| panic!("no value for filter {filter} in {template}"))
                .1
        };
        out.push_str(text);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}
