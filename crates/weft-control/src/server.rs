//! The `Discovery/Stream` service: one session per connected proxy.
//!
//! A session registers the proxy (its hello lays identity, labels and address over its
//! registry entry), then loops: whenever the compiler ([`crate::compiler`]) hands it a new
//! config it sends only the resources whose version differs from what the proxy holds
//! (its hello's held versions to begin with), plus removals; ACKs and NACKs update the
//! per-resource state. On any end of the stream the proxy is unregistered and the reason
//! counted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};
use weft_api::ProxyConfig;
use weft_api::pb::{self, DeltaResponse, ProxyMessage, Resource, ResourceKey, ResourceType};

use crate::Shared;
use crate::state::{Compiled, Nack, ProxyState};

/// How long a new stream may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The size a push's parts are packed to (see `DeltaResponse.more` in discovery.proto).
/// tonic keeps, per stream, an encode buffer as large as the largest message it sent: with
/// whole configs as one message, 2,000 proxies kept ~450 MB of idle buffers. Just under
/// 32 KiB, so a part (with its framing) fits the 32 KiB step the buffer grows to.
const PART_BYTES: usize = 30 * 1024;

pub struct DiscoveryService {
    pub(crate) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl pb::discovery_server::Discovery for DiscoveryService {
    type StreamStream = ReceiverStream<Result<DeltaResponse, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                self.shared.count_disconnect("no hello");
                Status::deadline_exceeded("no hello within 10s")
            })??;
        let Some(pb::proxy_message::Kind::Hello(hello)) = first.and_then(|m| m.kind) else {
            self.shared.count_disconnect("no hello");
            return Err(Status::invalid_argument(
                "the first message on a stream must be a hello",
            ));
        };
        // The token must name this proxy's identity (see `identity.rs`).
        self.shared.admit(&hello)?;
        let session = self.shared.register(&hello).inspect_err(|_| {
            self.shared.count_disconnect("unknown proxy");
        })?;
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        let held: BTreeMap<String, String> = hello
            .held
            .iter()
            .filter_map(|h| Some((h.key.as_ref()?.display(), h.version.clone())))
            .collect();
        tokio::spawn(async move {
            let id = hello.proxy_id.clone();
            let reason = run_session(&shared, &id, session, held, inbound, tx).await;
            info!(proxy = %id, %reason, "proxy disconnected");
            shared.unregister(&id, session, &reason);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

async fn run_session(
    shared: &Arc<Shared>,
    id: &str,
    session: u64,
    held: BTreeMap<String, String>,
    mut inbound: Streaming<ProxyMessage>,
    tx: mpsc::Sender<Result<DeltaResponse, Status>>,
) -> String {
    let wake = {
        let mut st = shared.state();
        let Some(p) = st.proxies.get_mut(id).filter(|p| p.session == session) else {
            return "replaced by a new connection".into();
        };
        p.sent = held;
        p.wake.clone()
    };
    let mut stop = shared.stop.subscribe();
    let mut nonce = 0u64;
    loop {
        let compiled = shared
            .state()
            .proxies
            .get_mut(id)
            .filter(|p| p.session == session)
            .and_then(|p| p.compiled.take());
        if let Some(compiled) = compiled {
            nonce += 1;
            for part in shared.delta(id, session, compiled, nonce) {
                if tx.send(Ok(part)).await.is_err() {
                    return "proxy went away".into();
                }
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            msg = inbound.message() => match msg {
                Ok(Some(ProxyMessage { kind: Some(pb::proxy_message::Kind::Ack(ack)) })) => {
                    shared.ack(id, session, ack);
                }
                Ok(Some(_)) => {
                    shared.with_proxy(id, session, |p| {
                        p.last_error = Some("unexpected message after hello".into())
                    });
                }
                Ok(None) => return "proxy closed the stream".into(),
                Err(status) => return format!("stream error: {:?}", status.code()),
            },
            () = tx.closed() => return "proxy went away".into(),
            _ = stop.wait_for(|s| *s) => return "control plane stopped".into(),
        }
    }
}

impl Shared {
    /// Add the proxy to the registry and the proxy table; the session number tells this
    /// connection from a later one with the same id.
    fn register(&self, hello: &pb::Hello) -> Result<u64, Status> {
        let mut st = self.state();
        let Some(entry) = st.base_instance(&hello.proxy_id).cloned() else {
            let known: Vec<String> = st
                .base_registry
                .instances
                .iter()
                .map(|i| i.proxy_id())
                .collect();
            return Err(Status::not_found(format!(
                "no workload instance `{}` in the control plane's registry (known: {}); check --id",
                hello.proxy_id,
                known.join(", ")
            )));
        };
        let announced = pb::Hello {
            token: String::new(),
            held: Vec::new(),
            ..hello.clone()
        };
        let instance = crate::state::overlay(entry, &announced);
        let session = self.next_session();
        if st.proxies.contains_key(&hello.proxy_id) {
            *st.disconnects
                .entry("replaced by a new connection".into())
                .or_default() += 1;
        }
        // The mesh config alone: a whole snapshot (its lookups) per connecting proxy was
        // most of the control plane's CPU when 2,000 proxies connect.
        let trust_domain =
            weft_config::kinds::istio::MeshConfig::from_objects(&st.inputs().objects)
                .trust_domain()
                .to_string();
        st.proxies.insert(
            hello.proxy_id.clone(),
            ProxyState {
                id: hello.proxy_id.clone(),
                identity: format!(
                    "spiffe://{trust_domain}/ns/{}/sa/{}",
                    instance.namespace, instance.service_account
                ),
                address: instance.address.to_string(),
                connected_since: SystemTime::now(),
                config_version: String::new(),
                compiles: 0,
                compiled: None,
                wake: Arc::default(),
                compiled_generation: 0,
                acked_generation: 0,
                sent: BTreeMap::new(),
                acked: BTreeMap::new(),
                nacked: BTreeMap::new(),
                pending_nonce: None,
                resources_sent: 0,
                last_error: None,
                cert_expiry: None,
                config: None,
                session,
                announced: Some(announced),
            },
        );
        st.pending.proxies.insert(hello.proxy_id.clone());
        st.set_instance(instance);
        drop(st);
        // Wake the compiler: a new proxy needs its first config.
        self.changes.send_modify(|_| {});
        info!(proxy = %hello.proxy_id, held = hello.held.len(), "proxy connected");
        Ok(session)
    }

    fn unregister(&self, id: &str, session: u64, reason: &str) {
        let mut st = self.state();
        *st.disconnects.entry(reason.to_string()).or_default() += 1;
        let mut changed = false;
        if st.proxies.get(id).is_some_and(|p| p.session == session) {
            st.proxies.remove(id);
            // Its announcement no longer overlays its registry entry.
            if let Some(base) = st.base_instance(id).cloned() {
                changed = st.set_instance(base);
            }
        }
        drop(st);
        if changed {
            self.changes.send_modify(|_| {});
        }
        self.notify_status();
    }

    /// The resources of `compiled` whose version differs from what the proxy holds, and
    /// the names it holds that are gone, as the parts of one push; none when there is
    /// nothing to send.
    fn delta(
        &self,
        id: &str,
        session: u64,
        compiled: Arc<Compiled>,
        nonce: u64,
    ) -> Vec<DeltaResponse> {
        let mut st = self.state();
        let Some(p) = st.proxies.get_mut(id).filter(|p| p.session == session) else {
            return Vec::new();
        };
        let generation = compiled.generation;
        p.compiled_generation = generation;
        p.last_error = None;
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        let mut changed: Vec<Resource> = Vec::new();
        for r in &compiled.resources {
            let key = r.key.as_ref().map(ResourceKey::display).unwrap_or_default();
            if p.sent.get(&key) != Some(&r.version) {
                changed.push(Resource::clone(r));
            }
            wanted.insert(key);
        }
        let removed: Vec<ResourceKey> = p
            .sent
            .keys()
            .filter(|k| !wanted.contains(*k))
            .filter_map(|k| wanted_key(k))
            .collect();
        let node_changed = p.config.as_ref().is_none_or(|c| c.node != compiled.node);
        if changed.is_empty() && removed.is_empty() && !node_changed {
            if p.pending_nonce.is_none() {
                p.acked_generation = generation;
            }
            p.config = Some(compiled);
            return Vec::new();
        }
        let node = serde_json::to_vec(&compiled.node).unwrap_or_default();
        p.config_version = compiled.version.clone();
        p.resources_sent += changed.len() as u64;
        for r in &changed {
            if let Some(k) = &r.key {
                p.sent.insert(k.display(), r.version.clone());
            }
        }
        for k in &removed {
            let name = k.display();
            p.sent.remove(&name);
            p.acked.remove(&name);
            p.nacked.remove(&name);
        }
        let nonce = format!("{nonce}-{generation}");
        p.pending_nonce = Some(nonce.clone());
        let config_version = compiled.version.clone();
        p.config = Some(compiled);
        drop(st);
        let mut parts: Vec<DeltaResponse> = pack(changed, PART_BYTES)
            .into_iter()
            .map(|resources| DeltaResponse {
                nonce: nonce.clone(),
                resources,
                more: true,
                ..DeltaResponse::default()
            })
            .collect();
        if parts.is_empty() {
            parts.push(DeltaResponse {
                nonce,
                ..DeltaResponse::default()
            });
        }
        if let Some(last) = parts.last_mut() {
            last.removed = removed;
            last.config_version = config_version;
            last.node = node;
            last.more = false;
        }
        parts
    }

    fn ack(&self, id: &str, session: u64, ack: pb::Ack) {
        let mut st = self.state();
        let Some(p) = st.proxies.get_mut(id).filter(|p| p.session == session) else {
            return;
        };
        for a in &ack.accepted {
            if let Some(k) = &a.key {
                p.nacked.remove(&k.display());
                p.acked.insert(k.display(), a.version.clone());
            }
        }
        for r in &ack.rejected {
            let Some(k) = &r.key else { continue };
            let origins = p
                .config
                .as_ref()
                .map(|c| origins_of(c, k))
                .unwrap_or_default();
            warn!(proxy = %id, resource = %k.display(), reason = %r.reason, "proxy rejected a resource");
            p.nacked.insert(
                k.display(),
                Nack {
                    version: r.version.clone(),
                    reason: r.reason.clone(),
                    origins,
                },
            );
        }
        if p.pending_nonce.as_deref() == Some(ack.nonce.as_str()) {
            p.pending_nonce = None;
            // Answered: what it accepted runs; what it refused is reported per object.
            p.acked_generation = p.compiled_generation;
        }
        drop(st);
        self.notify_status();
    }
}

/// Every resource of a config, encoded.
pub fn resources_of(config: &ProxyConfig) -> Result<Vec<Resource>, serde_json::Error> {
    let mut out = Vec::new();
    for l in &config.listeners {
        out.push(Resource::encode(ResourceType::Listener, &l.name, l)?);
    }
    for t in &config.route_tables {
        out.push(Resource::encode(ResourceType::RouteTable, &t.name, t)?);
    }
    for c in &config.clusters {
        out.push(Resource::encode(ResourceType::Cluster, &c.name, c)?);
    }
    Ok(out)
}

/// `resources` in order, in groups of at most `limit` encoded bytes (a larger resource
/// makes a group of its own).
fn pack(resources: Vec<Resource>, limit: usize) -> Vec<Vec<Resource>> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut size = 0;
    for r in resources {
        // The protobuf encoding adds a few bytes of tags and lengths per field.
        let len = r.body.len() + r.version.len() + r.key.as_ref().map_or(0, |k| k.name.len()) + 16;
        if !group.is_empty() && size + len > limit {
            groups.push(std::mem::take(&mut group));
            size = 0;
        }
        size += len;
        group.push(r);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// Parse `type/name` back into a key.
fn wanted_key(display: &str) -> Option<ResourceKey> {
    let (kind, name) = display.split_once('/')?;
    let kind = match kind {
        "listener" => ResourceType::Listener,
        "route_table" => ResourceType::RouteTable,
        "cluster" => ResourceType::Cluster,
        _ => return None,
    };
    Some(ResourceKey::new(kind, name))
}

/// The config objects (`Kind/namespace/name`) a resource of `compiled` came from.
fn origins_of(compiled: &Compiled, key: &ResourceKey) -> Vec<String> {
    let value = compiled
        .resources
        .iter()
        .find(|r| r.key.as_ref() == Some(key))
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok());
    let mut out = Vec::new();
    if let Some(v) = value {
        collect_origins(&v, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn collect_origins(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                if (k == "origin" || k == "policy_origin")
                    && let Ok(o) = serde_json::from_value::<weft_api::Origin>(child.clone())
                {
                    out.push(format!("{}/{}/{}", o.kind, o.namespace, o.name));
                }
                collect_origins(child, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_origins(i, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, body_len: usize) -> Resource {
        Resource {
            key: Some(ResourceKey::new(ResourceType::Cluster, name)),
            version: "v".into(),
            body: vec![b'x'; body_len].into(),
        }
    }

    fn names(groups: &[Vec<Resource>]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|r| r.key.as_ref().unwrap().name.clone())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn packs_in_order_up_to_the_limit_and_a_large_resource_goes_alone() {
        let groups = pack(
            vec![
                resource("a", 400),
                resource("b", 400),
                resource("c", 400),
                resource("big", 5000),
                resource("d", 100),
            ],
            1000,
        );
        assert_eq!(
            names(&groups),
            [vec!["a", "b"], vec!["c"], vec!["big"], vec!["d"]]
        );
        assert!(pack(Vec::new(), 1000).is_empty());
    }
}
