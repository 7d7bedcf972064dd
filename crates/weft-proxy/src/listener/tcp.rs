//! Opaque TCP: pick a cluster by weight, connect, and copy bytes both ways until both sides
//! are done (a half-close on one side is passed on, the other direction keeps flowing), the
//! connection sits idle too long, or the proxy stops.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::debug;
use weft_api::{SniRoute, TcpChain, TlsPassthroughChain, WeightedCluster};

use super::chain::sni_matches;
use super::tcp_observe::{ByteCounters, TcpObs};
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::runtime::Runtime;
use crate::upstream::{BoxedIo, ConnectionGuard};

/// How long connecting to an original destination may take: Istio's default
/// `connectTimeout` (PassthroughCluster has no DestinationRule to change it).
pub const PASSTHROUGH_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    #[error("no cluster to send to: every cluster of chain has weight 0")]
    NoCluster,
    #[error("no TLS route for SNI {sni:?} on this chain")]
    NoSniRoute { sni: Option<String> },
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    #[error(
        "refusing to connect to {dst}: it is this proxy's own listener (a passthrough loop; \
         is the traffic redirected twice?)"
    )]
    Loop { dst: SocketAddr },
    #[error("connecting to original destination {dst}: {source}")]
    Passthrough { dst: SocketAddr, source: io::Error },
    #[error("idle for {0:?}, closed")]
    Idle(Duration),
    #[error("copying bytes: {0}")]
    Io(#[from] io::Error),
}

/// Where a TCP connection goes.
pub enum Target<'a> {
    Cluster(&'a str),
    /// The destination the client dialled (passthrough).
    OriginalDst,
}

/// Pick by relative weight; zero-weight entries never win. `None` when all weights are 0.
pub fn pick_weighted<'a>(
    clusters: &'a [WeightedCluster],
    rng: &mut fastrand::Rng,
) -> Option<&'a WeightedCluster> {
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut ticket = rng.u64(..total);
    for c in clusters {
        let w = u64::from(c.weight);
        if ticket < w {
            return Some(c);
        }
        ticket -= w;
    }
    None
}

/// The target of a TCP chain: a weighted cluster, or the original destination when the
/// chain lists none.
pub fn tcp_target<'a>(
    chain: &'a TcpChain,
    rng: &mut fastrand::Rng,
) -> Result<Target<'a>, TcpError> {
    if chain.clusters.is_empty() {
        return Ok(Target::OriginalDst);
    }
    pick_weighted(&chain.clusters, rng)
        .map(|c| Target::Cluster(&c.cluster))
        .ok_or(TcpError::NoCluster)
}

/// The first SNI route that accepts `sni`.
pub fn sni_route<'a>(chain: &'a TlsPassthroughChain, sni: Option<&str>) -> Option<&'a SniRoute> {
    chain
        .routes
        .iter()
        .find(|r| sni_matches(&r.server_names, sni))
}

/// Connect to `target`, replay `prefix` (bytes detection already read), then copy.
/// `downstream` is the accepted socket, a TLS stream terminated here, or a stream of the
/// mesh tunnel.
pub async fn forward<D>(
    downstream: D,
    prefix: &[u8],
    target: Target<'_>,
    idle_timeout: Option<Duration>,
    conn: &ConnInfo,
    rt: &Runtime,
    own_listeners: &[SocketAddr],
) -> Result<(), TcpError>
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let mut obs = TcpObs::begin(rt, conn, &target, None);
    let result = async {
        let (upstream, _guard) = connect_target(target, conn, rt, own_listeners).await?;
        debug!(target = %conn.original_dst, "connected");
        pipe(downstream, upstream, prefix, idle_timeout, &mut obs).await
    }
    .await;
    obs.closed(&result);
    result
}

/// The upstream stream for `target`; keep the guard (the cluster's connection slot) while
/// it is open.
pub async fn connect_target(
    target: Target<'_>,
    conn: &ConnInfo,
    rt: &Runtime,
    own_listeners: &[SocketAddr],
) -> Result<(BoxedIo, Option<ConnectionGuard>), TcpError> {
    Ok(match target {
        Target::Cluster(cluster) => {
            let (stream, guard) = rt.clusters().connect_tcp(cluster, conn).await?;
            (stream, Some(guard))
        }
        Target::OriginalDst => (
            Box::new(connect_original_dst(conn, own_listeners).await?),
            None,
        ),
    })
}

async fn connect_original_dst(
    conn: &ConnInfo,
    own_listeners: &[SocketAddr],
) -> Result<TcpStream, TcpError> {
    let dst = conn.original_dst;
    if is_own_listener(dst, conn.local, own_listeners) {
        return Err(TcpError::Loop { dst });
    }
    let connect = tokio::time::timeout(PASSTHROUGH_CONNECT_TIMEOUT, TcpStream::connect(dst));
    match connect.await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(source)) => Err(TcpError::Passthrough { dst, source }),
        Err(_) => Err(TcpError::Passthrough {
            dst,
            source: io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        }),
    }
}

/// Connecting to a destination that is one of our own listeners would make the connection
/// come straight back to us, forever. A wildcard listener (`0.0.0.0:15001`) counts for the
/// loopback addresses and the address the connection arrived on.
pub fn is_own_listener(dst: SocketAddr, local: SocketAddr, own: &[SocketAddr]) -> bool {
    dst == local
        || own.iter().any(|l| {
            l.port() == dst.port()
                && (l.ip() == dst.ip()
                    || (l.ip().is_unspecified()
                        && (dst.ip().is_loopback() || dst.ip() == local.ip())))
        })
}

