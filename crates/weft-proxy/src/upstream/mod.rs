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
pub mod outlier;
mod pool;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::net::TcpStream;

pub use cluster::{ClusterState, ConnectionGuard, HttpSend, RequestGuard, RetryGuard, SendFailure};
pub use endpoint::Endpoint;
pub use pool::Proto;

use crate::ConnInfo;
use crate::error::ProxyError;

/// Every cluster of a runtime, by name.
#[derive(Default)]
pub struct Clusters {
    by_name: HashMap<String, Arc<ClusterState>>,
}

impl Clusters {
    /// Builds the clusters of `configs`, reusing `previous`'s state by cluster name.
    pub fn build(configs: &[weft_api::Cluster], previous: Option<&Clusters>) -> Clusters {
        let by_name = configs
            .iter()
            .map(|c| {
                let prev = previous.and_then(|p| p.by_name.get(&c.name));
                (
                    c.name.clone(),
                    Arc::new(ClusterState::new(c.clone(), prev.map(|p| &**p))),
                )
            })
            .collect();
        Clusters { by_name }
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
    ) -> Result<(TcpStream, ConnectionGuard), ProxyError> {
        let state = self
            .get(cluster)
            .ok_or_else(|| ProxyError::ClusterNotFound {
                cluster: cluster.to_string(),
                route: conn.listener.to_string(),
            })?;
        state.connect_tcp(conn).await
    }
}
