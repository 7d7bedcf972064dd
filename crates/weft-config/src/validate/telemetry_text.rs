//! Checks of the small languages inside telemetry strings: CEL expressions and Envoy access
//! log formats. An error points at the offending character inside the YAML string (not
//! just at the field), so `%RESPONSE_COD%` in a long format is found at a glance.

use std::sync::Arc;

use serde_json::Value as Json;

use super::Report;
use crate::log_format::{self, FormatError, Operator, Part};
use crate::path::FieldPath;
use crate::source::{Pos, SourceFile, Span};
use crate::telemetry_expr::{self, ExprError};

/// A CEL expression at `path` (`what` names the field in the message). With
/// `unknown_is_warning` (tag values), an unknown attribute is a warning: Istio accepts it
/// and the tag prints `unknown`.
pub fn expression(
    r: &mut Report,
    path: FieldPath,
    text: &str,
    what: &str,
    unknown_is_warning: bool,
) {
    if let Err(ExprError {
        offset,
        len,
        message,
        hint,
        unknown_attribute,
    }) = telemetry_expr::parse(text)
    {
        let span = inner_span(r, &path, text, offset, len);
        let d = if unknown_attribute && unknown_is_warning {
            r.warning(
                path,
                format!("{what} `{text}`: {message}; the tag will be `unknown`"),
            )
        } else {
            r.error(path, format!("invalid {what} `{text}`: {message}"))
        };
        d.span = span.or(d.span.take());
        d.hint = hint;
    }
}

/// An access-log format string at `path`.
pub fn format(r: &mut Report, path: FieldPath, text: &str, what: &str) {
    match log_format::parse(text) {
        Ok(parts) => unsupported(r, &path, text, &parts, 0),
        Err(e) => format_error(r, path, text, what, e),
    }
}

/// `accessLogFormat` under JSON encoding: a JSON object of formats, inside a YAML string.
pub fn json_format(r: &mut Report, path: FieldPath, text: &str, what: &str) {
    if let Err(e) = log_format::parse_json(text) {
        format_error(r, path, text, what, e);
    }
}

/// A provider's `logFormat: {text | labels}` (the body is free-form JSON).
pub fn provider_log_format(r: &mut Report, path: FieldPath, log_format: &Json) {
    let Some(map) = log_format.as_object() else {
        r.error(path, "logFormat must be an object with `text` or `labels`")
            .hint("e.g. `logFormat: {text: \"%REQ(:PATH)% %RESPONSE_CODE%\\n\"}`");
        return;
    };
    for key in map.keys() {
        if key != "text" && key != "labels" {
            r.error(
                path.key(key.clone()),
                format!("unknown field `{key}` in logFormat"),
            )
            .hint("logFormat has `text` or `labels`");
        }
    }
    match (map.get("text"), map.get("labels")) {
        (Some(_), Some(_)) => {
            r.error(path, "logFormat sets both `text` and `labels`")
                .hint("keep one: `text` for a line, `labels` for JSON");
        }
        (Some(Json::String(text)), None) => {
            format(r, path.key("text"), text, "logFormat.text");
        }
        (Some(_), None) => {
            r.error(path.key("text"), "logFormat.text must be a string")
                .hint("quote the format");
        }
        (None, Some(Json::Object(labels))) => {
            for (key, value) in labels {
                let at = path.key("labels").key(key.clone());
                match value {
                    Json::String(text) => format(r, at, text, &format!("log field `{key}`")),
                    Json::Object(_) | Json::Array(_) => {
                        r.error(
                            at,
                            format!(
                                "log field `{key}` is nested; weft supports flat JSON log formats"
                            ),
                        )
                        .hint("give it a format string, e.g. \"%REQ(:PATH)%\"");
                    }
                    _ => {}
                }
            }
        }
        (None, Some(_)) => {
            r.error(
                path.key("labels"),
                "logFormat.labels must be a map of field names to formats",
            )
            .hint("e.g. `labels: {code: \"%RESPONSE_CODE%\"}`");
        }
        (None, None) => {}
    }
}

fn format_error(r: &mut Report, path: FieldPath, text: &str, what: &str, e: FormatError) {
    let span = inner_span(r, &path, text, e.offset, e.len);
    let d = r.error(path, format!("invalid {what}: {}", e.message));
    d.span = span.or(d.span.take());
    d.hint = e.hint;
}

