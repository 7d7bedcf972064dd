//! The admin endpoint (Envoy/Istio's shape, on `--admin`, 127.0.0.1:15000 by default):
//!
//! - `GET /ready`: 200 once the first config is applied, 503 with the reason before that
//!   and while draining.
//! - `GET /live`: 200 while the process runs.
//! - `GET /config_dump`: the live `ProxyConfig` as JSON with its version, when it was
//!   applied, the bound listeners and the last rejected config's error.
//! - `GET /stats/prometheus`: OpenMetrics text: Istio's standard metrics and the proxy's
//!   health (connections, clusters, certificate, config pushes, ...).
//! - `POST /quitquitquit`: drain with the configured grace, then exit.
//! - `GET /logging`, `POST /logging?level=debug`: show or change the log filter.

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::app::Inner;
use crate::telemetry::metrics::encode;
use crate::telemetry::metrics::health::{self, Family, Type};

/// Changes the process's log filter at runtime (the binary implements it with
/// tracing-subscriber's reload handle; the library does not pick a subscriber).
pub trait LogControl: Send + Sync {
    /// The filter in force, e.g. `info,weft_proxy=debug`.
    fn current(&self) -> String;
    /// Replace the filter; the error says what is wrong with `filter`.
    fn set(&self, filter: &str) -> Result<(), String>;
}

type Body = Full<Bytes>;

pub(crate) fn spawn(listener: TcpListener, inner: Arc<Inner>) {
    let span = info_span!("admin");
    tokio::spawn(
        async move {
            let done = inner.clone();
            tokio::select! {
                () = accept_loop(listener, inner) => {}
                () = done.stopped() => debug!("admin stopped"),
            }
        }
        .instrument(span),
    );
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let inner = inner.clone();
                async move { Ok::<_, Infallible>(handle(req, &inner).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "admin connection error");
            }
        });
    }
}

async fn handle(req: Request<Incoming>, inner: &Arc<Inner>) -> Response<Body> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/ready") => ready(inner),
        (&Method::GET | &Method::HEAD, "/live") => text(StatusCode::OK, "live\n".into()),
        (&Method::GET, "/config_dump") => config_dump(inner),
        (&Method::GET, "/stats/prometheus" | "/stats") => stats(inner),
        (&Method::POST, "/quitquitquit") => quit(inner),
        (&Method::GET, "/logging") => logging_get(inner),
        (&Method::POST | &Method::PUT, "/logging") => logging_set(inner, req.uri().query()),
        (
            _,
            "/ready" | "/live" | "/config_dump" | "/stats/prometheus" | "/stats" | "/quitquitquit"
            | "/logging",
        ) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} does not take {}\n", path, req.method()),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; endpoints: /ready /live /config_dump /stats/prometheus \
             /quitquitquit (POST) /logging[?level=FILTER] (POST to change)\n"
                .into(),
        ),
    }
}

fn ready(inner: &Inner) -> Response<Body> {
    let status = inner.status.borrow();
    if status.ready {
        return text(StatusCode::OK, "ready\n".into());
    }
    let mut reason = if status.draining {
        "not ready: draining".to_string()
    } else if status.waiting_for_certificate {
        "not ready: waiting for the workload certificate (mesh mTLS)".to_string()
    } else {
        "not ready: no config applied yet (waiting for the config source)".to_string()
    };
    if let (false, Some(r)) = (status.draining, &status.rejected) {
        let _ = write!(reason, "; last config rejected: {}", r.error);
    }
    reason.push('\n');
    text(StatusCode::SERVICE_UNAVAILABLE, reason)
}

fn config_dump(inner: &Inner) -> Response<Body> {
    let rt = inner.rt.load();
    let status = inner.status.borrow().clone();
    let dump = serde_json::json!({
        "version": status.applied.as_ref().map(|a| a.version.clone()),
        "applied_at": status.applied.as_ref().map(|a| rfc3339(a.at)),
        "ready": status.ready,
        "draining": status.draining,
        "listeners": status.listeners,
        "last_rejected": status.rejected,
        "configs_applied": status.applied_total,
        "configs_rejected": status.rejected_total,
        "config": &*rt.config,
    });
    match serde_json::to_vec_pretty(&dump) {
        Ok(body) => Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "dump failed\n".into())),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialize the config: {e}\n"),
        ),
    }
}

