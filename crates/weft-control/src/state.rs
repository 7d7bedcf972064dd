//! The control plane's state: config objects and their status, the registry, connected
//! proxies and what each was sent and acknowledged.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::Notify;
use weft_api::ProxyConfig;
use weft_api::pb::{Resource, ResourceType};
use weft_compile::{Registry, WorkloadInstance};

use crate::affected::Change;

mod sent;
pub use sent::{Push, Resources, parse_key};

/// A registry entry with what its proxy's hello announced laid over it.
pub fn overlay(mut instance: WorkloadInstance, hello: &weft_api::pb::Hello) -> WorkloadInstance {
    if !hello.labels.is_empty() {
        instance.labels = hello.labels.clone().into_iter().collect();
    }
    if !hello.service_account.is_empty() {
        instance.service_account = hello.service_account.clone();
    }
    if !hello.workload.is_empty() {
        instance.workload = hello.workload.clone();
    }
    if let Ok(addr) = hello.address.parse::<std::net::IpAddr>() {
        instance.address = addr;
    }
    instance
}
use weft_config::{Diagnostic, Object, Severity};

use crate::source::Event;

/// One proxy's compiled config, encoded. Resources are shared between proxies whose
/// resources are equal (the compiler interns them), so 2,000 proxies seeing the same
/// 1,000 clusters hold one copy of each.
#[derive(Debug)]
pub struct Compiled {
    pub node: weft_api::Node,
    pub version: String,
    /// The generation of the inputs it was compiled from.
    pub generation: u64,
    pub resources: Vec<Arc<Resource>>,
    /// How `version` was hashed, so that the next config of this proxy rehashes only what
    /// follows its first changed resource.
    pub trail: weft_compile::VersionTrail,
}

impl Compiled {
    /// The typed config back from its resources (debug API, NACK origins): decoding is
    /// done on demand rather than keeping a typed copy per proxy.
    pub fn config(&self) -> Result<ProxyConfig, serde_json::Error> {
        let mut cfg = ProxyConfig {
            version: self.version.clone(),
            node: self.node.clone(),
            ..Default::default()
        };
        for r in &self.resources {
            let kind = r.key.as_ref().map(|k| k.r#type);
            match kind.and_then(|k| ResourceType::try_from(k).ok()) {
                Some(ResourceType::Listener) => cfg.listeners.push(r.decode()?),
                Some(ResourceType::RouteTable) => cfg.route_tables.push(r.decode()?),
                Some(ResourceType::Cluster) => cfg.clusters.push(r.decode()?),
                _ => {}
            }
        }
        Ok(cfg)
    }
}

/// `kind/namespace/name` of a config object (namespace empty for cluster-scoped ones).
pub type ObjectKey = (String, String, String);

/// What the inputs of compilation are at one generation.
#[derive(Clone)]
pub struct Inputs {
    pub generation: u64,
    pub objects: Arc<Vec<Object>>,
    pub registry: Arc<Registry>,
}

#[derive(Default)]
pub struct State {
    pub generation: u64,
    /// Objects by origin (file), as the source last delivered them.
    origins: BTreeMap<String, Vec<Object>>,
    /// Diagnostics that are not about one loaded object, by origin.
    origin_problems: BTreeMap<String, Vec<Diagnostic>>,
    /// The generation at which each object last changed.
    changed_at: BTreeMap<ObjectKey, u64>,
    accepted: Arc<Vec<Object>>,
    rejected: BTreeMap<ObjectKey, Vec<Diagnostic>>,
    pub base_registry: Registry,
    registry: Arc<Registry>,
    /// Proxy id → position in `registry.instances` (and `base_registry.instances`).
    positions: HashMap<String, usize>,
    /// What changed since the compiler last took it.
    pub pending: Change,
    pub proxies: BTreeMap<String, ProxyState>,
    pub disconnects: BTreeMap<String, u64>,
    pub synced: bool,
}

/// One connected proxy.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyState {
    pub id: String,
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub identity: String,
    pub address: String,
    #[serde(serialize_with = "serialize_time")]
    pub connected_since: SystemTime,
    /// The version of the last config compiled for it.
    pub config_version: String,
    /// How many times its config was compiled (recompilation is selective: a change
    /// recompiles only the proxies it can affect).
    pub compiles: u64,
    /// The generation of the inputs that config was compiled from.
    #[serde(skip)]
    pub compiled_generation: u64,
    /// The generation of the last push it answered (ACK or NACK).
    #[serde(skip)]
    pub acked_generation: u64,
    /// Per resource: the version sent (what it holds once it answers).
    pub sent: Resources,
    /// Per resource: the version it accepted (or announced holding when it connected).
    pub acked: Resources,
    pub nacked: BTreeMap<String, Nack>,
    pub pending_nonce: Option<String>,
    /// Pushes not answered yet, oldest first: an ACK names only its nonce and what was
    /// rejected, so what it accepted is read from here.
    #[serde(skip)]
    pub unanswered: VecDeque<Push>,
    /// Resources sent on this connection (unchanged ones are never resent).
    pub resources_sent: u64,
    pub last_error: Option<String>,
    /// Certificate expiry (RFC 3339), filled by the CA when it issues one.
    pub cert_expiry: Option<String>,
    /// The config last pushed to it.
    #[serde(skip)]
    pub config: Option<Arc<Compiled>>,
    /// A config compiled for it that its session has not taken yet.
    #[serde(skip)]
    pub compiled: Option<Arc<Compiled>>,
    /// Wakes its session when `compiled` is set.
    #[serde(skip)]
    pub wake: Arc<Notify>,
    /// Tells this connection from a later one with the same id.
    #[serde(skip)]
    pub session: u64,
    /// What its hello announced (labels, service account, workload, address), laid over
    /// its registry entry whenever the registry is rebuilt.
    #[serde(skip)]
    pub announced: Option<weft_api::pb::Hello>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nack {
    pub version: String,
    pub reason: String,
    /// The config objects the rejected resource came from.
    pub origins: Vec<String>,
}

impl ProxyState {
    /// The config last pushed to it, decoded.
    pub fn config(&self) -> Option<Arc<ProxyConfig>> {
        self.config
            .as_ref()
            .and_then(|c| c.config().ok())
            .map(Arc::new)
    }

