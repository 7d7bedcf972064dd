//! The four Grafana dashboards. Traffic panels read Istio's standard metrics with Istio's
//! conventions: `reporter="destination"` (the server-side proxy) for a service's own view,
//! `reporter="source"` (the client-side proxy) for what its clients see. Proxy and control
//! plane health panels read weft's own metrics, selected by scrape job.

mod control_plane;
mod mesh_overview;
mod service;
mod workload;

use serde_json::Value;

use super::promql::Scrape;

pub use control_plane::control_plane;
pub use mesh_overview::mesh_overview;
pub use service::service;
pub use workload::workload;

/// Requests as the server-side proxy saw them.
const DST: &str = r#"reporter="destination""#;
/// Requests as the client-side proxy saw them.
const SRC: &str = r#"reporter="source""#;
/// Server errors; Istio's dashboards count success as "not 5xx".
const FIVE_XX: &str = r#"response_code=~"5..""#;
const NOT_5XX: &str = r#"response_code!~"5..""#;

const REQUESTS: &str = "istio_requests_total";
/// Histogram in milliseconds (`le` in ms).
const DURATION_MS: &str = "istio_request_duration_milliseconds";
const REQUEST_BYTES: &str = "istio_request_bytes";
const RESPONSE_BYTES: &str = "istio_response_bytes";

/// Success-rate thresholds used by every "success rate" stat: red below 95 %, amber below 99 %.
const SUCCESS_STEPS: &[(Option<f64>, &str)] =
    &[(None, "red"), (Some(0.95), "orange"), (Some(0.99), "green")];

/// (file name, dashboard JSON) for every dashboard, in the order they are written.
pub fn all(scrape: &Scrape) -> Vec<(&'static str, Value)> {
    vec![
        ("mesh-overview.json", mesh_overview(scrape)),
        ("service.json", service(scrape)),
        ("workload.json", workload(scrape)),
        ("control-plane.json", control_plane(scrape)),
    ]
}
