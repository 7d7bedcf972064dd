//! The `Discovery/Stream` service: one session per connected proxy.
//!
//! A session registers the proxy (its hello lays identity, labels and address over its
//! registry entry), then loops: whenever the inputs' generation moves it recompiles the
//! proxy's config and sends only the resources whose version differs from what the proxy
//! holds (its hello's held versions to begin with), plus removals; ACKs and NACKs update
//! the per-resource state. On any end of the stream the proxy is unregistered and the
//! reason counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};
use weft_api::ProxyConfig;
use weft_api::pb::{self, DeltaResponse, ProxyMessage, Resource, ResourceKey, ResourceType};

use crate::Shared;
use crate::state::{Nack, ProxyState};

/// How long a new stream may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

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
        if let Some(token) = &self.shared.token
            && hello.token != *token
        {
            self.shared.count_disconnect("bad token");
            return Err(Status::unauthenticated(format!(
                "proxy {}: wrong bootstrap token (pass the control plane's --token)",
                hello.proxy_id
            )));
        }
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
    shared.with_proxy(id, session, |p| p.sent = held);
    let mut changes = shared.changes.subscribe();
    let mut stop = shared.stop.subscribe();
    let mut compiled_generation = 0;
    let mut nonce = 0u64;
    loop {
        let inputs = shared.state().inputs();
        if shared.state().synced && inputs.generation != compiled_generation {
            compiled_generation = inputs.generation;
            let proxy_id = id.to_string();
            let job = inputs.clone();
            let compiled = tokio::task::spawn_blocking(move || {
                let snapshot = weft_compile::Snapshot::new(&job.objects);
                weft_compile::compile(&snapshot, &job.registry, &proxy_id)
            })
            .await;
            match compiled {
                Ok(Ok(config)) => {
                    nonce += 1;
                    if let Some(delta) =
                        shared.delta(id, session, &config, nonce, inputs.generation)
                        && tx.send(Ok(delta)).await.is_err()
                    {
                        return "proxy went away".into();
                    }
                }
                Ok(Err(e)) => {
                    warn!(proxy = %id, error = %e, "cannot compile the proxy's config");
                    shared.with_proxy(id, session, |p| p.last_error = Some(e.to_string()));
                }
                Err(e) => {
                    shared.with_proxy(id, session, |p| {
                        p.last_error = Some(format!("compiling failed: {e}"))
                    });
                }
            }
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return "control plane shutting down".into();
                }
            }
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
        let Some(entry) = st
            .base_registry
            .instances
            .iter()
            .find(|i| i.proxy_id() == hello.proxy_id)
            .cloned()
        else {
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
        let trust_domain = weft_compile::Snapshot::new(&st.inputs().objects)
            .mesh
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
        self.rebuild_registry(&mut st);
        info!(proxy = %hello.proxy_id, held = hello.held.len(), "proxy connected");
        Ok(session)
    }

    fn unregister(&self, id: &str, session: u64, reason: &str) {
        let mut st = self.state();
        *st.disconnects.entry(reason.to_string()).or_default() += 1;
        if st.proxies.get(id).is_some_and(|p| p.session == session) {
            st.proxies.remove(id);
            self.rebuild_registry(&mut st);
        }
        drop(st);
        self.notify_status();
    }

    /// The resources of `config` whose version differs from what the proxy holds, and the
    /// names it holds that are gone; `None` when there is nothing to send.
    fn delta(
        &self,
        id: &str,
        session: u64,
        config: &ProxyConfig,
        nonce: u64,
        generation: u64,
    ) -> Option<DeltaResponse> {
        let resources = match resources_of(config) {
            Ok(r) => r,
            Err(e) => {
                self.with_proxy(id, session, |p| {
                    p.last_error = Some(format!("cannot encode config: {e}"))
                });
                return None;
            }
        };
        let mut st = self.state();
        let p = st.proxies.get_mut(id).filter(|p| p.session == session)?;
        p.compiled_generation = generation;
        p.last_error = None;
        let changed: Vec<Resource> = resources
            .into_iter()
            .filter(|r| {
                let key = r.key.as_ref().map(ResourceKey::display).unwrap_or_default();
                p.sent.get(&key) != Some(&r.version)
            })
            .collect();
        let wanted = resource_names(config);
        let removed: Vec<ResourceKey> = p
            .sent
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .filter_map(|k| wanted_key(k))
            .collect();
        let node = serde_json::to_vec(&config.node).unwrap_or_default();
        let node_changed = p.config.as_ref().is_none_or(|c| c.node != config.node);
        if changed.is_empty() && removed.is_empty() && !node_changed {
            if p.pending_nonce.is_none() {
                p.acked_generation = generation;
            }
            return None;
        }
        p.config_version = config.version.clone();
        p.config = Some(Arc::new(config.clone()));
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
        Some(DeltaResponse {
            nonce,
            resources: changed,
            removed,
            config_version: config.version.clone(),
            node,
        })
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

fn resource_names(config: &ProxyConfig) -> BTreeMap<String, ResourceKey> {
    let mut out = BTreeMap::new();
    let keys = config
        .listeners
        .iter()
        .map(|l| ResourceKey::new(ResourceType::Listener, &l.name))
        .chain(
            config
                .route_tables
                .iter()
                .map(|t| ResourceKey::new(ResourceType::RouteTable, &t.name)),
        )
        .chain(
            config
                .clusters
                .iter()
                .map(|c| ResourceKey::new(ResourceType::Cluster, &c.name)),
        );
    for k in keys {
        out.insert(k.display(), k);
    }
    out
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

/// The config objects (`Kind/namespace/name`) a resource of `config` came from.
fn origins_of(config: &ProxyConfig, key: &ResourceKey) -> Vec<String> {
    let value = match ResourceType::try_from(key.r#type) {
        Ok(ResourceType::Listener) => config
            .listeners
            .iter()
            .find(|l| l.name == key.name)
            .and_then(|l| serde_json::to_value(l).ok()),
        Ok(ResourceType::RouteTable) => config
            .route_table(&key.name)
            .and_then(|t| serde_json::to_value(t).ok()),
        Ok(ResourceType::Cluster) => config
            .cluster(&key.name)
            .and_then(|c| serde_json::to_value(c).ok()),
        _ => None,
    };
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