    /// `ACKED`, `NACKED` (some resource rejected) or `PENDING` (waiting for an answer).
    pub fn sync_state(&self) -> &'static str {
        if !self.nacked.is_empty() {
            "NACKED"
        } else if self.pending_nonce.is_some() {
            "PENDING"
        } else {
            "ACKED"
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub origin: String,
    /// `accepted`, `rejected` or `error` (the file holding it does not load).
    pub status: String,
    pub errors: Vec<FieldError>,
    /// Proxies running the object's current version, of those connected.
    pub programmed: usize,
    pub proxies: usize,
    /// Proxies that rejected config compiled from it, with their reasons.
    pub nacks: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    fn from(d: &Diagnostic) -> FieldError {
        FieldError {
            field: d.field.as_ref().map(|f| f.to_string()).unwrap_or_default(),
            reason: d.message.clone(),
        }
    }
}

pub fn object_key(o: &Object) -> ObjectKey {
    let r = o.resource_ref();
    (r.kind, r.namespace.unwrap_or_default(), r.name)
}

impl State {
    pub fn inputs(&self) -> Inputs {
        Inputs {
            generation: self.generation,
            objects: self.accepted.clone(),
            registry: self.registry.clone(),
        }
    }

    /// Apply a source event; true when the compiled inputs changed.
    pub fn apply(&mut self, event: Event) -> bool {
        match event {
            Event::Apply {
                origin,
                objects,
                problems,
            } => {
                self.origin_problems.insert(origin.clone(), problems);
                self.origins.insert(origin, objects);
            }
            Event::Delete { origin } => {
                self.origin_problems.remove(&origin);
                if self.origins.remove(&origin).is_none() {
                    return false;
                }
            }
            Event::Error {
                origin,
                diagnostics,
            } => {
                self.origin_problems.insert(origin, diagnostics);
                return false;
            }
            Event::Synced => {
                self.synced = true;
                self.generation += 1;
                self.pending.all = true;
                return true;
            }
        }
        self.revalidate()
    }

