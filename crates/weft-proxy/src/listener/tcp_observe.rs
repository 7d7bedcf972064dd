//! Telemetry bookkeeping for one opaque TCP connection (or tunnelled CONNECT stream):
//! opened, periodic byte reports for long connections, closed. Inactive, and free, when no
//! sink is configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use weft_api::Direction;

use super::tcp::{Target, TcpError};
use crate::ConnInfo;
use crate::runtime::Runtime;
use crate::telemetry::{PeerMeta, TcpEvent, TcpRecord, Telemetry, UpstreamInfo};

/// Bytes moved on the downstream side of a connection.
#[derive(Debug, Default)]
pub struct ByteCounters {
    /// Read from the downstream (`istio_tcp_received_bytes_total`).
    pub received: AtomicU64,
    /// Written to the downstream (`istio_tcp_sent_bytes_total`).
    pub sent: AtomicU64,
}

#[derive(Default)]
pub struct TcpObs {
    active: Option<Box<Active>>,
}

struct Active {
    tel: Arc<Telemetry>,
    conn: ConnInfo,
    client_side: bool,
    start: Instant,
    start_wall: SystemTime,
    downstream_peer: Option<Arc<PeerMeta>>,
    upstream: Option<UpstreamInfo>,
    counters: Arc<ByteCounters>,
    /// Totals at the last report.
    reported_received: u64,
    reported_sent: u64,
    interval: Duration,
}

impl TcpObs {
    /// Starts observing a connection going to `target`; records `Opened`.
    pub fn begin(
        rt: &Runtime,
        conn: &ConnInfo,
        target: &Target<'_>,
        downstream_peer: Option<Arc<PeerMeta>>,
    ) -> TcpObs {
        let tel = rt.telemetry();
        if !tel.is_active() {
            return TcpObs::default();
        }
        let upstream = match target {
            Target::Cluster(name) => rt.clusters().get(name).map(|c| UpstreamInfo {
                cluster: c.telemetry_name.clone(),
                service: c.telemetry_service.clone(),
                ..UpstreamInfo::default()
            }),
            Target::OriginalDst => Some(UpstreamInfo {
                cluster: Arc::from("PassthroughCluster"),
                host: Some(conn.original_dst),
                ..UpstreamInfo::default()
            }),
        };
        let obs = TcpObs {
            active: Some(Box::new(Active {
                tel: tel.clone(),
                conn: conn.clone(),
                client_side: conn.direction != Direction::Inbound,
                start: Instant::now(),
                start_wall: SystemTime::now(),
                downstream_peer,
                upstream,
                counters: Arc::default(),
                reported_received: 0,
                reported_sent: 0,
                interval: tel.tcp_reporting_interval(),
            })),
        };
        obs.report(TcpEvent::Opened, 0, 0, "", None, None);
        obs
    }

    pub fn counters(&self) -> Option<Arc<ByteCounters>> {
        self.active.as_ref().map(|a| a.counters.clone())
    }

    /// How often to report a long connection; `None` when inactive.
    pub fn interval(&self) -> Option<Duration> {
        self.active.as_ref().map(|a| a.interval)
    }

    /// Reports the bytes moved since the last report.
    pub fn progress(&mut self) {
        let Some((received, sent)) = self.take_delta() else {
            return;
        };
        self.report(TcpEvent::Progress, received, sent, "", None, None);
    }

    /// Records `Closed` with how the connection ended.
    pub fn closed(mut self, result: &Result<(), TcpError>) {
        let Some((received, sent)) = self.take_delta() else {
            return;
        };
        let (flag, code, termination): (&str, Option<&'static str>, Option<String>) = match result {
            Ok(()) => ("", None, None),
            Err(TcpError::Upstream(e)) => (e.flag(), Some(e.code()), Some(e.to_string())),
            Err(TcpError::NoCluster) => ("NC", Some("cluster_not_found"), None),
            Err(TcpError::NoSniRoute { .. }) => ("NR", Some("no_route"), None),
            Err(e @ TcpError::Passthrough { .. }) => {
                ("UF", Some("upstream_connect_failed"), Some(e.to_string()))
            }
            Err(e @ TcpError::Loop { .. }) => ("", Some("passthrough_loop"), Some(e.to_string())),
            Err(e @ TcpError::Idle(_)) => ("", None, Some(e.to_string())),
            Err(e @ TcpError::Io(_)) => ("", None, Some(e.to_string())),
        };
        self.report(
            TcpEvent::Closed,
            received,
            sent,
            flag,
            code,
            termination.as_deref(),
        );
    }

    fn take_delta(&mut self) -> Option<(u64, u64)> {
        let a = self.active.as_mut()?;
        let received = a.counters.received.load(Ordering::Relaxed);
        let sent = a.counters.sent.load(Ordering::Relaxed);
        let delta = (received - a.reported_received, sent - a.reported_sent);
        a.reported_received = received;
        a.reported_sent = sent;
        Some(delta)
    }

    fn report(
        &self,
        event: TcpEvent,
        received: u64,
        sent: u64,
        flags: &str,
        error_code: Option<&'static str>,
        termination: Option<&str>,
    ) {
        let Some(a) = &self.active else {
            return;
        };
        a.tel.record_tcp(&TcpRecord {
            event,
            client_side: a.client_side,
            conn: &a.conn,
            local: a.tel.local(),
            downstream_peer: a.downstream_peer.as_deref(),
            start: a.start_wall,
            duration: a.start.elapsed(),
            received_bytes: received,
            sent_bytes: sent,
            total_received: a.reported_received,
            total_sent: a.reported_sent,
            flags,
            error_code,
            termination,
            route_name: None,
            upstream: a.upstream.as_ref(),
        });
    }
}
