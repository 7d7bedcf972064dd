//! Istio's standard metrics (shared/reference/istio-semantics.md §2) and the proxy's own
//! health metrics, served on the admin port's `/stats/prometheus` through
//! prometheus-client's OpenMetrics text encoder.
//!
//! - [`labels`]: the 25 standard labels and their fallbacks, from one record.
//! - [`series`]: label sets → counters and histograms, the cardinality guard and expiry.
//! - [`IstioMetrics`]: the sink of one config; it resolves Telemetry `overrides`
//!   (disabled metrics, `tagOverrides`) once, when the config is built.
//! - [`encode`] / [`health`]: what the admin endpoint writes.

pub mod encode;
pub mod health;
pub mod labels;
pub mod series;

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
pub(crate) mod textcheck;

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use weft_api::{Expr, IstioMetric, MetricsConfig};

use self::series::{Kind, METRICS, MetricSet, Series, Table};
use super::expr::{self, Exchange};
use super::{HttpRecord, Hub, Sink, TcpEvent, TcpRecord};
use crate::xds::XdsStats;

/// The process-wide part: series survive config changes.
#[derive(Default)]
pub struct MetricsHub {
    pub series: Series,
    /// The control-plane client's counters, when the process has one (push/ACK/NACK).
    xds: OnceLock<Arc<Mutex<XdsStats>>>,
    /// Requests answered 429 by a local rate limit (`RL`), from the records.
    rate_limited: AtomicU64,
}

impl MetricsHub {
    /// Exports the control-plane client's counters from now on (the binary calls this
    /// once it has both the client and the running proxy).
    pub fn attach_xds(&self, stats: Arc<Mutex<XdsStats>>) {
        let _ = self.xds.set(stats);
    }

    pub fn xds(&self) -> Option<XdsStats> {
        self.xds
            .get()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(Ordering::Relaxed)
    }
}

/// Where one label's value comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// The standard label at this index of [`labels::HTTP_LABELS`] / `TCP_LABELS`.
    Standard(usize),
    /// A `tagOverrides` UPSERT: a CEL expression on the exchange.
    Expr(Expr),
}

/// Metrics of one side and kind recorded with the same labels.
#[derive(Debug)]
struct Group {
    table: Arc<Table>,
    metrics: MetricSet,
    /// In `table.names` order.
    sources: Vec<Source>,
    /// The labels are exactly the standard ones in standard order: the computed values are
    /// used as they are.
    standard: bool,
}

#[derive(Debug, Default)]
struct Plan {
    http: Vec<Group>,
    tcp: Vec<Group>,
}

/// The Istio metrics of one config.
pub struct IstioMetrics {
    hub: Arc<Hub>,
    client: Plan,
    server: Plan,
}

impl IstioMetrics {
    /// `None` when the config turns Istio metrics off.
    pub fn new(config: &MetricsConfig, hub: Arc<Hub>) -> Option<IstioMetrics> {
        if !config.enabled {
            return None;
        }
        let series = &hub.metrics.series;
        series.set_limits(config.max_series_per_metric, config.series_idle_expiry);
        let client = plan(config, true, series);
        let server = plan(config, false, series);
        Some(IstioMetrics {
            hub,
            client,
            server,
        })
    }

    fn plan(&self, client_side: bool) -> &Plan {
        if client_side {
            &self.client
        } else {
            &self.server
        }
    }
}

impl Sink for IstioMetrics {
    fn http(&self, rec: &HttpRecord<'_>) {
        if rec.flags.split(',').any(|f| f == "RL") {
            self.hub
                .metrics
                .rate_limited
                .fetch_add(1, Ordering::Relaxed);
        }
        let groups = &self.plan(rec.client_side).http;
        if groups.is_empty() {
            return;
        }
        let standard = labels::http_values(rec);
        let duration_ms = u64::try_from(rec.duration.as_millis()).unwrap_or(u64::MAX);
        for g in groups {
            let mut metrics = g.metrics;
            if !rec.grpc {
                metrics.0 &= !(MetricSet::default()
                    .with(IstioMetric::GrpcRequestMessages)
                    .with(IstioMetric::GrpcResponseMessages)
                    .0);
            }
            let values = values(g, &standard, Exchange::Http(rec));
            self.hub
                .metrics
                .series
                .record(&g.table, metrics, &values, |e| {
                    for m in metrics.iter() {
                        match m {
                            IstioMetric::RequestCount => e.add(0, 1),
                            IstioMetric::GrpcRequestMessages => e.add(1, rec.request_messages),
                            IstioMetric::GrpcResponseMessages => e.add(2, rec.response_messages),
                            IstioMetric::RequestDuration => e.histograms[0].observe(duration_ms),
                            IstioMetric::RequestSize => e.histograms[1].observe(rec.request_bytes),
                            IstioMetric::ResponseSize => {
                                e.histograms[2].observe(rec.response_bytes)
                            }
                            _ => {}
                        }
                    }
                });
        }
    }

