//! The control plane's own Prometheus metrics, served at `GET /metrics` on the debug port
//! (OpenMetrics text, which Prometheus scrapes as it is):
//!
//! - `weft_control_proxies_connected` (gauge);
//! - `weft_control_pushes_total`, `weft_control_acks_total`, `weft_control_nacks_total`
//!   (counters): pushes sent, and the proxies' answers to them: an answer that refuses
//!   any resource counts as a NACK, one that accepts all as an ACK;
//! - `weft_control_push_duration_seconds` (histogram): from sending a push to its answer;
//! - `weft_control_config_objects{status}` (gauge): config objects `accepted`, `rejected`,
//!   and `error` (their file does not load);
//! - `weft_control_disconnects_total{reason}` (counter): ended proxy streams, by reason;
//! - `weft_control_ca_cert_expiry_seconds{cert}` (gauge, with a CA): when the CA's `root`
//!   and, when one is plugged in, its `intermediate` certificate expire (Unix seconds of
//!   notAfter; the soonest one below the root when there are several).
//!
//! Counters of events live here (no globals: one set per control plane, in [`Shared`]).
//! Gauges and the disconnect counts are read from the state when scraped, so they cannot
//! drift from what `/debug/status` shows.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::Shared;
use crate::ca::CaExpiry;

/// The content type of [`ControlMetrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub struct ControlMetrics {
    pushes: Counter,
    acks: Counter,
    nacks: Counter,
    push_duration: Histogram,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        ControlMetrics {
            pushes: Counter::default(),
            acks: Counter::default(),
            nacks: Counter::default(),
            // 1 ms .. ~16 s: a push to a local proxy answers in milliseconds; seconds
            // mean a proxy (or the control plane) is struggling.
            push_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        }
    }
}

impl ControlMetrics {
    pub fn pushed(&self) {
        self.pushes.inc();
    }

    /// A proxy answered a push, sent `took` ago when it is the latest one; `rejected` when
    /// it refused a resource.
    pub fn answered(&self, took: Option<Duration>, rejected: bool) {
        if rejected {
            self.nacks.inc();
        } else {
            self.acks.inc();
        }
        if let Some(took) = took {
            self.push_duration.observe(took.as_secs_f64());
        }
    }

    /// The metrics as OpenMetrics text. A registry per scrape: the event counters are
    /// shared handles, the gauges are filled from the state as it is now.
    pub fn encode(&self, shared: &Shared) -> String {
        let (proxies, statuses, disconnects) = {
            let st = shared.state();
            (st.proxies.len(), st.statuses(), st.disconnects.clone())
        };
        let ca = shared.identity.ca.as_ref().map(|ca| ca.expiry());
        self.encode_with(
            proxies,
            statuses.iter().map(|s| s.status.as_str()),
            disconnects,
            ca,
        )
    }

    fn encode_with<'a>(
        &self,
        proxies: usize,
        statuses: impl Iterator<Item = &'a str>,
        disconnects: BTreeMap<String, u64>,
        ca: Option<CaExpiry>,
    ) -> String {
        let mut reg = Registry::default();
        let connected: Gauge = Gauge::default();
        connected.set(proxies as i64);
        reg.register(
            "weft_control_proxies_connected",
            "Proxies with an open push stream",
            connected,
        );
        reg.register(
            "weft_control_pushes",
            "Config pushes sent to proxies",
            self.pushes.clone(),
        );
        reg.register(
            "weft_control_acks",
            "Push answers accepting every resource",
            self.acks.clone(),
        );
        reg.register(
            "weft_control_nacks",
            "Push answers refusing at least one resource",
            self.nacks.clone(),
        );
        reg.register_with_unit(
            "weft_control_push_duration",
            "Time from sending a push to the proxy's ACK or NACK",
            Unit::Seconds,
            self.push_duration.clone(),
        );
        let objects: Family<Labels, Gauge> = Family::default();
        let mut by_status: BTreeMap<&str, i64> =
            [("accepted", 0), ("rejected", 0)].into_iter().collect();
        for s in statuses {
            *by_status.entry(s).or_default() += 1;
        }
        for (status, n) in by_status {
            objects
                .get_or_create(&vec![("status".to_owned(), status.to_owned())])
                .set(n);
        }
        reg.register(
            "weft_control_config_objects",
            "Config objects by status",
            objects,
        );
        let ended: Family<Labels, Counter> = Family::default();
        for (reason, n) in disconnects {
            ended
                .get_or_create(&vec![("reason".to_owned(), reason)])
                .inc_by(n);
        }
        reg.register(
            "weft_control_disconnects",
            "Proxy streams that ended, by reason",
            ended,
        );
        if let Some(ca) = ca {
            let expiry: Family<Labels, Gauge> = Family::default();
            let certs = [("root", Some(ca.root)), ("intermediate", ca.intermediate)];
            for (cert, at) in certs {
                if let Some(at) = at {
                    expiry
                        .get_or_create(&vec![("cert".to_owned(), cert.to_owned())])
                        .set(unix_seconds(at));
                }
            }
            reg.register_with_unit(
                "weft_control_ca_cert_expiry",
                "When the CA's root and intermediate certificates expire (Unix time of notAfter)",
                Unit::Seconds,
                expiry,
            );
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters_gauges_and_the_push_histogram() {
        let m = ControlMetrics::default();
        m.pushed();
        m.pushed();
        m.answered(Some(Duration::from_millis(3)), false);
        m.answered(Some(Duration::from_millis(30)), true);
        m.answered(None, false);
        let text = m.encode_with(
            2,
            ["accepted", "rejected", "accepted"].into_iter(),
            [("proxy closed the stream".to_owned(), 3)]
                .into_iter()
                .collect(),
            None,
        );
        for line in [
            "weft_control_proxies_connected 2",
            "weft_control_pushes_total 2",
            "weft_control_acks_total 2",
            "weft_control_nacks_total 1",
            "weft_control_push_duration_seconds_count 2",
            "weft_control_push_duration_seconds_bucket{le=\"0.004\"} 1",
            "weft_control_push_duration_seconds_bucket{le=\"0.032\"} 2",
            "weft_control_config_objects{status=\"accepted\"} 2",
            "weft_control_config_objects{status=\"rejected\"} 1",
            "weft_control_disconnects_total{reason=\"proxy closed the stream\"} 3",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(
            !text.contains("ca_cert_expiry"),
            "no CA, no expiry:\n{text}"
        );
    }

    #[test]
    fn encodes_the_ca_certificates_expiry() {
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let m = ControlMetrics::default();
        let expiry = |intermediate| {
            m.encode_with(
                0,
                std::iter::empty(),
                BTreeMap::new(),
                Some(CaExpiry {
                    root: at(2_000_000_000),
                    intermediate,
                }),
            )
        };
        let text = expiry(Some(at(1_800_000_000)));
        for line in [
            "# TYPE weft_control_ca_cert_expiry_seconds gauge",
            "# UNIT weft_control_ca_cert_expiry_seconds seconds",
            "weft_control_ca_cert_expiry_seconds{cert=\"root\"} 2000000000",
            "weft_control_ca_cert_expiry_seconds{cert=\"intermediate\"} 1800000000",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        // A self-signed root signs itself: no intermediate series.
        let text = expiry(None);
        assert!(
            text.lines()
                .any(|l| l == "weft_control_ca_cert_expiry_seconds{cert=\"root\"} 2000000000"),
            "{text}"
        );
        assert!(!text.contains("{cert=\"intermediate\"}"), "{text}");
    }
}
