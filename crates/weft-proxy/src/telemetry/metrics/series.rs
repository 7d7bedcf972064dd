//! The Istio metric series of one proxy process: label sets → counters and histograms,
//! with the cardinality guard (a cap per metric, one `overflow` series beyond it) and
//! idle expiry.
//!
//! Metrics recorded together with the same label names share one [`Table`]: an entry
//! holds every metric of its label set (`istio_requests_total` and the three histograms of
//! a request are one lookup). An entry remembers which metrics were recorded into it, and
//! only those are exported, so a disabled metric, or the message counters of plain HTTP
//! requests, never show up as zeros.
//!
//! Entries are updated under a shard's read lock (atomics only), so expiry, which takes
//! the write lock, never drops an update.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::time::Instant;
use weft_api::IstioMetric;

/// Envoy's default histogram buckets (`histogram_impl.cc: defaultBuckets`); Istio sets
/// none, so all three Istio histograms use them (milliseconds and bytes alike).
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// The label value of every label of the overflow series.
pub const OVERFLOW: &str = "overflow";

const SHARDS: usize = 16;

/// The Istio metrics, in export order (also the index of the per-metric counters).
pub const METRICS: [IstioMetric; 10] = [
    IstioMetric::RequestCount,
    IstioMetric::RequestDuration,
    IstioMetric::RequestSize,
    IstioMetric::ResponseSize,
    IstioMetric::GrpcRequestMessages,
    IstioMetric::GrpcResponseMessages,
    IstioMetric::TcpOpenedConnections,
    IstioMetric::TcpClosedConnections,
    IstioMetric::TcpSentBytes,
    IstioMetric::TcpReceivedBytes,
];

/// Where a metric's value lives in an [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Counter(usize),
    Histogram(usize),
}

pub fn slot(m: IstioMetric) -> Slot {
    match m {
        IstioMetric::RequestCount | IstioMetric::TcpOpenedConnections => Slot::Counter(0),
        IstioMetric::GrpcRequestMessages | IstioMetric::TcpClosedConnections => Slot::Counter(1),
        IstioMetric::GrpcResponseMessages | IstioMetric::TcpSentBytes => Slot::Counter(2),
        IstioMetric::TcpReceivedBytes => Slot::Counter(3),
        IstioMetric::RequestDuration => Slot::Histogram(0),
        IstioMetric::RequestSize => Slot::Histogram(1),
        IstioMetric::ResponseSize | IstioMetric::AllMetrics => Slot::Histogram(2),
    }
}

pub fn index(m: IstioMetric) -> usize {
    METRICS.iter().position(|x| *x == m).unwrap_or(0)
}

/// A set of metrics (bit = [`index`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MetricSet(pub u32);

impl MetricSet {
    pub fn with(self, m: IstioMetric) -> MetricSet {
        MetricSet(self.0 | 1 << index(m))
    }

    pub fn contains(self, m: IstioMetric) -> bool {
        self.0 & 1 << index(m) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = IstioMetric> {
        METRICS.into_iter().filter(move |m| self.contains(*m))
    }
}

/// HTTP tables hold histograms; TCP tables only counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Tcp,
}

pub fn kind(m: IstioMetric) -> Kind {
    match m {
        IstioMetric::TcpOpenedConnections
        | IstioMetric::TcpClosedConnections
        | IstioMetric::TcpSentBytes
        | IstioMetric::TcpReceivedBytes => Kind::Tcp,
        _ => Kind::Http,
    }
}

#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, value: u64) {
        let i = BUCKETS.partition_point(|b| *b < value as f64);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Sum, count and the per-bucket counts with their upper bounds (`+Inf` last), as the
    /// text encoder takes them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let buckets = BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.buckets)
            .map(|(le, n)| {
                let n = n.load(Ordering::Relaxed);
                count += n;
                (le, n)
            })
            .collect();
        (self.sum.load(Ordering::Relaxed) as f64, count, buckets)
    }
}

/// One label set and its metrics.
#[derive(Debug)]
pub struct Entry {
    pub labels: Box<[Box<str>]>,
    last_used: AtomicU64,
    recorded: AtomicU32,
    pub counters: [AtomicU64; 4],
    pub histograms: Box<[Histogram]>,
}

