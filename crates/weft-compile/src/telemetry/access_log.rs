//! Access logs: Telemetry `accessLogging` with its providers, or, when no Telemetry (and
//! no `defaultProviders.accessLogging`) configures logging, the mesh config's
//! `accessLogFile` / `accessLogFormat` / `accessLogEncoding` (Istio's fallback in
//! `pilot/pkg/networking/core/accesslog.go`).
//!
//! Per provider, entries apply root → namespace → workload: `disabled` left unset inherits
//! the value before it (so a parent's `disabled: true` needs an explicit `false`), and the
//! last filter set for the provider is the one used. Client-side and server-side traffic
//! are resolved separately (`match.mode`); a provider logging the same way on both sides
//! becomes one log with mode `client_and_server`.

use std::collections::BTreeMap;

use weft_api::{AccessLog, Expr, LogFormat, LogSink, ReporterMode};
use weft_config::kinds::istio::{
    AccessLogEncoding, MeshConfig, ProviderKind, Telemetry, WorkloadMode,
};
use weft_config::log_format::{self, ISTIO_JSON_FORMAT, ISTIO_TEXT_FORMAT};

use super::{convert, provider_names};

/// The built-in provider: a file access log to stdout in Istio's text format.
const ENVOY: &str = "envoy";

pub(super) fn compile(
    levels: &[&Telemetry],
    mesh: &MeshConfig,
    service_name: &str,
) -> Vec<AccessLog> {
    let defaults: Vec<String> = mesh
        .default_providers
        .as_ref()
        .map(|d| d.access_logging.clone())
        .unwrap_or_default();
    let any_entry = levels.iter().any(|t| !t.access_logging.is_empty());
    if !any_entry && defaults.is_empty() {
        return legacy(mesh).into_iter().collect();
    }
    let client = resolve(levels, &defaults, true);
    let server = resolve(levels, &defaults, false);
    let mut out = Vec::new();
    let names: Vec<&String> = {
        let mut n: Vec<&String> = client.keys().chain(server.keys()).collect();
        n.sort();
        n.dedup();
        n
    };
    for name in names {
        let sides = [
            (client.get(name), ReporterMode::Client),
            (server.get(name), ReporterMode::Server),
        ];
        let enabled: Vec<(Option<&String>, ReporterMode)> = sides
            .iter()
            .filter_map(|(s, m)| s.filter(|s| !s.disabled).map(|s| (s.filter.as_ref(), *m)))
            .collect();
        let modes: Vec<(Option<&String>, ReporterMode)> = match enabled.as_slice() {
            [(a, _), (b, _)] if a == b => vec![(*a, ReporterMode::ClientAndServer)],
            other => other.to_vec(),
        };
        for (filter, mode) in modes {
            if let Some(mut log) = provider(name, mesh, service_name) {
                log.filter = filter.and_then(|f| convert::parse_expr(f));
                // A filter that does not parse (validation reported it) logs nothing
                // rather than everything.
                if filter.is_some() && log.filter.is_none() {
                    log.filter = Some(Expr::Bool(false));
                }
                log.mode = mode;
                out.push(log);
            }
        }
    }
    out
}

/// One provider's state on one side.
#[derive(Debug, Clone, Default, PartialEq)]
struct Spec {
    disabled: bool,
    filter: Option<String>,
}

fn applies(m: Option<WorkloadMode>, client: bool) -> bool {
    match m.unwrap_or_default() {
        WorkloadMode::ClientAndServer => true,
        WorkloadMode::Client => client,
        WorkloadMode::Server => !client,
    }
}

fn resolve(levels: &[&Telemetry], defaults: &[String], client: bool) -> BTreeMap<String, Spec> {
    let mut out: BTreeMap<String, Spec> = BTreeMap::new();
    for name in defaults {
        out.insert(name.clone(), Spec::default());
    }
    let mut inherited = defaults.to_vec();
    for entry in levels.iter().flat_map(|t| &t.access_logging) {
        let names = provider_names(&entry.providers, &inherited);
        inherited = names.clone();
        if !applies(entry.match_.as_ref().map(|m| m.mode), client) {
            continue;
        }
        for name in names {
            let spec = out.entry(name).or_default();
            if let Some(d) = entry.disabled {
                spec.disabled = d;
            }
            if let Some(f) = &entry.filter {
                spec.filter = Some(f.expression.clone());
            }
        }
    }
    out
}

