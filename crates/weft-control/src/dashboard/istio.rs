//! Istio's standard metrics, as one proxy reports them, turned into per-edge counters:
//! `istio_requests_total` (requests, 5xx answers, mTLS or plaintext as the destination saw
//! it), `istio_request_duration_milliseconds` buckets and `istio_tcp_*`. An edge is
//! (source workload, destination workload, destination service); workloads are named
//! `workload.namespace`, a destination with no workload by its service, a caller outside
//! the mesh `unknown`.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::promtext::Sample;

/// At most this many edges kept per proxy scrape: a proxy with runaway label values (the
/// proxy's own cardinality guard is off, say) must not grow the control plane unbounded.
const MAX_KEYS_PER_PROXY: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reporter {
    Source,
    Destination,
}

/// One node of the graph: a workload at a version, or a service with no known workload
/// behind it (no route, an external host), or `unknown` (a caller outside the mesh).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    /// `workload.namespace`, the service's name, or `unknown`.
    pub id: String,
    pub workload: String,
    pub namespace: String,
    pub app: String,
    pub version: String,
    /// `workload`, `service` or `unknown`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    pub source: String,
    pub destination: String,
    /// The destination service (`name.namespace`, or the host when it is not a Service).
    pub service: String,
}

pub type Key = (Reporter, EdgeKey);

/// Cumulative values of one edge as one proxy reported it, or their increase over a tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub requests: f64,
    /// Requests answered with a 5xx.
    pub errors: f64,
    /// Requests the destination received over mutual TLS / in plaintext.
    pub mtls: f64,
    pub plaintext: f64,
    /// `istio_request_duration_milliseconds` buckets: cumulative count per upper bound. The
    /// key is the bound's bit pattern: for non-negative floats (and +Inf) bit order is
    /// numeric order.
    pub buckets: BTreeMap<u64, f64>,
    pub tcp_opened: f64,
    pub tcp_mtls: f64,
    pub tcp_plaintext: f64,
    pub tcp_bytes: f64,
}

impl Counts {
    /// The increase from `prev` to `self`, per counter; a counter below its previous value
    /// was reset and counts whole.
    pub fn since(&self, prev: &Counts) -> Counts {
        let d = |cur: f64, old: f64| if cur >= old { cur - old } else { cur };
        Counts {
            requests: d(self.requests, prev.requests),
            errors: d(self.errors, prev.errors),
            mtls: d(self.mtls, prev.mtls),
            plaintext: d(self.plaintext, prev.plaintext),
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, d(*c, prev.buckets.get(le).copied().unwrap_or(0.0))))
                .collect(),
            tcp_opened: d(self.tcp_opened, prev.tcp_opened),
            tcp_mtls: d(self.tcp_mtls, prev.tcp_mtls),
            tcp_plaintext: d(self.tcp_plaintext, prev.tcp_plaintext),
            tcp_bytes: d(self.tcp_bytes, prev.tcp_bytes),
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.mtls += o.mtls;
        self.plaintext += o.plaintext;
        for (le, c) in &o.buckets {
            *self.buckets.entry(*le).or_default() += c;
        }
        self.tcp_opened += o.tcp_opened;
        self.tcp_mtls += o.tcp_mtls;
        self.tcp_plaintext += o.tcp_plaintext;
        self.tcp_bytes += o.tcp_bytes;
    }
}

/// The `q` quantile (0..1) of a cumulative histogram, interpolated linearly inside the
/// bucket it falls in, as PromQL's `histogram_quantile` does; the highest finite bound
/// when it falls in the +Inf bucket; none without observations.
pub fn quantile(q: f64, buckets: &BTreeMap<u64, f64>) -> Option<f64> {
    let total = buckets.values().copied().fold(0.0, f64::max);
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut prev_le, mut prev_count) = (0.0, 0.0);
    for (bits, count) in buckets {
        let le = f64::from_bits(*bits);
        if *count >= rank {
            if le.is_infinite() {
                return Some(prev_le);
            }
            if *count <= prev_count {
                return Some(le);
            }
            return Some(prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count));
        }
        (prev_le, prev_count) = (le, *count);
    }
    Some(prev_le)
}

