//! The mesh dashboard, served by the control plane on its debug port:
//!
//! - [`scrape`]: every few seconds, each connected proxy's `/stats/prometheus` (Istio's
//!   metrics), read by [`promtext`] and [`istio`], into [`series`]: the last minutes of
//!   traffic per edge;
//! - [`traces`]: a Zipkin v2 collector (`POST /api/v2/spans`) and a bounded trace store;
//! - [`api`]: the JSON API the page reads and the page itself (plain HTML/CSS/JS embedded
//!   in the binary: no build step, no CDN, works offline).
//!
//! It needs nothing else installed: no Prometheus, no Zipkin, no Kiali.

pub mod api;
pub mod istio;
pub mod promtext;
pub mod scrape;
pub mod series;
pub mod traces;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use self::scrape::ScrapeStatus;
use self::series::Series;
use self::traces::TraceStore;
use crate::ControlPlane;

/// What the dashboard collects; one per debug server.
#[derive(Debug, Default)]
pub struct Dashboard {
    series: Mutex<Series>,
    traces: Mutex<TraceStore>,
    scrapes: Mutex<BTreeMap<String, ScrapeStatus>>,
}

/// A poisoned lock holds plain data: keep serving it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dashboard {
    pub fn series(&self) -> MutexGuard<'_, Series> {
        lock(&self.series)
    }

    pub fn traces(&self) -> MutexGuard<'_, TraceStore> {
        lock(&self.traces)
    }

    pub fn scrapes(&self) -> MutexGuard<'_, BTreeMap<String, ScrapeStatus>> {
        lock(&self.scrapes)
    }
}

impl ControlPlane {
    /// The dashboard's URL (the debug listener), when the debug API runs.
    pub fn dashboard_url(&self) -> Option<String> {
        self.debug_addr.map(|a| format!("http://{a}/"))
    }

    /// Where proxies send Zipkin v2 spans (`POST`, JSON), when the debug API runs.
    pub fn zipkin_collector(&self) -> Option<String> {
        self.debug_addr.map(|a| format!("http://{a}/api/v2/spans"))
    }
}

/// The Zipkin collector of a control plane whose debug port is `debug`, as a tracing
/// provider (the compiler fills in each proxy's service name).
pub fn trace_collector(debug: std::net::SocketAddr) -> weft_api::TraceProvider {
    weft_api::TraceProvider {
        name: "weft-dashboard".to_string(),
        protocol: weft_api::TraceProtocol::ZipkinJson,
        endpoint: debug.to_string(),
        path: "/api/v2/spans".to_string(),
        service_name: String::new(),
        max_queued_spans: 2048,
        max_batch: 512,
        flush_interval: std::time::Duration::from_secs(1),
    }
}