/// The sink and format of a provider; `None` for providers that are not access logs
/// weft writes (prometheus, stackdriver, HTTP/TCP gRPC ALS).
fn provider(name: &str, mesh: &MeshConfig, service_name: &str) -> Option<AccessLog> {
    let log = |sink, format| AccessLog {
        provider: name.to_string(),
        sink,
        format,
        filter: None,
        mode: ReporterMode::ClientAndServer,
    };
    if name == ENVOY && mesh.extension_provider(name).is_none() {
        return Some(log(LogSink::Stdout, istio_text()));
    }
    let p = mesh.extension_provider(name)?;
    let (_, kind, body) = p.bodies().into_iter().next()?;
    let format = body
        .get("logFormat")
        .map_or_else(istio_text, provider_format);
    match kind {
        ProviderKind::FileAccessLog => {
            let path = body
                .get("path")
                .and_then(|p| p.as_str())
                .unwrap_or("/dev/stdout");
            Some(log(file_sink(path), format))
        }
        ProviderKind::OtelAls => {
            let service = body
                .get("service")
                .and_then(|s| s.as_str())
                .filter(|s| !s.is_empty())?;
            let port = body.get("port").and_then(|p| p.as_u64()).unwrap_or(4317);
            Some(log(
                LogSink::Otlp {
                    endpoint: format!("{service}:{port}"),
                    service_name: service_name.to_string(),
                },
                format,
            ))
        }
        _ => None,
    }
}

/// A provider's `logFormat: {text | labels}`; Istio's text format when neither is set.
fn provider_format(f: &serde_json::Value) -> LogFormat {
    if let Some(labels) = f.get("labels").and_then(|l| l.as_object()) {
        if let Ok(fields) = log_format::parse_labels(labels) {
            return convert::json(&fields);
        }
        return istio_text();
    }
    let text = f
        .get("text")
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty());
    text.and_then(|t| convert::text_parts(&with_newline(t)))
        .map_or_else(istio_text, LogFormat::Text)
}

fn file_sink(path: &str) -> LogSink {
    match path {
        "/dev/stdout" => LogSink::Stdout,
        "/dev/stderr" => LogSink::Stderr,
        _ => LogSink::File {
            path: path.to_string(),
        },
    }
}

/// Istio ends a text format with a newline when the user did not.
fn with_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

fn istio_text() -> LogFormat {
    LogFormat::Text(convert::text_parts(ISTIO_TEXT_FORMAT).unwrap_or_default())
}

fn istio_json() -> LogFormat {
    LogFormat::Json(
        ISTIO_JSON_FORMAT
            .iter()
            .map(|(k, f)| (k.to_string(), convert::text_parts(f).unwrap_or_default()))
            .collect(),
    )
}

/// `meshConfig.accessLogFile` (empty: off) with its format and encoding.
fn legacy(mesh: &MeshConfig) -> Option<AccessLog> {
    let path = mesh.access_log_file();
    if path.is_empty() {
        return None;
    }
    let custom = mesh.access_log_format.as_deref().filter(|f| !f.is_empty());
    let format = match (mesh.access_log_encoding(), custom) {
        (AccessLogEncoding::Text, None) => istio_text(),
        (AccessLogEncoding::Text, Some(f)) => convert::text_parts(&with_newline(f))
            .map(LogFormat::Text)
            .unwrap_or_else(istio_text),
        (AccessLogEncoding::Json, None) => istio_json(),
        (AccessLogEncoding::Json, Some(f)) => log_format::parse_json(f)
            .map(|fields| convert::json(&fields))
            .unwrap_or_else(|_| istio_json()),
    };
    Some(AccessLog {
        provider: "meshConfig.accessLogFile".to_string(),
        sink: file_sink(path),
        format,
        filter: None,
        mode: ReporterMode::ClientAndServer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::LogPart;

    #[test]
    fn istio_formats_convert_whole() {
        let LogFormat::Text(parts) = istio_text() else {
            panic!()
        };
        assert_eq!(
            parts
                .iter()
                .filter(|p| matches!(p, LogPart::Op { .. }))
                .count(),
            24
        );
        let LogFormat::Json(fields) = istio_json() else {
            panic!()
        };
        assert_eq!(fields.len(), ISTIO_JSON_FORMAT.len());
        assert!(fields.iter().all(|(_, p)| p.len() == 1));
    }
}
