//! Listeners: bind, accept, and run one task per connection.
//!
//! A listener's task only accepts; what a connection does is read from the runtime current
//! at accept time (the listener entry with the same name), so a config change applies to
//! new connections without rebinding. Each connection task carries a span with the listener
//! name, the peer and a connection id, holds a [`ConnGuard`] (drain waits for those) and
//! stops at once when the proxy's grace period is over.

pub mod chain;
mod conn;
pub mod detect;
pub mod mtls;
mod rewind;
pub mod tcp;
pub mod tcp_observe;
mod tunnel;

pub use rewind::Rewind;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info_span, warn};

use crate::RuntimeHandle;
use crate::upstream::Mesh;

/// What every listener and connection task shares.
pub struct Shared {
    pub rt: RuntimeHandle,
    /// Flips to `true` when the proxy starts draining: HTTP connections finish their
    /// requests and close, connections still being classified close.
    pub drain: watch::Receiver<bool>,
    /// Flips to `true` when the drain grace period is over: every connection closes now.
    pub kill: watch::Receiver<bool>,
    pub tracker: ConnTracker,
    pub stats: ListenerStats,
    /// Addresses the proxy's listeners are bound to, so passthrough never dials itself.
    pub own_addrs: ArcSwap<Vec<SocketAddr>>,
    /// The workload certificate (also used by the upstream side for peer connections).
    pub mesh: Arc<Mesh>,
    /// Server TLS configs for the current certificate.
    pub server_tls: mtls::ServerTls,
    next_conn_id: AtomicU64,
}

impl Shared {
    pub fn new(
        rt: RuntimeHandle,
        drain: watch::Receiver<bool>,
        kill: watch::Receiver<bool>,
        mesh: Arc<Mesh>,
    ) -> Shared {
        Shared {
            rt,
            drain,
            kill,
            tracker: ConnTracker::default(),
            stats: ListenerStats::default(),
            own_addrs: ArcSwap::from_pointee(Vec::new()),
            mesh,
            server_tls: mtls::ServerTls::default(),
            next_conn_id: AtomicU64::new(1),
        }
    }
}

/// Counters of what happened at the edge (exported by the admin endpoint).
#[derive(Default)]
pub struct ListenerStats {
    pub connections_total: AtomicU64,
    /// Connections no chain took, closed by a `Blackhole` fallback.
    pub blackholed_total: AtomicU64,
    /// Passthrough connections refused because they would dial the proxy itself.
    pub passthrough_loops_total: AtomicU64,
    /// `Detect` chains whose client sent nothing in time (server-first protocols).
    pub detect_timeouts_total: AtomicU64,
    /// Connections that ended with an error (upstream unreachable, no route, ...).
    pub connection_errors_total: AtomicU64,
    /// Plaintext connections closed on ports whose PeerAuthentication is STRICT.
    pub plaintext_refused_total: AtomicU64,
    /// Mesh TLS terminated on service ports (STRICT or PERMISSIVE).
    pub mtls_connections_total: AtomicU64,
    /// Mesh TLS handshakes that failed (tunnel or service port): no or untrusted client
    /// certificate, no SPIFFE ID, no certificate of our own yet.
    pub mtls_handshake_failures_total: AtomicU64,
    /// mTLS connections accepted on the mesh tunnel port.
    pub tunnel_connections_total: AtomicU64,
    /// Streams (HTTP requests and CONNECTs) received through the tunnel.
    pub tunnel_streams_total: AtomicU64,
}

impl ListenerStats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts open connections so drain can wait for them.
#[derive(Clone)]
pub struct ConnTracker {
    active: Arc<watch::Sender<usize>>,
}

impl Default for ConnTracker {
    fn default() -> Self {
        ConnTracker {
            active: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// One open connection; dropping it (when the connection task ends) counts it closed.
pub struct ConnGuard {
    active: Arc<watch::Sender<usize>>,
}

impl ConnTracker {
    pub fn track(&self) -> ConnGuard {
        self.active.send_modify(|n| *n += 1);
        ConnGuard {
            active: self.active.clone(),
        }
    }

    pub fn active(&self) -> usize {
        *self.active.borrow()
    }

    /// Resolves when no connection is open.
    pub async fn idle(&self) {
        let mut rx = self.active.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.active.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A bound listener whose accept loop is running.
pub struct ListenerHandle {
    pub name: Arc<str>,
    /// The address from the config (may have port 0).
    pub configured: SocketAddr,
    /// The address actually bound.
    pub local: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<TcpListener>,
}

impl ListenerHandle {
    /// Stop accepting; connections already accepted carry on. Returns the socket (still
    /// bound, its backlog intact) so a listener renamed at the same address can take it
    /// over; dropping it closes it.
    pub async fn stop(self) -> Option<TcpListener> {
        let _ = self.stop.send(());
        self.task.await.ok()
    }
}

/// Bind a listener's address. Separate from [`start`] so a config whose listeners cannot
/// all be bound is rejected before anything changes.
pub async fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    // tokio sets SO_REUSEADDR on Unix, so a restarted proxy rebinds at once even with
    // connections of its predecessor in TIME_WAIT.
    TcpListener::bind(address).await
}

/// Start accepting on a bound listener.
pub fn start(
    name: Arc<str>,
    configured: SocketAddr,
    listener: TcpListener,
    shared: Arc<Shared>,
) -> io::Result<ListenerHandle> {
    let local = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel();
    let span = info_span!("listener", listener = %name, addr = %local);
    let task = tokio::spawn(accept_loop(listener, name.clone(), shared, stopped).instrument(span));
    Ok(ListenerHandle {
        name,
        configured,
        local,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) -> TcpListener {
    debug!("accepting");
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut stopped => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => spawn_connection(stream, peer, name.clone(), shared.clone()),
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning; the
                // listener stays up and recovers when connections close.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    debug!("stopped accepting");
    listener
}

fn spawn_connection(stream: TcpStream, peer: SocketAddr, name: Arc<str>, shared: Arc<Shared>) {
    let id = shared.next_conn_id.fetch_add(1, Ordering::Relaxed);
    ListenerStats::inc(&shared.stats.connections_total);
    let guard = shared.tracker.track();
    let span = info_span!("conn", listener = %name, %peer, id);
    let kill = shared.kill.clone();
    tokio::spawn(
        async move {
            let _guard = guard;
            tokio::select! {
                () = conn::serve(stream, peer, name, &shared) => {}
                () = signalled(kill) => debug!("closed: drain grace period over"),
            }
        }
        .instrument(span),
    );
}

/// Resolves when the flag turns `true`; never, if its sender is gone without doing so.
pub async fn signalled(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|on| *on).await.is_err() {
        std::future::pending::<()>().await;
    }
}
