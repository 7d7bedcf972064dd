//! The `Discovery/Stream` service: one session per connected proxy.
//!
//! A session registers the proxy (its hello lays identity, labels and address over its
//! registry entry), then loops: whenever the compiler ([`crate::compiler`]) hands it a new
//! config it sends only the resources whose version differs from what the proxy holds
//! (its hello's held versions to begin with), plus removals; ACKs and NACKs update the
//! per-resource state. On any end of the stream the proxy is unregistered and the reason
//! counted.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Semaphore, SemaphorePermit, mpsc};
use tokio::time::Instant as TokioInstant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};
use weft_api::ProxyConfig;
use weft_api::pb::{self, DeltaResponse, ProxyMessage, Resource, ResourceKey, ResourceType};

use crate::Shared;
use crate::state::{Compiled, Nack, ProxyState, Push, Resources};

/// How long a new stream may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The size a push's parts are packed to (see `DeltaResponse.more` in discovery.proto).
/// tonic keeps, per stream, an encode buffer as large as the largest message it sent, and
/// doubles it when a message outgrows it: with whole configs as one message, 2,000 proxies
/// kept ~450 MB of idle buffers; with 30 KiB parts, ~110 MiB. Below the codec's starting
/// buffer (8 KiB, weft-api codec.rs; with room for the framing, nonce and the last part's node and config version),
/// a part fits the buffer every stream keeps anyway.
const PART_BYTES: usize = 7 * 1024;

/// How many pushes of several parts go out at once. Each stream's parts wait in HTTP/2's
/// send queue as far as the proxy's flow-control windows allow (megabytes per stream):
/// with 2,000 proxies taking their first config at once, ~150 MiB of parts sat there. A
/// push takes its turn until the proxy answers it (or [`PUSH_TURN`] passes); single-part
/// pushes (an endpoint change) never wait.
const PUSHES_AT_ONCE: usize = 128;
static MULTI_PART_PUSHES: Semaphore = Semaphore::const_new(PUSHES_AT_ONCE);

