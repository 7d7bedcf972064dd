//! The proxy's health metrics (`weft_*`): values read from the live state on each scrape
//! (clusters, the control-plane client, the metrics hub), encoded with prometheus-client.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::upstream::Clusters;
use crate::xds::XdsStats;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Gauge,
}

/// One metric family: name (for counters without `_total`, which the encoder adds), help,
/// type and samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub help: &'static str,
    pub kind: Type,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: i64,
}

impl Family {
    /// A counter named as its samples are (`weft_x_total`).
    pub fn counter(name: &str, help: &'static str, value: u64) -> Family {
        Family::new(name, help, Type::Counter).sample(vec![], value)
    }

    pub fn gauge(name: &str, help: &'static str, value: i64) -> Family {
        let mut f = Family::new(name, help, Type::Gauge);
        f.samples.push(Sample {
            labels: vec![],
            value,
        });
        f
    }

    pub fn new(name: &str, help: &'static str, kind: Type) -> Family {
        let name = match kind {
            Type::Counter => name.strip_suffix("_total").unwrap_or(name),
            Type::Gauge => name,
        };
        Family {
            name: name.to_string(),
            help,
            kind,
            samples: Vec::new(),
        }
    }

    pub fn sample(mut self, labels: Vec<(&'static str, String)>, value: u64) -> Family {
        self.samples.push(Sample {
            labels,
            value: i64::try_from(value).unwrap_or(i64::MAX),
        });
        self
    }
}

/// Families as a prometheus-client collector.
#[derive(Debug)]
pub struct Families(pub Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        for f in &self.0 {
            let ty = match f.kind {
                Type::Counter => MetricType::Counter,
                Type::Gauge => MetricType::Gauge,
            };
            let mut family = encoder.encode_descriptor(&f.name, f.help, None, ty)?;
            for s in &f.samples {
                let labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                // No labels: `name value`, not `name{} value` (scripts and tests read the
                // plain form).
                if labels.is_empty() {
                    value(&mut family, f.kind, s.value)?;
                } else {
                    value(&mut family.encode_family(&labels)?, f.kind, s.value)?;
                }
            }
        }
        Ok(())
    }
}

fn value(metric: &mut MetricEncoder<'_>, kind: Type, value: i64) -> fmt::Result {
    match kind {
        Type::Counter => {
            let v = u64::try_from(value).unwrap_or(0);
            metric.encode_counter::<NoLabelSet, _, u64>(&v, None)
        }
        Type::Gauge => metric.encode_gauge(&value),
    }
}

/// Per cluster: open connections, requests in flight and waiting (circuit-breaker
/// occupancy), pool overflows, retries, outlier ejections.
pub fn clusters(clusters: &Clusters) -> Vec<Family> {
    let mut cx = Family::new(
        "weft_upstream_connections_active",
        "Open upstream connections of the cluster.",
        Type::Gauge,
    );
    let mut active = Family::new(
        "weft_upstream_requests_active",
        "Requests in flight to the cluster.",
        Type::Gauge,
    );
    let mut pending = Family::new(
        "weft_upstream_requests_pending",
        "Requests waiting for an upstream connection.",
        Type::Gauge,
    );
    let mut overflow = Family::new(
        "weft_upstream_overflow_total",
        "Requests refused by the cluster's circuit breakers (UO).",
        Type::Counter,
    );
    let mut retries = Family::new(
        "weft_upstream_retries_total",
        "Retries started to the cluster.",
        Type::Counter,
    );
    let mut ejections = Family::new(
        "weft_outlier_ejections_total",
        "Endpoints ejected by outlier detection.",
        Type::Counter,
    );
    let mut ejected = Family::new(
        "weft_outlier_ejected_endpoints",
        "Endpoints ejected right now.",
        Type::Gauge,
    );
    for c in clusters.iter() {
        let label = || vec![("cluster", c.config.name.to_string())];
        let (connections, requests, waiting) = c.counters();
        let totals = c.totals();
        let out = c.endpoints().iter().filter(|e| e.is_ejected()).count();
        cx = cx.sample(label(), u64::from(connections));
        active = active.sample(label(), u64::from(requests));
        pending = pending.sample(label(), u64::from(waiting));
        overflow = overflow.sample(label(), totals.overflows);
        retries = retries.sample(label(), totals.retries);
        ejections = ejections.sample(label(), totals.ejections);
        ejected = ejected.sample(label(), out as u64);
    }
    vec![cx, active, pending, overflow, retries, ejections, ejected]
}

