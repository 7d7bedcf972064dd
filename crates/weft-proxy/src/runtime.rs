//! The runtime: a `ProxyConfig` compiled for the request path.
//!
//! Built off the request path (regexes compiled, route tables and clusters indexed) and
//! swapped in whole. Per-cluster state and rate-limit buckets are carried over from the
//! previous runtime, so a reload neither drops pooled connections nor resets breakers,
//! outlier ejections or token buckets.

use std::collections::HashMap;
use std::sync::Arc;

use weft_api::ProxyConfig;

use crate::http::ratelimit::Limiters;
use crate::http::route::CompiledTable;
use crate::telemetry::{Hub, Telemetry};
use crate::upstream;

/// Mirrored requests in flight at once, per proxy; more are dropped (mirrors are best
/// effort and must never hold up real traffic).
pub const MIRROR_CONCURRENCY: usize = 64;

/// A config that was rejected while building a runtime.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("route {route:?} in route table {table:?}: invalid regex {regex:?}: {detail}")]
    BadRegex {
        table: String,
        route: String,
        regex: String,
        detail: String,
    },
    #[error("route table {0:?} is defined twice")]
    DuplicateRouteTable(String),
    #[error("cluster {0:?} is defined twice")]
    DuplicateCluster(String),
}

pub struct Runtime {
    /// The config as received, shared with its source (never copied): route tables and
    /// clusters below read their parts of it in place, and `/config_dump` serializes it.
    pub config: Arc<ProxyConfig>,
    tables: HashMap<String, CompiledTable>,
    clusters: upstream::Clusters,
    limiters: Limiters,
    mirrors: Arc<tokio::sync::Semaphore>,
    telemetry: Arc<Telemetry>,
}

impl Runtime {
    /// The runtime before the first config: no routes, no clusters.
    pub fn empty() -> Runtime {
        Runtime {
            config: Arc::new(ProxyConfig::default()),
            tables: HashMap::new(),
            clusters: upstream::Clusters::default(),
            limiters: Limiters::default(),
            mirrors: Arc::new(tokio::sync::Semaphore::new(MIRROR_CONCURRENCY)),
            telemetry: Arc::new(Telemetry::empty(Arc::new(Hub::default()))),
        }
    }

    /// The runtime before the first config, holding the proxy's mesh identity and peer
    /// connections (every later runtime inherits them).
    pub fn empty_with_mesh(mesh: Arc<upstream::Mesh>) -> Runtime {
        Runtime {
            clusters: upstream::Clusters::with_mesh(mesh),
            ..Runtime::empty()
        }
    }

    /// Compiles `config`, reusing `previous`'s live state for clusters and rate limits that
    /// still exist. An `Arc` is kept as it is (the source and the runtime share one copy).
    pub fn build(
        config: impl Into<Arc<ProxyConfig>>,
        previous: Option<&Runtime>,
    ) -> Result<Runtime, BuildError> {
        let config: Arc<ProxyConfig> = config.into();
        let mut tables = HashMap::with_capacity(config.route_tables.len());
        for (i, table) in config.route_tables.iter().enumerate() {
            let compiled = CompiledTable::compile_in(&config, i)?;
            if tables.insert(table.name.clone(), compiled).is_some() {
                return Err(BuildError::DuplicateRouteTable(table.name.clone()));
            }
        }
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = config
            .clusters
            .iter()
            .find(|c| !names.insert(c.name.as_str()))
        {
            return Err(BuildError::DuplicateCluster(dup.name.clone()));
        }
        let clusters = upstream::Clusters::build(&config, previous.map(|p| &p.clusters));
        let limiters = Limiters::build(&config, previous.map(|p| &p.limiters));
        // Metric series and exporter queues outlive configs: the hub is inherited.
        let hub = previous.map_or_else(|| Arc::new(Hub::default()), |p| p.telemetry.hub().clone());
        let telemetry = Arc::new(Telemetry::build(&config.node, hub));
        clusters.mesh().set_local_metadata(telemetry.local_header());
        Ok(Runtime {
            telemetry,
            tables,
            clusters,
            limiters,
            mirrors: previous
                .map(|p| p.mirrors.clone())
                .unwrap_or_else(|| Arc::new(tokio::sync::Semaphore::new(MIRROR_CONCURRENCY))),
            config,
        })
    }

    pub fn clusters(&self) -> &upstream::Clusters {
        &self.clusters
    }

    pub fn route_table(&self, name: &str) -> Option<&CompiledTable> {
        self.tables.get(name)
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }

    pub fn limiters(&self) -> &Limiters {
        &self.limiters
    }

    pub(crate) fn mirror_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.mirrors
    }
}
