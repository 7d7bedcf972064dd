//! weft-control: the control plane.
//!
//! - [`source`]: where config objects come from ([`source::DirectorySource`],
//!   [`source::MemorySource`]; a Kubernetes source fits the same [`source::Source`] trait).
//! - [`state`]: objects with their status (accepted / rejected with field and reason /
//!   programmed on N of M proxies), the registry, and the connected proxies.
//! - [`server`]: the `weft.v1.Discovery/Stream` gRPC service (delta push, per-resource
//!   ACK/NACK; see `weft-api/proto/weft/v1/discovery.proto`).
//! - [`debug`]: the debug HTTP API (`/debug/status`, `/debug/proxies`,
//!   `/debug/proxy/<id>/config`) that `weft status`, `weft proxy-status` and
//!   `weft proxy-config` read.
//!
//! On every change the inputs' generation moves; each proxy's session recompiles that
//! proxy and pushes only the resources whose content hash changed.

pub mod ca;
pub mod debug;
pub mod server;
pub mod source;
pub mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};
use weft_api::ProxyConfig;
use weft_api::pb::discovery_server::DiscoveryServer;
use weft_compile::Registry;

use crate::source::Source;
use crate::state::{ObjectStatus, ProxyState, State};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot bind the {what} address {addr}: {source} (is another control plane running?)")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How the control plane runs.
#[derive(Clone)]
pub struct Options {
    /// The gRPC address proxies connect to (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The debug HTTP address; none disables it.
    pub debug: Option<SocketAddr>,
    /// The bootstrap token proxies must present; none accepts any proxy.
    pub token: Option<String>,
    /// The workload instances known up front (the registry file).
    pub registry: Registry,
}

/// State shared by the gRPC sessions, the source loop and the debug API.
pub struct Shared {
    state: Mutex<State>,
    pub(crate) token: Option<String>,
    /// The inputs' generation: every session recompiles when it moves.
    pub(crate) changes: watch::Sender<u64>,
    /// Moves on every status change (ACK, NACK, connect, disconnect).
    status: watch::Sender<u64>,
    sessions: AtomicU64,
    /// Set when the control plane stops: sessions end their streams.
    pub(crate) stop: watch::Sender<bool>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_session(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub(crate) fn count_disconnect(&self, reason: &str) {
        *self
            .state()
            .disconnects
            .entry(reason.to_string())
            .or_default() += 1;
    }

    pub(crate) fn with_proxy(&self, id: &str, session: u64, f: impl FnOnce(&mut ProxyState)) {
        if let Some(p) = self
            .state()
            .proxies
            .get_mut(id)
            .filter(|p| p.session == session)
        {
            f(p);
        }
        self.notify_status();
    }

    pub(crate) fn notify_status(&self) {
        self.status.send_modify(|n| *n += 1);
    }

    /// The registry file's instances with connected proxies' announcements laid over them.
    pub(crate) fn rebuild_registry(&self, st: &mut State) {
        let instances = st
            .base_registry
            .instances
            .iter()
            .map(|i| {
                match st
                    .proxies
                    .get(&i.proxy_id())
                    .and_then(|p| p.announced.as_ref())
                {
                    Some(hello) => state::overlay(i.clone(), hello),
                    None => i.clone(),
                }
            })
            .collect();
        if st.set_registry(instances) {
            self.changes.send_replace(st.generation);
        }
    }
}

/// A running control plane.
pub struct ControlPlane {
    shared: Arc<Shared>,
    grpc_addr: SocketAddr,
    debug_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    /// Bind the gRPC and debug ports and start consuming `source`.
    pub async fn start(
        options: Options,
        source: Box<dyn Source>,
    ) -> Result<ControlPlane, ControlError> {
        let grpc =
            TcpListener::bind(options.listen)
                .await
                .map_err(|source| ControlError::Bind {
                    what: "gRPC",
                    addr: options.listen,
                    source,
                })?;
        let grpc_addr = grpc.local_addr().unwrap_or(options.listen);
        let mut state = State::default();
        state.base_registry = options.registry.clone();
        state.set_registry(options.registry.instances.clone());
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            token: options.token.clone(),
            changes: watch::Sender::new(0),
            status: watch::Sender::new(0),
            sessions: AtomicU64::new(0),
            stop: watch::Sender::new(false),
        });
        let mut tasks = Vec::new();
        let mut debug_addr = None;
        if let Some(addr) = options.debug {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ControlError::Bind {
                    what: "debug",
                    addr,
                    source,
                })?;
            debug_addr = Some(listener.local_addr().unwrap_or(addr));
            tasks.push(tokio::spawn(debug::serve(listener, shared.clone())));
        }
        let mut events = source.watch();
        let feed = shared.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let mut st = feed.state();
                let changed = st.apply(event);
                let generation = st.generation;
                drop(st);
                if changed {
                    feed.changes.send_replace(generation);
                }
                feed.notify_status();
            }
        }));
        // Other services (the CA) are added to this router.
        let router = tonic::transport::Server::builder().add_service(DiscoveryServer::new(
            server::DiscoveryService {
                shared: shared.clone(),
            },
        ));
        let mut stop = shared.stop.subscribe();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tasks.push(tokio::spawn(async move {
            let incoming = TcpListenerStream::new(grpc);
            if let Err(e) = router.serve_with_incoming_shutdown(incoming, stopped).await {
                warn!(error = %e, "the gRPC server stopped");
            }
        }));
        info!(%grpc_addr, ?debug_addr, "control plane started");
        Ok(ControlPlane {
            shared,
            grpc_addr,
            debug_addr,
            tasks,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn debug_addr(&self) -> Option<SocketAddr> {
        self.debug_addr
    }

    /// Replace the registry file's instances (the CLI reloads the file on change).
    pub fn set_registry(&self, registry: Registry) {
        let mut st = self.shared.state();
        st.base_registry = registry;
        self.shared.rebuild_registry(&mut st);
    }

    pub fn statuses(&self) -> Vec<ObjectStatus> {
        self.shared.state().statuses()
    }

    pub fn proxies(&self) -> Vec<ProxyState> {
        self.shared.state().proxies.values().cloned().collect()
    }

    /// The config last compiled for a connected proxy.
    pub fn proxy_config(&self, id: &str) -> Option<Arc<ProxyConfig>> {
        self.shared.state().proxies.get(id)?.config.clone()
    }

    /// Record when a connected proxy's workload certificate expires (RFC 3339), for
    /// `weft proxy-status`; the CA calls this when it issues one.
    pub fn set_cert_expiry(&self, proxy_id: &str, expiry: String) {
        if let Some(p) = self.shared.state().proxies.get_mut(proxy_id) {
            p.cert_expiry = Some(expiry);
        }
        self.shared.notify_status();
    }

    pub fn disconnects(&self) -> BTreeMap<String, u64> {
        self.shared.state().disconnects.clone()
    }

    /// Moves on every status change: wait on it instead of polling.
    pub fn status_changes(&self) -> watch::Receiver<u64> {
        self.shared.status.subscribe()
    }

    /// Stop: every proxy stream ends, no new one is accepted, the debug API closes.
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
        for t in &self.tasks[..self.tasks.len().saturating_sub(1)] {
            t.abort();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}
