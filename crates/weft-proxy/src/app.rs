//! The proxy process: admin port, config loop, listeners, drain (ztunnel's `app.rs` shape).
//!
//! [`build`] binds the admin port and starts the config loop, then returns a [`Running`]
//! handle. No traffic is served before the first config: listeners are created from it.
//! Each new config is built into a [`Runtime`] off the request path; a config that fails to
//! build or whose listeners cannot be bound is rejected (logged, counted, reported on
//! `/config_dump`) and the previous one stays in force. An accepted config is swapped in
//! one step and the listeners are reconciled: unchanged ones (same name and address) stay
//! bound, new ones start, removed ones stop accepting while their connections finish.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};
use weft_api::ProxyConfig;

use crate::RuntimeHandle;
use crate::admin::{self, LogControl};
use crate::identity::IdentitySource;
use crate::listener::{self, ListenerHandle, Shared, signalled};
use crate::runtime::Runtime;
use crate::source::{ConfigReceiver, ConfigSource};
use crate::upstream::Mesh;

/// How the proxy process runs (not what it proxies: that is the `ProxyConfig`).
#[derive(Clone)]
pub struct ProxyOptions {
    /// The admin endpoint (`/ready`, `/config_dump`, ...). Port 0 picks a free port.
    pub admin: SocketAddr,
    /// How long a drain waits for open connections before closing them.
    pub drain_grace: Duration,
    /// Runtime log level control for `/logging`; none disables the endpoint.
    pub log_control: Option<Arc<dyn LogControl>>,
    /// The workload certificate for mesh mTLS (the CA via `IdentityManager`, or files).
    /// With one, the proxy is ready only once a certificate is there. Without one, mesh
    /// mTLS is off: auto-mTLS sends plaintext, ISTIO_MUTUAL clusters and the tunnel refuse.
    pub identity: Option<IdentitySource>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            admin: SocketAddr::from(([127, 0, 0, 1], 15000)),
            drain_grace: Duration::from_secs(5),
            log_control: None,
            identity: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "cannot bind the admin port {addr}: {source} (is another proxy running? pick another with --admin)"
    )]
    AdminBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What the proxy is running, published on every change (see [`Running::status`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// A config has been applied, a certificate is there (when an identity source is
    /// configured) and the proxy is not draining.
    pub ready: bool,
    /// An identity source is configured and has not produced a certificate (or the last
    /// one expired without a replacement).
    pub waiting_for_certificate: bool,
    pub draining: bool,
    pub applied: Option<Applied>,
    /// The last config that was rejected, if any (also after a later one was applied).
    pub rejected: Option<Rejected>,
    /// Bound listeners by name.
    pub listeners: BTreeMap<String, SocketAddr>,
    pub applied_total: u64,
    pub rejected_total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub version: String,
    #[serde(serialize_with = "admin::serialize_time")]
    pub at: SystemTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejected {
    pub version: String,
    pub error: String,
    #[serde(serialize_with = "admin::serialize_time")]
    pub at: SystemTime,
}

/// A running proxy.
pub struct Running {
    inner: Arc<Inner>,
    admin: SocketAddr,
    // Kept so the source (and whatever task feeds it) lives as long as the proxy.
    _source: Box<dyn ConfigSource>,
}

/// State shared by the config loop, the admin endpoint and the [`Running`] handle.
pub(crate) struct Inner {
    pub(crate) rt: RuntimeHandle,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) options: ProxyOptions,
    listeners: Mutex<BTreeMap<Arc<str>, ListenerHandle>>,
    drain_tx: watch::Sender<bool>,
    kill_tx: watch::Sender<bool>,
    done_tx: watch::Sender<bool>,
}

/// Start the proxy: bind the admin port, then apply configs from `source` as they come.
pub async fn build(options: ProxyOptions, source: impl ConfigSource) -> Result<Running, AppError> {
    let admin_listener =
        TcpListener::bind(options.admin)
            .await
            .map_err(|source| AppError::AdminBind {
                addr: options.admin,
                source,
            })?;
    let admin = admin_listener
        .local_addr()
        .map_err(|source| AppError::AdminBind {
            addr: options.admin,
            source,
        })?;
    let identity_rx = options.identity.as_ref().map(|i| i.rx.clone());
    let mesh = Arc::new(Mesh::new(identity_rx.clone()));
    let rt: RuntimeHandle = Arc::new(ArcSwap::from_pointee(Runtime::empty_with_mesh(
        mesh.clone(),
    )));
    let drain_tx = watch::Sender::new(false);
    let kill_tx = watch::Sender::new(false);
    let shared = Arc::new(Shared::new(
        rt.clone(),
        drain_tx.subscribe(),
        kill_tx.subscribe(),
        mesh,
    ));
    let inner = Arc::new(Inner {
        rt,
        status: watch::Sender::new(Status {
            waiting_for_certificate: identity_rx.as_ref().is_some_and(|rx| rx.borrow().is_none()),
            ..Status::default()
        }),
        shared,
        options,
        listeners: Mutex::new(BTreeMap::new()),
        drain_tx,
        kill_tx,
        done_tx: watch::Sender::new(false),
    });
    if let Some(rx) = identity_rx {
        tokio::spawn(certificate_loop(inner.clone(), rx));
    }
    admin::spawn(admin_listener, inner.clone());
    info!(%admin, "admin listening; waiting for the first config");
    tokio::spawn(config_loop(inner.clone(), source.subscribe()));
    Ok(Running {
        inner,
        admin,
        _source: Box::new(source),
    })
}

// === impl Running ===

impl Running {
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The bound address of a listener of the current config.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.inner.status.borrow().listeners.get(name).copied()
    }

    /// True once the first config is applied, until drain starts.
    pub fn ready(&self) -> bool {
        self.inner.status.borrow().ready
    }

    /// Every change of what the proxy runs: applied and rejected configs, listeners,
    /// readiness. A control-plane client ACKs or NACKs from this.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// The live runtime (what `/config_dump` shows).
    pub fn runtime(&self) -> RuntimeHandle {
        self.inner.rt.clone()
    }

    pub fn active_connections(&self) -> usize {
        self.inner.shared.tracker.active()
    }

    pub fn drain_grace(&self) -> Duration {
        self.inner.options.drain_grace
    }

    /// Stop accepting, ask every connection to finish (HTTP: in-flight requests complete,
    /// then `Connection: close` / GOAWAY), wait for them up to `grace`, close the rest and
    /// stop. Calling it again (or while `/quitquitquit` drains) waits for the same drain.
    pub async fn drain(&self, grace: Duration) {
        self.inner.clone().drain(grace).await;
    }

    /// Resolves when the proxy has stopped (after a drain, from here, a signal handler or
    /// `/quitquitquit`).
    pub async fn wait(&self) {
        self.inner.stopped().await;
    }
}