/// Operators weft accepts but does not produce: a warning each, at the operator.
fn unsupported(r: &mut Report, path: &FieldPath, text: &str, parts: &[Part], base: usize) {
    for part in parts {
        if let Part::Op {
            op: Operator::Unsupported(name),
            offset,
            ..
        } = part
        {
            let span = inner_span(r, path, text, base + offset, name.len() + 2);
            let d = r.warning(
                path.clone(),
                format!("command operator %{name}% is not supported by weft; it prints `-`"),
            );
            d.span = span.or(d.span.take());
            d.hint = Some("remove it: weft does not record this value".to_string());
        }
    }
}

/// The position of `value[offset..offset + len]` in the source, where `value` is the
/// decoded text of the YAML scalar at `path`. `None` when the source cannot be aligned
/// with the value (the field-level span is used then).
fn inner_span(
    r: &Report,
    path: &FieldPath,
    value: &str,
    offset: usize,
    len: usize,
) -> Option<Span> {
    let node_span = r.object().value_span_of(path);
    let file = node_span.file.clone();
    let start = source_offset(&file.text, node_span.start.offset, value, offset)?;
    let end = source_offset(
        &file.text,
        node_span.start.offset,
        value,
        (offset + len).min(value.len()),
    )
    .unwrap_or(start)
    .max(start);
    Some(Span {
        start: pos_at(&file, start),
        end: pos_at(&file, end),
        file,
    })
}

/// Walks the scalar's source from `start` alongside its decoded value and returns the
/// source offset of value byte `target`. Handles plain, single-quoted (`''`),
/// double-quoted (`\` escapes) and block (`|`, `>`) scalars; line folding and indentation
/// are skipped over as source text with no value counterpart.
fn source_offset(src: &str, start: usize, value: &str, target: usize) -> Option<usize> {
    let s = src.get(start..)?;
    let (mut pos, style) = match s.as_bytes().first() {
        Some(b'"') => (1, b'"'),
        Some(b'\'') => (1, b'\''),
        Some(b'|' | b'>') => (s.find('\n')? + 1, b'|'),
        _ => (0, b' '),
    };
    let mut vi = 0;
    let mut values = value.char_indices().peekable();
    while let Some(&(i, vc)) = values.peek() {
        vi = i;
        if vi >= target {
            // Indentation before the character is not part of it.
            while let Some(c) = s[pos..]
                .chars()
                .next()
                .filter(|c| c.is_whitespace() && *c != vc)
            {
                pos += c.len_utf8();
            }
            return Some(start + pos);
        }
        let sc = s[pos..].chars().next()?;
        if style == b'"' && sc == '\\' {
            let next = s[pos + 1..].chars().next()?;
            if next == '\n' {
                pos += 2;
                continue;
            }
            pos += match next {
                'x' => 4,
                'u' => 6,
                'U' => 10,
                c => 1 + c.len_utf8(),
            };
            values.next();
        } else if style == b'\'' && s[pos..].starts_with("''") && vc == '\'' {
            pos += 2;
            values.next();
        } else if sc == vc {
            pos += sc.len_utf8();
            values.next();
        } else if sc.is_whitespace() {
            // Folding and indentation.
            pos += sc.len_utf8();
        } else {
            return None;
        }
    }
    (target >= value.len() || vi >= target).then_some(start + pos)
}

