//! Collecting the proxies' metrics: every [`INTERVAL`], a plain-HTTP
//! `GET /stats/prometheus` to each connected proxy's admin address (as its hello announced
//! it), a few at a time, each with a short deadline; the results go into the series store as
//! one tick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::debug;

use super::Dashboard;
use super::promtext::{self, Sample};
use crate::Shared;

/// How often the proxies are scraped: the graph's freshness.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// One scrape's deadline (connect, request, body): a proxy on loopback answers in
/// milliseconds, and a slow one must not delay the round.
const TIMEOUT: Duration = Duration::from_millis(1500);
/// Scrapes in flight at once.
const CONCURRENCY: usize = 16;
/// The largest metrics body read.
const MAX_BODY: usize = 16 << 20;

/// The outcome of a proxy's last scrape, for the proxies table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScrapeStatus {
    pub ok: bool,
    /// Why the last scrape failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub samples: usize,
}

/// Scrape forever (the debug server's task owns this loop and ends it).
pub async fn run(shared: Arc<Shared>, dashboard: Arc<Dashboard>) {
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        round(&shared, &dashboard).await;
    }
}

/// One round: scrape every connected proxy, then record the tick.
pub async fn round(shared: &Shared, dashboard: &Dashboard) {
    let targets: Vec<(String, String)> = shared
        .state()
        .proxies
        .values()
        .map(|p| {
            let admin = p
                .announced
                .as_ref()
                .map(|h| h.admin_address.clone())
                .unwrap_or_default();
            (p.id.clone(), admin)
        })
        .collect();
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut jobs = JoinSet::new();
    for (id, admin) in targets {
        let limit = limit.clone();
        jobs.spawn(async move {
            if admin.is_empty() {
                return (id, Err("the proxy announced no admin address".to_owned()));
            }
            let _permit = limit.acquire_owned().await;
            let result = match tokio::time::timeout(TIMEOUT, fetch(&admin)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer from {admin} within {TIMEOUT:?}")),
            };
            (id, result)
        });
    }
    let mut scrapes: Vec<(String, Option<Vec<Sample>>)> = Vec::new();
    let mut statuses = Vec::new();
    while let Some(done) = jobs.join_next().await {
        let Ok((id, result)) = done else { continue };
        match result {
            Ok(samples) => {
                statuses.push((
                    id.clone(),
                    ScrapeStatus {
                        ok: true,
                        error: None,
                        samples: samples.len(),
                    },
                ));
                scrapes.push((id, Some(samples)));
            }
            Err(e) => {
                debug!(proxy = %id, error = %e, "cannot scrape the proxy");
                statuses.push((
                    id.clone(),
                    ScrapeStatus {
                        ok: false,
                        error: Some(e),
                        samples: 0,
                    },
                ));
                scrapes.push((id, None));
            }
        }
    }
    dashboard.series().record(Instant::now(), scrapes);
    *dashboard.scrapes() = statuses.into_iter().collect();
}

async fn fetch(admin: &str) -> Result<Vec<Sample>, String> {
    let stream = TcpStream::connect(admin)
        .await
        .map_err(|e| format!("cannot connect to {admin}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{admin}: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::get("/stats/prometheus")
        .header(http::header::HOST, admin)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("{admin}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "{admin}/stats/prometheus answered {}",
            resp.status()
        ));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("{admin}: reading the metrics: {e}"))?
        .to_bytes();
    let text = std::str::from_utf8(&body).map_err(|_| format!("{admin}: metrics not UTF-8"))?;
    promtext::parse(text).map_err(|e| format!("{admin}/stats/prometheus: {e}"))
}