impl Entry {
    fn new(kind: Kind, labels: Box<[Box<str>]>, now: u64) -> Entry {
        let histograms = match kind {
            Kind::Http => (0..3).map(|_| Histogram::default()).collect(),
            Kind::Tcp => Box::default(),
        };
        Entry {
            labels,
            last_used: AtomicU64::new(now),
            recorded: AtomicU32::new(0),
            counters: Default::default(),
            histograms,
        }
    }

    pub fn has(&self, m: IstioMetric) -> bool {
        MetricSet(self.recorded.load(Ordering::Relaxed)).contains(m)
    }

    pub fn counter(&self, i: usize) -> u64 {
        self.counters[i].load(Ordering::Relaxed)
    }

    pub fn add(&self, i: usize, n: u64) {
        self.counters[i].fetch_add(n, Ordering::Relaxed);
    }
}

/// The label names of one schema and the entries recorded with them.
#[derive(Debug)]
pub struct Table {
    pub kind: Kind,
    pub names: Box<[Arc<str>]>,
    shards: [RwLock<Shard>; SHARDS],
}

type Shard = HashMap<u64, Vec<Arc<Entry>>, BuildHasherDefault<Prehashed>>;

impl Table {
    /// Every entry now. The locks are held only to copy the pointers: encoding a large
    /// scrape never holds up a request that adds a series.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(read(shard).values().flatten().cloned());
        }
        out
    }

    fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| read(s).is_empty())
    }
}

/// The keys are already hashes.
#[derive(Default)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Every series of the process, the guard's limits and its counters.
#[derive(Debug)]
pub struct Series {
    epoch: Instant,
    tables: Mutex<Vec<Arc<Table>>>,
    /// Live series per metric (index as [`METRICS`]).
    counts: [AtomicUsize; METRICS.len()],
    /// Records that went to the overflow series, per metric.
    overflowed: [AtomicU64; METRICS.len()],
    max_series: AtomicUsize,
    idle_ms: AtomicU64,
    next_sweep: AtomicU64,
    hasher: foldhash::fast::FixedState,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            epoch: Instant::now(),
            tables: Mutex::default(),
            counts: Default::default(),
            overflowed: Default::default(),
            max_series: AtomicUsize::new(2000),
            idle_ms: AtomicU64::new(3_600_000),
            next_sweep: AtomicU64::new(0),
            hasher: foldhash::fast::FixedState::with_seed(0x05ee_d0f5_e7e5),
        }
    }
}

