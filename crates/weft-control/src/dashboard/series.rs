//! A small in-memory time series store for the dashboard: the last few minutes of traffic
//! per edge (source workload → destination workload, for one service), built from the
//! proxies' cumulative Istio metrics.
//!
//! Every scrape round is a `Tick`: for each proxy, the increase of each counter since the
//! proxy's previous scrape (a counter that went down was reset: its whole value is the
//! increase, as Prometheus' `rate()` assumes) and the rate it makes over that proxy's own
//! interval. Rates over a window are the time-weighted mean of the ticks' rates; error
//! shares and latency quantiles come from the summed increases. No raw samples are kept:
//! memory is bounded by (ticks kept) × (edges).
//!
//! Both proxies of a request report it (`reporter="source"` and `reporter="destination"`).
//! Like Kiali, an edge's traffic comes from the source side when the source reports it
//! (it also sees requests its own proxy failed, e.g. `UH`, `UO`), from the destination side
//! otherwise (callers outside the mesh); mTLS comes from the destination side, the only one
//! that knows (`connection_security_policy` is `unknown` on the source side).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::istio::{Counts, EdgeKey, Key, NodeInfo, Reporter, extract, quantile};
use super::promtext::Sample;

/// How long ticks are kept: the golden-signal charts span this.
pub const RETENTION: Duration = Duration::from_secs(10 * 60);
/// One edge's increase over a tick, and its rates: the sum over the proxies reporting it of
/// increase / time since that proxy's previous scrape. Rates are kept rather than derived
/// from the tick's span so that a proxy scraped late (or a replica that just started) counts
/// over its own interval and two replicas' traffic adds up.
#[derive(Debug, Clone, Default)]
struct Delta {
    counts: Counts,
    rps: f64,
    cps: f64,
    bps: f64,
}

/// One scrape round: the increases since each proxy's previous scrape. An edge measured
/// in the round has an entry even when nothing moved: it was idle, not unknown.
#[derive(Debug)]
struct Tick {
    at: Instant,
    /// Time since the previous round: the weight of its rates in a window.
    span: Duration,
    deltas: HashMap<Key, Delta>,
}

/// An edge over a window: increases summed, rates weighted by the time they were measured.
#[derive(Debug, Default)]
struct Agg {
    counts: Counts,
    rps: f64,
    cps: f64,
    bps: f64,
    measured: f64,
}

impl Agg {
    fn add(&mut self, d: &Delta, secs: f64) {
        self.counts.add(&d.counts);
        self.rps += d.rps * secs;
        self.cps += d.cps * secs;
        self.bps += d.bps * secs;
        self.measured += secs;
    }

    fn rate(&self, weighted: f64) -> f64 {
        if self.measured > 0.0 {
            weighted / self.measured
        } else {
            0.0
        }
    }
}

/// One edge over a window, for the graph.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EdgeStats {
    pub source: String,
    pub destination: String,
    pub service: String,
    /// `http` when requests were seen, `tcp` for opaque TCP only.
    pub protocol: &'static str,
    pub rps: f64,
    /// Share of requests answered with a 5xx (0..1).
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `mutual_tls`, `none`, `partial` (both seen) or `unknown` (the destination does not
    /// report).
    pub mtls: &'static str,
    /// Which side's report the numbers come from: `source` or `destination`.
    pub reporter: &'static str,
    pub tcp_connections_per_second: f64,
    pub tcp_bytes_per_second: f64,
}

/// A service's golden signals at one tick (or over a window).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Signals {
    /// Seconds relative to now (zero or negative).
    pub t: f64,
    pub rps: f64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServiceStats {
    pub service: String,
    /// The destination nodes (workload versions) serving it.
    pub workloads: Vec<String>,
    #[serde(flatten)]
    pub signals: Signals,
}