/// Everything as OpenMetrics text through prometheus-client: the edge and mesh counters,
/// per-cluster and control-plane health, then Istio's standard metrics.
fn stats(inner: &Inner) -> Response<Body> {
    let rt = inner.rt.load();
    let hub = rt.telemetry().hub().clone();
    hub.metrics.series.expire_idle();
    let mut families = edge_stats(inner);
    families.extend(mesh_stats(inner));
    let mut clusters = health::clusters(rt.clusters());
    for f in &mut clusters {
        f.samples.sort_by(|a, b| a.labels.cmp(&b.labels));
    }
    families.extend(clusters);
    families.push(Family::counter(
        "weft_rate_limited_requests_total",
        "Requests answered 429 by a local rate limit (RL), while Istio metrics are on.",
        hub.metrics.rate_limited(),
    ));
    if let Some(xds) = hub.metrics.xds() {
        families.extend(health::xds(&xds));
    }
    match encode::render(hub, families) {
        Ok(body) => {
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(encode::CONTENT_TYPE),
            );
            resp
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n".into(),
        ),
    }
}

/// Configs and connections at the edge.
fn edge_stats(inner: &Inner) -> Vec<Family> {
    let s = &inner.shared.stats;
    let status = inner.status.borrow();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let mut families = vec![
        Family::counter(
            "weft_config_applied_total",
            "Configs applied.",
            status.applied_total,
        ),
        Family::counter(
            "weft_config_rejected_total",
            "Configs rejected (the previous one stayed in force).",
            status.rejected_total,
        ),
    ];
    if let Some(applied) = &status.applied {
        families.push(
            Family::new(
                "weft_config_info",
                "The version of the config in force (value 1).",
                Type::Gauge,
            )
            .sample(vec![("version", applied.version.clone())], 1),
        );
        let at = applied
            .at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        families.push(Family::gauge(
            "weft_config_applied_timestamp_seconds",
            "Unix time at which the config in force was applied.",
            i64::try_from(at).unwrap_or(i64::MAX),
        ));
    }
    let counters: [(&str, &'static str, u64); 6] = [
        (
            "weft_downstream_connections_total",
            "Connections accepted.",
            load(&s.connections_total),
        ),
        (
            "weft_downstream_connection_errors_total",
            "Connections that ended with an error.",
            load(&s.connection_errors_total),
        ),
        (
            "weft_blackholed_connections_total",
            "Connections no chain took, closed by a Blackhole fallback.",
            load(&s.blackholed_total),
        ),
        (
            "weft_passthrough_loops_total",
            "Passthrough connections refused because they would dial the proxy itself.",
            load(&s.passthrough_loops_total),
        ),
        (
            "weft_protocol_detection_timeouts_total",
            "Connections whose client sent nothing before the detection timeout.",
            load(&s.detect_timeouts_total),
        ),
        (
            "weft_inbound_plaintext_refused_total",
            "Plaintext connections closed on ports whose PeerAuthentication is STRICT.",
            load(&s.plaintext_refused_total),
        ),
    ];
    families.extend(
        counters
            .into_iter()
            .map(|(n, h, v)| Family::counter(n, h, v)),
    );
    families.push(Family::gauge(
        "weft_downstream_connections_active",
        "Connections open.",
        i64::try_from(inner.shared.tracker.active()).unwrap_or(i64::MAX),
    ));
    families
}

/// Mesh mTLS: the certificate (expiry as a Unix time, so alerts compute the margin), the
/// manager's counters, the tunnel and PeerAuthentication counters.
fn mesh_stats(inner: &Inner) -> Vec<Family> {
    let s = &inner.shared.stats;
    let mesh = &inner.shared.mesh;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut families = Vec::new();
    if let Some(identity) = mesh.identity() {
        let expiry = identity
            .not_after
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| as_i64(d.as_secs()));
        families.push(Family::gauge(
            "weft_certificate_expiry_seconds",
            "Unix time at which the workload certificate (leaf notAfter) expires.",
            expiry,
        ));
    }
    if let Some(source) = &inner.options.identity {
        families.push(Family::counter(
            "weft_certificate_issued_total",
            "Workload certificates obtained (from the CA or reloaded from files).",
            source.stats.issued(),
        ));
        families.push(Family::counter(
            "weft_certificate_failures_total",
            "Failed attempts to obtain or load a workload certificate.",
            source.stats.failures(),
        ));
    }
    let counters: [(&str, &'static str, u64); 7] = [
        (
            "weft_inbound_mtls_connections_total",
            "Mesh mTLS connections terminated on service ports.",
            load(&s.mtls_connections_total),
        ),
        (
            "weft_inbound_mtls_handshake_failures_total",
            "Mesh TLS handshakes that failed on the tunnel or service ports.",
            load(&s.mtls_handshake_failures_total),
        ),
        (
            "weft_tunnel_connections_accepted_total",
            "mTLS connections accepted on the mesh tunnel port.",
            load(&s.tunnel_connections_total),
        ),
        (
            "weft_tunnel_streams_received_total",
            "HTTP requests and CONNECT streams received through the mesh tunnel.",
            load(&s.tunnel_streams_total),
        ),
        (
            "weft_mesh_connections_total",
            "mTLS connections opened to peer proxies' tunnels.",
            load(&mesh.stats.connections_total),
        ),
        (
            "weft_mesh_connect_failures_total",
            "Failed attempts to connect to a peer proxy's tunnel (TCP or TLS).",
            load(&mesh.stats.connect_failures_total),
        ),
        (
            "weft_mesh_streams_total",
            "HTTP requests and CONNECT streams sent through peer tunnels.",
            load(&mesh.stats.streams_total),
        ),
    ];
    families.extend(
        counters
            .into_iter()
            .map(|(n, h, v)| Family::counter(n, h, v)),
    );
    families.push(Family::gauge(
        "weft_mesh_connections_active",
        "Open mTLS connections to peer proxies.",
        as_i64(mesh.open_connections() as u64),
    ));
    families
}

fn quit(inner: &Arc<Inner>) -> Response<Body> {
    let grace = inner.options.drain_grace;
    info!("/quitquitquit: draining");
    tokio::spawn(inner.clone().drain(grace));
    text(
        StatusCode::OK,
        format!("draining; exiting within {}s\n", grace.as_secs_f64()),
    )
}

fn logging_get(inner: &Inner) -> Response<Body> {
    match &inner.options.log_control {
        Some(control) => text(StatusCode::OK, format!("{}\n", control.current())),
        None => no_log_control(),
    }
}

fn logging_set(inner: &Inner, query: Option<&str>) -> Response<Body> {
    let Some(control) = &inner.options.log_control else {
        return no_log_control();
    };
    let Some(level) = query_param(query.unwrap_or(""), "level") else {
        return text(
            StatusCode::BAD_REQUEST,
            "missing ?level=FILTER (e.g. debug, or info,weft_proxy=debug)\n".into(),
        );
    };
    match control.set(&level) {
        Ok(()) => {
            info!(filter = %level, "log filter changed");
            text(StatusCode::OK, format!("{}\n", control.current()))
        }
        Err(e) => text(
            StatusCode::BAD_REQUEST,
            format!("invalid log filter {level:?}: {e}\n"),
        ),
    }
}

fn no_log_control() -> Response<Body> {
    text(
        StatusCode::NOT_IMPLEMENTED,
        "log level control is not available in this process\n".into(),
    )
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The (percent-decoded) value of `key` in a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn serialize_time<S: serde::Serializer>(
    t: &SystemTime,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

/// `2024-05-01T12:34:56.789Z` (UTC), without a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_709_210_096_250);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.250Z");
    }

    /// The whole `/stats/prometheus` output, edge counters and Istio series together,
    /// read strictly as a scraper would.
    #[tokio::test]
    async fn stats_are_openmetrics_with_istio_and_health_metrics() {
        use crate::telemetry::metrics::fixture::Fixture;
        use crate::telemetry::metrics::textcheck;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let config = weft_api::ProxyConfig {
            version: "v7".into(),
            ..Default::default()
        };
        let options = crate::app::ProxyOptions {
            admin: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let running = crate::app::build(options, crate::source::StaticSource::new(config))
            .await
            .unwrap();
        let mut status = running.status();
        let ready = tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.ready));
        assert!(ready.await.is_ok_and(|r| r.is_ok()), "proxy never ready");
        let rt = running.runtime().load_full();
        let f = Fixture::client();
        rt.telemetry().record_http(&f.http(true, 200));

        let mut conn = tokio::net::TcpStream::connect(running.admin_addr())
            .await
            .unwrap();
        conn.write_all(b"GET /stats/prometheus HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        conn.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{head}"
        );
        let e = textcheck::parse(body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        assert_eq!(
            e.value(
                "istio_requests_total",
                &[("reporter", "source"), ("destination_workload", "cart-v1")]
            ),
            1.0
        );
        assert_eq!(e.value("weft_config_applied_total", &[]), 1.0);
        assert_eq!(e.value("weft_config_info", &[("version", "v7")]), 1.0);
        assert_eq!(e.value("weft_downstream_connections_total", &[]), 0.0);
        assert_eq!(e.families["weft_downstream_connections_active"], "gauge");
        // Names the existing tests read line by line keep their form.
        assert!(body.contains("\nweft_mesh_connections_total 0\n"), "{body}");
        assert!(
            body.contains("\nweft_rate_limited_requests_total 0\n"),
            "{body}"
        );
        running.drain(Duration::from_millis(10)).await;
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("level=debug", "level").as_deref(),
            Some("debug")
        );
        assert_eq!(
            query_param("x=1&level=info%2Cweft_proxy%3Ddebug", "level").as_deref(),
            Some("info,weft_proxy=debug")
        );
        assert_eq!(query_param("levels=x", "level"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