    /// Validate every object again; bump the generation when the accepted set changed.
    fn revalidate(&mut self) -> bool {
        let mut accepted = Vec::new();
        let mut rejected = BTreeMap::new();
        for o in self.origins.values().flatten() {
            let errors: Vec<Diagnostic> = weft_config::validate::validate(o)
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect();
            if errors.is_empty() {
                accepted.push(o.clone());
            } else {
                rejected.insert(object_key(o), errors);
            }
        }
        let old: BTreeMap<ObjectKey, &Object> =
            self.accepted.iter().map(|o| (object_key(o), o)).collect();
        let new: BTreeMap<ObjectKey, &Object> =
            accepted.iter().map(|o| (object_key(o), o)).collect();
        let mut changed = BTreeSet::new();
        for (k, o) in &new {
            match old.get(k) {
                Some(prev) if same_object(prev, o) => {}
                prev => {
                    changed.insert(k.clone());
                    self.pending
                        .object(k.clone(), prev.map(|p| (*p).clone()), Some((*o).clone()));
                }
            }
        }
        let mut removed = false;
        for (k, o) in &old {
            if !new.contains_key(k) {
                removed = true;
                self.pending.object(k.clone(), Some((*o).clone()), None);
            }
        }
        self.rejected = rejected;
        if changed.is_empty() && !removed {
            return false;
        }
        self.generation += 1;
        for k in changed {
            self.changed_at.insert(k, self.generation);
        }
        self.accepted = Arc::new(accepted);
        self.synced
    }

    /// Rebuild the registry: the registry file's instances, with what connected proxies
    /// announced (labels, address, service account) laid over their entries. True when
    /// it changed.
    pub fn set_registry(&mut self, instances: Vec<WorkloadInstance>) -> bool {
        // Compared through `positions` (id -> index of the current registry): this runs on
        // every registry change, with thousands of instances.
        let ids: Vec<String> = instances.iter().map(WorkloadInstance::proxy_id).collect();
        let mut changed: BTreeSet<String> = BTreeSet::new();
        for (id, i) in ids.iter().zip(&instances) {
            let old = self
                .positions
                .get(id)
                .and_then(|&n| self.registry.instances.get(n));
            if old != Some(i) {
                changed.insert(id.clone());
            }
        }
        let current: HashSet<&str> = ids.iter().map(String::as_str).collect();
        changed.extend(
            self.positions
                .keys()
                .filter(|id| !current.contains(id.as_str()))
                .cloned(),
        );
        if changed.is_empty() && self.positions.len() == instances.len() {
            return false;
        }
        self.positions = ids.into_iter().enumerate().map(|(n, id)| (id, n)).collect();
        self.registry = Arc::new(Registry { instances });
        self.pending.instances.extend(changed);
        self.generation += 1;
        true
    }

    /// Replace one instance of the registry (a proxy's announcement laid over or taken
    /// off its entry). True when it changed.
    pub fn set_instance(&mut self, instance: WorkloadInstance) -> bool {
        let id = instance.proxy_id();
        let Some(&pos) = self.positions.get(&id) else {
            return false;
        };
        let registry = Arc::make_mut(&mut self.registry);
        let Some(slot) = registry.instances.get_mut(pos) else {
            return false;
        };
        if *slot == instance {
            return false;
        }
        *slot = instance;
        self.pending.instances.insert(id);
        self.generation += 1;
        true
    }

    /// The registry file's entry for a proxy id (without announcements).
    pub fn base_instance(&self, id: &str) -> Option<&WorkloadInstance> {
        let found = self.base_registry.instances.get(*self.positions.get(id)?)?;
        // Positions follow the overlaid registry, which mirrors the base one.
        (found.proxy_id() == id).then_some(found)
    }

    /// The registry's entry for a proxy id (with announcements laid over).
    pub fn instance(&self, id: &str) -> Option<&WorkloadInstance> {
        self.registry.instances.get(*self.positions.get(id)?)
    }

