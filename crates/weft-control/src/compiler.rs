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

use serde::Serialize;
use tracing::{debug, warn};
use weft_api::pb::{Resource, ResourceType};
use weft_api::{Cluster, Listener, RouteTable};
use weft_compile::{ServiceIndex, Snapshot, WorkloadInstance};

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
                let sessions: Vec<(String, u64)> = st
                    .proxies
                    .values()
                    .map(|p| (p.id.clone(), p.session))
                    .collect();
                Some((change, st.inputs(), sessions))
            } else {
                None
            }
        };
        if let Some((change, inputs, sessions)) = work {
            let Some(mem) = memory.take() else { return };
            let job = tokio::task::spawn_blocking(move || {
                let mut mem = mem;
                let out = round(&change, &inputs, &sessions, &mut mem);
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
    sessions: &[(String, u64)],
    mem: &mut Memory,
) -> Vec<Output> {
    let started = Instant::now();
    let snapshot = Snapshot::new(&inputs.objects);
    let mesh = &snapshot.mesh;
    let index = ServiceIndex::build(
        &inputs.objects,
        &inputs.registry,
        &mesh.default_service_export_to(),
        mesh.trust_domain(),
    );
    let by_id: HashMap<String, &WorkloadInstance> = inputs
        .registry
        .instances
        .iter()
        .map(|i| (i.proxy_id(), i))
        .collect();
    let connected: Vec<(Proxy<'_>, u64)> = sessions
        .iter()
        .filter_map(|(id, session)| {
            let instance = by_id.get(id)?;
            Some((Proxy { id, instance }, *session))
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
    let targets: Vec<(&str, &WorkloadInstance, u64)> = connected
        .iter()
        .filter(|(p, _)| match &affected {
            Affected::All => true,
            Affected::Some(ids) => ids.contains(p.id),
        })
        .map(|(p, session)| (p.id, p.instance, *session))
        .collect();
    let analysed = started.elapsed();
    let encodings = Mutex::new(std::mem::take(&mut mem.encodings));
    let outputs = compile_all(&snapshot, &index, &targets, inputs.generation, &encodings);
    mem.encodings = encodings
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    mem.encodings.prune();
    mem.index = Some(index);
    debug!(
        generation = inputs.generation,
        connected = connected.len(),
        compiled = targets.len(),
        analysed_ms = analysed.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "compile round"
    );
    outputs
}

/// Compile `targets` on every core, sharing the snapshot, the index and the encodings.
/// Each proxy's resources are shared as soon as they are compiled, so a round never holds
/// more than a few proxies' private copies (holding them all until the round ended made
/// the peak, and with it the RSS the allocator keeps, grow with proxies x config size).
fn compile_all(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    targets: &[(&str, &WorkloadInstance, u64)],
    generation: u64,
    encodings: &Mutex<Encodings>,
) -> Vec<Output> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(targets.len().max(1));
    let chunk = targets.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(id, instance, session)| Output {
                            id: id.to_string(),
                            session: *session,
                            result: compile_one(snapshot, index, instance, generation, encodings),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            // A compiler panic fails the round (its caller recompiles everyone next time).
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn compile_one(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    instance: &WorkloadInstance,
    generation: u64,
    encodings: &Mutex<Encodings>,
) -> Result<Compiled, String> {
    let config =
        weft_compile::compile_unversioned(snapshot, index, instance).map_err(|e| e.to_string())?;
    let encode = |e: serde_json::Error| format!("cannot encode config: {e}");
    let listeners = share(
        encodings,
        |e| &mut e.listeners,
        ResourceType::Listener,
        |l| &l.name,
        config.listeners,
    )
    .map_err(encode)?;
    let route_tables = share(
        encodings,
        |e| &mut e.route_tables,
        ResourceType::RouteTable,
        |t| &t.name,
        config.route_tables,
    )
    .map_err(encode)?;
    let clusters = share(
        encodings,
        |e| &mut e.clusters,
        ResourceType::Cluster,
        |c| &c.name,
        config.clusters,
    )
    .map_err(encode)?;
    let version = weft_compile::version_from_encoded(
        &config.node,
        listeners.iter().map(body),
        route_tables.iter().map(body),
        clusters.iter().map(body),
    );
    Ok(Compiled {
        node: config.node,
        version,
        generation,
        resources: listeners
            .into_iter()
            .chain(route_tables)
            .chain(clusters)
            .collect(),
    })
}

fn body(r: &Arc<Resource>) -> &[u8] {
    &r.body
}

/// The distinct values compiled under each resource name, with their encoding.
type Table<T> = HashMap<String, Vec<(T, Arc<Resource>)>>;

/// Encoded resources shared between proxies and rounds. Comparing a compiled resource
/// with the few values already seen under its name is much cheaper than serialising and
/// hashing it, and equal resources end up as one allocation however many proxies hold
/// them.
#[derive(Default)]
struct Encodings {
    listeners: Table<Listener>,
    route_tables: Table<RouteTable>,
    clusters: Table<Cluster>,
}

impl Encodings {
    /// Forget the encodings no proxy holds any more.
    fn prune(&mut self) {
        fn prune<T>(table: &mut Table<T>) {
            table.retain(|_, values| {
                values.retain(|(_, r)| Arc::strong_count(r) > 1);
                !values.is_empty()
            });
        }
        prune(&mut self.listeners);
        prune(&mut self.route_tables);
        prune(&mut self.clusters);
    }
}

fn lookup<T: PartialEq>(table: &Table<T>, name: &str, value: &T) -> Option<Arc<Resource>> {
    table
        .get(name)?
        .iter()
        .find(|(v, _)| v == value)
        .map(|(_, r)| r.clone())
}

/// The encodings of `values`: shared ones where an equal value was encoded before, new
/// ones (encoded outside the lock, then shared) for the rest.
fn share<T: PartialEq + Serialize>(
    encodings: &Mutex<Encodings>,
    table: fn(&mut Encodings) -> &mut Table<T>,
    kind: ResourceType,
    name: fn(&T) -> &str,
    values: Vec<T>,
) -> Result<Vec<Arc<Resource>>, serde_json::Error> {
    let lock = || encodings.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out: Vec<Option<Arc<Resource>>> = {
        let mut e = lock();
        let t = table(&mut e);
        values.iter().map(|v| lookup(t, name(v), v)).collect()
    };
    let mut fresh = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        if out[i].is_none() {
            let r = Arc::new(Resource::encode(kind, name(&v), &v)?);
            fresh.push((i, v, r));
        }
    }
    if !fresh.is_empty() {
        let mut e = lock();
        let t = table(&mut e);
        for (i, v, r) in fresh {
            // Another thread may have shared an equal value meanwhile.
            let r = match lookup(t, name(&v), &v) {
                Some(shared) => shared,
                None => {
                    t.entry(name(&v).to_string())
                        .or_default()
                        .push((v, r.clone()));
                    r
                }
            };
            out[i] = Some(r);
        }
    }
    Ok(out.into_iter().flatten().collect())
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

    /// Every proxy of `registry`, compiled as a round compiles it (encodings shared between
    /// proxies, version from the encodings), decodes to exactly the config
    /// `weft_compile::compile` gives it. Returns how many proxies were checked.
    fn same_as_compile(case: &str, objects: &[Object], registry: &Registry) -> usize {
        let snapshot = Snapshot::new(objects);
        let mesh = &snapshot.mesh;
        let index = ServiceIndex::build(
            objects,
            registry,
            &mesh.default_service_export_to(),
            mesh.trust_domain(),
        );
        let encodings = Mutex::new(Encodings::default());
        let mut checked = 0;
        // The second pass takes every resource from the encodings of the first.
        for _ in 0..2 {
            for instance in registry.instances.iter().filter(|i| i.proxy.is_some()) {
                let id = instance.proxy_id();
                let compiled = compile_one(&snapshot, &index, instance, 1, &encodings)
                    .unwrap_or_else(|e| panic!("{case} {id}: {e}"));
                let plain = weft_compile::compile(&snapshot, registry, &id)
                    .unwrap_or_else(|e| panic!("{case} {id}: {e}"));
                let shared = compiled.config().expect("encoded resources decode");
                assert_eq!(shared, plain, "{case}: {id}");
                assert_eq!(compiled.version, plain.version, "{case}: {id}");
                checked += 1;
            }
        }
        checked
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
}
