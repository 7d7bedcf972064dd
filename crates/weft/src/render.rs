//! Rendering diagnostics for people (rustc style: code, message, the source line with a
//! caret, a hint) and for machines (JSON, YAML).

use std::collections::HashMap;
use std::time::Duration;

use codespan_reporting::diagnostic::{Diagnostic as Report, Label, Severity as Level};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, Config};
use serde_json::{Value, json};
use weft_config::{Diagnostic, Severity};

pub fn human(diags: &[Diagnostic], color: bool) -> String {
    let mut files = SimpleFiles::new();
    let mut ids: HashMap<*const weft_config::source::SourceFile, usize> = HashMap::new();
    let mut buf = if color {
        term::termcolor::Buffer::ansi()
    } else {
        term::termcolor::Buffer::no_color()
    };
    let config = Config::default();
    for d in diags {
        let level = match d.severity {
            Severity::Error => Level::Error,
            Severity::Warning => Level::Warning,
            Severity::Info => Level::Note,
        };
        let mut report = Report::new(level)
            .with_code(d.code)
            .with_message(&d.message);
        if let Some(span) = &d.span {
            let key = std::sync::Arc::as_ptr(&span.file);
            let id = *ids
                .entry(key)
                .or_insert_with(|| files.add(span.file.name.clone(), span.file.text.clone()));
            // Underline within the first line only: a map or list value spans many lines,
            // and the line it starts on is the one that locates it.
            let text = &span.file.text;
            let start = span.start.offset.min(text.len());
            let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            let end = span.end.offset.clamp(start, line_end);
            let label = Label::primary(id, start..end);
            report = report.with_labels(vec![label]);
        }
        let mut notes = Vec::new();
        if let Some(r) = &d.resource {
            notes.push(format!("in {r}"));
        }
        if let Some(h) = &d.hint {
            notes.push(format!("help: {h}"));
        }
        report = report.with_notes(notes);
        // Rendering only fails on a span outside its file, which spans from the loader never are.
        let _ = term::emit_to_write_style(&mut buf, &config, &files, &report);
    }
    String::from_utf8_lossy(buf.as_slice()).into_owned()
}

pub fn summary(diags: &[Diagnostic], objects: usize, files: usize, elapsed: Duration) -> String {
    let count = |s| diags.iter().filter(|d| d.severity == s).count();
    let (e, w, i) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let head = if e + w + i == 0 {
        "✔ no problems found".to_string()
    } else {
        format!(
            "{}, {}, {}",
            plural(e, "error"),
            plural(w, "warning"),
            plural(i, "info")
        )
    };
    format!(
        "{head} in {} from {} (analyzed in {} ms)\n",
        plural(objects, "object"),
        plural(files, "file"),
        elapsed.as_millis()
    )
}

fn to_value(d: &Diagnostic) -> Value {
    json!({
        "code": d.code,
        "severity": d.severity,
        "message": d.message,
        "hint": d.hint,
        "resource": d.resource.as_ref().map(|r| json!({"kind": r.kind, "name": r.name, "namespace": r.namespace})),
        "field": d.field.as_ref().map(|f| f.to_string()),
        "file": d.span.as_ref().map(|s| s.file.name.clone()),
        "line": d.span.as_ref().map(|s| s.start.line),
        "column": d.span.as_ref().map(|s| s.start.col),
    })
}

pub fn json(diags: &[Diagnostic]) -> String {
    let v: Vec<Value> = diags.iter().map(to_value).collect();
    let mut s = serde_json::to_string_pretty(&v).expect("diagnostics serialize");
    s.push('\n');
    s
}

pub fn yaml(diags: &[Diagnostic]) -> String {
    let v = Value::Array(diags.iter().map(to_value).collect());
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    // Emitting into a String cannot fail.
    let _ = emitter.dump(&json_to_yaml(&v));
    out.push('\n');
    out
}

fn json_to_yaml(v: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(json_to_yaml).collect()),
        Value::Object(o) => Yaml::Hash(
            o.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (Yaml::String(k.clone()), json_to_yaml(v)))
                .collect(),
        ),
    }
}
