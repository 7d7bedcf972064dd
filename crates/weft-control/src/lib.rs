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
//! - [`ca`]: the certificate authority; its `weft.v1.CertificateService/CreateCertificate`
//!   is served on the gRPC port next to the push stream.
//! - [`identity`]: bootstrap tokens (one per identity, optionally bound to one proxy), what
//!   they entitle on the push stream and at the CA, and the certificates issued.
//!
//! On every change the inputs' generation moves; the compiler task recompiles only the
//! proxies the change can affect (see `affected.rs`, `compiler.rs`) and each session pushes
//! only the resources whose content hash changed.

mod affected;
pub mod ca;
mod compiler;
pub mod dashboard;
pub mod debug;
pub mod identity;
pub mod metrics;
pub mod server;
pub mod source;
pub mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};
use weft_api::ProxyConfig;
use weft_api::pb::discovery_server::DiscoveryServer;
use weft_compile::Registry;

use crate::ca::{CaError, CaOptions, CaService, CertificateAuthority, TokenError, TokenStore};
use crate::identity::{CertRecord, IdentityState};
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
    #[error("certificate authority: {0}")]
    Ca(#[from] CaError),
}

/// The certificate authority of a control plane.
#[derive(Debug, Clone)]
pub struct CaSettings {
    /// Istio's `cacerts` layout: a plugged-in CA when the files are there, otherwise a
    /// self-signed root generated and persisted there on first start. An extra
    /// `root-cert-next.pem` joins the trust bundle (root rotation, see [`ca`]).
    pub dir: PathBuf,
    /// Workload certificate lifetime when a request names none (24 h).
    pub workload_ttl: Duration,
    /// The longest lifetime granted (90 days).
    pub max_workload_ttl: Duration,
}

impl CaSettings {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            workload_ttl: ca::DEFAULT_WORKLOAD_TTL,
            max_workload_ttl: ca::DEFAULT_MAX_WORKLOAD_TTL,
        }
    }
}

/// How the control plane runs.
#[derive(Clone)]
pub struct Options {
    /// The gRPC address proxies connect to (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The debug HTTP address; none disables it.
    pub debug: Option<SocketAddr>,
    /// A shared bootstrap token any proxy may present on the push stream. It names no
    /// identity, so the CA signs nothing for it. With neither it nor per-identity tokens,
    /// every proxy is admitted.
    pub token: Option<String>,
    /// Per-identity bootstrap tokens (`--tokens FILE`); given, tokens are required even
    /// while it is empty. [`ControlPlane::issue_token`] adds to it.
    pub tokens: Option<Arc<TokenStore>>,
    /// The workload instances known up front (the registry file).
    pub registry: Registry,
    /// The CA served next to the push stream; none serves no certificates.
    pub ca: Option<CaSettings>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            debug: None,
            token: None,
            tokens: None,
            registry: Registry::default(),
            ca: None,
        }
    }
}

