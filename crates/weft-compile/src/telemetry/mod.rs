//! Telemetry resources and the mesh config's telemetry settings, resolved for one proxy
//! into [`weft_api::TelemetryConfig`].
//!
//! Istio's hierarchy (`pilot/pkg/model/telemetry.go`): at most one Telemetry per level,
//! the oldest where several compete —
//! - root: no selector / targetRefs, in the root namespace (`meshConfig.rootNamespace`);
//! - namespace: no selector / targetRefs, in the workload's namespace (not the root);
//! - workload: a `selector` matching the workload's labels, or `targetRefs` naming a
//!   Service that selects it or the Gateway it implements, in its namespace.
//!
//! Their `metrics`, `accessLogging` and `tracing` entries are read in that order, root
//! first, so the more specific level has the last word. Providers an entry does not name
//! are inherited from the entry before it, starting from `meshConfig.defaultProviders`.

mod access_log;
mod convert;
mod tracing;

use weft_api::{
    IstioMetric, MetricOverride, MetricsConfig, ReporterMode, TagOverride, TelemetryConfig,
};
use weft_config::kinds::common::labels_match;
use weft_config::kinds::istio::{self as istio, MeshConfig, TagOperation, Telemetry, WorkloadMode};
use weft_config::{Body, Object};

use crate::gateway_api::gateway::GATEWAY_NAME_LABEL;
use crate::{Snapshot, WorkloadInstance};

/// The provider metrics use when the mesh config names none (Istio's Helm default).
const PROMETHEUS: &str = "prometheus";

/// Istio's default cluster id, unless the proxies are told otherwise
/// (`defaultConfig.proxyMetadata.ISTIO_META_CLUSTER_ID`).
pub(crate) fn cluster_id(mesh: &MeshConfig) -> String {
    mesh.proxy_metadata()
        .and_then(|m| m.get("ISTIO_META_CLUSTER_ID"))
        .filter(|id| !id.is_empty())
        .cloned()
        .unwrap_or_else(|| "Kubernetes".to_string())
}

/// The telemetry of `instance`'s proxy.
pub(crate) fn compile(snapshot: &Snapshot<'_>, instance: &WorkloadInstance) -> TelemetryConfig {
    let levels = levels(snapshot, instance);
    let mesh = &snapshot.mesh;
    let service_name = service_name(instance);
    TelemetryConfig {
        metrics: metrics(&levels, mesh),
        access_logs: access_log::compile(&levels, mesh, &service_name),
        tracing: tracing::compile(
            &levels,
            mesh,
            &service_name,
            snapshot.builtin_trace_collector.as_ref(),
        ),
    }
}

/// `service.name` of exported spans and logs, as Istio names it: the canonical service
/// (`service.istio.io/canonical-name`, else `app`, else the workload) and the namespace.
fn service_name(instance: &WorkloadInstance) -> String {
    let label = |k: &str| instance.labels.get(k).filter(|v| !v.is_empty());
    let name = label("service.istio.io/canonical-name")
        .or_else(|| label("app.kubernetes.io/name"))
        .or_else(|| label("app"))
        .cloned()
        .unwrap_or_else(|| {
            if instance.workload.is_empty() {
                instance.name.clone()
            } else {
                instance.workload.clone()
            }
        });
    format!("{name}.{}", instance.namespace)
}

/// The Telemetry resources that apply, root first.
fn levels<'a>(snapshot: &Snapshot<'a>, instance: &WorkloadInstance) -> Vec<&'a Telemetry> {
    let root = snapshot.mesh.root_namespace();
    let ns = instance.namespace.as_str();
    let all: Vec<(&Object, &Telemetry)> = snapshot
        .aged
        .iter()
        .filter_map(|o| match &o.body {
            Body::Telemetry(t) => Some((*o, t)),
            _ => None,
        })
        .collect();
    let first = |pred: &dyn Fn(&Object, &Telemetry) -> bool| {
        all.iter().find(|(o, t)| pred(o, t)).map(|(_, t)| *t)
    };
    let mut out = Vec::new();
    out.extend(first(&|o, t| {
        o.namespace() == root && !t.has_workload_scope()
    }));
    if ns != root {
        out.extend(first(&|o, t| {
            o.namespace() == ns && !t.has_workload_scope()
        }));
    }
    out.extend(first(&|o, t| {
        o.namespace() == ns && t.has_workload_scope() && selects(snapshot, t, instance)
    }));
    out
}

