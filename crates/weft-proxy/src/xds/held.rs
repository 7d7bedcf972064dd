//! The resources a proxy holds, and how a delta is applied to them: decode, check each
//! changed resource (what [`Runtime::build`](crate::runtime::Runtime::build) would refuse),
//! and assemble a whole `ProxyConfig`.
//!
//! Memory: once a config is published, the held resources are read from it in place
//! ([`Held::adopt`]), so the client, the config channel and the runtime share one copy.
//! Only a delta's new resources are held on their own, until the next publish.

use std::collections::BTreeMap;
use std::sync::Arc;

use weft_api::pb::{self, Resource, ResourceKey, ResourceType};
use weft_api::{Cluster, Listener, Node, ProxyConfig, RouteTable};

use crate::http::route::CompiledTable;

/// One decoded resource.
#[derive(Debug, Clone)]
pub enum Item {
    Listener(Listener),
    RouteTable(RouteTable),
    Cluster(Box<Cluster>),
}

/// A decoded resource of a delta; cheap to clone.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: ResourceKey,
    pub version: String,
    pub item: Arc<Item>,
}

/// A held resource: decoded from a delta, or part of the published config.
#[derive(Debug, Clone)]
pub struct Slot {
    key: ResourceKey,
    version: String,
    value: Value,
}

#[derive(Debug, Clone)]
enum Value {
    Decoded(Arc<Item>),
    /// Element `index` of the config's vector for `kind`.
    Published {
        config: Arc<ProxyConfig>,
        kind: Kind,
        index: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Listener,
    RouteTable,
    Cluster,
}

/// What the proxy runs, by `type/name`.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub node: Node,
    pub entries: BTreeMap<String, Slot>,
}

impl Slot {
    fn kind(&self) -> Kind {
        match &self.value {
            Value::Decoded(item) => match &**item {
                Item::Listener(_) => Kind::Listener,
                Item::RouteTable(_) => Kind::RouteTable,
                Item::Cluster(_) => Kind::Cluster,
            },
            Value::Published { kind, .. } => *kind,
        }
    }

    /// Appends a copy of the resource to `cfg`.
    fn copy_into(&self, cfg: &mut ProxyConfig) {
        match &self.value {
            Value::Decoded(item) => match &**item {
                Item::Listener(l) => cfg.listeners.push(l.clone()),
                Item::RouteTable(t) => cfg.route_tables.push(t.clone()),
                Item::Cluster(c) => cfg.clusters.push(Cluster::clone(c)),
            },
            Value::Published {
                config,
                kind,
                index,
            } => match kind {
                Kind::Listener => cfg.listeners.push(config.listeners[*index].clone()),
                Kind::RouteTable => cfg.route_tables.push(config.route_tables[*index].clone()),
                Kind::Cluster => cfg.clusters.push(config.clusters[*index].clone()),
            },
        }
    }
}

/// A resource the proxy refuses, with the reason sent back in the NACK.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub key: ResourceKey,
    pub version: String,
    pub reason: String,
}

impl Held {
    /// The versions to announce in a hello.
    pub fn versions(&self) -> Vec<pb::ResourceVersion> {
        self.entries
            .values()
            .map(|e| pb::ResourceVersion {
                key: Some(e.key.clone()),
                version: e.version.clone(),
            })
            .collect()
    }

    /// The version of [`Held::config`]: a hash of the node and every resource version, so
    /// equal holdings give equal versions.
    pub fn version(&self) -> String {
        let mut fingerprint = serde_json::to_vec(&self.node).unwrap_or_default();
        for (name, e) in &self.entries {
            fingerprint.extend_from_slice(name.as_bytes());
            fingerprint.push(b'=');
            fingerprint.extend_from_slice(e.version.as_bytes());
            fingerprint.push(b'\n');
        }
        pb::content_version(&fingerprint)
    }