/// State shared by the gRPC sessions, the source loop and the debug API.
pub struct Shared {
    state: Mutex<State>,
    pub(crate) token: Option<String>,
    pub(crate) identity: IdentityState,
    /// The inputs' generation: every session recompiles when it moves.
    pub(crate) changes: watch::Sender<u64>,
    /// Moves on every status change (ACK, NACK, connect, disconnect).
    status: watch::Sender<u64>,
    sessions: AtomicU64,
    /// Set when the control plane stops: sessions end their streams.
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) metrics: metrics::ControlMetrics,
    /// The dashboard's Zipkin collector (on the debug port): where proxies send spans when
    /// tracing is on and no provider is configured.
    pub(crate) trace_collector: Option<weft_api::TraceProvider>,
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
        let ca = match &options.ca {
            Some(settings) => Some(Arc::new(CertificateAuthority::open(
                &settings.dir,
                CaOptions {
                    workload_ttl: settings.workload_ttl,
                    max_workload_ttl: settings.max_workload_ttl,
                    ..CaOptions::default()
                },
            )?)),
            None => None,
        };
        let tokens = options.tokens.clone().unwrap_or_default();
        let mut state = State::default();
        state.base_registry = options.registry.clone();
        state.set_registry(options.registry.instances.clone());
        // Bound before the shared state, which names its address as the trace collector.
        let debug_listener = match options.debug {
            Some(addr) => Some((
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ControlError::Bind {
                        what: "debug",
                        addr,
                        source,
                    })?,
                addr,
            )),
            None => None,
        };
        let debug_addr = debug_listener
            .as_ref()
            .map(|(l, addr)| l.local_addr().unwrap_or(*addr));
        let shared = Arc::new(Shared {
            trace_collector: debug_addr.map(dashboard::trace_collector),
            state: Mutex::new(state),
            token: options.token.clone(),
            identity: IdentityState::new(tokens.clone(), options.tokens.is_some(), ca.clone()),
            changes: watch::Sender::new(0),
            status: watch::Sender::new(0),
            sessions: AtomicU64::new(0),
            stop: watch::Sender::new(false),
            metrics: metrics::ControlMetrics::default(),
        });
        let mut tasks = Vec::new();
        if let Some((listener, _)) = debug_listener {
            tasks.push(tokio::spawn(debug::serve(listener, shared.clone())));
        }
        let mut events = source.watch();
        let feed = shared.clone();
        tasks.push(tokio::spawn(compiler::run(shared.clone())));
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
        let router = tonic::transport::Server::builder()
            .add_service(DiscoveryServer::new(server::DiscoveryService {
                shared: shared.clone(),
            }))
            .add_optional_service(ca.map(|ca| {
                CaService::with_hooks(ca, tokens, shared.clone() as Arc<dyn ca::CaHooks>)
                    .into_server()
            }));
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
        self.shared.proxies_view()
    }

    /// Issues a bootstrap token for `namespace/service_account`: any proxy of that identity
    /// may use it for the push stream and for certificates.
    pub fn issue_token(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Result<String, TokenError> {
        let identity = ca::WorkloadIdentity::new(namespace, service_account)
            .map_err(TokenError::InvalidIdentity)?;
        self.shared.identity.tokens.issue(identity)
    }

    /// Issues a bootstrap token for the registry instance `proxy_id` (`name.namespace`),
    /// bound to it: only that proxy may use it, for its instance's identity.
    pub fn issue_proxy_token(&self, proxy_id: &str) -> Result<String, TokenError> {
        let instance = self
            .shared
            .state()
            .base_registry
            .instances
            .iter()
            .find(|i| i.proxy_id() == proxy_id)
            .cloned()
            .ok_or_else(|| TokenError::UnknownProxy(proxy_id.to_owned()))?;
        let identity = ca::WorkloadIdentity::new(&instance.namespace, &instance.service_account)
            .map_err(TokenError::InvalidIdentity)?;
        self.shared.identity.tokens.issue_grant(ca::Grant {
            identity,
            proxy: Some(proxy_id.to_owned()),
        })
    }

    /// Issues a bound token ([`ControlPlane::issue_proxy_token`]) for every registry
    /// instance that has none yet; returns the new `(proxy id, token)` pairs.
    pub fn issue_registry_tokens(&self) -> Result<Vec<(String, String)>, TokenError> {
        let ids: Vec<String> = self
            .shared
            .state()
            .base_registry
            .instances
            .iter()
            .map(|i| i.proxy_id())
            .collect();
        let mut issued = Vec::new();
        for id in ids {
            if self.shared.identity.tokens.token_of_proxy(&id).is_none() {
                let token = self.issue_proxy_token(&id)?;
                issued.push((id, token));
            }
        }
        Ok(issued)
    }

    /// The bootstrap tokens: the ones loaded and the ones issued.
    pub fn tokens(&self) -> Arc<TokenStore> {
        self.shared.identity.tokens.clone()
    }

    /// The certificate authority, when one runs.
    pub fn ca(&self) -> Option<Arc<CertificateAuthority>> {
        self.shared.identity.ca.clone()
    }

    /// The certificate last issued to the holder of `proxy_id`'s token.
    pub fn certificate(&self, proxy_id: &str) -> Option<CertRecord> {
        self.shared.identity.certificate(proxy_id).ok().flatten()
    }

    /// The config last compiled for a connected proxy.
    pub fn proxy_config(&self, id: &str) -> Option<Arc<ProxyConfig>> {
        self.shared.state().proxies.get(id)?.config()
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