    fn tcp(&self, rec: &TcpRecord<'_>) {
        let groups = &self.plan(rec.client_side).tcp;
        if groups.is_empty() {
            return;
        }
        let standard = labels::tcp_values(rec);
        let bytes = MetricSet::default()
            .with(IstioMetric::TcpSentBytes)
            .with(IstioMetric::TcpReceivedBytes);
        let wanted = match rec.event {
            TcpEvent::Opened => MetricSet::default().with(IstioMetric::TcpOpenedConnections),
            TcpEvent::Progress => bytes,
            TcpEvent::Closed => bytes.with(IstioMetric::TcpClosedConnections),
        };
        for g in groups {
            let metrics = MetricSet(g.metrics.0 & wanted.0);
            if metrics.is_empty() {
                continue;
            }
            let values = values(g, &standard, Exchange::Tcp(rec));
            self.hub
                .metrics
                .series
                .record(&g.table, metrics, &values, |e| {
                    for m in metrics.iter() {
                        match m {
                            IstioMetric::TcpOpenedConnections => e.add(0, 1),
                            IstioMetric::TcpClosedConnections => e.add(1, 1),
                            IstioMetric::TcpSentBytes => e.add(2, rec.sent_bytes),
                            IstioMetric::TcpReceivedBytes => e.add(3, rec.received_bytes),
                            _ => {}
                        }
                    }
                });
        }
    }
}

/// The group's label values: the standard ones as computed, or (with tag overrides)
/// reordered, removed and evaluated.
fn values<'a>(
    g: &Group,
    standard: &'a [Cow<'a, str>],
    x: Exchange<'_, '_>,
) -> Cow<'a, [Cow<'a, str>]> {
    if g.standard {
        return Cow::Borrowed(standard);
    }
    let owned = g
        .sources
        .iter()
        .map(|s| match s {
            Source::Standard(i) => standard[*i].clone(),
            Source::Expr(e) => Cow::Owned(expr::eval(e, &x).to_label()),
        })
        .collect();
    Cow::Owned(owned)
}

/// Resolves the overrides for one side: which metrics are on, and with which labels.
/// Overrides apply in order (mesh, namespace, workload), `ALL_METRICS` to every metric;
/// metrics left with the same labels share a table.
fn plan(config: &MetricsConfig, client: bool, series: &Series) -> Plan {
    let mut plan = Plan::default();
    for kind in [Kind::Http, Kind::Tcp] {
        let standard: &[&str] = match kind {
            Kind::Http => &labels::HTTP_LABELS,
            Kind::Tcp => &labels::TCP_LABELS,
        };
        let mut groups: Vec<(Vec<(String, Source)>, MetricSet)> = Vec::new();
        for m in METRICS.into_iter().filter(|m| series::kind(*m) == kind) {
            let mut enabled = true;
            let mut labels: Vec<(String, Source)> = standard
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), Source::Standard(i)))
                .collect();
            let applies = |o: &&weft_api::MetricOverride| {
                (o.metric == m || o.metric == IstioMetric::AllMetrics) && o.mode.covers(client)
            };
            for o in config.overrides.iter().filter(applies) {
                if let Some(disabled) = o.disabled {
                    enabled = !disabled;
                }
                for tag in &o.tags {
                    if !valid_label_name(&tag.tag) {
                        tracing::warn!(tag = %tag.tag, "tagOverrides: not a valid Prometheus label name; ignored");
                        continue;
                    }
                    let Some(e) = &tag.value else {
                        labels.retain(|(n, _)| *n != tag.tag);
                        continue;
                    };
                    match labels.iter_mut().find(|(n, _)| *n == tag.tag) {
                        Some(slot) => slot.1 = Source::Expr(e.clone()),
                        None => labels.push((tag.tag.clone(), Source::Expr(e.clone()))),
                    }
                }
            }
            if !enabled {
                continue;
            }
            match groups.iter_mut().find(|(l, _)| *l == labels) {
                Some((_, set)) => *set = set.with(m),
                None => groups.push((labels, MetricSet::default().with(m))),
            }
        }
        for (labels, metrics) in groups {
            let names: Vec<Arc<str>> = labels.iter().map(|(n, _)| Arc::from(n.as_str())).collect();
            let table = series.table(kind, &names);
            let sources: Vec<Source> = table
                .names
                .iter()
                .map(|n| {
                    labels
                        .iter()
                        .find(|(l, _)| **l == **n)
                        .map(|(_, s)| s.clone())
                        .expect("the table has exactly these names")
                })
                .collect();
            let standard_order = sources.len() == standard.len()
                && sources
                    .iter()
                    .enumerate()
                    .all(|(i, s)| *s == Source::Standard(i));
            let group = Group {
                table,
                metrics,
                sources,
                standard: standard_order,
            };
            match kind {
                Kind::Http => plan.http.push(group),
                Kind::Tcp => plan.tcp.push(group),
            }
        }
    }
    plan
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not reserved (`le` is the histogram bucket label, `__`
/// prefixes are Prometheus's own).
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name != "le"
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests;