    /// The whole config these resources make (a copy; see [`Held::adopt`]).
    pub fn config(&self) -> ProxyConfig {
        let mut cfg = ProxyConfig {
            version: self.version(),
            node: self.node.clone(),
            ..ProxyConfig::default()
        };
        for e in self.entries.values() {
            e.copy_into(&mut cfg);
        }
        cfg
    }

    /// Reads every resource from `config` from now on (it must be this holding's
    /// [`Held::config`]), dropping the copies decoded from deltas.
    pub fn adopt(&mut self, config: &Arc<ProxyConfig>) {
        let mut next = [0usize; 3];
        for e in self.entries.values_mut() {
            let kind = e.kind();
            let counter = &mut next[kind as usize];
            e.value = Value::Published {
                config: config.clone(),
                kind,
                index: *counter,
            };
            *counter += 1;
        }
    }

    /// With `changes` laid over and `removed` taken out.
    pub fn with(&self, changes: &[Entry], removed: &[ResourceKey]) -> Held {
        let mut next = self.clone();
        for k in removed {
            next.entries.remove(&k.display());
        }
        for e in changes {
            next.entries.insert(
                e.key.display(),
                Slot {
                    key: e.key.clone(),
                    version: e.version.clone(),
                    value: Value::Decoded(e.item.clone()),
                },
            );
        }
        next
    }
}

/// Decode every resource of a delta; those that do not decode are refused.
pub fn decode(resources: &[Resource]) -> (Vec<Entry>, Vec<Refusal>) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for r in resources {
        let Some(key) = r.key.clone() else {
            continue;
        };
        let item: Result<Item, _> = match ResourceType::try_from(key.r#type) {
            Ok(ResourceType::Listener) => r.decode().map(Item::Listener),
            // Decoding grows each list one element at a time (JSON does not give lengths),
            // which leaves a spare capacity of up to 3 routes per virtual host; a clone has
            // exact capacities, and the decoded copy is dropped at once.
            Ok(ResourceType::RouteTable) => r
                .decode::<RouteTable>()
                .map(|t| Item::RouteTable(t.clone())),
            Ok(ResourceType::Cluster) => r
                .decode::<Cluster>()
                .map(|c| Item::Cluster(Box::new(c.clone()))),
            _ => {
                refused.push(Refusal {
                    reason: format!("unknown resource type {}", key.r#type),
                    version: r.version.clone(),
                    key,
                });
                continue;
            }
        };
        match item {
            Ok(item) => ok.push(Entry {
                key,
                version: r.version.clone(),
                item: Arc::new(item),
            }),
            Err(e) => refused.push(Refusal {
                reason: format!("cannot decode {}: {e}", key.display()),
                version: r.version.clone(),
                key,
            }),
        }
    }
    (ok, refused)
}

/// Split `changes` into those that build into a runtime and those that do not, each
/// checked on its own (so one bad resource does not take others down). What makes a
/// runtime build fail is per resource (a route table's regexes); conflicts between
/// resources surface when the proxy applies the config (see [`blamed`]). Nothing here
/// copies the held config: with thousands of clusters that would be several copies.
pub fn check(changes: Vec<Entry>) -> (Vec<Entry>, Vec<Refusal>) {
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for e in changes {
        let checked = match &*e.item {
            Item::RouteTable(t) => CompiledTable::check(t),
            Item::Listener(_) | Item::Cluster(_) => Ok(()),
        };
        match checked {
            Ok(()) => ok.push(e),
            Err(err) => refused.push(Refusal {
                key: e.key.clone(),
                version: e.version.clone(),
                reason: err.to_string(),
            }),
        }
    }
    (ok, refused)
}

/// Of `changes`, those the proxy's apply error blames: listeners it names, or else all.
pub fn blamed(changes: &[Entry], error: &str) -> Vec<usize> {
    let named: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            matches!(*e.item, Item::Listener(_))
                && error.contains(&format!("listener {} ", e.key.name))
        })
        .map(|(i, _)| i)
        .collect();
    if named.is_empty() {
        (0..changes.len()).collect()
    } else {
        named
    }
}