fn pos_at(file: &Arc<SourceFile>, offset: usize) -> Pos {
    let before = &file.text[..offset.min(file.text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        offset,
        line,
        col: before[line_start..].chars().count() + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::source_offset;
    use crate::Bundle;
    use crate::diag::Severity;

    /// `(severity, message, line:col, hint)` of every validation finding.
    fn findings(yaml: &str) -> Vec<(Severity, String, String, String)> {
        let b = Bundle::load_str("t.yaml", yaml);
        assert!(b.diagnostics.is_empty(), "{:?}", b.diagnostics);
        b.objects
            .iter()
            .flat_map(crate::validate::validate)
            .map(|d| {
                let at = d
                    .span
                    .as_ref()
                    .map(|s| format!("{}:{}", s.start.line, s.start.col))
                    .unwrap_or_default();
                (d.severity, d.message, at, d.hint.unwrap_or_default())
            })
            .collect()
    }

    const OPERATOR: &str = "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: io, namespace: istio-system}\nspec:\n  meshConfig:\n";

    #[test]
    fn unknown_operator_is_reported_at_its_position() {
        let f = findings(&format!(
            "{OPERATOR}    accessLogFile: /dev/stdout\n    accessLogFormat: \"[%START_TIME%] %RESPONSE_COD% %BYTES_SENT%\\n\"\n"
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        let (sev, msg, at, hint) = &f[0];
        assert_eq!(*sev, Severity::Error);
        assert_eq!(
            msg,
            "invalid accessLogFormat: unknown command operator `%RESPONSE_COD%`"
        );
        // Line 7, the `%` of `%RESPONSE_COD%` (the string starts at column 22).
        assert_eq!(at, "7:38");
        assert_eq!(hint, "did you mean %RESPONSE_CODE%?");

        // In a block scalar, on its second line.
        let f = findings(&format!(
            "{OPERATOR}    accessLogFormat: |\n      [%START_TIME%]\n      %REQ(:METHOD)% %UPSTREAM_HOTS%\n"
        ));
        assert_eq!(f[0].2, "8:22", "{f:?}");
        assert_eq!(f[0].3, "did you mean %UPSTREAM_HOST%?");
    }

    #[test]
    fn provider_formats_and_json_encoding() {
        let f = findings(&format!(
            "{OPERATOR}    accessLogEncoding: JSON\n    accessLogFormat: '{{\"code\": \"%RESPONSE_CODE%\", \"p\": \"%PATH%\"}}'\n    extensionProviders:\n    - name: file\n      envoyFileAccessLog:\n        path: /tmp/a.log\n        logFormat:\n          labels:\n            code: \"%RESPONSE_CODE%\"\n            host: \"%UPSTREAM_HOST%:%DOWNSTREAM_LOCAL_PROT%\"\n    - name: otel\n      envoyOtelAls:\n        service: otel.observability.svc.cluster.local\n        port: 4317\n        logname: x\n        logFormat: {{text: \"%DYNAMIC_METADATA(istio:x)% %PROTOCOL%\"}}\n"
        ));
        let msgs: Vec<String> = f
            .iter()
            .map(|(s, m, at, h)| format!("{s} {m} @{at} ({h})"))
            .collect();
        assert_eq!(
            msgs,
            [
                "error invalid accessLogFormat: unknown command operator `%PATH%` @7:57 (command operators are Envoy's, in upper case, e.g. %RESPONSE_CODE% or %REQ(:PATH)%)",
                "error invalid log field `host`: unknown command operator `%DOWNSTREAM_LOCAL_PROT%` @15:36 (did you mean %DOWNSTREAM_LOCAL_PORT%?)",
                "error unknown field `logname` in envoyOtelAls @20:9 (did you mean `logName`?)",
                "warning command operator %DYNAMIC_METADATA% is not supported by weft; it prints `-` @21:28 (remove it: weft does not record this value)",
            ],
            "{msgs:#?}"
        );
    }

    const TEL: &str = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\nspec:\n";

    #[test]
    fn telemetry_expressions_are_parsed() {
        let f = findings(&format!(
            "{TEL}  accessLogging:\n  - providers: [{{name: envoy}}]\n    filter:\n      expression: \"response.code >= 400 && request.hots == 'a'\"\n  metrics:\n  - overrides:\n    - tagOverrides:\n        request_host: {{value: request.host}}\n        bad: {{value: \"string(destination.prot)\"}}\n"
        ));
        let msgs: Vec<String> = f
            .iter()
            .map(|(s, m, at, h)| format!("{s} {m} @{at} ({h})"))
            .collect();
        assert_eq!(
            msgs,
            [
                "warning tagOverrides value for `bad` `string(destination.prot)`: unknown attribute `destination.prot`; the tag will be `unknown` @13:30 (did you mean `destination.port`?)",
                "error invalid access log filter `response.code >= 400 && request.hots == 'a'`: unknown attribute `request.hots` @8:44 (did you mean `request.host`?)",
            ],
            "{msgs:#?}"
        );
    }

    #[test]
    fn aligns_values_with_their_source() {
        // plain
        assert_eq!(source_offset("k: a %X% b", 3, "a %X% b", 2), Some(5));
        // double-quoted with escapes before the target
        let src = r#"k: "\"q\" %X%""#;
        assert_eq!(source_offset(src, 3, "\"q\" %X%", 4), Some(10));
        // single-quoted with '' escape
        let src = "k: 'it''s %X%'";
        assert_eq!(source_offset(src, 3, "it's %X%", 5), Some(10));
        // block literal: the header line and indentation are skipped
        let src = "k: |\n  line one\n  %X%\n";
        assert_eq!(source_offset(src, 3, "line one\n%X%\n", 9), Some(18));
        // folded double-quoted line break becomes a space
        let src = "k: \"a\n  %X%\"";
        assert_eq!(source_offset(src, 3, "a %X%", 2), Some(8));
        // target at the end
        assert_eq!(source_offset("k: ab", 3, "ab", 2), Some(5));
        // mismatch gives up
        assert_eq!(source_offset("k: zz", 3, "ab", 1), None);
    }
}
