//! The resources a proxy holds, and how a delta is applied to them: decode, check each
//! changed resource with [`Runtime::build`], and assemble a whole `ProxyConfig`.

use std::collections::BTreeMap;

use weft_api::pb::{self, Resource, ResourceKey, ResourceType};
use weft_api::{Cluster, Listener, Node, ProxyConfig, RouteTable};

use crate::runtime::Runtime;

/// One decoded resource.
#[derive(Debug, Clone)]
pub enum Item {
    Listener(Listener),
    RouteTable(RouteTable),
    Cluster(Box<Cluster>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: ResourceKey,
    pub version: String,
    pub item: Item,
}

/// What the proxy runs, by `type/name`.
#[derive(Debug, Clone, Default)]
pub struct Held {
    pub node: Node,
    pub entries: BTreeMap<String, Entry>,
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

    /// The whole config these resources make. Its version hashes the node and every
    /// resource version, so equal holdings give equal versions.
    pub fn config(&self) -> ProxyConfig {
        let mut cfg = ProxyConfig {
            node: self.node.clone(),
            ..ProxyConfig::default()
        };
        let mut fingerprint = serde_json::to_vec(&self.node).unwrap_or_default();
        for (name, e) in &self.entries {
            fingerprint.extend_from_slice(name.as_bytes());
            fingerprint.push(b'=');
            fingerprint.extend_from_slice(e.version.as_bytes());
            fingerprint.push(b'\n');
            match &e.item {
                Item::Listener(l) => cfg.listeners.push(l.clone()),
                Item::RouteTable(t) => cfg.route_tables.push(t.clone()),
                Item::Cluster(c) => cfg.clusters.push(Cluster::clone(c)),
            }
        }
        cfg.version = pb::content_version(&fingerprint);
        cfg
    }

    /// With `changes` laid over and `removed` taken out.
    pub fn with(&self, changes: &[Entry], removed: &[ResourceKey]) -> Held {
        let mut next = self.clone();
        for k in removed {
            next.entries.remove(&k.display());
        }
        for e in changes {
            next.entries.insert(e.key.display(), e.clone());
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
        let item = match ResourceType::try_from(key.r#type) {
            Ok(ResourceType::Listener) => r.decode().map(Item::Listener),
            Ok(ResourceType::RouteTable) => r.decode().map(Item::RouteTable),
            Ok(ResourceType::Cluster) => r.decode().map(|c| Item::Cluster(Box::new(c))),
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
                item,
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

/// Split `changes` into those that build into a runtime together with `base` and those
/// that do not (each checked on its own, so one bad resource does not take others down).
pub fn check(base: &Held, changes: Vec<Entry>) -> (Vec<Entry>, Vec<Refusal>) {
    if Runtime::build(base.with(&changes, &[]).config(), None).is_ok() {
        return (changes, Vec::new());
    }
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    for e in changes {
        match Runtime::build(base.with(std::slice::from_ref(&e), &[]).config(), None) {
            Ok(_) => ok.push(e),
            Err(err) => refused.push(Refusal {
                key: e.key.clone(),
                version: e.version.clone(),
                reason: err.to_string(),
            }),
        }
    }
    // Individually fine but not together: refuse them all rather than guess.
    if !ok.is_empty()
        && let Err(err) = Runtime::build(base.with(&ok, &[]).config(), None)
    {
        for e in ok.drain(..) {
            refused.push(Refusal {
                key: e.key.clone(),
                version: e.version.clone(),
                reason: err.to_string(),
            });
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
            matches!(e.item, Item::Listener(_))
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
