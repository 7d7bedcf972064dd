//! Tracing: the provider, sampling and tags of Telemetry `tracing` entries (root →
//! namespace → workload, each field overriding the one before; `customTags` replace
//! wholesale), over `meshConfig.defaultProviders.tracing`.
//!
//! Sampling precedence (`pilot/pkg/networking/core/tracing.go`): Telemetry
//! `randomSamplingPercentage`, else `meshConfig.defaultConfig.tracing.sampling`, else 1%.
//! `meshConfig.enableTracing: false` turns tracing off. Client and server sides are
//! resolved separately (`match.mode`); when they differ, the server side's settings are
//! used for both (the model has one tracing config per proxy).

use std::time::Duration;

use weft_api::{CustomTag, ReporterMode, TagValue, TraceProtocol, TraceProvider, TracingConfig};
use weft_config::kinds::istio::{self as istio, MeshConfig, ProviderKind, Telemetry, WorkloadMode};

/// `PILOT_TRACE_SAMPLING`'s default.
const DEFAULT_SAMPLING: f64 = 1.0;
/// Envoy's `max_path_tag_length` default.
const DEFAULT_MAX_TAG: u32 = 256;

pub(super) fn compile(
    levels: &[&Telemetry],
    mesh: &MeshConfig,
    service_name: &str,
    builtin: Option<&TraceProvider>,
) -> Option<TracingConfig> {
    if !mesh.enable_tracing() {
        return None;
    }
    let client = resolve(levels, mesh, service_name, builtin, true);
    let server = resolve(levels, mesh, service_name, builtin, false);
    match (client, server) {
        (Some(c), Some(s)) if c == s => Some(TracingConfig {
            mode: ReporterMode::ClientAndServer,
            ..c
        }),
        (Some(c), None) => Some(TracingConfig {
            mode: ReporterMode::Client,
            ..c
        }),
        (None, Some(s)) => Some(TracingConfig {
            mode: ReporterMode::Server,
            ..s
        }),
        (Some(_), Some(s)) => Some(TracingConfig {
            mode: ReporterMode::ClientAndServer,
            ..s
        }),
        (None, None) => None,
    }
}

fn applies(m: Option<WorkloadMode>, client: bool) -> bool {
    match m.unwrap_or_default() {
        WorkloadMode::ClientAndServer => true,
        WorkloadMode::Client => client,
        WorkloadMode::Server => !client,
    }
}

/// The merged settings for one side.
fn resolve(
    levels: &[&Telemetry],
    mesh: &MeshConfig,
    service_name: &str,
    builtin: Option<&TraceProvider>,
    client: bool,
) -> Option<TracingConfig> {
    let mut provider: Option<String> = mesh
        .default_providers
        .as_ref()
        .and_then(|d| d.tracing.first().cloned());
    let mut sampling: Option<f64> = None;
    let mut disable_reporting = false;
    let mut disable_propagation = false;
    let mut istio_tags = true;
    let mut tags: Option<&std::collections::BTreeMap<String, istio::CustomTag>> = None;
    for entry in levels.iter().flat_map(|t| &t.tracing) {
        if !applies(entry.match_.as_ref().map(|m| m.mode), client) {
            continue;
        }
        if let Some(p) = entry.providers.first() {
            provider = Some(p.name.clone());
        }
        sampling = entry.random_sampling_percentage.or(sampling);
        disable_reporting = entry.disable_span_reporting.unwrap_or(disable_reporting);
        disable_propagation = entry
            .disable_context_propagation
            .unwrap_or(disable_propagation);
        istio_tags = entry.enable_istio_tags.unwrap_or(istio_tags);
        if !entry.custom_tags.is_empty() {
            tags = Some(&entry.custom_tags);
        }
    }
    let provider = match provider {
        Some(name) => trace_provider(&name, mesh, service_name)?,
        // Tracing is on but nothing is configured: the control plane's own collector.
        None => TraceProvider {
            service_name: service_name.to_string(),
            ..builtin?.clone()
        },
    };
    let max_tag_length = mesh
        .extension_provider(&provider.name)
        .and_then(|p| {
            p.bodies()
                .first()
                .and_then(|(_, _, b)| b.get("maxTagLength")?.as_u64())
        })
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_TAG);
    Some(TracingConfig {
        provider,
        sampling_percent: sampling
            .or_else(|| mesh_sampling(mesh))
            .unwrap_or(DEFAULT_SAMPLING)
            .clamp(0.0, 100.0),
        disable_span_reporting: disable_reporting,
        disable_context_propagation: disable_propagation,
        enable_istio_tags: istio_tags,
        custom_tags: tags.map(custom_tags).unwrap_or_default(),
        mode: ReporterMode::ClientAndServer,
        max_tag_length,
    })
}

/// `meshConfig.defaultConfig.tracing.sampling`.
fn mesh_sampling(mesh: &MeshConfig) -> Option<f64> {
    mesh.default_config
        .as_ref()?
        .tracing
        .as_ref()?
        .get("sampling")?
        .as_f64()
}

fn custom_tags(tags: &std::collections::BTreeMap<String, istio::CustomTag>) -> Vec<CustomTag> {
    tags.iter()
        .filter_map(|(name, t)| {
            let value = if let Some(l) = &t.literal {
                TagValue::Literal(l.value.clone())
            } else if let Some(e) = &t.environment {
                TagValue::Environment {
                    name: e.name.clone(),
                    default: e.default_value.clone(),
                }
            } else if let Some(h) = &t.header {
                TagValue::Header {
                    name: h.name.to_ascii_lowercase(),
                    default: h.default_value.clone(),
                }
            } else {
                // `formatter` tags are not supported.
                return None;
            };
            Some(CustomTag {
                name: name.clone(),
                value,
            })
        })
        .collect()
}

/// An `extensionProviders` entry weft can export to: `opentelemetry` (gRPC, or HTTP when
/// `http:` is set) or `zipkin`. Provider `service` hosts stay `host:port`; the proxy
/// resolves them.
fn trace_provider(name: &str, mesh: &MeshConfig, service_name: &str) -> Option<TraceProvider> {
    let p = mesh.extension_provider(name)?;
    let (_, kind, body) = p.bodies().into_iter().next()?;
    let service = body.get("service")?.as_str().filter(|s| !s.is_empty())?;
    let port = body.get("port").and_then(|p| p.as_u64());
    let (protocol, path, default_port) = match kind {
        ProviderKind::Opentelemetry => match body.get("http") {
            Some(http) => (
                TraceProtocol::OtlpHttp,
                http.get("path")
                    .and_then(|p| p.as_str())
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        if p.starts_with('/') {
                            p.to_string()
                        } else {
                            format!("/{p}")
                        }
                    })
                    .unwrap_or_else(|| "/v1/traces".to_string()),
                4318,
            ),
            None => (TraceProtocol::OtlpGrpc, String::new(), 4317),
        },
        ProviderKind::Zipkin => (
            TraceProtocol::ZipkinJson,
            body.get("path")
                .and_then(|p| p.as_str())
                .filter(|p| !p.is_empty())
                .unwrap_or("/api/v2/spans")
                .to_string(),
            9411,
        ),
        _ => return None,
    };
    Some(TraceProvider {
        name: name.to_string(),
        protocol,
        endpoint: format!("{service}:{}", port.unwrap_or(default_port)),
        path,
        service_name: service_name.to_string(),
        // The model's defaults.
        max_queued_spans: 2048,
        max_batch: 512,
        flush_interval: Duration::from_secs(1),
    })
}