// === impl Inner ===

impl Inner {
    pub(crate) async fn drain(self: Arc<Self>, grace: Duration) {
        if self.drain_tx.send_replace(true) {
            // Already draining: wait for that drain to finish.
            return self.stopped().await;
        }
        info!(?grace, active = self.shared.tracker.active(), "draining");
        self.status.send_modify(|s| {
            s.draining = true;
            s.ready = false;
        });
        let handles = std::mem::take(&mut *self.listeners.lock().await);
        for (_, handle) in handles {
            drop(handle.stop().await);
        }
        self.status.send_modify(|s| s.listeners.clear());
        if tokio::time::timeout(grace, self.shared.tracker.idle())
            .await
            .is_err()
        {
            warn!(
                remaining = self.shared.tracker.active(),
                "drain grace period over; closing the remaining connections"
            );
            self.kill_tx.send_replace(true);
            // Connection tasks return as soon as they see the signal.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.shared.tracker.idle()).await;
        }
        info!("drained; stopped");
        self.done_tx.send_replace(true);
    }

    pub(crate) async fn stopped(&self) {
        signalled(self.done_tx.subscribe()).await;
    }

    pub(crate) fn draining(&self) -> bool {
        *self.drain_tx.borrow()
    }

    /// Build and apply one config; on failure keep the current one and report why.
    async fn apply(&self, config: Arc<ProxyConfig>) {
        let version = config.version.clone();
        match self.try_apply(config).await {
            Ok(()) => {
                info!(%version, "config applied");
                self.status.send_modify(|s| {
                    s.applied = Some(Applied {
                        version,
                        at: SystemTime::now(),
                    });
                    s.ready = !self.draining() && !s.waiting_for_certificate;
                    s.applied_total += 1;
                });
            }
            Err(error) => {
                warn!(%version, %error, "config rejected; the previous config stays in force");
                self.status.send_modify(|s| {
                    s.rejected = Some(Rejected {
                        version,
                        error,
                        at: SystemTime::now(),
                    });
                    s.rejected_total += 1;
                });
            }
        }
    }

