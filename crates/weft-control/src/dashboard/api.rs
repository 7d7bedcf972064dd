//! The dashboard's routes on the debug port:
//!
//! - `GET /`, `/dashboard`: the page; `/assets/app.js`, `/assets/style.css`;
//! - `GET /api/graph?window=SECONDS`: nodes (workload + version) and edges (requests per
//!   second, 5xx share, p50/p99 in ms, mTLS) over the window (default 60 s);
//! - `GET /api/services?window=SECONDS`: golden signals per destination service;
//! - `GET /api/services/<service>/signals`: one point per scrape over the last 10 minutes;
//! - `GET /api/proxies`: connected proxies, their config (ACK/NACK) and certificate state
//!   and the last scrape of their metrics;
//! - `GET /api/config`: every config object with its status (the `/debug/status` report);
//! - `GET /api/traces?limit=N`, `GET /api/traces/<id>`: recent traces, one with its spans;
//! - `POST /api/v2/spans`: the Zipkin v2 collector;
//! - `GET /metrics`: the control plane's own metrics ([`crate::metrics`]).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Serialize;

use super::Dashboard;
use super::istio::NodeInfo;
use super::scrape::{self, ScrapeStatus};
use super::series::{EdgeStats, RETENTION, ServiceStats, Signals};
use super::traces::{self, TraceSummary};
use crate::Shared;
use crate::debug::{json, status_report, text};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// The graph's default window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize)]
pub struct GraphView {
    pub window_seconds: f64,
    pub scrape_interval_seconds: f64,
    pub nodes: Vec<NodeInfo>,
    pub edges: Vec<EdgeStats>,
}

#[derive(Debug, Serialize)]
pub struct ServicesView {
    pub window_seconds: f64,
    pub services: Vec<ServiceStats>,
}

#[derive(Debug, Serialize)]
pub struct SignalsView {
    pub service: String,
    pub points: Vec<Signals>,
}

#[derive(Debug, Serialize)]
pub struct ProxyView {
    pub id: String,
    pub identity: String,
    pub address: String,
    /// Where its metrics are scraped (from its hello; empty: not scraped).
    pub admin_address: String,
    /// Unix seconds.
    pub connected_since: u64,
    pub config_version: String,
    /// `ACKED`, `NACKED` or `PENDING`.
    pub sync: &'static str,
    pub resources_acked: usize,
    /// `resource: reason` per resource it refused.
    pub nacks: Vec<String>,
    pub cert_expiry: Option<String>,
    pub last_error: Option<String>,
    pub scrape: Option<ScrapeStatus>,
}

#[derive(Debug, Serialize)]
pub struct TraceList {
    pub stored: usize,
    pub dropped_spans: u64,
    pub traces: Vec<TraceSummary>,
}

/// The dashboard's answer to a GET, or none when `uri` is not one of its routes.
pub(crate) fn get(shared: &Shared, dash: &Dashboard, uri: &Uri) -> Option<Response<Full<Bytes>>> {
    let path = uri.path();
    let query = uri.query().unwrap_or_default();
    let window = param(query, "window")
        .map(|s| Duration::from_secs(s.clamp(5, RETENTION.as_secs())))
        .unwrap_or(DEFAULT_WINDOW);
    let response = match path {
        "/" | "/dashboard" | "/dashboard/" => asset(INDEX_HTML, "text/html; charset=utf-8"),
        "/assets/app.js" => asset(APP_JS, "text/javascript; charset=utf-8"),
        "/assets/style.css" => asset(STYLE_CSS, "text/css; charset=utf-8"),
        "/metrics" => {
            let mut r = text(StatusCode::OK, shared.metrics.encode(shared));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            r
        }
        "/api/graph" => {
            let (nodes, edges) = dash.series().graph(Instant::now(), window);
            json(&GraphView {
                window_seconds: window.as_secs_f64(),
                scrape_interval_seconds: scrape::INTERVAL.as_secs_f64(),
                nodes,
                edges,
            })
        }
        "/api/services" => json(&ServicesView {
            window_seconds: window.as_secs_f64(),
            services: dash.series().services(Instant::now(), window),
        }),
        "/api/proxies" => json(&proxies(shared, dash)),
        "/api/config" => json(&status_report(shared)),
        "/api/traces" => {
            let limit = param(query, "limit").unwrap_or(50).clamp(1, 200) as usize;
            let store = dash.traces();
            json(&TraceList {
                stored: store.len(),
                dropped_spans: store.dropped_spans,
                traces: store.list(limit),
            })
        }
        _ => {
            if let Some(service) = path
                .strip_prefix("/api/services/")
                .and_then(|r| r.strip_suffix("/signals"))
            {
                let series = dash.series();
                if !series.knows_service(service) {
                    return Some(text(
                        StatusCode::NOT_FOUND,
                        format!("no traffic to service `{service}` seen (see /api/services)\n"),
                    ));
                }
                return Some(json(&SignalsView {
                    service: service.to_owned(),
                    points: series.signals(service, Instant::now()),
                }));
            }
            if let Some(id) = path.strip_prefix("/api/traces/") {
                return Some(match dash.traces().get(id) {
                    Some(t) => json(&t),
                    None => text(
                        StatusCode::NOT_FOUND,
                        format!(
                            "no trace `{id}` stored (the last {} are kept)\n",
                            traces::MAX_TRACES
                        ),
                    ),
                });
            }
            return None;
        }
    };
    Some(response)
}

/// `POST /api/v2/spans`: Zipkin v2 JSON. 202 as Zipkin answers; 400 with the reason for a
/// body that is not spans; 415 for encodings it does not read (protobuf, gzip).
pub(crate) async fn receive_spans(
    dash: &Dashboard,
    req: http::Request<Incoming>,
) -> Response<Full<Bytes>> {
    let header = |name: http::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let content_type = header(http::header::CONTENT_TYPE);
    let encoding = header(http::header::CONTENT_ENCODING);
    if content_type.contains("protobuf") || !(encoding.is_empty() || encoding == "identity") {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only uncompressed Zipkin v2 JSON (Content-Type: application/json)\n".into(),
        );
    }
    let body = match Limited::new(req.into_body(), traces::MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "cannot read the spans (at most {} bytes): {e}\n",
                    traces::MAX_BODY
                ),
            );
        }
    };
    match traces::decode(&body) {
        Ok(spans) => {
            dash.traces().insert(spans);
            text(StatusCode::ACCEPTED, String::new())
        }
        Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

fn proxies(shared: &Shared, dash: &Dashboard) -> Vec<ProxyView> {
    let scrapes = dash.scrapes().clone();
    shared
        .proxies_view()
        .into_iter()
        .map(|p| ProxyView {
            admin_address: p
                .announced
                .as_ref()
                .map(|h| h.admin_address.clone())
                .unwrap_or_default(),
            connected_since: p
                .connected_since
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            sync: p.sync_state(),
            resources_acked: p.acked.len(),
            nacks: p
                .nacked
                .iter()
                .map(|(res, n)| format!("{res}: {}", n.reason))
                .collect(),
            scrape: scrapes.get(&p.id).cloned(),
            id: p.id,
            identity: p.identity,
            address: p.address,
            config_version: p.config_version,
            cert_expiry: p.cert_expiry,
            last_error: p.last_error,
        })
        .collect()
}

fn asset(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// A numeric query parameter.
fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_query_parameters() {
        assert_eq!(param("window=30&limit=5", "limit"), Some(5));
        assert_eq!(param("window=30", "window"), Some(30));
        assert_eq!(param("window=x", "window"), None);
        assert_eq!(param("", "window"), None);
    }
}