/// The longest a push holds or waits for its turn: a proxy that does not answer (or read)
/// delays the others by at most this.
const PUSH_TURN: Duration = Duration::from_secs(5);

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
        let held = Resources::announced(&hello.held);
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
    held: Resources,
    mut inbound: Streaming<ProxyMessage>,
    tx: mpsc::Sender<Result<DeltaResponse, Status>>,
) -> String {
    let wake = {
        let mut st = shared.state();
        let Some(p) = st.proxies.get_mut(id).filter(|p| p.session == session) else {
            return "replaced by a new connection".into();
        };
        // What it announced holding runs there: sent and accepted.
        p.sent = held.clone();
        p.acked = held;
        p.wake.clone()
    };
    let mut stop = shared.stop.subscribe();
    let mut nonce = 0u64;
    // The push awaiting an answer and when it went out (`weft_control_push_duration_seconds`).
    let mut in_flight: Option<(String, Instant)> = None;
    // This session's turn at a multi-part push: its nonce, until when, the permit.
    let mut turn: Option<(String, TokioInstant, SemaphorePermit<'static>)> = None;
    loop {
        let compiled = shared
            .state()
            .proxies
            .get_mut(id)
            .filter(|p| p.session == session)
            .and_then(|p| p.compiled.take());
        if let Some(compiled) = compiled {
            nonce += 1;
            if let Some(push) = shared.delta(id, session, compiled, nonce) {
                if push.groups.len() > 1 {
                    turn = None;
                    let permit = tokio::time::timeout(PUSH_TURN, MULTI_PART_PUSHES.acquire()).await;
                    if let Ok(Ok(permit)) = permit {
                        let until = TokioInstant::now() + PUSH_TURN;
                        turn = Some((push.nonce.clone(), until, permit));
                    }
                }
                in_flight = Some((push.nonce.clone(), Instant::now()));
                shared.metrics.pushed();
                for part in push.into_parts() {
                    if tx.send(Ok(part)).await.is_err() {
                        return "proxy went away".into();
                    }
                }
            }
        }
        let turn_ends = turn.as_ref().map_or_else(TokioInstant::now, |t| t.1);
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep_until(turn_ends), if turn.is_some() => turn = None,
            msg = inbound.message() => match msg {
                Ok(Some(ProxyMessage { kind: Some(pb::proxy_message::Kind::Ack(ack)) })) => {
                    // An answer to a push since superseded counts, but is not timed.
                    let took = in_flight
                        .take_if(|(n, _)| *n == ack.nonce)
                        .map(|(_, sent)| sent.elapsed());
                    shared.metrics.answered(took, !ack.rejected.is_empty());
                    turn.take_if(|(n, _, _)| *n == ack.nonce);
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
                sent: Resources::default(),
                acked: Resources::default(),
                nacked: Default::default(),
                pending_nonce: None,
                unanswered: Default::default(),
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
    /// the names it holds that are gone, as one push; none when there is nothing to send.
    fn delta(
        &self,
        id: &str,
        session: u64,
        compiled: Arc<Compiled>,
        nonce: u64,
    ) -> Option<Outgoing> {
        let mut st = self.state();
        let p = st.proxies.get_mut(id).filter(|p| p.session == session)?;
        let generation = compiled.generation;
        p.compiled_generation = generation;
        p.last_error = None;
        // Resources are compared through the shared `Arc<Resource>`s of the compiled
        // configs: no per-resource key strings are built for 2,000 proxies on every change.
        let mut changed: Vec<Arc<Resource>> = Vec::new();
        // Compiled keys that were sent before (equal or not).
        let mut present = 0;
        for r in &compiled.resources {
            let sent = p.sent.get(r);
            present += usize::from(sent.is_some());
            match sent {
                Some(s) if s.version == r.version => {
                    if !Arc::ptr_eq(s, r) {
                        // Hold the compiled copy, not an older equal one (or a stand-in
                        // for what the hello announced), in both sets.
                        if p.acked.get(r).is_some_and(|a| a.version == r.version) {
                            p.acked.insert(r.clone());
                        }
                        p.sent.insert(r.clone());
                    }
                }
                _ => changed.push(r.clone()),
            }
        }
        // Keys are unique in a config: when every key sent is still there, nothing is
        // removed, and the common case builds no set.
        let mut removed: Vec<ResourceKey> = Vec::new();
        if present < p.sent.len() {
            let mut wanted = Resources::default();
            compiled
                .resources
                .iter()
                .for_each(|r| wanted.insert(r.clone()));
            let gone: Vec<Arc<Resource>> = p
                .sent
                .iter()
                .filter(|r| !wanted.contains(r))
                .cloned()
                .collect();
            for r in gone {
                p.sent.remove(&r);
                p.acked.remove(&r);
                if let Some(k) = &r.key {
                    p.nacked.remove(&k.display());
                    removed.push(k.clone());
                }
            }
        }
        let node_changed = p.config.as_ref().is_none_or(|c| c.node != compiled.node);
        if changed.is_empty() && removed.is_empty() && !node_changed {
            if p.pending_nonce.is_none() {
                p.acked_generation = generation;
            }
            p.config = Some(compiled);
            return None;
        }
        let node = serde_json::to_vec(&compiled.node).unwrap_or_default();
        p.config_version = compiled.version.clone();
        p.resources_sent += changed.len() as u64;
        for r in &changed {
            p.sent.insert(r.clone());
        }
        let nonce = format!("{nonce}-{generation}");
        p.pushed(Push {
            nonce: nonce.clone(),
            resources: changed.clone(),
        });
        let config_version = compiled.version.clone();
        p.config = Some(compiled);
        drop(st);
        Some(Outgoing {
            nonce,
            groups: pack(changed, PART_BYTES),
            removed,
            config_version,
            node,
        })
    }
    fn ack(&self, id: &str, session: u64, ack: pb::Ack) {
        let mut st = self.state();
        let Some(p) = st.proxies.get_mut(id).filter(|p| p.session == session) else {
            return;
        };
        // What the push carried is accepted except what the ACK rejects (`Ack.accepted`
        // is no longer read: see discovery.proto).
        let rejected: Vec<ResourceKey> =
            ack.rejected.iter().filter_map(|r| r.key.clone()).collect();
        let latest = p.answered(&ack.nonce, &rejected);
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
        if latest {
            // Answered: what it accepted runs; what it refused is reported per object.
            p.acked_generation = p.compiled_generation;
        }
        drop(st);
        self.notify_status();
    }
}

/// One push, packed into groups of resources (one part each) that are copied into
/// messages only as they are sent.
struct Outgoing {
    nonce: String,
    groups: Vec<Vec<Arc<Resource>>>,
    removed: Vec<ResourceKey>,
    config_version: String,
    node: Vec<u8>,
}

impl Outgoing {
    /// Its parts: removals, config version and node travel with the last (a push of no
    /// resources is that part alone).
    fn into_parts(self) -> impl Iterator<Item = DeltaResponse> {
        let Outgoing {
            nonce,
            mut groups,
            removed,
            config_version,
            node,
        } = self;
        if groups.is_empty() {
            groups.push(Vec::new());
        }
        let count = groups.len();
        let mut last = Some((removed, config_version, node));
        groups.into_iter().enumerate().map(move |(i, group)| {
            let mut part = DeltaResponse {
                nonce: nonce.clone(),
                resources: group.iter().map(|r| Resource::clone(r)).collect(),
                more: true,
                ..DeltaResponse::default()
            };
            if i + 1 == count
                && let Some((removed, config_version, node)) = last.take()
            {
                part.removed = removed;
                part.config_version = config_version;
                part.node = node;
                part.more = false;
            }
            part
        })
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
fn pack(resources: Vec<Arc<Resource>>, limit: usize) -> Vec<Vec<Arc<Resource>>> {
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

    fn resource(name: &str, body_len: usize) -> Arc<Resource> {
        Arc::new(Resource {
            key: Some(ResourceKey::new(ResourceType::Cluster, name)),
            version: "v".into(),
            body: vec![b'x'; body_len].into(),
        })
    }

    fn names(groups: &[Vec<Arc<Resource>>]) -> Vec<Vec<String>> {
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

    #[test]
    fn the_last_part_carries_removals_version_and_node() {
        let push = |groups| Outgoing {
            nonce: "1-1".into(),
            groups,
            removed: vec![ResourceKey::new(ResourceType::Cluster, "gone")],
            config_version: "v9".into(),
            node: b"{}".to_vec(),
        };
        let parts: Vec<DeltaResponse> = push(vec![
            vec![resource("a", 1), resource("b", 1)],
            vec![resource("c", 1)],
        ])
        .into_parts()
        .collect();
        assert_eq!(parts.len(), 2);
        assert!(parts[0].more && parts[0].removed.is_empty() && parts[0].node.is_empty());
        assert_eq!(parts[0].resources.len(), 2);
        assert!(!parts[1].more);
        assert_eq!(parts[1].removed.len(), 1);
        assert_eq!(parts[1].config_version, "v9");
        assert!(parts.iter().all(|p| p.nonce == "1-1"));
        // Nothing but removals: one part.
        let parts: Vec<DeltaResponse> = push(Vec::new()).into_parts().collect();
        assert_eq!(parts.len(), 1);
        assert!(!parts[0].more && parts[0].resources.is_empty());
        assert_eq!(parts[0].removed.len(), 1);
    }
}