    async fn try_apply(&self, config: Arc<ProxyConfig>) -> Result<(), String> {
        check_listener_names(&config)?;
        // Building compiles matchers and may be costly: keep it off the async workers.
        let previous = self.rt.load_full();
        // The runtime shares the source's copy of the config (no clone: it can be large).
        let runtime = tokio::task::spawn_blocking(move || Runtime::build(config, Some(&previous)))
            .await
            .map_err(|e| format!("building the runtime failed: {e}"))?
            .map_err(|e| e.to_string())?;
        let mut listeners = self.listeners.lock().await;
        if self.draining() {
            return Err("the proxy is draining".into());
        }
        let plan = plan(&runtime.config, &listeners);
        // Bind everything new first: if one bind fails, nothing has changed yet.
        let mut fresh = Vec::new();
        for (name, addr) in &plan.bind {
            let socket = listener::bind(*addr)
                .await
                .map_err(|e| format!("cannot bind listener {name} on {addr}: {e}"))?;
            fresh.push((name.clone(), *addr, socket));
        }
        // Stop removed listeners before the swap, so none accepts a connection it no
        // longer has config for; renamed ones hand their socket over.
        let mut moved = Vec::new();
        for name in &plan.stop {
            let Some(handle) = listeners.remove(name) else {
                continue;
            };
            let configured = handle.configured;
            let socket = handle.stop().await;
            if let (Some(new_name), Some(socket)) = (plan.renamed.get(name), socket) {
                moved.push((new_name.clone(), configured, socket));
            }
        }
        self.rt.store(Arc::new(runtime));
        for (name, addr, socket) in fresh.into_iter().chain(moved) {
            match listener::start(name.clone(), addr, socket, self.shared.clone()) {
                Ok(handle) => {
                    info!(listener = %name, addr = %handle.local, "listening");
                    listeners.insert(name, handle);
                }
                Err(e) => warn!(listener = %name, error = %e, "listener socket unusable"),
            }
        }
        let bound: BTreeMap<String, SocketAddr> = listeners
            .iter()
            .map(|(n, h)| (n.to_string(), h.local))
            .collect();
        self.shared
            .own_addrs
            .store(Arc::new(bound.values().copied().collect()));
        self.status.send_modify(|s| s.listeners = bound);
        Ok(())
    }
}