impl Series {
    /// The limits of the config in force (the last one built wins).
    pub fn set_limits(&self, max_series_per_metric: u32, idle: std::time::Duration) {
        self.max_series
            .store(max_series_per_metric as usize, Ordering::Relaxed);
        let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX).max(1);
        self.idle_ms.store(idle, Ordering::Relaxed);
        self.next_sweep.store(0, Ordering::Relaxed);
    }

    /// The table for these label names (in any order), created on first use. The table
    /// keeps the order it was created with: callers write values in `table.names` order.
    pub fn table(&self, kind: Kind, names: &[Arc<str>]) -> Arc<Table> {
        let mut tables = lock(&self.tables);
        let same = |t: &Table| {
            t.kind == kind
                && t.names.len() == names.len()
                && names.iter().all(|n| t.names.contains(n))
        };
        if let Some(t) = tables.iter().find(|t| same(t)) {
            return t.clone();
        }
        let table = Arc::new(Table {
            kind,
            names: names.into(),
            shards: Default::default(),
        });
        tables.push(table.clone());
        table
    }

    pub fn tables(&self) -> Vec<Arc<Table>> {
        lock(&self.tables).clone()
    }

    pub fn count(&self, m: IstioMetric) -> usize {
        self.counts[index(m)].load(Ordering::Relaxed)
    }

    pub fn overflowed(&self, m: IstioMetric) -> u64 {
        self.overflowed[index(m)].load(Ordering::Relaxed)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Records `metrics` for the label set `values` (in `table.names` order): `f` updates
    /// the entry's counters and histograms.
    pub fn record(
        &self,
        table: &Table,
        metrics: MetricSet,
        values: &[Cow<'_, str>],
        f: impl FnOnce(&Entry),
    ) {
        if metrics.is_empty() {
            return;
        }
        let now = self.now();
        if now >= self.next_sweep.load(Ordering::Relaxed) {
            self.sweep_if_due(now);
        }
        let hash = self.hash(values);
        let shard = &table.shards[hash as usize % SHARDS];
        let same = |e: &Entry| e.labels.iter().zip(values).all(|(a, b)| **a == **b);
        {
            let entries = read(shard);
            if let Some(e) = entries.get(&hash).and_then(|v| v.iter().find(|e| same(e))) {
                self.touch(e, metrics, now);
                return f(e);
            }
        }
        let mut entries = write(shard);
        if let Some(e) = entries.get(&hash).and_then(|v| v.iter().find(|e| same(e))) {
            self.touch(e, metrics, now);
            return f(e);
        }
        let cap = self.max_series.load(Ordering::Relaxed);
        if metrics.iter().any(|m| self.count(m) >= cap) {
            drop(entries);
            for m in metrics.iter() {
                self.overflowed[index(m)].fetch_add(1, Ordering::Relaxed);
            }
            return self.record_overflow(table, metrics, now, f);
        }
        let labels = values.iter().map(|v| Box::from(&**v)).collect();
        let bucket = entries.entry(hash).or_default();
        bucket.push(Arc::new(Entry::new(table.kind, labels, now)));
        let e = bucket.last().expect("just pushed");
        self.touch(e, metrics, now);
        f(e)
    }

    /// The one series of the table whose labels are all `overflow`; it is not counted
    /// against the cap.
    fn record_overflow(&self, table: &Table, metrics: MetricSet, now: u64, f: impl FnOnce(&Entry)) {
        let values: Vec<Cow<'_, str>> = vec![Cow::Borrowed(OVERFLOW); table.names.len()];
        let hash = self.hash(&values);
        let mut entries = write(&table.shards[hash as usize % SHARDS]);
        let bucket = entries.entry(hash).or_default();
        let i = match bucket
            .iter()
            .position(|e| e.labels.iter().all(|l| &**l == OVERFLOW))
        {
            Some(i) => i,
            None => {
                let labels = values.iter().map(|v| Box::from(&**v)).collect();
                bucket.push(Arc::new(Entry::new(table.kind, labels, now)));
                bucket.len() - 1
            }
        };
        let e = &bucket[i];
        e.recorded.fetch_or(metrics.0, Ordering::Relaxed);
        e.last_used.store(now, Ordering::Relaxed);
        f(e)
    }

    fn touch(&self, e: &Entry, metrics: MetricSet, now: u64) {
        let had = e.recorded.load(Ordering::Relaxed);
        if had & metrics.0 != metrics.0 {
            let before = e.recorded.fetch_or(metrics.0, Ordering::Relaxed);
            let overflow = e.labels.iter().all(|l| &**l == OVERFLOW);
            for m in MetricSet(metrics.0 & !before).iter() {
                if !overflow {
                    self.counts[index(m)].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // At most one write per millisecond: concurrent requests do not keep bouncing
        // the cache line.
        if e.last_used.load(Ordering::Relaxed) != now {
            e.last_used.store(now, Ordering::Relaxed);
        }
    }

    fn hash(&self, values: &[Cow<'_, str>]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for v in values {
            h.write(v.as_bytes());
            h.write_u8(0xff);
        }
        h.finish()
    }

    /// Drops series idle for longer than the expiry, when a sweep is due (a quarter of
    /// the expiry, at most a minute, after the last one).
    fn sweep_if_due(&self, now: u64) {
        let due = self.next_sweep.load(Ordering::Relaxed);
        let idle = self.idle_ms.load(Ordering::Relaxed);
        let next = now + (idle / 4).clamp(1, 60_000);
        if now < due
            || self
                .next_sweep
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.expire(now, idle);
    }

    /// Drops idle series now (the admin endpoint calls this before encoding).
    pub fn expire_idle(&self) {
        let now = self.now();
        self.expire(now, self.idle_ms.load(Ordering::Relaxed));
    }

    fn expire(&self, now: u64, idle: u64) {
        for table in &self.tables() {
            for shard in &table.shards {
                let mut entries = write(shard);
                entries.retain(|_, bucket| {
                    bucket.retain(|e| {
                        let keep = now.saturating_sub(e.last_used.load(Ordering::Relaxed)) < idle;
                        if !keep && !e.labels.iter().all(|l| &**l == OVERFLOW) {
                            let recorded = MetricSet(e.recorded.load(Ordering::Relaxed));
                            for m in recorded.iter() {
                                self.counts[index(m)].fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                        keep
                    });
                    !bucket.is_empty()
                });
            }
        }
        // A table no config uses any more (only this list holds it) goes once its series
        // have expired.
        lock(&self.tables).retain(|t| Arc::strong_count(t) > 1 || !t.is_empty());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