/// The control-plane client: connection, pushes applied (each ACKed), resources
/// refused (NACKed) and why streams ended.
pub fn xds(stats: &XdsStats) -> Vec<Family> {
    let mut disconnects = Family::new(
        "weft_xds_disconnects_total",
        "Control-plane streams that ended, by reason.",
        Type::Counter,
    );
    for (reason, n) in &stats.disconnects {
        disconnects = disconnects.sample(vec![("reason", reason.clone())], *n);
    }
    vec![
        Family::gauge(
            "weft_xds_connected",
            "1 while the control-plane stream is up.",
            i64::from(stats.connected),
        ),
        Family::counter(
            "weft_xds_connect_attempts_total",
            "Attempts to open a control-plane stream.",
            stats.attempts,
        ),
        Family::counter(
            "weft_xds_connects_total",
            "Control-plane streams opened.",
            stats.connects,
        ),
        disconnects,
        Family::counter(
            "weft_xds_pushes_total",
            "Config pushes received and answered (ACK or NACK).",
            stats.responses,
        ),
        Family::counter(
            "weft_xds_push_parts_total",
            "Push messages received (a push may come in parts).",
            stats.parts,
        ),
        Family::gauge(
            "weft_xds_rejected_resources",
            "Resources of the current config the proxy refused (NACKed).",
            stats.rejected.len() as i64,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weft_testkit::fixtures::{cluster, config};

    use super::*;
    use crate::telemetry::Hub;
    use crate::telemetry::metrics::{encode, textcheck};

    #[test]
    fn cluster_and_control_plane_health_encode_per_cluster() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let cfg = Arc::new(config(
            vec![],
            vec![cluster("a", &[addr]), cluster("b", &[])],
        ));
        let clusters = Clusters::build(&cfg, None);
        let mut families = super::clusters(&clusters);
        let mut stats = XdsStats {
            connected: true,
            connects: 2,
            responses: 5,
            ..XdsStats::default()
        };
        stats.disconnects.insert("connect failed".into(), 3);
        stats.rejected.insert("cluster/x".into(), "bad".into());
        families.extend(xds(&stats));
        let text = encode::render(Arc::new(Hub::default()), families).unwrap();
        let e = textcheck::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for c in ["a", "b"] {
            let l = [("cluster", c)];
            assert_eq!(e.value("weft_upstream_connections_active", &l), 0.0);
            assert_eq!(e.value("weft_upstream_requests_pending", &l), 0.0);
            assert_eq!(e.value("weft_upstream_overflow_total", &l), 0.0);
            assert_eq!(e.value("weft_upstream_retries_total", &l), 0.0);
            assert_eq!(e.value("weft_outlier_ejections_total", &l), 0.0);
            assert_eq!(e.value("weft_outlier_ejected_endpoints", &l), 0.0);
        }
        assert_eq!(e.value("weft_xds_connected", &[]), 1.0);
        assert_eq!(e.value("weft_xds_pushes_total", &[]), 5.0);
        assert_eq!(
            e.value(
                "weft_xds_disconnects_total",
                &[("reason", "connect failed")]
            ),
            3.0
        );
        assert_eq!(e.value("weft_xds_rejected_resources", &[]), 1.0);
    }

    #[test]
    fn cluster_counters_count_retries_and_overflows() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let mut c = cluster("a", &[addr]);
        c.limits.max_requests = 1;
        let cfg = Arc::new(config(vec![], vec![c]));
        let clusters = Clusters::build(&cfg, None);
        let state = clusters.get("a").unwrap();
        let ep = state.endpoints()[0].clone();
        let _held = state.start_request(&ep).unwrap();
        assert!(state.start_request(&ep).is_err());
        let _retry = state.start_retry(None).unwrap();
        let t = state.totals();
        assert_eq!((t.overflows, t.retries, t.ejections), (1, 1, 0));
    }
}