fn selects(snapshot: &Snapshot<'_>, t: &Telemetry, instance: &WorkloadInstance) -> bool {
    if let Some(sel) = &t.selector {
        return !sel.match_labels.is_empty() && labels_match(&sel.match_labels, &instance.labels);
    }
    t.target_ref.iter().chain(&t.target_refs).any(|r| {
        if r.namespace.as_deref().is_some_and(|n| !n.is_empty() && n != instance.namespace) {
            return false;
        }
        match r.kind.as_str() {
            "Gateway" => instance.labels.get(GATEWAY_NAME_LABEL) == Some(&r.name),
            "Service" => snapshot.objects.iter().any(|o| {
                matches!(&o.body, Body::Service(svc)
                    if o.name() == r.name
                        && o.namespace() == instance.namespace
                        && svc.selector.as_ref().is_some_and(|s| !s.is_empty() && labels_match(s, &instance.labels)))
            }),
            _ => false,
        }
    })
}

fn mode(m: WorkloadMode) -> ReporterMode {
    match m {
        WorkloadMode::ClientAndServer => ReporterMode::ClientAndServer,
        WorkloadMode::Client => ReporterMode::Client,
        WorkloadMode::Server => ReporterMode::Server,
    }
}

/// Names of an entry's providers, or the inherited ones when it names none.
fn provider_names(list: &[istio::ProviderRef], inherited: &[String]) -> Vec<String> {
    if list.is_empty() {
        inherited.to_vec()
    } else {
        list.iter().map(|p| p.name.clone()).collect()
    }
}

/// Metrics: on when the `prometheus` provider is in scope; the overrides of entries that
/// apply to it, in order.
fn metrics(levels: &[&Telemetry], mesh: &MeshConfig) -> MetricsConfig {
    // Unset: Istio's Helm default (`[prometheus]`); an explicit `[]` means none.
    let defaults: Vec<String> = mesh
        .default_providers
        .as_ref()
        .and_then(|d| d.metrics.clone())
        .unwrap_or_else(|| vec![PROMETHEUS.to_string()]);
    let mut out = MetricsConfig {
        enabled: false,
        ..MetricsConfig::default()
    };
    let mut inherited = defaults;
    let mut any_entry = false;
    for entry in levels.iter().flat_map(|t| &t.metrics) {
        any_entry = true;
        let names = provider_names(&entry.providers, &inherited);
        inherited = names.clone();
        if !names.iter().any(|n| n == PROMETHEUS) {
            continue;
        }
        out.enabled = true;
        if let Some(d) = entry.reporting_interval {
            out.tcp_reporting_interval = d.as_std();
        }
        for o in &entry.overrides {
            let selector = o.match_.clone().unwrap_or_default();
            // Custom metrics are not produced by weft; their overrides have nothing to act on.
            if selector.custom_metric.is_some() {
                continue;
            }
            out.overrides.push(MetricOverride {
                metric: metric(selector.metric.unwrap_or_default()),
                mode: mode(selector.mode),
                disabled: o.disabled,
                tags: o
                    .tag_overrides
                    .iter()
                    .map(|(tag, ov)| TagOverride {
                        tag: tag.clone(),
                        value: match ov.operation {
                            TagOperation::Remove => None,
                            // A value that does not evaluate prints `unknown`, as in Istio.
                            TagOperation::Upsert => Some(
                                ov.value
                                    .as_deref()
                                    .and_then(convert::parse_expr)
                                    .unwrap_or_else(|| weft_api::Expr::String("unknown".into())),
                            ),
                        },
                    })
                    .collect(),
            });
        }
    }
    if !any_entry {
        out.enabled = inherited.iter().any(|n| n == PROMETHEUS);
    }
    out
}

fn metric(m: istio::IstioMetric) -> IstioMetric {
    use istio::IstioMetric as M;
    match m {
        M::AllMetrics => IstioMetric::AllMetrics,
        M::RequestCount => IstioMetric::RequestCount,
        M::RequestDuration => IstioMetric::RequestDuration,
        M::RequestSize => IstioMetric::RequestSize,
        M::ResponseSize => IstioMetric::ResponseSize,
        M::TcpOpenedConnections => IstioMetric::TcpOpenedConnections,
        M::TcpClosedConnections => IstioMetric::TcpClosedConnections,
        M::TcpSentBytes => IstioMetric::TcpSentBytes,
        M::TcpReceivedBytes => IstioMetric::TcpReceivedBytes,
        M::GrpcRequestMessages => IstioMetric::GrpcRequestMessages,
        M::GrpcResponseMessages => IstioMetric::GrpcResponseMessages,
    }
}

#[cfg(test)]
mod tests;