/// The store: each proxy's last cumulative values and the ticks of the retention.
#[derive(Debug, Default)]
pub struct Series {
    ticks: VecDeque<Tick>,
    last_tick: Option<Instant>,
    /// Per proxy: when it was last scraped and what it reported.
    baselines: HashMap<String, (Instant, HashMap<Key, Counts>)>,
    nodes: BTreeMap<String, NodeInfo>,
}

impl Series {
    /// Record a scrape round taken at `at`: for every connected proxy, its samples, or none
    /// when its scrape failed (its baseline stays, so the next success counts the whole
    /// increase over the longer interval). Proxies not listed are gone and forgotten.
    pub fn record(&mut self, at: Instant, scrapes: Vec<(String, Option<Vec<Sample>>)>) {
        let span = self
            .last_tick
            .map(|prev| at.saturating_duration_since(prev))
            .unwrap_or_default();
        self.last_tick = Some(at);
        let listed: BTreeSet<String> = scrapes.iter().map(|(id, _)| id.clone()).collect();
        self.baselines.retain(|id, _| listed.contains(id));
        let mut deltas: HashMap<Key, Delta> = HashMap::new();
        for (proxy, samples) in scrapes {
            let Some(samples) = samples else { continue };
            let (current, nodes) = extract(&samples);
            for n in nodes {
                self.nodes.insert(n.id.clone(), n);
            }
            // A proxy's first scrape is its baseline: what it counted before is of unknown age.
            if let Some((prev_at, prev)) = self.baselines.get(&proxy) {
                let secs = at.saturating_duration_since(*prev_at).as_secs_f64();
                let empty = Counts::default();
                for (key, cur) in &current {
                    let d = cur.since(prev.get(key).unwrap_or(&empty));
                    let e = deltas.entry(key.clone()).or_default();
                    if secs > 0.0 {
                        e.rps += d.requests / secs;
                        e.cps += d.tcp_opened / secs;
                        e.bps += d.tcp_bytes / secs;
                    }
                    e.counts.add(&d);
                }
            }
            self.baselines.insert(proxy, (at, current));
        }
        self.ticks.push_back(Tick { at, span, deltas });
        while self
            .ticks
            .front()
            .is_some_and(|t| at.saturating_duration_since(t.at) > RETENTION)
        {
            self.ticks.pop_front();
        }
        // Nodes no edge names any more go with the ticks that named them.
        let used: BTreeSet<String> = self
            .keys()
            .flat_map(|(_, e)| [e.source.clone(), e.destination.clone()])
            .collect();
        self.nodes.retain(|id, _| used.contains(id));
    }

    /// Every (reporter, edge) the retention knows.
    fn keys(&self) -> impl Iterator<Item = &Key> {
        self.baselines
            .values()
            .flat_map(|(_, b)| b.keys())
            .chain(self.ticks.iter().flat_map(|t| t.deltas.keys()))
    }

    /// Which side's report each known edge uses (see the module doc).
    /// The choice is per workload pair, not per service: the two sides may name the
    /// destination service differently (a host as the caller wrote it, an address), and
    /// the same traffic must not show twice.
    fn preferred(&self) -> HashMap<EdgeKey, Reporter> {
        let sourced: HashSet<(&str, &str)> = self
            .keys()
            .filter(|(r, _)| *r == Reporter::Source)
            .map(|(_, e)| (e.source.as_str(), e.destination.as_str()))
            .collect();
        let mut out: HashMap<EdgeKey, Reporter> = HashMap::new();
        for (reporter, edge) in self.keys() {
            if *reporter == Reporter::Source {
                out.insert(edge.clone(), Reporter::Source);
            } else if !sourced.contains(&(edge.source.as_str(), edge.destination.as_str())) {
                out.entry(edge.clone()).or_insert(Reporter::Destination);
            }
        }
        out
    }

    /// Each (reporter, edge) over the ticks in `window` before `now`.
    fn window(&self, now: Instant, window: Duration) -> HashMap<Key, Agg> {
        let mut sums: HashMap<Key, Agg> = HashMap::new();
        for t in self.ticks.iter().filter(|t| in_window(t, now, window)) {
            for (k, d) in &t.deltas {
                sums.entry(k.clone())
                    .or_default()
                    .add(d, t.span.as_secs_f64());
            }
        }
        sums
    }

