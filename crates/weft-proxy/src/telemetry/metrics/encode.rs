//! The Istio series as OpenMetrics text, through prometheus-client's encoder.
//!
//! Counters are registered without their `_total` (OpenMetrics family names never carry
//! it; the encoder appends it to the sample), so the samples are Istio's names:
//! `istio_requests_total{...}`.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use weft_api::IstioMetric;

use super::health::{Families, Family};
use super::series::{self, Entry, METRICS, Slot, Table, slot};
use crate::telemetry::Hub;

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything `/stats/prometheus` serves: the health `families`, then the Istio series.
pub fn render(hub: Arc<Hub>, families: Vec<Family>) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(families)));
    registry.register_collector(Box::new(IstioCollector { hub }));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Encodes the hub's series on each scrape.
pub struct IstioCollector {
    pub hub: Arc<Hub>,
}

impl fmt::Debug for IstioCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IstioCollector")
    }
}

/// Istio's descriptions (istio.io "Istio Standard Metrics").
fn help(m: IstioMetric) -> &'static str {
    match m {
        IstioMetric::RequestCount => "Requests handled by the proxy.",
        IstioMetric::RequestDuration => "Duration of requests in milliseconds.",
        IstioMetric::RequestSize => "HTTP request sizes in bytes.",
        IstioMetric::ResponseSize => "HTTP response sizes in bytes.",
        IstioMetric::GrpcRequestMessages => "gRPC messages sent by the client.",
        IstioMetric::GrpcResponseMessages => "gRPC messages sent by the server.",
        IstioMetric::TcpOpenedConnections => "TCP connections opened.",
        IstioMetric::TcpClosedConnections => "TCP connections closed.",
        IstioMetric::TcpSentBytes => "Bytes sent to the downstream on TCP connections.",
        IstioMetric::TcpReceivedBytes => "Bytes received from the downstream on TCP connections.",
        IstioMetric::AllMetrics => "",
    }
}

/// The family name as registered: a counter's name without `_total`.
pub fn family_name(m: IstioMetric) -> &'static str {
    let full = m.prometheus_name().unwrap_or("istio_unknown");
    match slot(m) {
        Slot::Counter(_) => full.strip_suffix("_total").unwrap_or(full),
        Slot::Histogram(_) => full,
    }
}

impl Collector for IstioCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let series = &self.hub.metrics.series;
        let entries: Vec<_> = series
            .tables()
            .into_iter()
            .map(|t| {
                let e = t.entries();
                (t, e)
            })
            .collect();
        for m in METRICS {
            // A disabled (or never recorded) metric has no family at all.
            if series.count(m) == 0 && series.overflowed(m) == 0 {
                continue;
            }
            let ty = match slot(m) {
                Slot::Counter(_) => MetricType::Counter,
                Slot::Histogram(_) => MetricType::Histogram,
            };
            let mut family = encoder.encode_descriptor(family_name(m), help(m), None, ty)?;
            for (table, entries) in &entries {
                for e in entries
                    .iter()
                    .filter(|e| series::kind(m) == table.kind && e.has(m))
                {
                    sample(&mut family, table, e, m)?;
                }
            }
        }
        let mut overflow = encoder.encode_descriptor(
            "weft_metric_series_overflow",
            "Records counted in a metric's overflow series because it reached max_series_per_metric.",
            None,
            MetricType::Counter,
        )?;
        for m in METRICS {
            let labels = [("metric", m.prometheus_name().unwrap_or(""))];
            overflow
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&series.overflowed(m), None)?;
        }
        let mut live = encoder.encode_descriptor(
            "weft_metric_series",
            "Label sets a metric has now (its overflow series not included).",
            None,
            MetricType::Gauge,
        )?;
        for m in METRICS {
            let labels = [("metric", m.prometheus_name().unwrap_or(""))];
            live.encode_family(&labels)?
                .encode_gauge(&(series.count(m) as u64))?;
        }
        let mut build = encoder.encode_descriptor(
            "istio_build",
            "Istio component build info.",
            None,
            MetricType::Gauge,
        )?;
        let labels = [("component", "proxy"), ("tag", env!("CARGO_PKG_VERSION"))];
        build.encode_family(&labels)?.encode_gauge(&1u64)?;
        Ok(())
    }
}

fn sample(family: &mut MetricEncoder<'_>, table: &Table, e: &Entry, m: IstioMetric) -> fmt::Result {
    let labels = Pairs {
        names: &table.names,
        values: &e.labels,
    };
    let mut metric = family.encode_family(&labels)?;
    match slot(m) {
        Slot::Counter(i) => metric.encode_counter::<NoLabelSet, _, u64>(&e.counter(i), None),
        Slot::Histogram(i) => {
            let (sum, count, buckets) = e.histograms[i].snapshot();
            metric.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
        }
    }
}

/// One entry's labels, zipped with its table's names.
struct Pairs<'a> {
    names: &'a [Arc<str>],
    values: &'a [Box<str>],
}

impl EncodeLabelSet for Pairs<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        for (name, value) in self.names.iter().zip(self.values) {
            (&**name, &**value).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}
