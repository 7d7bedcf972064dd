//! The debug HTTP API (JSON), on its own port:
//!
//! - `GET /debug/status`: every config object with its status, and disconnect counts;
//! - `GET /debug/proxies`: connected proxies and what they were sent and acknowledged;
//! - `GET /debug/proxy/<id>/config`: the config last compiled for a proxy;
//! - `GET /debug/proxy/<id>/secret`: the workload certificate the CA last issued to the
//!   proxy's token and the trust bundle sent with it ([`SecretReport`]);
//! - `GET /debug/ca`: the CA's trust domain, trust bundle and counters ([`CaReport`]).
//!
//! The same port serves the dashboard, its JSON API, the Zipkin collector and the control
//! plane's `/metrics` (see [`crate::dashboard::api`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::debug;

use crate::Shared;
use crate::ca::CaHooks;
use crate::dashboard::{self, Dashboard};
use crate::identity::{CaCounters, CertificateView};
use crate::state::ObjectStatus;

/// The body of `/debug/proxy/<id>/secret`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretReport {
    pub proxy: String,
    /// The identity (`namespace/service-account`) the proxy's token names; none for the
    /// shared token.
    pub identity: Option<String>,
    /// The workload certificate last issued to the proxy's token; none before its first.
    pub certificate: Option<CertificateView>,
    /// The roots sent with it (the CA's current roots before the first certificate).
    pub trust_bundle: Vec<CertificateView>,
}

/// The body of `/debug/ca`.
#[derive(Debug, Serialize, Deserialize)]
pub struct CaReport {
    /// False when the control plane runs without a CA.
    pub enabled: bool,
    /// The trust domain certificates are signed in now (from mesh config).
    pub trust_domain: String,
    pub trust_bundle: Vec<CertificateView>,
    pub counters: CaCounters,
}

/// The body of `/debug/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    pub objects: Vec<ObjectStatusView>,
    pub proxies: usize,
    pub disconnects: BTreeMap<String, u64>,
    /// Resources proxies refused (NACKed), with the objects they came from.
    pub rejected_resources: Vec<RejectedResource>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RejectedResource {
    pub proxy: String,
    pub resource: String,
    pub version: String,
    pub reason: String,
    pub origins: Vec<String>,
}

/// [`ObjectStatus`] as read back by clients.
#[derive(Debug, Serialize, Deserialize)]
pub struct ObjectStatusView {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub origin: String,
    pub status: String,
    pub errors: Vec<FieldErrorView>,
    pub programmed: usize,
    pub proxies: usize,
    pub nacks: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FieldErrorView {
    pub field: String,
    pub reason: String,
}

impl From<ObjectStatus> for ObjectStatusView {
    fn from(s: ObjectStatus) -> Self {
        ObjectStatusView {
            kind: s.kind,
            namespace: s.namespace,
            name: s.name,
            origin: s.origin,
            status: s.status,
            errors: s
                .errors
                .into_iter()
                .map(|e| FieldErrorView {
                    field: e.field,
                    reason: e.reason,
                })
                .collect(),
            programmed: s.programmed,
            proxies: s.proxies,
            nacks: s.nacks,
        }
    }
}

/// Serve the debug API and the dashboard, and scrape the proxies' metrics for it; both
/// end when this task is aborted.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let dashboard = Arc::new(Dashboard::default());
    tokio::join!(
        accept(listener, shared.clone(), dashboard.clone()),
        dashboard::scrape::run(shared, dashboard),
    );
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, dashboard: Arc<Dashboard>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        let dashboard = dashboard.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<Incoming>| {
                let shared = shared.clone();
                let dashboard = dashboard.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&shared, &dashboard, req).await) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                debug!(error = %e, "debug connection ended");
            }
        });
    }
}

async fn respond(
    shared: &Shared,
    dashboard: &Dashboard,
    req: http::Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.method() == Method::POST && req.uri().path() == "/api/v2/spans" {
        return dashboard::api::receive_spans(dashboard, req).await;
    }
    if req.method() != Method::GET {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET (and POST /api/v2/spans)\n".into(),
        );
    }
    if let Some(r) = dashboard::api::get(shared, dashboard, req.uri()) {
        return r;
    }
    handle(shared, &req)
}

/// Every object's status, the disconnect counts and the resources proxies refused: the
/// body of `/debug/status` and the dashboard's `/api/config`.
pub(crate) fn status_report(shared: &Shared) -> StatusReport {
    let st = shared.state();
    StatusReport {
        objects: st.statuses().into_iter().map(Into::into).collect(),
        proxies: st.proxies.len(),
        disconnects: st.disconnects.clone(),
        rejected_resources: st
            .proxies
            .values()
            .flat_map(|p| {
                p.nacked.iter().map(|(res, n)| RejectedResource {
                    proxy: p.id.clone(),
                    resource: res.clone(),
                    version: n.version.clone(),
                    reason: n.reason.clone(),
                    origins: n.origins.clone(),
                })
            })
            .collect(),
    }
}

fn handle(shared: &Shared, req: &http::Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match path {
        "/debug/status" => json(&status_report(shared)),
        "/debug/proxies" => json(&shared.proxies_view()),
        "/debug/ca" => json(&CaReport {
            enabled: shared.identity.ca.is_some(),
            trust_domain: shared.trust_domain().unwrap_or_default(),
            trust_bundle: shared.identity.trust_bundle(),
            counters: shared.identity.counters(),
        }),
        _ => {
            if let Some(id) = path
                .strip_prefix("/debug/proxy/")
                .and_then(|rest| rest.strip_suffix("/secret"))
            {
                return secret(shared, id);
            }
            if let Some(id) = path
                .strip_prefix("/debug/proxy/")
                .and_then(|rest| rest.strip_suffix("/config"))
            {
                let config = shared.state().proxies.get(id).and_then(|p| p.config());
                return match config {
                    Some(c) => json(&*c),
                    None => text(
                        StatusCode::NOT_FOUND,
                        format!("no connected proxy `{id}` (see /debug/proxies)\n"),
                    ),
                };
            }
            text(
                StatusCode::NOT_FOUND,
                "endpoints: / (dashboard) /metrics /api/... /debug/status /debug/proxies \
                 /debug/proxy/<id>/config /debug/proxy/<id>/secret /debug/ca\n"
                    .into(),
            )
        }
    }
}

fn secret(shared: &Shared, id: &str) -> Response<Full<Bytes>> {
    if shared.identity.ca.is_none() {
        return text(
            StatusCode::NOT_FOUND,
            "this control plane runs no CA (weft control --ca-dir)\n".into(),
        );
    }
    match shared.identity.certificate(id) {
        Ok(record) => {
            let identity = shared.identity.identity_of(id);
            let (certificate, trust_bundle) = match record {
                Some(r) => (Some(r.certificate), r.trust_bundle),
                None => (None, shared.identity.trust_bundle()),
            };
            json(&SecretReport {
                proxy: id.to_owned(),
                identity,
                certificate,
                trust_bundle,
            })
        }
        Err(()) => text(
            StatusCode::NOT_FOUND,
            format!(
                "no bootstrap token known for proxy `{id}`: it has not connected, and no \
                 token is bound to it (weft control --write-tokens)\n"
            ),
        ),
    }
}

pub(crate) fn json<T: Serialize>(value: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => {
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode: {e}\n"),
        ),
    }
}

pub(crate) fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}
