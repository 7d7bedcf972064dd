//! One cluster's live state: endpoint choice, circuit breakers, health and sending.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;
use weft_api::{Discovery, RetryBudget};

use super::endpoint::{Endpoint, EndpointSet, EndpointSpec};
use super::mesh::Mesh;
use super::originate::{Alpn, Originator};
use super::outlier::{self, Outcome, Sweeper, lock};
use super::pool::{self, Proto, Reuse, Sent};
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::http::body::ProxyBody;

mod secure;

use secure::Path;

/// How often DNS clusters re-resolve (Envoy's `dns_refresh_rate` default).
const DNS_REFRESH: Duration = Duration::from_secs(5);

/// A fresh connection that closes before taking the request is tried again this often.
const FRESH_CONNECTION_TRIES: u32 = 3;

/// State that outlives a config version.
#[derive(Default)]
struct Shared {
    connections: AtomicU32,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
    /// Totals for the health metrics (`/stats/prometheus`).
    overflows_total: AtomicU64,
    retries_total: AtomicU64,
    ejections_total: AtomicU64,
    /// Signalled when a connection slot frees or a connection goes idle.
    freed: tokio::sync::Notify,
    sweeper: Sweeper,
    original: Mutex<HashMap<SocketAddr, Arc<Endpoint>>>,
    budget: Mutex<BudgetWindow>,
}

#[derive(Default)]
struct BudgetWindow {
    started: Option<Instant>,
    requests: u64,
    retries: u64,
}

/// Distinct passthrough destinations whose connection pools are kept (see `original_endpoint`).
const MAX_ORIGINAL_DESTINATIONS: usize = 1024;

pub struct ClusterState {
    /// Read in place from the runtime's `ProxyConfig` (derefs to [`Cluster`]).
    pub config: super::ClusterConfig,
    shared: Arc<Shared>,
    set: ArcSwap<EndpointSet>,
    dns_resolved: tokio::sync::Mutex<Option<Instant>>,
    /// The proxy's identity and peer connections (mesh mTLS).
    mesh: Arc<Mesh>,
    /// TLS origination configs, read from the DestinationRule's files on first use.
    originator: OnceLock<Result<Arc<Originator>, String>>,
    /// The cluster name and service host as shared strings, so telemetry records them per
    /// request without copying.
    pub telemetry_name: Arc<str>,
    pub telemetry_service: Option<Arc<str>>,
}

/// See [`ClusterState::totals`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterTotals {
    pub overflows: u64,
    pub retries: u64,
    pub ejections: u64,
}

/// Why an upstream attempt failed before a response.
#[derive(Debug)]
pub enum SendFailure {
    Connect(String),
    Reset(String),
    /// A circuit breaker or a policy refused it; answered as is, never retried.
    Refused(ProxyError),
}

/// The response of one attempt.
pub type HttpSend = Response<Incoming>;

impl ClusterState {
    pub fn new(
        config: impl Into<super::ClusterConfig>,
        previous: Option<&ClusterState>,
        mesh: Arc<Mesh>,
    ) -> ClusterState {
        let config = config.into();
        // Pooled connections were made for the previous TLS settings: with new ones, start
        // afresh rather than send on a plaintext connection meant to be TLS (or back).
        let known = previous
            .filter(|p| p.config.tls == config.tls)
            .map(|p| p.set.load().by_address())
            .unwrap_or_default();
        let set = match &config.discovery {
            Discovery::Static => EndpointSet::build(
                &config.lb,
                config.endpoints.iter().map(EndpointSpec::from_config),
                &known,
            ),
            // Keep what the previous runtime resolved until the next refresh.
            Discovery::Dns { .. } => {
                let kept = previous.map(|p| p.set.load_full());
                let specs: Vec<EndpointSpec> = kept.iter().flat_map(|set| set.specs()).collect();
                EndpointSet::build(&config.lb, specs.into_iter(), &known)
            }
            Discovery::OriginalDestination | Discovery::Blackhole => {
                EndpointSet::build(&config.lb, std::iter::empty(), &known)
            }
        };
        let same_dns = previous.is_some_and(|p| p.config.discovery == config.discovery);
        let resolved = previous
            .filter(|_| same_dns)
            .and_then(|p| p.dns_resolved.try_lock().ok().and_then(|g| *g));
        ClusterState {
            telemetry_name: Arc::from(config.name.as_str()),
            telemetry_service: config.service.as_deref().map(Arc::from),
            shared: previous.map(|p| p.shared.clone()).unwrap_or_default(),
            set: ArcSwap::from_pointee(set),
            dns_resolved: tokio::sync::Mutex::new(resolved),
            config,
            mesh,
            originator: OnceLock::new(),
        }
    }

