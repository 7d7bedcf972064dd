use std::time::Duration;

use super::*;

fn names(n: usize) -> Vec<Arc<str>> {
    (0..n)
        .map(|i| Arc::from(format!("l{i}").as_str()))
        .collect()
}

fn values(v: &[&'static str]) -> Vec<Cow<'static, str>> {
    v.iter().map(|s| Cow::Borrowed(*s)).collect()
}

fn requests() -> MetricSet {
    MetricSet::default().with(IstioMetric::RequestCount)
}

/// Every entry of the table: labels and request count.
fn dump(table: &Table) -> Vec<(Vec<String>, u64)> {
    let mut out: Vec<(Vec<String>, u64)> = table
        .entries()
        .iter()
        .map(|e| {
            (
                e.labels.iter().map(|l| l.to_string()).collect(),
                e.counter(0),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn buckets_are_envoys_defaults() {
    assert_eq!(
        BUCKETS,
        [
            0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
            30000.0, 60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0
        ]
    );
}

#[test]
fn histogram_puts_values_in_the_first_bucket_that_holds_them() {
    let h = Histogram::default();
    for v in [0, 1, 2, 5, 6, 3_600_000, 3_600_001] {
        h.observe(v);
    }
    let (sum, count, buckets) = h.snapshot();
    assert_eq!((sum, count), (7_200_015.0, 7));
    assert_eq!(buckets.len(), 20);
    let per: Vec<u64> = buckets.iter().map(|(_, n)| *n).collect();
    // 0 ≤ 0.5; 1 ≤ 1; 2 and 5 ≤ 5; 6 ≤ 10; 3600000 in the last finite bucket; beyond: +Inf.
    assert_eq!(&per[..4], &[1, 1, 2, 1]);
    assert_eq!((per[18], per[19]), (1, 1));
    assert_eq!(buckets[19].0, f64::INFINITY);
}

#[tokio::test]
async fn same_labels_share_an_entry_and_others_get_their_own() {
    let s = Series::default();
    let t = s.table(Kind::Http, &names(2));
    for v in [["a", "1"], ["a", "1"], ["a", "2"]] {
        s.record(&t, requests(), &values(&v), |e| e.add(0, 1));
    }
    assert_eq!(
        dump(&t),
        [
            (vec!["a".to_string(), "1".to_string()], 2),
            (vec!["a".to_string(), "2".to_string()], 1)
        ]
    );
    assert_eq!(s.count(IstioMetric::RequestCount), 2);
    assert_eq!(s.count(IstioMetric::RequestDuration), 0);
    // The same names in another order are the same table.
    let mut reversed = names(2);
    reversed.reverse();
    assert!(Arc::ptr_eq(&t, &s.table(Kind::Http, &reversed)));
    assert!(!Arc::ptr_eq(&t, &s.table(Kind::Tcp, &names(2))));
}

#[tokio::test]
async fn beyond_the_cap_records_go_to_one_overflow_series() {
    let s = Series::default();
    s.set_limits(2, Duration::from_secs(60));
    let t = s.table(Kind::Http, &names(2));
    for v in [["a", "1"], ["a", "2"], ["a", "3"], ["a", "4"], ["a", "1"]] {
        s.record(&t, requests(), &values(&v), |e| e.add(0, 1));
    }
    assert_eq!(
        dump(&t),
        [
            (vec!["a".to_string(), "1".to_string()], 2),
            (vec!["a".to_string(), "2".to_string()], 1),
            (vec![OVERFLOW.to_string(), OVERFLOW.to_string()], 2),
        ]
    );
    assert_eq!(s.count(IstioMetric::RequestCount), 2);
    assert_eq!(s.overflowed(IstioMetric::RequestCount), 2);
}

#[tokio::test(start_paused = true)]
async fn idle_series_expire_and_free_their_slot() {
    let s = Series::default();
    s.set_limits(1, Duration::from_secs(60));
    let t = s.table(Kind::Http, &names(1));
    s.record(&t, requests(), &values(&["old"]), |e| e.add(0, 1));
    tokio::time::advance(Duration::from_secs(59)).await;
    s.expire_idle();
    assert_eq!(dump(&t).len(), 1, "not idle long enough");
    tokio::time::advance(Duration::from_secs(2)).await;
    // The record path sweeps when a sweep is due: the old series goes, the new one fits
    // under the cap of 1.
    s.record(&t, requests(), &values(&["new"]), |e| e.add(0, 1));
    assert_eq!(dump(&t), [(vec!["new".to_string()], 1)]);
    assert_eq!(s.count(IstioMetric::RequestCount), 1);
    assert_eq!(s.overflowed(IstioMetric::RequestCount), 0);
    // Used again within the expiry: kept.
    tokio::time::advance(Duration::from_secs(50)).await;
    s.record(&t, requests(), &values(&["new"]), |e| e.add(0, 1));
    tokio::time::advance(Duration::from_secs(50)).await;
    s.expire_idle();
    assert_eq!(dump(&t), [(vec!["new".to_string()], 2)]);
    tokio::time::advance(Duration::from_secs(11)).await;
    s.expire_idle();
    assert!(dump(&t).is_empty());
    assert_eq!(s.count(IstioMetric::RequestCount), 0);
}

#[tokio::test(start_paused = true)]
async fn unused_empty_tables_are_dropped() {
    let s = Series::default();
    s.set_limits(10, Duration::from_secs(1));
    let t = s.table(Kind::Tcp, &names(3));
    s.record(&t, requests(), &values(&["a", "b", "c"]), |_| {});
    drop(t);
    assert_eq!(s.tables().len(), 1, "series still there");
    tokio::time::advance(Duration::from_secs(2)).await;
    s.expire_idle();
    assert!(s.tables().is_empty());
}

#[tokio::test]
async fn only_recorded_metrics_count() {
    let s = Series::default();
    let t = s.table(Kind::Http, &names(1));
    let both = requests().with(IstioMetric::RequestDuration);
    s.record(&t, requests(), &values(&["a"]), |_| {});
    assert_eq!(s.count(IstioMetric::RequestDuration), 0);
    s.record(&t, both, &values(&["a"]), |_| {});
    assert_eq!(s.count(IstioMetric::RequestDuration), 1);
    assert_eq!(s.count(IstioMetric::RequestCount), 1);
    let has: Vec<(bool, bool)> = t
        .entries()
        .iter()
        .map(|e| {
            (
                e.has(IstioMetric::RequestDuration),
                e.has(IstioMetric::ResponseSize),
            )
        })
        .collect();
    assert_eq!(has, [(true, false)]);
}
