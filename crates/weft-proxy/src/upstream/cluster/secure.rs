//! How connections to a cluster's endpoints are made and secured: directly, through the
//! peer proxy's mesh tunnel (ISTIO_MUTUAL, auto-mTLS), or with TLS origination
//! (SIMPLE/MUTUAL), and how their failures are reported and counted.

use std::sync::Arc;

use http::Request;
use weft_api::UpstreamTls;

use super::{ClusterState, ConnectionGuard, HttpSend, PendingGuard, SendFailure, try_increment};
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::http::body::ProxyBody;
use crate::upstream::BoxedIo;
use crate::upstream::connect::connect;
use crate::upstream::endpoint::{Endpoint, MeshPeer};
use crate::upstream::mesh::MeshError;
use crate::upstream::originate::{Alpn, Originator};
use crate::upstream::outlier::Outcome;
use crate::upstream::pool::{self, Proto, Sent};

/// How a connection to an endpoint is made.
pub(super) enum Path<'a> {
    Direct,
    /// Through the peer proxy's mesh tunnel.
    Mesh(&'a MeshPeer),
    Originate(Arc<Originator>),
}

impl ClusterState {
    /// How to reach `ep`: ISTIO_MUTUAL always through the peer's tunnel (never plaintext);
    /// auto-mTLS through it when the endpoint has one and this proxy has an identity
    /// source, plaintext otherwise; SIMPLE/MUTUAL with TLS origination.
    pub(super) fn path<'a>(&self, ep: &'a Endpoint) -> Result<Path<'a>, ProxyError> {
        match &self.config.tls {
            UpstreamTls::Disabled => Ok(Path::Direct),
            UpstreamTls::IstioMutualAuto => match &ep.mesh {
                Some(peer) if self.mesh.has_identity_source() => Ok(Path::Mesh(peer)),
                _ => Ok(Path::Direct),
            },
            UpstreamTls::IstioMutual => match &ep.mesh {
                Some(peer) => Ok(Path::Mesh(peer)),
                None => Err(ProxyError::MtlsNoTunnel {
                    cluster: self.config.name.clone(),
                    endpoint: ep.address.clone(),
                    origin: self.origin_name(),
                }),
            },
            UpstreamTls::Originate(tls) => self
                .originator
                .get_or_init(|| Originator::new(tls).map(Arc::new))
                .clone()
                .map(Path::Originate)
                .map_err(|detail| self.tls_failed(detail)),
        }
    }

    pub(super) fn tls_failed(&self, detail: String) -> ProxyError {
        ProxyError::UpstreamTlsFailed {
            cluster: self.config.name.clone(),
            detail,
        }
    }

    /// The error for a mesh failure; handshake and connect failures count for outlier
    /// detection (the peer is unreachable or not who it should be).
    pub(super) fn mesh_failure(&self, ep: &Endpoint, e: MeshError) -> ProxyError {
        let cluster = self.config.name.clone();
        match e {
            MeshError::NoCertificate(why) => ProxyError::MtlsNoCertificate {
                cluster,
                detail: why.to_string(),
            },
            MeshError::Handshake { .. } => {
                self.record(ep, Outcome::LocalFailure);
                self.tls_failed(e.to_string())
            }
            MeshError::Connect { .. } => {
                self.record(ep, Outcome::LocalFailure);
                ProxyError::UpstreamConnectFailed {
                    cluster,
                    detail: e.to_string(),
                }
            }
            MeshError::Stream { .. } | MeshError::Refused { .. } => {
                ProxyError::UpstreamConnectFailed {
                    cluster,
                    detail: e.to_string(),
                }
            }
        }
    }

    /// A connection to `ep` on `path` (not the mesh: that is multiplexed), TLS included.
    pub(super) async fn connect_io(
        &self,
        ep: &Endpoint,
        path: &Path<'_>,
        alpn: Alpn,
    ) -> Result<BoxedIo, SendFailure> {
        let stream = match connect(&ep.address, &self.config).await {
            Ok(s) => s,
            Err(detail) => {
                self.record(ep, Outcome::LocalFailure);
                return Err(SendFailure::Connect(detail));
            }
        };
        match path {
            Path::Originate(o) => match o.connect(stream, &ep.address, alpn).await {
                Ok(tls) => Ok(Box::new(tls)),
                Err(detail) => {
                    self.record(ep, Outcome::LocalFailure);
                    Err(SendFailure::Refused(self.tls_failed(detail)))
                }
            },
            Path::Direct | Path::Mesh(_) => Ok(Box::new(stream)),
        }
    }

    /// A byte stream for the TCP forwarder: a TCP connection, a TLS-originated one, or a
    /// `CONNECT` stream through the peer proxy's mesh tunnel. Each holds one of the
    /// cluster's `maxConnections` slots while open.
    pub async fn connect_tcp(
        &self,
        conn: &ConnInfo,
    ) -> Result<(BoxedIo, ConnectionGuard), ProxyError> {
        let ep = self.pick(None, &[], conn).await?;
        let path = self.path(&ep)?;
        let max = self.config.limits.max_connections;
        let slot = self
            .reserve_connection()
            .ok_or_else(|| self.overflow("maxConnections", max))?;
        if let Path::Mesh(peer) = path {
            return match self
                .mesh
                .connect_stream(peer, &ep.address, self.config.connect_timeout)
                .await
            {
                Ok(io) => Ok((Box::new(io), slot)),
                Err(e) => Err(self.mesh_failure(&ep, e)),
            };
        }
        match self.connect_io(&ep, &path, Alpn::None).await {
            Ok(io) => Ok((io, slot)),
            Err(SendFailure::Refused(e)) => Err(e),
            Err(SendFailure::Connect(detail) | SendFailure::Reset(detail)) => {
                Err(ProxyError::UpstreamConnectFailed {
                    cluster: self.config.name.clone(),
                    detail,
                })
            }
        }
    }

    /// One request through the peer proxy's tunnel. Upgrades (WebSocket) go as HTTP/1.1
    /// inside a `CONNECT` stream, which the peer serves as a connection to that port.
    /// Sends a request through the peer's tunnel within the cluster's connection limits.
    /// An HTTP/1 request holds one of the `maxConnections` slots until its response head
    /// arrives, exactly as it would hold a plaintext HTTP/1 connection, and waits as a
    /// pending request (`http1MaxPendingRequests`) when none is free: the tunnel
    /// multiplexes, but the DestinationRule's circuit breaker must trip as Istio's does.
    /// HTTP/2 requests are bounded by `http2MaxRequests` alone (checked by the caller).
    pub(super) async fn send_mesh_limited(
        &self,
        ep: &Arc<Endpoint>,
        peer: &MeshPeer,
        req: Request<ProxyBody>,
        proto: Proto,
        upgrade: bool,
    ) -> Result<HttpSend, SendFailure> {
        if proto != Proto::Http1 {
            return self.send_mesh(ep, peer, req, proto, upgrade).await;
        }
        let mut pending: Option<PendingGuard> = None;
        loop {
            let notified = self.shared.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(slot) = self.reserve_connection() {
                drop(pending.take());
                let sent = self.send_mesh(ep, peer, req, proto, upgrade).await;
                drop(slot);
                return sent;
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
            notified.await;
        }
    }

    pub(super) async fn send_mesh(
        &self,
        ep: &Arc<Endpoint>,
        peer: &MeshPeer,
        req: Request<ProxyBody>,
        proto: Proto,
        upgrade: bool,
    ) -> Result<HttpSend, SendFailure> {
        let timeout = self.config.connect_timeout;
        if !upgrade {
            return self
                .mesh
                .send_http(peer, &ep.address, req, proto, timeout)
                .await
                .map_err(|e| match e {
                    MeshError::Stream { .. } => SendFailure::Reset(e.to_string()),
                    MeshError::Connect { .. } => {
                        self.record(ep, Outcome::LocalFailure);
                        SendFailure::Connect(e.to_string())
                    }
                    e => SendFailure::Refused(self.mesh_failure(ep, e)),
                });
        }
        let io = self
            .mesh
            .connect_stream(peer, &ep.address, timeout)
            .await
            .map_err(|e| SendFailure::Refused(self.mesh_failure(ep, e)))?;
        let mut sender = pool::handshake_h1(io, ())
            .await
            .map_err(|e| SendFailure::Connect(format!("handshake through tunnel: {e}")))?;
        match pool::send_h1(&mut sender, req).await {
            Sent::Response(resp) => Ok(resp),
            Sent::Returned(_) => Err(SendFailure::Reset(
                "the tunnel stream closed before taking the request".into(),
            )),
            Sent::Failed(e) => Err(SendFailure::Reset(e.to_string())),
        }
    }
}