    /// The SPIFFE ID of the proxy's current mesh certificate (what it presents to peers).
    pub fn local_identity(&self) -> Option<Arc<str>> {
        self.mesh
            .identity()
            .map(|i| Arc::from(i.spiffe_id.as_str()))
    }

    /// The object to name in errors about this cluster's policy.
    pub fn origin_name(&self) -> String {
        match &self.config.policy_origin {
            Some(o) => o.to_string(),
            None => format!("cluster {}", self.config.name),
        }
    }

    /// The endpoints right now (for `weft why`, admin and tests).
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.set.load().endpoints.clone()
    }

    /// Open upstream connections, requests in flight and waiting, across all endpoints.
    pub fn counters(&self) -> (u32, u32, u32) {
        (
            self.shared.connections.load(Ordering::Relaxed),
            self.shared.requests.load(Ordering::Relaxed),
            self.shared.pending.load(Ordering::Relaxed),
        )
    }

    /// Circuit-breaker overflows, retries started and outlier ejections since the cluster
    /// first appeared (they survive config changes, as the breakers do).
    pub fn totals(&self) -> ClusterTotals {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClusterTotals {
            overflows: load(&self.shared.overflows_total),
            retries: load(&self.shared.retries_total),
            ejections: load(&self.shared.ejections_total),
        }
    }

    fn overflow(&self, limit: &'static str, value: u32) -> ProxyError {
        self.shared.overflows_total.fetch_add(1, Ordering::Relaxed);
        ProxyError::UpstreamOverflow {
            cluster: self.config.name.clone(),
            limit,
            value,
            origin: self.origin_name(),
        }
    }

    /// Picks an endpoint, preferring ones not in `avoid` (hosts already tried).
    pub async fn pick(
        &self,
        hash: Option<u64>,
        avoid: &[Arc<Endpoint>],
        conn: &ConnInfo,
    ) -> Result<Arc<Endpoint>, ProxyError> {
        match &self.config.discovery {
            Discovery::Blackhole => {
                return Err(ProxyError::BlockedByPolicy {
                    reason: format!(
                        "cluster {} allows no traffic (outboundTrafficPolicy REGISTRY_ONLY)",
                        self.config.name
                    ),
                });
            }
            Discovery::OriginalDestination => return Ok(self.original_endpoint(conn.original_dst)),
            Discovery::Dns { hostname, port } => self.refresh_dns(hostname, *port).await?,
            Discovery::Static => {}
        }
        let set = self.set.load();
        let eps = &set.endpoints;
        if eps.is_empty() {
            return Err(self.no_healthy("the cluster has no endpoints".into()));
        }
        let ignore_ejections = match &self.config.outlier_detection {
            Some(od) => {
                self.shared
                    .sweeper
                    .maybe_sweep(od, eps.iter().map(|e| &e.health));
                let healthy = eps.iter().filter(|e| !e.is_ejected()).count() as u64;
                // Panic mode: too few healthy endpoints, so outlier detection stands down.
                healthy * 100 < u64::from(od.min_health_percent) * eps.len() as u64
            }
            None => true,
        };
        let healthy = |i: usize| ignore_ejections || !eps[i].is_ejected();
        let fresh = |i: usize| !avoid.iter().any(|a| Arc::ptr_eq(a, &eps[i]));
        let load = |i: usize| eps[i].active_requests();
        set.balancer
            .pick(eps.len(), hash, |i| healthy(i) && fresh(i), load)
            .or_else(|| set.balancer.pick(eps.len(), hash, healthy, load))
            .map(|i| eps[i].clone())
            .ok_or_else(|| {
                self.no_healthy(format!(
                    "all {} endpoints are ejected by outlier detection",
                    eps.len()
                ))
            })
    }

    fn no_healthy(&self, detail: String) -> ProxyError {
        ProxyError::NoHealthyUpstream {
            cluster: self.config.name.clone(),
            origin: self.config.policy_origin.as_ref().map(|o| o.to_string()),
            detail,
        }
    }

    fn original_endpoint(&self, dst: SocketAddr) -> Arc<Endpoint> {
        let mut original = lock(&self.shared.original);
        // Passthrough can reach any address: keep the per-destination pools for the recent
        // ones only, so a client scanning addresses cannot grow the proxy without bound.
        if original.len() >= MAX_ORIGINAL_DESTINATIONS && !original.contains_key(&dst) {
            original.clear();
        }
        original
            .entry(dst)
            .or_insert_with(|| Arc::new(Endpoint::new(EndpointSpec::plain(dst.to_string()))))
            .clone()
    }

    async fn refresh_dns(&self, hostname: &str, port: u16) -> Result<(), ProxyError> {
        let mut resolved = self.dns_resolved.lock().await;
        if resolved.is_some_and(|t| t.elapsed() < DNS_REFRESH) {
            return Ok(());
        }
        match tokio::net::lookup_host((hostname, port)).await {
            Ok(addrs) => {
                let mut seen = std::collections::BTreeSet::new();
                let wanted: Vec<_> = addrs
                    .filter(|a| seen.insert(*a))
                    .map(|a| EndpointSpec::plain(a.to_string()))
                    .collect();
                let known = self.set.load().by_address();
                let set = EndpointSet::build(&self.config.lb, wanted.into_iter(), &known);
                self.set.store(Arc::new(set));
            }
            Err(e) if self.set.load().endpoints.is_empty() => {
                return Err(self.no_healthy(format!("DNS resolution of {hostname} failed: {e}")));
            }
            Err(e) => tracing::warn!(%hostname, "DNS refresh failed, keeping old addresses: {e}"),
        }
        *resolved = Some(Instant::now());
        Ok(())
    }

    /// Records an attempt's outcome for outlier detection.
    pub fn record(&self, ep: &Endpoint, outcome: Outcome) {
        let Some(od) = &self.config.outlier_detection else {
            return;
        };
        let set = self.set.load();
        if set.endpoints.iter().any(|e| std::ptr::eq(&**e, ep))
            && outlier::record(
                od,
                &ep.health,
                set.endpoints.iter().map(|e| &e.health),
                outcome,
            )
        {
            self.shared.ejections_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Admits one request to `ep` (`max_requests`); the guard ends it.
    pub fn start_request(&self, ep: &Arc<Endpoint>) -> Result<RequestGuard, ProxyError> {
        let max = self.config.limits.max_requests;
        if !try_increment(&self.shared.requests, max) {
            return Err(self.overflow("http2MaxRequests", max));
        }
        ep.active.fetch_add(1, Ordering::Relaxed);
        lock(&self.shared.budget).requests += 1;
        Ok(RequestGuard {
            shared: self.shared.clone(),
            endpoint: ep.clone(),
        })
    }

    /// Admits one retry (`max_retries`, and the Linkerd budget when set); none = do not
    /// retry.
    pub fn start_retry(&self, budget: Option<&RetryBudget>) -> Option<RetryGuard> {
        if let Some(b) = budget {
            let mut w = lock(&self.shared.budget);
            let now = Instant::now();
            if w.started.is_none_or(|s| now >= s + b.ttl) {
                *w = BudgetWindow {
                    started: Some(now),
                    ..BudgetWindow::default()
                };
            }
            let floor = u64::from(b.min_retries_per_second) * b.ttl.as_secs().max(1);
            let allowed = floor.max((b.retry_ratio * w.requests as f64) as u64);
            if w.retries >= allowed {
                return None;
            }
            w.retries += 1;
        }
        if !try_increment(&self.shared.retries, self.config.limits.max_retries) {
            return None;
        }
        self.shared.retries_total.fetch_add(1, Ordering::Relaxed);
        Some(RetryGuard {
            shared: self.shared.clone(),
        })
    }

    fn reserve_connection(&self) -> Option<ConnectionGuard> {
        try_increment(&self.shared.connections, self.config.limits.max_connections).then(|| {
            ConnectionGuard {
                shared: self.shared.clone(),
            }
        })
    }

    fn reuse(&self) -> Reuse {
        Reuse {
            max_requests_per_connection: self.config.max_requests_per_connection,
            idle_timeout: self.config.idle_timeout,
        }
    }

    /// Sends `req` to `ep`: on a pooled connection when one is idle, on a new one when the
    /// connection limit allows, else it waits as a pending request (`max_pending_requests`).
    /// A request a pooled connection never took is sent again on another connection.
    /// `upgrade` requests get a connection of their own that never returns to the pool.
    pub async fn send_http(
        &self,
        ep: &Arc<Endpoint>,
        mut req: Request<ProxyBody>,
        proto: Proto,
        upgrade: bool,
    ) -> Result<HttpSend, SendFailure> {
        let path = self.path(ep).map_err(SendFailure::Refused)?;
        if let Path::Mesh(peer) = path {
            return self.send_mesh_limited(ep, peer, req, proto, upgrade).await;
        }
        let reuse = self.reuse();
        let mut pending: Option<PendingGuard> = None;
        let mut fresh_tries = 0;
        loop {
            let notified = self.shared.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !upgrade {
                req = match self.send_pooled(ep, req, proto, reuse).await {
                    Ok(resp) => return Ok(resp),
                    Err(PooledFailure::NoConnection(r)) => r,
                    Err(PooledFailure::Failed(f)) => return Err(f),
                };
            }
            if let Some(slot) = self.reserve_connection() {
                drop(pending.take());
                fresh_tries += 1;
                req = match self
                    .send_fresh(ep, &path, req, proto, upgrade, slot, reuse)
                    .await?
                {
                    Ok(resp) => return Ok(resp),
                    Err(_) if fresh_tries >= FRESH_CONNECTION_TRIES => {
                        return Err(SendFailure::Reset(
                            "new connections closed before taking the request".into(),
                        ));
                    }
                    Err(r) => r,
                };
                continue;
            }
            if pending.is_none() {
                let max = self.config.limits.max_pending_requests;
                if !try_increment(&self.shared.pending, max) {
                    return Err(SendFailure::Refused(
                        self.overflow("http1MaxPendingRequests", max),
                    ));
                }
                pending = Some(PendingGuard {
                    shared: self.shared.clone(),
                });
            }
            self.evict_idle_elsewhere(ep);
            notified.await;
        }
    }

    async fn send_pooled(
        &self,
        ep: &Arc<Endpoint>,
        mut req: Request<ProxyBody>,
        proto: Proto,
        reuse: Reuse,
    ) -> Result<HttpSend, PooledFailure> {
        match proto {
            Proto::Http1 => {
                while let Some(mut idle) = ep.pool.take_h1(reuse) {
                    match pool::send_h1(&mut idle.sender, req).await {
                        Sent::Response(resp) => {
                            self.give_back(ep, idle.sender, idle.served + 1, reuse);
                            return Ok(resp);
                        }
                        Sent::Returned(r) => req = r,
                        Sent::Failed(e) => {
                            return Err(PooledFailure::Failed(SendFailure::Reset(e.to_string())));
                        }
                    }
                }
                Err(PooledFailure::NoConnection(req))
            }
            Proto::Http2 => {
                let Some(mut conn) = ep.pool.h2(reuse) else {
                    return Err(PooledFailure::NoConnection(req));
                };
                conn.count_stream();
                match pool::send_h2(&mut conn.sender, req).await {
                    Sent::Response(resp) => Ok(resp),
                    Sent::Returned(r) => {
                        ep.pool.clear_h2();
                        Err(PooledFailure::NoConnection(r))
                    }
                    Sent::Failed(e) => {
                        Err(PooledFailure::Failed(SendFailure::Reset(e.to_string())))
                    }
                }
            }
        }
    }

    /// Connects and sends; `Ok(Err(req))` when the new connection closed before taking it.
    #[allow(clippy::too_many_arguments)]
    async fn send_fresh(
        &self,
        ep: &Arc<Endpoint>,
        path: &Path<'_>,
        req: Request<ProxyBody>,
        proto: Proto,
        upgrade: bool,
        slot: ConnectionGuard,
        reuse: Reuse,
    ) -> Result<Result<HttpSend, Request<ProxyBody>>, SendFailure> {
        let alpn = match proto {
            Proto::Http1 => Alpn::Http1,
            Proto::Http2 => Alpn::Http2,
        };
        let stream = self.connect_io(ep, path, alpn).await?;
        let handshake_failed =
            |e: hyper::Error| SendFailure::Connect(format!("handshake with {}: {e}", ep.address));
        let sent = match proto {
            Proto::Http1 => {
                let mut sender = pool::handshake_h1(stream, slot)
                    .await
                    .map_err(handshake_failed)?;
                let sent = pool::send_h1(&mut sender, req).await;
                if matches!(sent, Sent::Response(_)) && !upgrade {
                    self.give_back(ep, sender, 1, reuse);
                }
                sent
            }
            Proto::Http2 => {
                let sender = pool::handshake_h2(stream, slot)
                    .await
                    .map_err(handshake_failed)?;
                let mut conn = ep.pool.set_h2(sender);
                conn.count_stream();
                pool::send_h2(&mut conn.sender, req).await
            }
        };
        match sent {
            Sent::Response(resp) => Ok(Ok(resp)),
            Sent::Returned(req) => Ok(Err(req)),
            Sent::Failed(e) => Err(SendFailure::Reset(e.to_string())),
        }
    }

    fn give_back(
        &self,
        ep: &Arc<Endpoint>,
        sender: hyper::client::conn::http1::SendRequest<ProxyBody>,
        served: u32,
        reuse: Reuse,
    ) {
        let shared = self.shared.clone();
        ep.pool
            .give_back(sender, served, reuse, move || shared.freed.notify_waiters());
    }

    /// At the connection limit with a request waiting: close an idle connection of another
    /// endpoint so its slot can be used.
    fn evict_idle_elsewhere(&self, ep: &Arc<Endpoint>) {
        if ep.pool.has_idle() {
            return;
        }
        let set = self.set.load();
        for other in set.endpoints.iter().filter(|o| !Arc::ptr_eq(o, ep)) {
            if other.pool.evict_one() {
                return;
            }
        }
    }
}

enum PooledFailure {
    NoConnection(Request<ProxyBody>),
    Failed(SendFailure),
}

fn try_increment(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// Holds one of the cluster's `max_connections` slots; dropping it (the connection closed)
/// frees the slot.
pub struct ConnectionGuard {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionGuard")
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        self.shared.freed.notify_waiters();
    }
}

/// One request in flight; dropping it ends the request for `max_requests` and least
/// request balancing.
pub struct RequestGuard {
    shared: Arc<Shared>,
    endpoint: Arc<Endpoint>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.shared.requests.fetch_sub(1, Ordering::AcqRel);
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}

pub struct RetryGuard {
    shared: Arc<Shared>,
}

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.shared.retries.fetch_sub(1, Ordering::AcqRel);
    }
}

struct PendingGuard {
    pub(super) shared: Arc<Shared>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.shared.pending.fetch_sub(1, Ordering::AcqRel);
    }
}