/// Copy both ways with half-close handling (`copy_bidirectional` shuts down the write side
/// of one stream when the other reaches EOF, and keeps the other direction open). `obs`
/// counts the downstream bytes and reports long connections periodically.
pub async fn pipe<D, U>(
    downstream: D,
    upstream: U,
    prefix: &[u8],
    idle_timeout: Option<Duration>,
    obs: &mut TcpObs,
) -> Result<(), TcpError>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut downstream = Tracked::new(downstream, activity.clone()).counting(obs.counters());
    let mut upstream = Tracked::new(upstream, activity.clone());
    if !prefix.is_empty() {
        upstream.write_all(prefix).await?;
    }
    let copy = tokio::io::copy_bidirectional(&mut downstream, &mut upstream);
    tokio::pin!(copy);
    let idle = async {
        match idle_timeout {
            Some(t) => activity.idle_for(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(idle);
    // No periodic report when telemetry is off.
    let mut report = obs
        .interval()
        .map(|p| tokio::time::interval_at(Instant::now() + p, p));
    loop {
        tokio::select! {
            r = &mut copy => {
                let (sent, received) = r?;
                debug!(sent, received, "tcp done");
                return Ok(());
            }
            () = &mut idle => return Err(TcpError::Idle(idle_timeout.unwrap_or_default())),
            () = next_report(&mut report) => obs.progress(),
        }
    }
}

/// The next periodic report; never, without telemetry.
async fn next_report(report: &mut Option<tokio::time::Interval>) {
    match report {
        Some(r) => {
            r.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// When bytes last moved, in milliseconds since `base` (tokio's clock, so tests can pause
/// it).
#[derive(Clone)]
struct Activity {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing moved for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.last_ms.load(Ordering::Relaxed);
            tokio::time::sleep_until(self.base + Duration::from_millis(last) + timeout).await;
            if self.last_ms.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }
}

/// A stream that records activity on every read or write that moved bytes.
struct Tracked<S> {
    inner: S,
    activity: Activity,
    /// Downstream side only: bytes read (received) and written (sent), for telemetry.
    bytes: Option<Arc<ByteCounters>>,
}

impl<S> Tracked<S> {
    fn new(inner: S, activity: Activity) -> Tracked<S> {
        Tracked {
            inner,
            activity,
            bytes: None,
        }
    }

    fn counting(mut self, bytes: Option<Arc<ByteCounters>>) -> Tracked<S> {
        self.bytes = bytes;
        self
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.touch();
            if let Some(b) = &self.bytes {
                b.received.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res
            && n > 0
        {
            self.activity.touch();
            if let Some(b) = &self.bytes {
                b.sent.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn wc(name: &str, weight: u32) -> WeightedCluster {
        WeightedCluster {
            cluster: name.into(),
            weight,
            ..Default::default()
        }
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let clusters = [wc("a", 80), wc("b", 20), wc("never", 0)];
        let mut rng = fastrand::Rng::with_seed(42);
        let n = 10_000;
        let a = (0..n)
            .filter(|_| pick_weighted(&clusters, &mut rng).unwrap().cluster == "a")
            .count();
        // 80% ± 2 points over 10k draws (the standard deviation is 0.4 points).
        assert!((7800..=8200).contains(&a), "a picked {a} of {n}");
        assert!(pick_weighted(&[wc("z", 0)], &mut rng).is_none());
    }

    #[test]
    fn own_listener_detection() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let own = [a("0.0.0.0:15001"), a("10.0.0.5:8080")];
        let local = a("10.0.0.5:15001");
        assert!(is_own_listener(a("127.0.0.1:15001"), local, &own));
        assert!(is_own_listener(a("10.0.0.5:15001"), a("10.0.0.5:1"), &own));
        assert!(is_own_listener(a("10.0.0.5:8080"), local, &own));
        assert!(!is_own_listener(a("10.0.0.9:15001"), local, &own));
        assert!(!is_own_listener(a("10.0.0.5:9090"), local, &own));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_closes_quiet_connections_only() {
        let (client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, mut server) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move {
            let mut obs = TcpObs::default();
            pipe(
                proxy_down,
                proxy_up,
                b"hi",
                Some(Duration::from_secs(10)),
                &mut obs,
            )
            .await
        });
        let mut buf = [0u8; 2];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        // Activity at 8 s pushes the deadline out; nothing after that: closed at 18 s.
        tokio::time::advance(Duration::from_secs(8)).await;
        server.write_all(b"ok").await.unwrap();
        let mut client = client;
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
        tokio::time::advance(Duration::from_secs(9)).await;
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        tokio::time::advance(Duration::from_secs(2)).await;
        let res = task.await.unwrap();
        assert!(matches!(res, Err(TcpError::Idle(_))), "{res:?}");
        drop(client);
    }

    #[tokio::test]
    async fn half_close_keeps_the_other_direction() {
        let (mut client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, mut server) = tokio::io::duplex(1024);
        let task = tokio::spawn(async move {
            pipe(proxy_down, proxy_up, b"", None, &mut TcpObs::default()).await
        });
        client.write_all(b"request").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request");
        // The client's EOF reached the server; the response still flows back.
        server.write_all(b"response").await.unwrap();
        drop(server);
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"response");
        task.await.unwrap().unwrap();
    }
}