    /// The graph over `window`: every node and edge seen in the retention (an idle edge
    /// shows with zero traffic), with rates over the window.
    pub fn graph(&self, now: Instant, window: Duration) -> (Vec<NodeInfo>, Vec<EdgeStats>) {
        let sums = self.window(now, window);
        let empty = Agg::default();
        // What the destination side received over mTLS and in plaintext, per workload pair.
        let mut security: HashMap<(&str, &str), (f64, f64)> = HashMap::new();
        for ((r, e), a) in &sums {
            if *r == Reporter::Destination {
                let c = &a.counts;
                let s = security
                    .entry((e.source.as_str(), e.destination.as_str()))
                    .or_default();
                s.0 += c.mtls + c.tcp_mtls;
                s.1 += c.plaintext + c.tcp_plaintext;
            }
        }
        let mut edges: Vec<EdgeStats> = self
            .preferred()
            .into_iter()
            .map(|(edge, reporter)| {
                let main = sums.get(&(reporter, edge.clone())).unwrap_or(&empty);
                let mtls = security
                    .get(&(edge.source.as_str(), edge.destination.as_str()))
                    .map_or("unknown", |(m, p)| mtls_of(*m, *p));
                let stats = signals_of(&main.counts, main.rate(main.rps), 0.0);
                EdgeStats {
                    protocol: if self.is_tcp(&edge) { "tcp" } else { "http" },
                    rps: stats.rps,
                    error_rate: stats.error_rate,
                    p50_ms: stats.p50_ms,
                    p99_ms: stats.p99_ms,
                    mtls,
                    reporter: match reporter {
                        Reporter::Source => "source",
                        Reporter::Destination => "destination",
                    },
                    tcp_connections_per_second: main.rate(main.cps),
                    tcp_bytes_per_second: main.rate(main.bps),
                    source: edge.source,
                    destination: edge.destination,
                    service: edge.service,
                }
            })
            .collect();
        edges.sort_by(|a, b| {
            (&a.source, &a.destination, &a.service).cmp(&(&b.source, &b.destination, &b.service))
        });
        let used: BTreeSet<&str> = edges
            .iter()
            .flat_map(|e| [e.source.as_str(), e.destination.as_str()])
            .collect();
        let nodes = self
            .nodes
            .values()
            .filter(|n| used.contains(n.id.as_str()))
            .cloned()
            .collect();
        (nodes, edges)
    }

    /// An edge that only ever carried opaque TCP.
    fn is_tcp(&self, edge: &EdgeKey) -> bool {
        let mut any_tcp = false;
        for (_, b) in self.baselines.values() {
            for r in [Reporter::Source, Reporter::Destination] {
                if let Some(c) = b.get(&(r, edge.clone())) {
                    if c.requests > 0.0 || !c.buckets.is_empty() {
                        return false;
                    }
                    any_tcp |= c.tcp_opened > 0.0 || c.tcp_bytes > 0.0;
                }
            }
        }
        any_tcp
    }

    /// Each service's signals over `window`: its edges' rates add up.
    pub fn services(&self, now: Instant, window: Duration) -> Vec<ServiceStats> {
        let sums = self.window(now, window);
        let mut per: BTreeMap<String, (Counts, f64, BTreeSet<String>)> = BTreeMap::new();
        for (edge, reporter) in self.preferred() {
            let e = per.entry(edge.service.clone()).or_default();
            e.2.insert(edge.destination.clone());
            if let Some(a) = sums.get(&(reporter, edge)) {
                e.0.add(&a.counts);
                e.1 += a.rate(a.rps);
            }
        }
        per.into_iter()
            .map(|(service, (c, rps, workloads))| ServiceStats {
                service,
                workloads: workloads.into_iter().collect(),
                signals: signals_of(&c, rps, 0.0),
            })
            .collect()
    }

