//! Endpoints and the endpoint set a balancer picks from.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use weft_api::LbPolicy;

use super::lb::Balancer;
use super::outlier::EndpointHealth;
use super::pool::Pool;

/// The peer proxy of an endpoint that runs one: where its mesh tunnel listens and which
/// SPIFFE ID it must present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MeshPeer {
    pub tunnel: String,
    pub identity: Option<String>,
}

/// What [`EndpointSet::build`] makes an endpoint from.
pub struct EndpointSpec {
    pub address: String,
    pub weight: u32,
    pub labels: BTreeMap<String, String>,
    pub mesh: Option<MeshPeer>,
}

impl EndpointSpec {
    pub fn plain(address: String) -> EndpointSpec {
        EndpointSpec {
            address,
            weight: 1,
            labels: BTreeMap::new(),
            mesh: None,
        }
    }

    pub fn from_config(e: &weft_api::Endpoint) -> EndpointSpec {
        EndpointSpec {
            address: e.address.clone(),
            weight: e.weight,
            labels: e.labels.clone(),
            mesh: e.tunnel.clone().map(|tunnel| MeshPeer {
                tunnel,
                identity: e.identity.clone(),
            }),
        }
    }

    fn of(e: &Endpoint) -> EndpointSpec {
        EndpointSpec {
            address: e.address.clone(),
            weight: e.weight,
            labels: (*e.labels).clone(),
            mesh: e.mesh.clone(),
        }
    }
}

/// One upstream address with its live state: active requests, health, idle connections.
/// Kept across config reloads while the address stays in the cluster.
#[derive(Debug)]
pub struct Endpoint {
    pub address: String,
    pub weight: u32,
    /// Shared with telemetry records (`destination_app`/`destination_version` fallback).
    pub labels: Arc<BTreeMap<String, String>>,
    /// Set when the endpoint runs a weft proxy: mesh mTLS goes through its tunnel.
    pub mesh: Option<MeshPeer>,
    pub(crate) active: AtomicU32,
    pub(crate) health: Mutex<EndpointHealth>,
    pub(crate) pool: Arc<Pool>,
}

impl Endpoint {
    pub fn new(spec: EndpointSpec) -> Endpoint {
        let EndpointSpec {
            address,
            weight,
            labels,
            mesh,
        } = spec;
        Endpoint {
            address,
            weight,
            labels: Arc::new(labels),
            mesh,
            active: AtomicU32::new(0),
            health: Mutex::default(),
            pool: Arc::default(),
        }
    }

    /// Requests in flight to this endpoint.
    pub fn active_requests(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    pub fn is_ejected(&self) -> bool {
        super::outlier::lock(&self.health).is_ejected()
    }
}

/// The endpoints of a cluster at one moment, with the balancer built over them.
#[derive(Debug)]
pub struct EndpointSet {
    pub endpoints: Vec<Arc<Endpoint>>,
    pub balancer: Balancer,
}

impl EndpointSet {
    /// Builds the set for `wanted`, reusing the live state of endpoints already known by
    /// address.
    pub fn build(
        policy: &LbPolicy,
        wanted: impl Iterator<Item = EndpointSpec>,
        known: &HashMap<String, Arc<Endpoint>>,
    ) -> EndpointSet {
        let endpoints: Vec<Arc<Endpoint>> = wanted
            .map(|spec| match known.get(&spec.address) {
                Some(ep)
                    if ep.weight == spec.weight
                        && *ep.labels == spec.labels
                        && ep.mesh == spec.mesh =>
                {
                    ep.clone()
                }
                Some(ep) => {
                    // New weight, labels or peer: keep health and connections by moving them.
                    let fresh = Endpoint::new(spec);
                    *super::outlier::lock(&fresh.health) =
                        std::mem::take(&mut *super::outlier::lock(&ep.health));
                    ep.pool.move_idle_into(&fresh.pool);
                    Arc::new(fresh)
                }
                None => Arc::new(Endpoint::new(spec)),
            })
            .collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        EndpointSet {
            balancer: Balancer::new(policy, &weights),
            endpoints,
        }
    }

    /// The specs of the current endpoints (a DNS refresh keeps them until re-resolved).
    pub fn specs(&self) -> impl Iterator<Item = EndpointSpec> + '_ {
        self.endpoints.iter().map(|e| EndpointSpec::of(e))
    }

    pub fn by_address(&self) -> HashMap<String, Arc<Endpoint>> {
        self.endpoints
            .iter()
            .map(|e| (e.address.clone(), e.clone()))
            .collect()
    }
}