    pub fn statuses(&self) -> Vec<ObjectStatus> {
        let mut out = Vec::new();
        let proxies = self.proxies.len();
        for (origin, objects) in &self.origins {
            for o in objects {
                let key = object_key(o);
                let at = self.changed_at.get(&key).copied().unwrap_or(0);
                let rejected = self.rejected.get(&key);
                let label = format!("{}/{}/{}", key.0, key.1, key.2);
                let nacks: Vec<String> = self
                    .proxies
                    .values()
                    .flat_map(|p| {
                        p.nacked
                            .iter()
                            .filter(|(_, n)| n.origins.contains(&label))
                            .map(|(res, n)| format!("{} rejected {res}: {}", p.id, n.reason))
                    })
                    .collect();
                let programmed = if rejected.is_some() {
                    0
                } else {
                    self.proxies
                        .values()
                        .filter(|p| {
                            p.acked_generation >= at
                                && !p.nacked.values().any(|n| n.origins.contains(&label))
                        })
                        .count()
                };
                out.push(ObjectStatus {
                    kind: key.0,
                    namespace: key.1,
                    name: key.2,
                    origin: origin.clone(),
                    status: if rejected.is_some() {
                        "rejected".into()
                    } else {
                        "accepted".into()
                    },
                    errors: rejected
                        .map(|ds| ds.iter().map(FieldError::from).collect())
                        .unwrap_or_default(),
                    programmed,
                    proxies,
                    nacks,
                });
            }
        }
        for (origin, problems) in &self.origin_problems {
            for d in problems.iter().filter(|d| d.severity == Severity::Error) {
                let (kind, namespace, name) = match d.resource.clone() {
                    Some(r) => (r.kind, r.namespace.unwrap_or_default(), r.name),
                    None => ("File".to_string(), String::new(), origin.clone()),
                };
                out.push(ObjectStatus {
                    kind,
                    namespace,
                    name,
                    origin: origin.clone(),
                    // An object its file names is rejected (with the field and reason); a
                    // file that does not load at all is an error.
                    status: if d.resource.is_some() {
                        "rejected"
                    } else {
                        "error"
                    }
                    .into(),
                    errors: vec![FieldError::from(d)],
                    programmed: 0,
                    proxies,
                    nacks: Vec::new(),
                });
            }
        }
        out
    }
}

pub fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    s.serialize_u64(secs)
}

/// Equal content (the typed body and metadata; not where in a file it was written).
fn same_object(a: &Object, b: &Object) -> bool {
    format!("{:?}{:?}", a.meta, a.body) == format!("{:?}{:?}", b.meta, b.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(state: &mut State, origin: &str, yaml: &str) -> bool {
        let bundle = weft_config::Bundle::load_str(origin, yaml);
        state.apply(Event::Apply {
            origin: origin.into(),
            objects: bundle.objects,
            problems: bundle.diagnostics,
        })
    }

    #[test]
    fn objects_are_accepted_or_rejected_with_field_and_reason() {
        let mut st = State::default();
        assert!(st.apply(Event::Synced));
        let good = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ok, namespace: shop}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart}\n";
        assert!(apply(&mut st, "good.yaml", good));
        let generation = st.generation;
        // Same content again: nothing to recompile.
        assert!(!apply(&mut st, "good.yaml", good));
        assert_eq!(st.generation, generation);
        let bad = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: shop}\nspec:\n  hosts: [cart]\n  http:\n  - match: [{uri: {regex: '('}}]\n    route:\n    - destination: {host: cart}\n";
        apply(&mut st, "bad.yaml", bad);
        let statuses = st.statuses();
        let ok = statuses.iter().find(|s| s.name == "ok").unwrap();
        assert_eq!(ok.status, "accepted");
        let rejected = statuses.iter().find(|s| s.name == "bad").unwrap();
        assert_eq!(rejected.status, "rejected");
        assert!(
            rejected.errors[0].field.contains("regex")
                && rejected.errors[0].reason.contains("regex"),
            "{:?}",
            rejected.errors
        );
        assert_eq!(st.inputs().objects.len(), 1);
        // A file that stops parsing keeps its objects.
        assert!(!st.apply(Event::Error {
            origin: "good.yaml".into(),
            diagnostics: Vec::new(),
        }));
        assert_eq!(st.inputs().objects.len(), 1);
        assert!(st.apply(Event::Delete {
            origin: "good.yaml".into()
        }));
        assert!(st.inputs().objects.is_empty());
    }
}