    /// One service's signals per tick over the retention, oldest first.
    pub fn signals(&self, service: &str, now: Instant) -> Vec<Signals> {
        let preferred = self.preferred();
        self.ticks
            .iter()
            .filter(|t| !t.span.is_zero())
            .map(|t| {
                let mut c = Counts::default();
                let mut rps = 0.0;
                for (edge, reporter) in preferred.iter().filter(|(e, _)| e.service == service) {
                    if let Some(d) = t.deltas.get(&(*reporter, edge.clone())) {
                        c.add(&d.counts);
                        rps += d.rps;
                    }
                }
                let t_rel = -(now.saturating_duration_since(t.at).as_secs_f64());
                signals_of(&c, rps, t_rel)
            })
            .collect()
    }

    /// Whether the service was seen in the retention.
    pub fn knows_service(&self, service: &str) -> bool {
        self.keys().any(|(_, e)| e.service == service)
    }
}

fn in_window(t: &Tick, now: Instant, window: Duration) -> bool {
    now.saturating_duration_since(t.at) < window
}

fn signals_of(c: &Counts, rps: f64, t: f64) -> Signals {
    Signals {
        t,
        rps,
        error_rate: if c.requests > 0.0 {
            c.errors / c.requests
        } else {
            0.0
        },
        p50_ms: quantile(0.5, &c.buckets),
        p99_ms: quantile(0.99, &c.buckets),
    }
}

