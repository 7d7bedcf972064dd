//! Compile on change: one task takes what changed since its last round, works out which
//! connected proxies it can affect ([`crate::affected`]), compiles only those, and hands
//! each its new config (its session sends the difference).
//!
//! A round builds the snapshot (with its lookups) and the service index once and compiles
//! the proxies on every core from them. Encodings are shared ([`Encodings`]): a compiled
//! resource equal to one already encoded, for any proxy in this or an earlier round, reuses
//! that encoding, so equal resources of 2,000 proxies are serialised and hashed once and
//! held in one allocation, and a proxy's config version comes from the encodings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tracing::{debug, warn};
use weft_api::pb::{Resource, ResourceType};
use weft_api::{Cluster, Listener, RouteTable};
use weft_compile::{List, OutboundKey, ServiceIndex, Snapshot, WorkloadInstance};

use crate::Shared;
use crate::affected::{self, Affected, Change, Proxy};
use crate::state::{Compiled, Inputs};

/// What a round keeps for the next one.
#[derive(Default)]
struct Memory {
    /// The index the proxies' current configs were compiled from.
    index: Option<ServiceIndex>,
    /// Encoded resources, while some proxy holds them.
    encodings: Encodings,
}

/// A connected proxy as a round sees it.
struct Session {
    id: String,
    session: u64,
    latest: Option<Arc<Compiled>>,
}

/// A proxy a round compiles.
struct Target<'a> {
    id: &'a str,
    instance: &'a WorkloadInstance,
    session: u64,
    /// Its latest config, if any.
    latest: Option<&'a Compiled>,
}

/// One proxy's result of a round.
struct Output {
    id: String,
    session: u64,
    result: Result<Compiled, String>,
}

