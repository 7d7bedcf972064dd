//! Endpoints and the endpoint set a balancer picks from.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use weft_api::LbPolicy;

use super::lb::Balancer;
use super::outlier::EndpointHealth;
use super::pool::Pool;

/// One upstream address with its live state: active requests, health, idle connections.
/// Kept across config reloads while the address stays in the cluster.
#[derive(Debug)]
pub struct Endpoint {
    pub address: String,
    pub weight: u32,
    pub labels: BTreeMap<String, String>,
    pub(crate) active: AtomicU32,
    pub(crate) health: Mutex<EndpointHealth>,
    pub(crate) pool: Arc<Pool>,
}

impl Endpoint {
    pub fn new(address: String, weight: u32, labels: BTreeMap<String, String>) -> Endpoint {
        Endpoint {
            address,
            weight,
            labels,
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
    /// Builds the set for `wanted` (address, weight, labels), reusing the live state of
    /// endpoints already known by address.
    pub fn build(
        policy: &LbPolicy,
        wanted: impl Iterator<Item = (String, u32, BTreeMap<String, String>)>,
        known: &HashMap<String, Arc<Endpoint>>,
    ) -> EndpointSet {
        let endpoints: Vec<Arc<Endpoint>> = wanted
            .map(|(address, weight, labels)| match known.get(&address) {
                Some(ep) if ep.weight == weight && ep.labels == labels => ep.clone(),
                Some(ep) => {
                    // New weight or labels: keep health and connections by moving them.
                    let fresh = Endpoint::new(address, weight, labels);
                    *super::outlier::lock(&fresh.health) =
                        std::mem::take(&mut *super::outlier::lock(&ep.health));
                    ep.pool.move_idle_into(&fresh.pool);
                    Arc::new(fresh)
                }
                None => Arc::new(Endpoint::new(address, weight, labels)),
            })
            .collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        EndpointSet {
            balancer: Balancer::new(policy, &weights),
            endpoints,
        }
    }

    pub fn by_address(&self) -> HashMap<String, Arc<Endpoint>> {
        self.endpoints
            .iter()
            .map(|e| (e.address.clone(), e.clone()))
            .collect()
    }
}