/// The per-edge samples of one proxy's scrape, with the nodes they name.
pub fn extract(samples: &[Sample]) -> (HashMap<Key, Counts>, Vec<NodeInfo>) {
    let mut out: HashMap<Key, Counts> = HashMap::new();
    let mut nodes: BTreeMap<String, NodeInfo> = BTreeMap::new();
    for s in samples {
        let metric = match s.name.as_str() {
            "istio_requests_total"
            | "istio_request_duration_milliseconds_bucket"
            | "istio_tcp_connections_opened_total"
            | "istio_tcp_sent_bytes_total"
            | "istio_tcp_received_bytes_total" => s.name.as_str(),
            _ => continue,
        };
        let reporter = match s.label("reporter") {
            "source" => Reporter::Source,
            "destination" => Reporter::Destination,
            _ => continue,
        };
        let source = node(s, "source");
        let destination = node(s, "destination");
        let key = (
            reporter,
            EdgeKey {
                source: source.id.clone(),
                destination: destination.id.clone(),
                service: service_of(s),
            },
        );
        if !out.contains_key(&key) && out.len() >= MAX_KEYS_PER_PROXY {
            continue;
        }
        nodes.entry(source.id.clone()).or_insert(source);
        nodes.entry(destination.id.clone()).or_insert(destination);
        let c = out.entry(key).or_default();
        let v = if s.value.is_finite() { s.value } else { 0.0 };
        let secure = s.label("connection_security_policy");
        match metric {
            "istio_requests_total" => {
                c.requests += v;
                if s.label("response_code").starts_with('5') {
                    c.errors += v;
                }
                match secure {
                    "mutual_tls" => c.mtls += v,
                    "none" => c.plaintext += v,
                    _ => {}
                }
            }
            "istio_request_duration_milliseconds_bucket" => {
                let le = match s.label("le") {
                    "+Inf" | "Inf" => f64::INFINITY,
                    other => match other.parse::<f64>() {
                        Ok(le) if le >= 0.0 => le,
                        _ => continue,
                    },
                };
                *c.buckets.entry(le.to_bits()).or_default() += v;
            }
            "istio_tcp_connections_opened_total" => {
                c.tcp_opened += v;
                match secure {
                    "mutual_tls" => c.tcp_mtls += v,
                    "none" => c.tcp_plaintext += v,
                    _ => {}
                }
            }
            _ => c.tcp_bytes += v,
        }
    }
    (out, nodes.into_values().collect())
}

fn node(s: &Sample, side: &str) -> NodeInfo {
    let l = |name: &str| s.label(&format!("{side}_{name}")).to_owned();
    let workload = l("workload");
    let namespace = l("workload_namespace");
    if workload != "unknown" {
        return NodeInfo {
            id: format!("{workload}.{namespace}"),
            workload,
            namespace,
            app: l("app"),
            version: l("version"),
            kind: "workload",
        };
    }
    if side == "destination" && s.label("destination_service") != "unknown" {
        return NodeInfo {
            id: service_of(s),
            workload,
            namespace: l("service_namespace"),
            app: l("service_name"),
            version: "unknown".into(),
            kind: "service",
        };
    }
    NodeInfo {
        id: "unknown".into(),
        workload,
        namespace,
        app: "unknown".into(),
        version: "unknown".into(),
        kind: "unknown",
    }
}

fn service_of(s: &Sample) -> String {
    match (
        s.label("destination_service_name"),
        s.label("destination_service_namespace"),
    ) {
        ("unknown", _) | (_, "unknown") => s.label("destination_service").to_owned(),
        (name, ns) => format!("{name}.{ns}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::promtext::parse;

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let b: BTreeMap<u64, f64> = [(10.0, 50.0), (100.0, 100.0), (f64::INFINITY, 100.0)]
            .into_iter()
            .map(|(le, c): (f64, f64)| (le.to_bits(), c))
            .collect();
        assert_eq!(quantile(0.5, &b), Some(10.0));
        // Rank 99 of 100: 49/50 of the way from 10 to 100.
        assert!((quantile(0.99, &b).unwrap() - 98.2).abs() < 1e-9);
        assert_eq!(quantile(0.25, &b), Some(5.0));
        let inf: BTreeMap<u64, f64> = [(10.0, 1.0), (f64::INFINITY, 10.0)]
            .into_iter()
            .map(|(le, c): (f64, f64)| (le.to_bits(), c))
            .collect();
        assert_eq!(quantile(0.99, &inf), Some(10.0));
        assert_eq!(quantile(0.99, &BTreeMap::new()), None);
    }

    #[test]
    fn unknown_destinations_become_service_nodes() {
        let text = "istio_requests_total{reporter=\"source\",source_workload=\"web\",\
            source_workload_namespace=\"demo\",destination_service=\"api.example.com\",\
            response_code=\"502\",response_flags=\"NR\"} 3\n";
        let (counts, nodes) = extract(&parse(text).unwrap());
        let ((r, key), c) = counts.into_iter().next().unwrap();
        assert_eq!(r, Reporter::Source);
        assert_eq!(key.destination, "api.example.com");
        assert_eq!(key.service, "api.example.com");
        assert_eq!(c.errors, 3.0);
        assert_eq!(
            nodes
                .iter()
                .find(|n| n.id == "api.example.com")
                .unwrap()
                .kind,
            "service"
        );
    }
}