/// Keeps readiness in step with the certificate: not ready before the first one, nor after
/// one expired without a replacement.
async fn certificate_loop(
    inner: Arc<Inner>,
    mut rx: watch::Receiver<Option<Arc<crate::identity::Identity>>>,
) {
    loop {
        let missing = rx.borrow_and_update().is_none();
        inner.status.send_modify(|s| {
            s.waiting_for_certificate = missing;
            s.ready = s.applied.is_some() && !s.draining && !missing;
        });
        if missing {
            info!("waiting for the workload certificate");
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn config_loop(inner: Arc<Inner>, mut rx: ConfigReceiver) {
    let mut drain = inner.drain_tx.subscribe();
    loop {
        let next = rx.borrow_and_update().clone();
        if let Some(config) = next {
            let current = inner
                .status
                .borrow()
                .applied
                .as_ref()
                .map(|a| a.version.clone());
            // Equal versions are equal configs: nothing to do.
            if config.version.is_empty() || current.as_deref() != Some(config.version.as_str()) {
                inner.apply(config).await;
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() {
                info!("config source closed; keeping the last config");
                return;
            },
            _ = drain.wait_for(|d| *d) => return,
        }
    }
}

fn check_listener_names(config: &ProxyConfig) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for l in &config.listeners {
        if !seen.insert(l.name.as_str()) {
            return Err(format!("listener name {} appears twice", l.name));
        }
    }
    Ok(())
}

/// How to get from the bound listeners to the ones a config wants.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// New sockets to bind.
    bind: Vec<(Arc<str>, SocketAddr)>,
    /// Listeners to stop.
    stop: Vec<Arc<str>>,
    /// Stopped listener → the new name that takes over its socket (same address).
    renamed: BTreeMap<Arc<str>, Arc<str>>,
}

fn plan(config: &ProxyConfig, bound: &BTreeMap<Arc<str>, ListenerHandle>) -> Plan {
    let current: BTreeMap<Arc<str>, SocketAddr> = bound
        .iter()
        .map(|(n, h)| (n.clone(), h.configured))
        .collect();
    plan_addresses(config, &current)
}

fn plan_addresses(config: &ProxyConfig, current: &BTreeMap<Arc<str>, SocketAddr>) -> Plan {
    let mut plan = Plan::default();
    let wanted: BTreeMap<&str, SocketAddr> = config
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.address))
        .collect();
    let mut leaving: Vec<(Arc<str>, SocketAddr)> = current
        .iter()
        .filter(|(name, addr)| wanted.get(&***name) != Some(*addr))
        .map(|(n, a)| (n.clone(), *a))
        .collect();
    plan.stop = leaving.iter().map(|(n, _)| n.clone()).collect();
    for (name, addr) in wanted {
        if current.get(name) == Some(&addr) {
            continue;
        }
        let name: Arc<str> = Arc::from(name);
        // A fixed address a leaving listener holds: take its socket instead of binding
        // (which would fail with "address in use"). Port 0 always means a new socket.
        let takeover = (addr.port() != 0)
            .then(|| leaving.iter().position(|(_, a)| *a == addr))
            .flatten();
        match takeover {
            Some(i) => {
                let (old, _) = leaving.swap_remove(i);
                plan.renamed.insert(old, name);
            }
            None => plan.bind.push((name, addr)),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_api::{Capture, Direction, Fallback, Listener};

    fn config(listeners: &[(&str, &str)]) -> ProxyConfig {
        ProxyConfig {
            listeners: listeners
                .iter()
                .map(|(n, a)| Listener {
                    name: n.to_string(),
                    address: a.parse().unwrap(),
                    direction: Direction::Outbound,
                    capture: Capture::Explicit,
                    chains: vec![],
                    fallback: Fallback::Passthrough,
                })
                .collect(),
            ..Default::default()
        }
    }

    fn current(entries: &[(&str, &str)]) -> BTreeMap<Arc<str>, SocketAddr> {
        entries
            .iter()
            .map(|(n, a)| (Arc::from(*n), a.parse().unwrap()))
            .collect()
    }

    #[test]
    fn plan_keeps_unchanged_binds_new_stops_removed() {
        let now = current(&[
            ("a", "127.0.0.1:1001"),
            ("b", "127.0.0.1:1002"),
            ("c", "127.0.0.1:0"),
        ]);
        let next = config(&[
            ("a", "127.0.0.1:1001"),
            ("b", "127.0.0.1:2002"),
            ("d", "127.0.0.1:1003"),
        ]);
        let p = plan_addresses(&next, &now);
        let names =
            |v: &[(Arc<str>, SocketAddr)]| v.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        assert_eq!(names(&p.bind), ["b", "d"]);
        assert_eq!(
            p.stop.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            ["b", "c"]
        );
        assert!(p.renamed.is_empty());
    }

    #[test]
    fn plan_hands_socket_to_renamed_listener() {
        let now = current(&[("old", "127.0.0.1:1001")]);
        let p = plan_addresses(&config(&[("new", "127.0.0.1:1001")]), &now);
        assert!(p.bind.is_empty());
        assert_eq!(
            p.renamed.get("old").map(|n| n.to_string()),
            Some("new".into())
        );
    }

    #[test]
    fn duplicate_listener_names_are_rejected() {
        let c = config(&[("a", "127.0.0.1:1"), ("a", "127.0.0.1:2")]);
        assert_eq!(
            check_listener_names(&c).unwrap_err(),
            "listener name a appears twice"
        );
    }
}
