//! The attempt loop: timeouts (route budget and per try), retries with backoff, outlier
//! accounting.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;
use weft_api::RetryPolicy;

use super::body::{self, ProxyBody};
use super::body_tee::SharedBody;
use super::forward::{backoff, retriable_response};
use super::observe::Observation;
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::upstream::outlier::Outcome;
use crate::upstream::{ClusterState, Endpoint, Proto, RequestGuard, RetryGuard, SendFailure};

/// Everything an attempt needs to know.
pub struct Attempt<'a> {
    pub cluster: &'a Arc<ClusterState>,
    pub proto: Proto,
    pub upgrade: bool,
    pub hash: Option<u64>,
    pub conn: &'a ConnInfo,
    pub route_name: &'a str,
    pub route_timeout: Option<Duration>,
    /// End of the whole request budget (route timeout), retries included.
    pub deadline: Option<Instant>,
}

enum Failure {
    RouteTimeout,
    PerTryTimeout(Duration),
    Connect(String),
    Reset(String),
    Refused(ProxyError),
}

impl From<SendFailure> for Failure {
    fn from(f: SendFailure) -> Failure {
        match f {
            SendFailure::Connect(d) => Failure::Connect(d),
            SendFailure::Reset(d) => Failure::Reset(d),
            SendFailure::Refused(e) => Failure::Refused(e),
        }
    }
}

impl Failure {
    fn retriable(&self, p: &RetryPolicy) -> bool {
        let on = &p.retry_on;
        let broad = on.five_xx || on.gateway_error;
        match self {
            Failure::Connect(_) => on.connect_failure || on.reset || broad,
            Failure::Reset(d) => {
                on.reset
                    || broad
                    || (on.refused_stream && d.to_ascii_lowercase().contains("refused"))
            }
            Failure::PerTryTimeout(_) => on.reset || broad,
            Failure::RouteTimeout | Failure::Refused(_) => false,
        }
    }

    fn into_error(self, a: &Attempt<'_>) -> ProxyError {
        let cluster = a.cluster.config.name.clone();
        match self {
            Failure::RouteTimeout => route_timeout(a),
            Failure::PerTryTimeout(timeout) => {
                ProxyError::UpstreamPerTryTimeout { cluster, timeout }
            }
            Failure::Connect(detail) => ProxyError::UpstreamConnectFailed { cluster, detail },
            Failure::Reset(detail) => ProxyError::UpstreamReset { cluster, detail },
            Failure::Refused(e) => e,
        }
    }
}

fn route_timeout(a: &Attempt<'_>) -> ProxyError {
    ProxyError::UpstreamTimeout {
        route: a.route_name.to_string(),
        timeout: a.route_timeout.unwrap_or_default(),
    }
}

/// Runs attempts until a response is final or retries are exhausted. `build` makes the
/// upstream request around an attempt's body; it may give none after the first attempt
/// when `policy` allows no retry (the head was moved into that attempt).
pub async fn run(
    a: &Attempt<'_>,
    policy: Option<&RetryPolicy>,
    shared: &SharedBody,
    obs: &mut Observation,
    mut build: impl FnMut(ProxyBody) -> Option<Request<ProxyBody>>,
) -> Result<(Response<Incoming>, RequestGuard), ProxyError> {
    let tries = 1 + policy.map_or(0, |p| p.attempts);
    let mut tried: Vec<Arc<Endpoint>> = Vec::new();
    let mut n = 0;
    // Held while a retry is in flight (`max_retries`).
    let mut _retry: Option<RetryGuard> = None;
    loop {
        n += 1;
        let avoid: &[Arc<Endpoint>] = if policy.is_some_and(|p| p.other_host) {
            &tried
        } else {
            &[]
        };
        let ep = a.cluster.pick(a.hash, avoid, a.conn).await?;
        obs.attempt(a.cluster, &ep);
        let guard = a.cluster.start_request(&ep)?;
        let body = if a.upgrade {
            body::empty()
        } else {
            shared.attempt().ok_or_else(|| ProxyError::Internal {
                detail: "request body can no longer be replayed".into(),
            })?
        };
        let req = build(body).ok_or_else(|| ProxyError::Internal {
            detail: "the request head was already sent".into(),
        })?;
        let outcome = timed(a, policy, a.cluster.send_http(&ep, req, a.proto, a.upgrade)).await;
        let retry_allowed = n < tries && shared.replayable();
        let failure = match outcome {
            Ok(resp) => {
                let status = resp.status().as_u16();
                a.cluster.record(&ep, Outcome::Status(status));
                if let Some(p) = policy
                    && retry_allowed
                    && retriable_response(p, status, resp.headers())
                    && let Some(g) = a.cluster.start_retry(p.budget.as_ref())
                {
                    tracing::debug!(status, attempt = n, "retrying response");
                    _retry = Some(g);
                    // Remembered only when a retry follows (a first answer needs no list).
                    tried.push(ep);
                    drop(resp);
                    sleep_backoff(a, p, n).await?;
                    continue;
                }
                return Ok((resp, guard));
            }
            Err(f) => f,
        };
        match &failure {
            Failure::RouteTimeout => return Err(route_timeout(a)),
            Failure::Refused(_) => return Err(failure.into_error(a)),
            // Connect failures were recorded where they happened.
            Failure::Connect(_) => {}
            Failure::Reset(_) | Failure::PerTryTimeout(_) => {
                a.cluster.record(&ep, Outcome::LocalFailure)
            }
        }
        if let Some(p) = policy
            && retry_allowed
            && failure.retriable(p)
            && let Some(g) = a.cluster.start_retry(p.budget.as_ref())
        {
            _retry = Some(g);
            tried.push(ep);
            sleep_backoff(a, p, n).await?;
            continue;
        }
        let err = failure.into_error(a);
        return Err(if n > 1 {
            ProxyError::RetriesExhausted {
                route: a.route_name.to_string(),
                attempts: n,
                last: err.to_string(),
            }
        } else {
            err
        });
    }
}

async fn sleep_backoff(a: &Attempt<'_>, p: &RetryPolicy, n: u32) -> Result<(), ProxyError> {
    let wake = Instant::now() + backoff(p.backoff_base, n);
    match a.deadline {
        Some(d) if d <= wake => {
            tokio::time::sleep_until(d).await;
            Err(route_timeout(a))
        }
        _ => {
            tokio::time::sleep_until(wake).await;
            Ok(())
        }
    }
}

async fn timed<F>(
    a: &Attempt<'_>,
    policy: Option<&RetryPolicy>,
    fut: F,
) -> Result<Response<Incoming>, Failure>
where
    F: std::future::Future<Output = Result<Response<Incoming>, SendFailure>>,
{
    let per_try = policy.and_then(|p| p.per_try_timeout);
    let per_try_at = per_try.map(|t| Instant::now() + t);
    let at = match (a.deadline, per_try_at) {
        (Some(d), Some(p)) => Some(d.min(p)),
        (d, p) => d.or(p),
    };
    let Some(at) = at else {
        return fut.await.map_err(Failure::from);
    };
    match tokio::time::timeout_at(at, fut).await {
        Ok(r) => r.map_err(Failure::from),
        Err(_) if Some(at) == a.deadline => Err(Failure::RouteTimeout),
        Err(_) => Err(Failure::PerTryTimeout(per_try.unwrap_or_default())),
    }
}
