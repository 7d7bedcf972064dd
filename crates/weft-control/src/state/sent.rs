//! What each connected proxy was sent and accepted, per resource, and the pushes it has
//! not answered yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use weft_api::pb::{Resource, ResourceKey, ResourceType};

use super::ProxyState;

/// One push as sent: its nonce and the resources in it.
#[derive(Debug, Clone)]
pub struct Push {
    pub nonce: String,
    pub resources: Vec<Arc<Resource>>,
}

/// Resources by key (`type/name`), each the `Arc<Resource>` of a compiled config: with
/// 2,000 proxies sharing most resources, what each proxy was sent or accepted is a set of
/// pointers rather than a map of strings per proxy (that was ~52 MiB at 2,000 proxies).
#[derive(Clone, Default)]
pub struct Resources(BTreeSet<ByKey>);

/// Orders an `Arc<Resource>` by its key (type, then name) alone.
#[derive(Clone)]
struct ByKey(Arc<Resource>);

impl ByKey {
    fn key(&self) -> (i32, &str) {
        self.0
            .key
            .as_ref()
            .map_or((0, ""), |k| (k.r#type, k.name.as_str()))
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// A body-less resource standing for a key (and version): for lookups, and for what a
/// proxy announced holding, which has no body here.
fn stand_in(key: ResourceKey, version: String) -> Arc<Resource> {
    Arc::new(Resource {
        key: Some(key),
        version,
        body: Default::default(),
    })
}

/// `type/name` back into a key.
pub fn parse_key(display: &str) -> Option<ResourceKey> {
    let (kind, name) = display.split_once('/')?;
    let kind = match kind {
        "listener" => ResourceType::Listener,
        "route_table" => ResourceType::RouteTable,
        "cluster" => ResourceType::Cluster,
        _ => return None,
    };
    Some(ResourceKey::new(kind, name))
}

impl Resources {
    /// What a proxy announced holding (`Hello.held`).
    pub fn announced(held: &[weft_api::pb::ResourceVersion]) -> Resources {
        Resources(
            held.iter()
                .filter_map(|h| Some(ByKey(stand_in(h.key.clone()?, h.version.clone()))))
                .collect(),
        )
    }

    /// The entry with `r`'s key.
    pub fn get(&self, r: &Arc<Resource>) -> Option<&Arc<Resource>> {
        self.0.get(&ByKey(r.clone())).map(|b| &b.0)
    }

    /// Put `r` in place of the entry with its key.
    pub fn insert(&mut self, r: Arc<Resource>) {
        self.0.replace(ByKey(r));
    }

    pub fn remove(&mut self, r: &Arc<Resource>) -> bool {
        self.0.remove(&ByKey(r.clone()))
    }

    pub fn contains(&self, r: &Arc<Resource>) -> bool {
        self.0.contains(&ByKey(r.clone()))
    }

    /// Whether it holds `type/name`.
    pub fn contains_key(&self, display: &str) -> bool {
        parse_key(display).is_some_and(|k| self.contains(&stand_in(k, String::new())))
    }

    /// The version held for `type/name`.
    pub fn version(&self, display: &str) -> Option<&str> {
        let k = parse_key(display)?;
        self.get(&stand_in(k, String::new()))
            .map(|r| r.version.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.0.iter().map(|b| &b.0)
    }

    /// `type/name` of every entry.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.iter()
            .filter_map(|r| r.key.as_ref().map(ResourceKey::display))
    }

    /// Keep the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Arc<Resource>) -> bool) {
        self.0.retain(|b| keep(&b.0));
    }

    /// `type/name` → version, as the debug API shows it.
    fn display(&self) -> BTreeMap<String, &str> {
        self.iter()
            .filter_map(|r| Some((r.key.as_ref()?.display(), r.version.as_str())))
            .collect()
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.display().fmt(f)
    }
}

impl Serialize for Resources {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.display().serialize(s)
    }
}

impl ProxyState {
    /// Record a push whose answer is awaited.
    pub fn pushed(&mut self, push: Push) {
        self.pending_nonce = Some(push.nonce.clone());
        self.unanswered.push_back(push);
    }

    /// Take in the proxy's answer to push `nonce`: everything that push carried is
    /// accepted except the `rejected` keys, whose reasons the caller records in `nacked`.
    /// Answers come in push order, so pushes before it are settled (their own answers
    /// came first, or the stream would have ended). True when `nonce` is the latest push.
    pub fn answered(&mut self, nonce: &str, rejected: &[ResourceKey]) -> bool {
        if let Some(at) = self.unanswered.iter().position(|p| p.nonce == nonce)
            && let Some(push) = self.unanswered.drain(..=at).next_back()
        {
            let refused: BTreeSet<(i32, &str)> = rejected
                .iter()
                .map(|k| (k.r#type, k.name.as_str()))
                .collect();
            let mut accepted = Resources::default();
            for r in push.resources {
                let refused = r
                    .key
                    .as_ref()
                    .is_some_and(|k| refused.contains(&(k.r#type, k.name.as_str())));
                if !refused {
                    accepted.insert(r);
                }
            }
            if !self.nacked.is_empty() {
                // Accepting a resource clears an earlier rejection of it.
                self.nacked.retain(|k, _| !accepted.contains_key(k));
            }
            for r in accepted.0 {
                self.acked.insert(r.0);
            }
        }
        if self.pending_nonce.as_deref() == Some(nonce) {
            self.pending_nonce = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn cluster(name: &str, version: &str) -> Arc<Resource> {
        Arc::new(Resource {
            key: Some(ResourceKey::new(ResourceType::Cluster, name)),
            version: version.into(),
            body: b"{}".to_vec().into(),
        })
    }

    fn proxy() -> ProxyState {
        ProxyState {
            id: "a.ns".into(),
            identity: String::new(),
            address: String::new(),
            connected_since: SystemTime::UNIX_EPOCH,
            config_version: String::new(),
            compiles: 0,
            compiled_generation: 0,
            acked_generation: 0,
            sent: Resources::default(),
            acked: Resources::default(),
            nacked: BTreeMap::new(),
            pending_nonce: None,
            unanswered: Default::default(),
            resources_sent: 0,
            last_error: None,
            cert_expiry: None,
            config: None,
            compiled: None,
            wake: Arc::default(),
            session: 1,
            announced: None,
        }
    }

    fn push(p: &mut ProxyState, nonce: &str, resources: &[Arc<Resource>]) {
        for r in resources {
            p.sent.insert(r.clone());
        }
        p.pushed(Push {
            nonce: nonce.into(),
            resources: resources.to_vec(),
        });
    }

    fn nack(reason: &str) -> super::super::Nack {
        super::super::Nack {
            version: "v1".into(),
            reason: reason.into(),
            origins: Vec::new(),
        }
    }

    #[test]
    fn an_ack_accepts_everything_its_push_carried_but_the_rejected() {
        let mut p = proxy();
        push(
            &mut p,
            "1-1",
            &[cluster("a", "v1"), cluster("b", "v1"), cluster("c", "v1")],
        );
        assert_eq!(p.pending_nonce.as_deref(), Some("1-1"));
        // The ACK names no accepted resource, only the rejected one.
        let latest = p.answered("1-1", &[ResourceKey::new(ResourceType::Cluster, "b")]);
        assert!(latest);
        assert_eq!(p.pending_nonce, None);
        assert!(p.unanswered.is_empty());
        assert_eq!(
            p.acked.keys().collect::<Vec<_>>(),
            ["cluster/a", "cluster/c"]
        );
        assert_eq!(p.acked.version("cluster/a"), Some("v1"));
        assert!(!p.acked.contains_key("cluster/b"));
        assert_eq!(p.sent.len(), 3);
    }

    #[test]
    fn answers_settle_pushes_in_order_and_clear_earlier_rejections() {
        let mut p = proxy();
        push(&mut p, "1-1", &[cluster("a", "v1"), cluster("b", "v1")]);
        p.nacked.insert("cluster/b".into(), nack("bad"));
        push(&mut p, "2-2", &[cluster("b", "v2")]);
        push(&mut p, "3-3", &[cluster("a", "v3")]);
        // The answer to the first push: not the latest, so still pending.
        assert!(!p.answered("1-1", &[ResourceKey::new(ResourceType::Cluster, "b")]));
        assert_eq!(p.pending_nonce.as_deref(), Some("3-3"));
        assert_eq!(p.acked.version("cluster/a"), Some("v1"));
        // Accepting b's next version clears its rejection.
        assert!(!p.answered("2-2", &[]));
        assert_eq!(p.acked.version("cluster/b"), Some("v2"));
        assert!(p.nacked.is_empty(), "{:?}", p.nacked);
        assert!(p.answered("3-3", &[]));
        assert_eq!(p.acked.version("cluster/a"), Some("v3"));
        // An answer to a nonce never sent (or already settled) changes nothing.
        assert!(!p.answered("3-3", &[]));
        assert!(!p.answered("9-9", &[]));
        assert_eq!(p.acked.len(), 2);
    }

    #[test]
    fn resources_are_keyed_by_type_and_name_and_shown_as_before() {
        let mut set = Resources::default();
        set.insert(cluster("a", "v1"));
        set.insert(cluster("a", "v2"));
        set.insert(Arc::new(Resource {
            key: Some(ResourceKey::new(ResourceType::Listener, "a")),
            version: "l1".into(),
            body: Default::default(),
        }));
        assert_eq!(set.len(), 2);
        assert_eq!(set.version("cluster/a"), Some("v2"));
        assert!(set.contains_key("listener/a"));
        assert!(!set.contains_key("route_table/a"));
        assert!(!set.contains_key("nonsense"));
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"cluster/a":"v2","listener/a":"l1"}"#
        );
        assert_eq!(
            format!("{set:?}"),
            r#"{"cluster/a": "v2", "listener/a": "l1"}"#
        );
        let held = Resources::announced(&[weft_api::pb::ResourceVersion {
            key: Some(ResourceKey::new(ResourceType::RouteTable, "80")),
            version: "r1".into(),
        }]);
        assert_eq!(held.version("route_table/80"), Some("r1"));
    }
}
