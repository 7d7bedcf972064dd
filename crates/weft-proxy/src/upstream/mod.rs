//! Upstream side: clusters, endpoints, load balancing, connection pools, circuit breakers
//! and outlier detection.
//!
//! Per-cluster state (counters, endpoint health, pooled connections) lives in
//! [`ClusterState`] and is carried into the next runtime on reload for every cluster that
//! still exists, so a reload neither drops connections nor resets breakers.

mod cluster;
mod connect;
mod endpoint;
pub mod lb;
pub mod mesh;
pub mod originate;
pub mod outlier;
mod pool;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use weft_api::ProxyConfig;

pub use cluster::{ClusterState, ConnectionGuard, HttpSend, RequestGuard, RetryGuard, SendFailure};
pub use endpoint::{Endpoint, MeshPeer};
pub use mesh::Mesh;
pub use pool::Proto;

use crate::ConnInfo;
use crate::error::ProxyError;

/// A byte stream to an upstream: TCP, TLS over TCP, or a stream of a mesh tunnel.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
pub type BoxedIo = Box<dyn Io>;

/// One cluster's config, read in place from the runtime's `ProxyConfig` rather than
/// copied (with thousands of clusters a copy per cluster doubles the config's memory).
#[derive(Clone)]
pub struct ClusterConfig {
    config: Arc<ProxyConfig>,
    index: usize,
}

impl ClusterConfig {
    /// Cluster `index` of `config` (an index from enumerating `config.clusters`).
    pub(crate) fn new(config: Arc<ProxyConfig>, index: usize) -> ClusterConfig {
        ClusterConfig { config, index }
    }
}

impl From<weft_api::Cluster> for ClusterConfig {
    fn from(cluster: weft_api::Cluster) -> ClusterConfig {
        let config = ProxyConfig {
            clusters: vec![cluster],
            ..ProxyConfig::default()
        };
        ClusterConfig::new(Arc::new(config), 0)
    }
}

impl std::ops::Deref for ClusterConfig {
    type Target = weft_api::Cluster;

    fn deref(&self) -> &weft_api::Cluster {
        &self.config.clusters[self.index]
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        weft_api::Cluster::fmt(self, f)
    }
}

/// Every cluster of a runtime, by name.
#[derive(Default)]
pub struct Clusters {
    by_name: HashMap<String, Arc<ClusterState>>,
    /// The proxy's identity and peer connections, handed from runtime to runtime.
    mesh: Arc<Mesh>,
}

impl Clusters {
    /// No clusters yet, with the proxy's mesh identity and peer connections.
    pub fn with_mesh(mesh: Arc<Mesh>) -> Clusters {
        Clusters {
            by_name: HashMap::new(),
            mesh,
        }
    }

    /// Builds the clusters of `config`, reusing `previous`'s state by cluster name (and its
    /// mesh; without a previous runtime mesh mTLS has no identity).
    pub fn build(config: &Arc<ProxyConfig>, previous: Option<&Clusters>) -> Clusters {
        let mesh = previous.map(|p| p.mesh.clone()).unwrap_or_default();
        let by_name = config
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let prev = previous.and_then(|p| p.by_name.get(&c.name));
                (
                    c.name.clone(),
                    Arc::new(ClusterState::new(
                        ClusterConfig::new(config.clone(), i),
                        prev.map(|p| &**p),
                        mesh.clone(),
                    )),
                )
            })
            .collect();
        Clusters { by_name, mesh }
    }

    pub fn mesh(&self) -> &Arc<Mesh> {
        &self.mesh
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ClusterState>> {
        self.by_name.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<ClusterState>> {
        self.by_name.values()
    }

    /// Opens a TCP connection to an endpoint of `cluster` (for the TCP forwarder): picks
    /// with the cluster's balancer (the original destination for `OriginalDestination`),
    /// within the connect timeout and `max_connections`. Connect failures count for outlier
    /// detection. Keep the [`ConnectionGuard`] for as long as the connection is open: it
    /// holds the connection's slot.
    pub async fn connect_tcp(
        &self,
        cluster: &str,
        conn: &ConnInfo,
    ) -> Result<(BoxedIo, ConnectionGuard), ProxyError> {
        let state = self
            .get(cluster)
            .ok_or_else(|| ProxyError::ClusterNotFound {
                cluster: cluster.to_string(),
                route: conn.listener.to_string(),
            })?;
        state.connect_tcp(conn).await
    }
}