/// Run rounds until the control plane stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut changes = shared.changes.subscribe();
    let mut stop = shared.stop.subscribe();
    let mut memory = Some(Memory::default());
    loop {
        let work = {
            let mut st = shared.state();
            if st.synced && !st.pending.is_empty() {
                let change = std::mem::take(&mut st.pending);
                // With each proxy's latest config (its version is resumed from it).
                let sessions: Vec<Session> = st
                    .proxies
                    .values()
                    .map(|p| Session {
                        id: p.id.clone(),
                        session: p.session,
                        latest: p.compiled.clone().or_else(|| p.config.clone()),
                    })
                    .collect();
                Some((change, st.inputs(), sessions))
            } else {
                None
            }
        };
        if let Some((change, inputs, sessions)) = work {
            let Some(mem) = memory.take() else { return };
            let collector = shared.trace_collector.clone();
            let job = tokio::task::spawn_blocking(move || {
                let mut mem = mem;
                let out = round(&change, &inputs, collector.as_ref(), &sessions, &mut mem);
                (out, mem)
            });
            match job.await {
                Ok((outputs, mem)) => {
                    memory = Some(mem);
                    deliver(&shared, outputs);
                }
                Err(e) => {
                    // A compiler panic: keep serving; the next change starts afresh.
                    warn!(error = %e, "a compile round failed");
                    memory = Some(Memory::default());
                    shared.state().pending.all = true;
                }
            }
            continue;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Compile the proxies `change` affects.
fn round(
    change: &Change,
    inputs: &Inputs,
    trace_collector: Option<&weft_api::TraceProvider>,
    sessions: &[Session],
    mem: &mut Memory,
) -> Vec<Output> {
    let started = Instant::now();
    let snapshot =
        Snapshot::new(&inputs.objects).with_builtin_trace_collector(trace_collector.cloned());
    let mesh = &snapshot.mesh;
    let index = snapshot.service_index(&inputs.registry);
    let by_id: HashMap<String, &WorkloadInstance> = inputs
        .registry
        .instances
        .iter()
        .map(|i| (i.proxy_id(), i))
        .collect();
    let connected: Vec<(Proxy<'_>, &Session)> = sessions
        .iter()
        .filter_map(|s| {
            let instance = by_id.get(&s.id)?;
            Some((
                Proxy {
                    id: &s.id,
                    instance,
                },
                s,
            ))
        })
        .collect();
    let proxies: Vec<Proxy<'_>> = connected
        .iter()
        .map(|(p, _)| Proxy {
            id: p.id,
            instance: p.instance,
        })
        .collect();
    let affected = affected::affected(
        change,
        mem.index.as_ref(),
        &index,
        &inputs.objects,
        mesh.root_namespace(),
        &proxies,
    );
    let targets: Vec<Target<'_>> = connected
        .iter()
        .filter(|(p, _)| match &affected {
            Affected::All => true,
            Affected::Some(ids) => ids.contains(p.id),
        })
        .map(|(p, s)| Target {
            id: p.id,
            instance: p.instance,
            session: s.session,
            latest: s.latest.as_deref(),
        })
        .collect();
    let analysed = started.elapsed();
    let encodings = Mutex::new(std::mem::take(&mut mem.encodings));
    let (outputs, outbound_parts) =
        compile_all(&snapshot, &index, &targets, inputs.generation, &encodings);
    mem.encodings = encodings
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    mem.encodings.prune();
    mem.index = Some(index);
    debug!(
        generation = inputs.generation,
        connected = connected.len(),
        compiled = targets.len(),
        outbound_parts,
        analysed_ms = analysed.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "compile round"
    );
    outputs
}

/// Compile `targets` on every core, sharing the snapshot, the index and the encodings.
/// A sidecar's outbound part is compiled and encoded once per [`OutboundKey`] (proxies
/// of a namespace seeing the same services get the same one), and each proxy compiles
/// only its own part (node, inbound, tunnel). Each proxy's resources are shared as soon
/// as they are compiled, so a round never holds more than a few proxies' private copies
/// (holding them all until the round ended made the peak, and with it the RSS the
/// allocator keeps, grow with proxies x config size). Also returns how many outbound parts
/// were compiled.
fn compile_all(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    targets: &[Target<'_>],
    generation: u64,
    encodings: &Mutex<Encodings>,
) -> (Vec<Output>, usize) {
    let keyed: Vec<Option<OutboundKey>> = targets
        .iter()
        .map(|t| snapshot.outbound_key(t.instance))
        .collect();
    let mut seen = std::collections::HashSet::new();
    let distinct: Vec<&OutboundKey> = keyed.iter().flatten().filter(|k| seen.insert(*k)).collect();
    let parts: HashMap<&OutboundKey, Result<Arc<Part>, String>> = distinct
        .iter()
        .copied()
        .zip(on_every_core(&distinct, |key| {
            outbound_part(snapshot, index, key, encodings)
        }))
        .collect();
    let work: Vec<_> = targets.iter().zip(&keyed).collect();
    let outputs = on_every_core(&work, |(target, key)| {
        let outbound = key.as_ref().and_then(|k| parts.get(k));
        let result = match outbound {
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(part)) => {
                compile_one(snapshot, index, target, Some(part), generation, encodings)
            }
            None => compile_one(snapshot, index, target, None, generation, encodings),
        };
        Output {
            id: target.id.to_string(),
            session: target.session,
            result,
        }
    });
    (outputs, parts.len())
}

/// `f` over `items` on every core, in order.
fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            // A compiler panic fails the round (its caller recompiles everyone next time).
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Encoded resources of one part of a config, each list sorted by name.
#[derive(Debug, Default)]
struct Part {
    listeners: Vec<Arc<Resource>>,
    route_tables: Vec<Arc<Resource>>,
    clusters: Vec<Arc<Resource>>,
}

fn encode_error(e: serde_json::Error) -> String {
    format!("cannot encode config: {e}")
}

/// The resources of a config's lists, encoded, each the allocation already held for an
/// equal resource where there is one. Encoding happens outside the lock.
fn encode_part(
    encodings: &Mutex<Encodings>,
    listeners: Vec<Listener>,
    route_tables: Vec<RouteTable>,
    clusters: Vec<Cluster>,
) -> Result<Part, String> {
    let listeners = encode_all(ResourceType::Listener, &listeners, |l| &l.name)?;
    let route_tables = encode_all(ResourceType::RouteTable, &route_tables, |t| &t.name)?;
    let clusters = encode_all(ResourceType::Cluster, &clusters, |c| &c.name)?;
    let mut e = encodings.lock().unwrap_or_else(PoisonError::into_inner);
    Ok(Part {
        listeners: listeners.into_iter().map(|r| e.intern(r)).collect(),
        route_tables: route_tables.into_iter().map(|r| e.intern(r)).collect(),
        clusters: clusters.into_iter().map(|r| e.intern(r)).collect(),
    })
}

fn encode_all<T: serde::Serialize>(
    kind: ResourceType,
    values: &[T],
    name: fn(&T) -> &str,
) -> Result<Vec<Resource>, String> {
    values
        .iter()
        .map(|v| Resource::encode(kind, name(v), v).map_err(encode_error))
        .collect()
}

/// The outbound part of every sidecar with this key, encoded.
fn outbound_part(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    key: &OutboundKey,
    encodings: &Mutex<Encodings>,
) -> Result<Arc<Part>, String> {
    let cfg = weft_compile::compile_outbound(snapshot, index, key);
    encode_part(encodings, cfg.listeners, cfg.route_tables, cfg.clusters).map(Arc::new)
}

fn compile_one(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    target: &Target<'_>,
    outbound: Option<&Part>,
    generation: u64,
    encodings: &Mutex<Encodings>,
) -> Result<Compiled, String> {
    let config =
        weft_compile::compile_own(snapshot, index, target.instance).map_err(|e| e.to_string())?;
    let own = encode_part(
        encodings,
        config.listeners,
        config.route_tables,
        config.clusters,
    )?;
    // Laid together as `weft_compile::compile_unversioned` lays the typed parts.
    let merge = |outbound: Option<&Vec<Arc<Resource>>>, own: Vec<Arc<Resource>>, dedup: bool| {
        weft_compile::merge_by_name(outbound.cloned().unwrap_or_default(), own, dedup, name)
    };
    let listeners = merge(outbound.map(|o| &o.listeners), own.listeners, false);
    let route_tables = merge(outbound.map(|o| &o.route_tables), own.route_tables, true);
    let clusters = merge(outbound.map(|o| &o.clusters), own.clusters, true);
    let resources: Vec<Arc<Resource>> = listeners
        .into_iter()
        .chain(route_tables)
        .chain(clusters)
        .collect();
    let items: Vec<(List, &[u8])> = resources
        .iter()
        .map(|r| (list_of(r), r.body.as_ref()))
        .collect();
    // The same node and first resources as its latest config: hash on from there.
    let resume = target.latest.filter(|l| l.node == config.node).map(|l| {
        let same = l
            .resources
            .iter()
            .zip(&resources)
            .take_while(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        (&l.trail, same)
    });
    let (version, trail) = weft_compile::version_with_trail(&config.node, &items, resume);
    Ok(Compiled {
        node: config.node,
        version,
        generation,
        resources,
        trail,
    })
}

fn list_of(r: &Resource) -> List {
    match r
        .key
        .as_ref()
        .and_then(|k| ResourceType::try_from(k.r#type).ok())
    {
        Some(ResourceType::Listener) => List::Listeners,
        Some(ResourceType::RouteTable) => List::RouteTables,
        _ => List::Clusters,
    }
}

fn name(r: &Arc<Resource>) -> &str {
    r.key.as_ref().map_or("", |k| k.name.as_str())
}

/// Encoded resources shared between proxies and rounds, by type, name and version (the
/// hash of the body; equal bodies are checked, so a hash collision cannot mix two
/// resources up). Equal resources of 2,000 proxies end up as one allocation.
#[derive(Default)]
struct Encodings {
    interned: HashMap<(i32, String, String), Vec<Arc<Resource>>>,
}

impl Encodings {
    /// The allocation held for a resource equal to `r`, or `r` now held.
    fn intern(&mut self, r: Resource) -> Arc<Resource> {
        let key = (
            r.key.as_ref().map_or(0, |k| k.r#type),
            r.key.as_ref().map(|k| k.name.clone()).unwrap_or_default(),
            r.version.clone(),
        );
        let held = self.interned.entry(key).or_default();
        if let Some(same) = held.iter().find(|h| h.body == r.body) {
            return same.clone();
        }
        let r = Arc::new(r);
        held.push(r.clone());
        r
    }

    /// Forget the encodings no proxy holds any more.
    fn prune(&mut self) {
        self.interned.retain(|_, held| {
            held.retain(|r| Arc::strong_count(r) > 1);
            !held.is_empty()
        });
    }
}

/// Hand each proxy its config and wake its session.
fn deliver(shared: &Shared, outputs: Vec<Output>) {
    let mut st = shared.state();
    for o in outputs {
        let Some(p) = st.proxies.get_mut(&o.id).filter(|p| p.session == o.session) else {
            continue;
        };
        p.compiles += 1;
        match o.result {
            Ok(c) => {
                p.compiled = Some(Arc::new(c));
                p.wake.notify_one();
            }
            Err(e) => {
                warn!(proxy = %o.id, error = %e, "cannot compile the proxy's config");
                p.last_error = Some(e);
            }
        }
    }
    drop(st);
    shared.notify_status();
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use weft_compile::Registry;
    use weft_config::{Bundle, Object, Severity};

    use super::*;

    /// Every proxy of `registry`, compiled as a round compiles it (outbound parts and
    /// encodings shared, versions resumed from `latest`), decodes to exactly the config
    /// `weft_compile::compile` gives it, version included. Returns the configs by id.
    fn round_like(
        case: &str,
        objects: &[Object],
        registry: &Registry,
        encodings: &Mutex<Encodings>,
        latest: &HashMap<String, Compiled>,
    ) -> HashMap<String, Compiled> {
        let snapshot = Snapshot::new(objects);
        let index = snapshot.service_index(registry);
        let ids: Vec<(String, &WorkloadInstance)> = registry
            .instances
            .iter()
            .filter(|i| i.proxy.is_some())
            .map(|i| (i.proxy_id(), i))
            .collect();
        let targets: Vec<Target<'_>> = ids
            .iter()
            .map(|(id, instance)| Target {
                id,
                instance,
                session: 0,
                latest: latest.get(id),
            })
            .collect();
        let (outputs, _) = compile_all(&snapshot, &index, &targets, 1, encodings);
        let mut out = HashMap::new();
        for Output { id, result, .. } in outputs {
            let compiled = result.unwrap_or_else(|e| panic!("{case} {id}: {e}"));
            let plain = weft_compile::compile(&snapshot, registry, &id)
                .unwrap_or_else(|e| panic!("{case} {id}: {e}"));
            let shared = compiled.config().expect("encoded resources decode");
            assert_eq!(shared, plain, "{case}: {id}");
            assert_eq!(compiled.version, plain.version, "{case}: {id}");
            out.insert(id, compiled);
        }
        out
    }

    /// [`round_like`] twice: the second pass takes every resource from the encodings of
    /// the first and resumes every version from it. Returns how many proxies were checked.
    fn same_as_compile(case: &str, objects: &[Object], registry: &Registry) -> usize {
        let encodings = Mutex::new(Encodings::default());
        let first = round_like(case, objects, registry, &encodings, &HashMap::new());
        let second = round_like(case, objects, registry, &encodings, &first);
        first.len() + second.len()
    }

    /// After an endpoint moves, versions resumed from each proxy's previous config are the
    /// versions of its whole config.
    #[test]
    fn versions_resumed_after_a_change_are_the_whole_configs_versions() {
        let objects = load("selected", Bundle::load_str("selected.yaml", SELECTED));
        let mut registry = weft_compile::parse_registry("registry.yaml", SELECTED_REGISTRY)
            .unwrap_or_else(|d| panic!("{}", d.message));
        let encodings = Mutex::new(Encodings::default());
        let mut latest = round_like("before", &objects, &registry, &encodings, &HashMap::new());
        for (n, address) in ["10.0.9.1", "10.0.9.2"].into_iter().enumerate() {
            let db = registry
                .instances
                .iter_mut()
                .find(|i| i.name == "api-0")
                .expect("api-0");
            db.address = address.parse().expect("an address");
            let next = round_like("moved", &objects, &registry, &encodings, &latest);
            for (id, c) in &next {
                assert_ne!(c.version, latest[id].version, "move {n}: {id}");
            }
            latest = next;
        }
    }

    fn load(case: &str, bundle: Bundle) -> Vec<Object> {
        let errors: Vec<&str> = bundle
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.message.as_str())
            .collect();
        assert!(errors.is_empty(), "{case}: {errors:?}");
        bundle.objects
    }

    #[test]
    fn shared_encodings_give_every_golden_proxy_its_plain_config() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../weft-compile/tests/golden");
        let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
            .expect("the golden cases of weft-compile")
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.join("registry.yaml").exists())
            .collect();
        cases.sort();
        assert!(cases.len() >= 10, "golden cases: {cases:?}");
        let mut checked = 0;
        for dir in cases {
            let case = dir.display().to_string();
            let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
                .expect("a case folder")
                .filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    name.ends_with(".yaml") && name != "registry.yaml" && name != "expected.yaml"
                })
                .collect();
            files.sort();
            let objects = load(&case, Bundle::load_paths(&files));
            let registry = weft_compile::load_registry(&dir.join("registry.yaml"))
                .unwrap_or_else(|d| panic!("{case}: {}", d.message));
            checked += same_as_compile(&case, &objects, &registry);
        }
        assert!(checked > 20, "only {checked} proxies checked");
    }

    /// Sidecars and DestinationRules that select some workloads of a namespace by label:
    /// proxies of one namespace then get different values under the same resource names.
    const SELECTED: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: b}
spec: {selector: {app: api}, ports: [{name: http, port: 9090}, {name: grpc, port: 9091}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: c}
spec: {selector: {app: db}, ports: [{name: tcp, port: 5432}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api-canary-clients, namespace: a}
spec:
  host: api.b.svc.cluster.local
  workloadSelector: {matchLabels: {track: canary}}
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}, connectionPool: {tcp: {maxConnections: 7}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: b}
spec:
  host: api
  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3, interval: 5s}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: b}
spec:
  hosts: [api]
  http:
  - match: [{sourceLabels: {track: canary}}]
    route: [{destination: {host: api, subset: v2}}]
  - route: [{destination: {host: api, subset: v1}, weight: 80}, {destination: {host: api, subset: v2}, weight: 20}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec:
  egress: [{hosts: ['./*', 'b/*']}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: canary, namespace: a}
spec:
  workloadSelector: {labels: {track: canary}}
  egress: [{hosts: ['b/*', 'c/*']}]
";

    const SELECTED_REGISTRY: &str = "\
instances:
- {name: web-0, namespace: a, labels: {app: web}, address: 10.0.0.1, proxy: {capture: transparent}}
- {name: web-1, namespace: a, labels: {app: web}, address: 10.0.0.2, proxy: {capture: transparent}}
- {name: web-2, namespace: a, labels: {app: web, track: canary}, address: 10.0.0.3, proxy: {capture: transparent}}
- {name: api-0, namespace: b, labels: {app: api, version: v1}, address: 10.0.1.1, proxy: {capture: transparent}}
- {name: api-1, namespace: b, labels: {app: api, version: v2, track: canary}, address: 10.0.1.2, proxy: {capture: transparent}}
- {name: db-0, namespace: c, labels: {app: db}, address: 10.0.2.1}
";

    #[test]
    fn shared_encodings_keep_label_selected_config_apart() {
        let objects = load("selected", Bundle::load_str("selected.yaml", SELECTED));
        let registry = weft_compile::parse_registry("registry.yaml", SELECTED_REGISTRY)
            .unwrap_or_else(|d| panic!("{}", d.message));
        assert_eq!(same_as_compile("selected", &objects, &registry), 10);
        // The canary client of `a` really sees other config than its neighbours.
        let snapshot = Snapshot::new(&objects);
        let compile = |id: &str| weft_compile::compile(&snapshot, &registry, id).expect("compiles");
        assert_ne!(compile("web-0.a").clusters, compile("web-2.a").clusters);
        assert_eq!(compile("web-0.a").clusters, compile("web-1.a").clusters);
    }

    /// Proxies of one namespace whose labels differ only where no selector looks share
    /// one outbound part, compiled once and held once; a label some selector reads
    /// (`track`: a DestinationRule's and a Sidecar's workloadSelector, a VirtualService's
    /// sourceLabels) gets its own.
    #[test]
    fn proxies_with_the_same_scope_share_one_compiled_outbound_part() {
        const REGISTRY: &str = "\
instances:
- {name: web-0, namespace: a, labels: {app: web}, address: 10.0.0.1, proxy: {capture: transparent}}
- {name: web-1, namespace: a, labels: {app: web-frontend, version: v9}, address: 10.0.0.2, proxy: {capture: transparent}}
- {name: web-2, namespace: a, labels: {app: web, track: canary}, address: 10.0.0.3, proxy: {capture: transparent}}
- {name: api-0, namespace: b, labels: {app: api, version: v1}, address: 10.0.1.1, proxy: {capture: transparent}}
";
        let objects = load("selected", Bundle::load_str("selected.yaml", SELECTED));
        let registry = weft_compile::parse_registry("registry.yaml", REGISTRY)
            .unwrap_or_else(|d| panic!("{}", d.message));
        assert_eq!(same_as_compile("scoped", &objects, &registry), 8);
        let snapshot = Snapshot::new(&objects);
        let mesh = &snapshot.mesh;
        let index = ServiceIndex::build(
            &objects,
            &registry,
            &mesh.default_service_export_to(),
            mesh.trust_domain(),
        );
        let ids: Vec<String> = registry.instances.iter().map(|i| i.proxy_id()).collect();
        let targets: Vec<Target<'_>> = ids
            .iter()
            .zip(&registry.instances)
            .map(|(id, instance)| Target {
                id,
                instance,
                session: 0,
                latest: None,
            })
            .collect();
        let encodings = Mutex::new(Encodings::default());
        let (outputs, parts) = compile_all(&snapshot, &index, &targets, 1, &encodings);
        assert_eq!(parts, 3, "a, a with track=canary, b");
        let compiled: HashMap<String, Compiled> = outputs
            .into_iter()
            .map(|o| (o.id, o.result.expect("compiles")))
            .collect();
        let resource = |id: &str, key: &str| -> Arc<Resource> {
            compiled[id]
                .resources
                .iter()
                .find(|r| r.key.as_ref().map(|k| k.display()).as_deref() == Some(key))
                .unwrap_or_else(|| panic!("{id} has no {key}"))
                .clone()
        };
        let table = "route_table/outbound|9090";
        assert!(Arc::ptr_eq(
            &resource("web-0.a", table),
            &resource("web-1.a", table)
        ));
        assert!(Arc::ptr_eq(
            &resource("web-0.a", "listener/outbound"),
            &resource("web-1.a", "listener/outbound")
        ));
        // The canary's outbound differs (its DestinationRule and routes), its own part too.
        let api = "cluster/outbound|9090||api.b.svc.cluster.local";
        assert_ne!(resource("web-0.a", api).body, resource("web-2.a", api).body);
        assert_ne!(
            resource("web-0.a", "listener/inbound").body,
            resource("web-1.a", "listener/inbound").body
        );
    }
}