fn mtls_of(mtls: f64, plaintext: f64) -> &'static str {
    match (mtls > 0.0, plaintext > 0.0) {
        (true, false) => "mutual_tls",
        (false, true) => "none",
        (true, true) => "partial",
        (false, false) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::promtext::parse;

    const LABELS: &str = "source_workload=\"order\",source_workload_namespace=\"shop\",\
        source_app=\"order\",source_version=\"v1\",destination_workload=\"product-v2\",\
        destination_workload_namespace=\"shop\",destination_app=\"product\",\
        destination_version=\"v2\",destination_service=\"product.shop.svc.cluster.local\",\
        destination_service_name=\"product\",destination_service_namespace=\"shop\"";

    /// A scrape: `ok` 200s and `failed` 503s, with `fast` of the requests under 10 ms and
    /// the rest under 100 ms, from `reporter` with `policy`.
    fn scrape(reporter: &str, policy: &str, ok: u64, failed: u64, fast: u64) -> Vec<Sample> {
        let l = format!("reporter=\"{reporter}\",{LABELS},connection_security_policy=\"{policy}\"");
        let total = ok + failed;
        parse(&format!(
            "istio_requests_total{{{l},response_code=\"200\"}} {ok}\n\
             istio_requests_total{{{l},response_code=\"503\"}} {failed}\n\
             istio_request_duration_milliseconds_bucket{{{l},le=\"1\"}} 0\n\
             istio_request_duration_milliseconds_bucket{{{l},le=\"10\"}} {fast}\n\
             istio_request_duration_milliseconds_bucket{{{l},le=\"100\"}} {total}\n\
             istio_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {total}\n"
        ))
        .unwrap()
    }

    #[test]
    fn rates_errors_and_p99_come_from_increases_between_scrapes() {
        let t0 = Instant::now();
        let mut s = Series::default();
        // Baseline: what was counted before says nothing about the window.
        s.record(
            t0,
            vec![("a".into(), Some(scrape("source", "unknown", 1000, 0, 1000)))],
        );
        // 10 s later: 190 more 200s and 10 more 503s; 100 of the 200 were fast.
        s.record(
            t0 + Duration::from_secs(10),
            vec![(
                "a".into(),
                Some(scrape("source", "unknown", 1190, 10, 1100)),
            )],
        );
        let now = t0 + Duration::from_secs(10);
        let (nodes, edges) = s.graph(now, Duration::from_secs(60));
        assert_eq!(edges.len(), 1, "{edges:?}");
        let e = &edges[0];
        assert_eq!(
            (e.source.as_str(), e.destination.as_str()),
            ("order.shop", "product-v2.shop")
        );
        assert_eq!(e.service, "product.shop");
        assert_eq!(e.rps, 20.0);
        assert_eq!(e.error_rate, 0.05);
        // Rank 198 of 200 falls in (10, 100]: 98 of the 100 there.
        assert!(
            (e.p99_ms.unwrap() - (10.0 + 90.0 * 98.0 / 100.0)).abs() < 1e-9,
            "{e:?}"
        );
        assert_eq!(e.p50_ms, Some(10.0));
        assert_eq!(e.mtls, "unknown");
        assert_eq!(e.reporter, "source");
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["order.shop", "product-v2.shop"]);
        assert_eq!(nodes[1].version, "v2");
        // Outside the window: idle, still listed.
        let later = s
            .graph(now + Duration::from_secs(120), Duration::from_secs(60))
            .1;
        assert_eq!(later[0].rps, 0.0);
    }

    #[test]
    fn a_reset_counter_counts_whole_and_a_new_proxy_starts_as_baseline() {
        let t0 = Instant::now();
        let mut s = Series::default();
        s.record(
            t0,
            vec![("a".into(), Some(scrape("source", "unknown", 500, 0, 0)))],
        );
        // The proxy restarted: 40 since then.
        s.record(
            t0 + Duration::from_secs(2),
            vec![
                ("a".into(), Some(scrape("source", "unknown", 40, 0, 0))),
                (
                    "b".into(),
                    Some(scrape("destination", "mutual_tls", 9999, 0, 0)),
                ),
            ],
        );
        let edges = s
            .graph(t0 + Duration::from_secs(2), Duration::from_secs(60))
            .1;
        assert_eq!(edges[0].rps, 20.0);
        // b's first scrape is a baseline: no traffic from it yet, but mTLS needs a delta.
        assert_eq!(edges[0].mtls, "unknown");
    }

    #[test]
    fn the_source_side_counts_and_the_destination_side_tells_mtls() {
        let t0 = Instant::now();
        let mut s = Series::default();
        let round = |src: u64, dst: u64, policy: &str| {
            vec![
                (
                    "client".to_string(),
                    Some(scrape("source", "unknown", src, 0, src)),
                ),
                (
                    "server".to_string(),
                    Some(scrape("destination", policy, dst, 0, dst)),
                ),
            ]
        };
        s.record(t0, round(0, 0, "mutual_tls"));
        // The source saw 30 (some failed in its own proxy before reaching the server).
        s.record(t0 + Duration::from_secs(1), round(30, 20, "mutual_tls"));
        let e = &s
            .graph(t0 + Duration::from_secs(1), Duration::from_secs(60))
            .1[0];
        assert_eq!((e.rps, e.mtls, e.reporter), (30.0, "mutual_tls", "source"));
        // Plaintext requests too: partial.
        let mut next = round(60, 40, "mutual_tls");
        next.push((
            "server2".into(),
            Some(scrape("destination", "none", 0, 0, 0)),
        ));
        s.record(t0 + Duration::from_secs(2), next);
        s.record(
            t0 + Duration::from_secs(3),
            vec![
                (
                    "client".into(),
                    Some(scrape("source", "unknown", 60, 0, 60)),
                ),
                (
                    "server".into(),
                    Some(scrape("destination", "mutual_tls", 40, 0, 40)),
                ),
                (
                    "server2".into(),
                    Some(scrape("destination", "none", 5, 0, 5)),
                ),
            ],
        );
        let e = &s
            .graph(t0 + Duration::from_secs(3), Duration::from_secs(60))
            .1[0];
        assert_eq!(e.mtls, "partial");
        assert_eq!(e.rps, 20.0);
        // Per-tick signals for the service: 30 rps, then 30, then 0.
        let sig = s.signals("product.shop", t0 + Duration::from_secs(3));
        let rps: Vec<f64> = sig.iter().map(|p| p.rps).collect();
        assert_eq!(rps, [30.0, 30.0, 0.0]);
        assert_eq!(sig[0].t, -2.0);
        let services = s.services(t0 + Duration::from_secs(3), Duration::from_secs(60));
        assert_eq!(services[0].service, "product.shop");
        assert_eq!(services[0].workloads, ["product-v2.shop"]);
        assert_eq!(services[0].signals.rps, 20.0);
    }

    #[test]
    fn replicas_add_up_and_a_late_proxy_does_not_dilute_the_rate() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Series::default();
        s.record(
            at(0),
            vec![("a".into(), Some(scrape("source", "unknown", 0, 0, 0)))],
        );
        // b starts: its first scrape is a baseline; a runs at 10 rps.
        s.record(
            at(2),
            vec![
                ("a".into(), Some(scrape("source", "unknown", 20, 0, 0))),
                ("b".into(), Some(scrape("source", "unknown", 500, 0, 0))),
            ],
        );
        // Both at 10 rps; a's scrape failed in between, so its increase spans 4 s.
        s.record(
            at(4),
            vec![
                ("a".into(), None),
                ("b".into(), Some(scrape("source", "unknown", 520, 0, 0))),
            ],
        );
        s.record(
            at(6),
            vec![
                ("a".into(), Some(scrape("source", "unknown", 60, 0, 0))),
                ("b".into(), Some(scrape("source", "unknown", 540, 0, 0))),
            ],
        );
        let sig = s.signals("product.shop", at(6));
        let rps: Vec<f64> = sig.iter().map(|p| p.rps).collect();
        assert_eq!(rps, [10.0, 10.0, 20.0]);
        let e = &s.graph(at(6), Duration::from_secs(60)).1[0];
        assert!((e.rps - 40.0 / 3.0).abs() < 1e-9, "{e:?}");
        // A proxy that disconnected is forgotten with its baseline.
        s.record(
            at(8),
            vec![("b".into(), Some(scrape("source", "unknown", 560, 0, 0)))],
        );
        assert!(!s.baselines.contains_key("a"));
    }

    #[test]
    fn one_edge_per_workload_pair_when_the_sides_name_the_service_differently() {
        let t0 = Instant::now();
        let mut s = Series::default();
        let inbound = |n: u64| {
            let text = format!(
                "istio_requests_total{{reporter=\"destination\",source_workload=\"order\",\
                 source_workload_namespace=\"shop\",destination_workload=\"product-v2\",\
                 destination_workload_namespace=\"shop\",destination_service=\"10.0.0.7\",\
                 response_code=\"200\",connection_security_policy=\"mutual_tls\"}} {n}\n"
            );
            Some(parse(&text).unwrap())
        };
        s.record(
            t0,
            vec![
                ("a".into(), Some(scrape("source", "unknown", 0, 0, 0))),
                ("b".into(), inbound(0)),
            ],
        );
        s.record(
            t0 + Duration::from_secs(1),
            vec![
                ("a".into(), Some(scrape("source", "unknown", 10, 0, 0))),
                ("b".into(), inbound(10)),
            ],
        );
        let edges = s
            .graph(t0 + Duration::from_secs(1), Duration::from_secs(60))
            .1;
        assert_eq!(edges.len(), 1, "{edges:?}");
        assert_eq!(edges[0].service, "product.shop");
        assert_eq!((edges[0].rps, edges[0].mtls), (10.0, "mutual_tls"));
    }

    #[test]
    fn ticks_older_than_the_retention_are_dropped() {
        let t0 = Instant::now();
        let mut s = Series::default();
        for i in 0..400u64 {
            s.record(t0 + Duration::from_secs(2 * i), vec![]);
        }
        let kept = s.ticks.len() as u64;
        assert_eq!(kept, RETENTION.as_secs() / 2 + 1);
    }
}
