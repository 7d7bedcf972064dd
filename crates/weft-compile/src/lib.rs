//! weft-compile: `compile(snapshot, registry, proxy id) -> ProxyConfig`.
//!
//! Every Istio, Gateway API and Linkerd traffic rule is implemented here, once: short-name
//! resolution, exportTo and Sidecar scoping, DestinationRule lookup and merging, route
//! order, defaults. The function is pure and deterministic (same input, byte-identical
//! output), does no I/O and never panics on valid config; what the proxy receives needs no
//! further interpretation.

// `load_registry` / `parse_registry` return weft-config's whole Diagnostic (message, hint,
// span), built on the cold path only; boxing it would add noise for no gain.
#![allow(clippy::result_large_err)]

mod context;
mod delegate;
mod destination;
mod gateway;
mod gateway_api;
mod http_route;
mod inbound;
mod input;
mod linkerd;
mod listeners;
mod order;
mod parts;
mod peer_auth;
mod ratelimit;
mod registry;
mod retry;
mod routes;
mod scope;
mod telemetry;
mod tunnel;
mod version;

pub use gateway_api::gateway::GATEWAY_NAME_LABEL;
pub use input::{
    DEFAULT_TUNNEL_PORT, InboundPort, ProxySettings, Registry, TcpUpstream, WorkloadInstance,
};
pub use parts::{OutboundKey, compile_outbound, merge_by_name};
pub use registry::{Protocol, Service, ServiceIndex};
pub use routes::{HostPort, HostRoutes, HttpRoutes, TcpTarget};
pub use version::{List, VersionTrail, version_from_encoded, version_of, version_with_trail};

/// The scoping rules a control plane needs to tell which proxies a change may affect, so
/// that it asks the compiler instead of restating Istio's rules.
pub mod deps {
    pub use crate::registry::{CLUSTER_DOMAIN, hosts_overlap, resolve_host};
    pub use crate::scope::{exported_to, sidecar_may_import};
}

use weft_api::{
    Cluster, ConnectionLimits, Discovery, LbPolicy, Node, NodeKind, ProxyConfig, RouteAction,
    UpstreamProtocol, UpstreamTls,
};
use weft_config::Object;
use weft_config::kinds::istio::MeshConfig;

/// The configuration a proxy's config is compiled from, with the lookups every proxy's
/// compilation needs built once: conflicts are resolved by age in many places, and
/// sorting the objects per proxy and per pass was most of a proxy's compile time.
pub struct Snapshot<'a> {
    pub objects: &'a [Object],
    pub mesh: MeshConfig,
    /// The objects oldest first ([`order::by_age`]).
    aged: Vec<&'a Object>,
    rules: destination::RuleIndex<'a>,
    peers: peer_auth::PeerPolicies<'a>,
    /// The label keys selectors of sidecars read ([`OutboundKey`]).
    selector_keys: std::collections::BTreeSet<String>,
    /// The control plane's own trace collector (for the local dashboard), used when
    /// tracing is on but no provider is configured anywhere.
    pub builtin_trace_collector: Option<weft_api::TraceProvider>,
}

impl<'a> Snapshot<'a> {
    /// A snapshot whose mesh config comes from the objects (an `istio` ConfigMap or an
    /// IstioOperator) or Istio's defaults.
    pub fn new(objects: &'a [Object]) -> Snapshot<'a> {
        let mesh = MeshConfig::from_objects(objects);
        let aged = order::by_age(objects);
        let rules = destination::RuleIndex::from_aged(&aged, &mesh);
        let peers = peer_auth::PeerPolicies::from_aged(&aged, &mesh);
        Snapshot {
            objects,
            mesh,
            aged,
            rules,
            peers,
            selector_keys: parts::proxy_selector_keys(objects),
            builtin_trace_collector: None,
        }
    }

    /// Sets [`Snapshot::builtin_trace_collector`].
    pub fn with_builtin_trace_collector(
        mut self,
        collector: Option<weft_api::TraceProvider>,
    ) -> Snapshot<'a> {
        self.builtin_trace_collector = collector;
        self
    }

    /// The service index of these objects and `registry` (as [`ServiceIndex::build`] with
    /// the mesh config's export default and trust domain), reusing the snapshot's order.
    pub fn service_index(&self, registry: &Registry) -> ServiceIndex {
        ServiceIndex::build_aged(
            &self.aged,
            registry,
            &self.mesh.default_service_export_to(),
            self.mesh.trust_domain(),
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("no workload instance `{id}` in the registry (known: {known}); check --id")]
    UnknownProxy { id: String, known: String },
    #[error("workload instance `{id}` runs no proxy (its registry entry has no `proxy` settings)")]
    NoProxy { id: String },
}

/// Compile the config of one proxy, identified by its workload instance's
/// [`WorkloadInstance::proxy_id`] (`name.namespace`).
///
/// Config that cannot apply (a destination that does not exist, an unsupported EnvoyFilter,
/// a VirtualService losing a host conflict) is skipped: reporting it is `analyze`'s job.
pub fn compile(
    snapshot: &Snapshot<'_>,
    registry: &Registry,
    proxy_id: &str,
) -> Result<ProxyConfig, CompileError> {
    let Some(instance) = registry.instances.iter().find(|i| i.proxy_id() == proxy_id) else {
        let mut known: Vec<String> = registry
            .instances
            .iter()
            .map(WorkloadInstance::proxy_id)
            .collect();
        known.sort();
        return Err(CompileError::UnknownProxy {
            id: proxy_id.to_string(),
            known: known.join(", "),
        });
    };
    let mesh = &snapshot.mesh;
    let index = ServiceIndex::build(
        snapshot.objects,
        registry,
        &mesh.default_service_export_to(),
        mesh.trust_domain(),
    );
    compile_with_index(snapshot, &index, instance)
}

/// [`compile`] for one registry instance with the service index already built (from the
/// same snapshot and registry): the control plane builds the index once per change and
/// compiles many proxies from it.
pub fn compile_with_index(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    instance: &WorkloadInstance,
) -> Result<ProxyConfig, CompileError> {
    let mut cfg = compile_unversioned(snapshot, index, instance)?;
    cfg.version = version_of(&cfg);
    Ok(cfg)
}

/// [`compile_with_index`] leaving `version` empty, for a caller that encodes every resource
/// anyway and derives the version from the encodings ([`version_from_encoded`]) rather
/// than serialising the whole config a second time.
///
/// A sidecar's config is its own part ([`compile_own`]) with its outbound part
/// ([`compile_outbound`] for its [`Snapshot::outbound_key`]) laid over it; a control plane
/// compiles the outbound part once per key.
pub fn compile_unversioned(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    instance: &WorkloadInstance,
) -> Result<ProxyConfig, CompileError> {
    let mut cfg = compile_own(snapshot, index, instance)?;
    if let Some(key) = snapshot.outbound_key(instance) {
        parts::merge(&mut cfg, compile_outbound(snapshot, index, &key));
    }
    Ok(cfg)
}

/// A proxy's own part, unversioned: its node, inbound listeners, clusters and route
/// tables and its mesh tunnel, sorted by name. A gateway has no outbound part
/// ([`Snapshot::outbound_key`] is None): this is its whole config.
pub fn compile_own(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    instance: &WorkloadInstance,
) -> Result<ProxyConfig, CompileError> {
    let proxy_id = instance.proxy_id();
    let proxy_id = proxy_id.as_str();
    let Some(proxy) = &instance.proxy else {
        return Err(CompileError::NoProxy {
            id: proxy_id.to_string(),
        });
    };
    let mesh = &snapshot.mesh;
    let is_gateway = matches!(proxy, ProxySettings::Gateway { .. });
    let ctx = if is_gateway {
        context::Ctx::new(snapshot, index, instance, is_gateway)
    } else {
        context::Ctx::for_own_part(snapshot, index, instance)
    };
    let mut cfg = ProxyConfig {
        version: String::new(),
        node: Node {
            id: proxy_id.to_string(),
            namespace: instance.namespace.clone(),
            workload: if instance.workload.is_empty() {
                instance.name.clone()
            } else {
                instance.workload.clone()
            },
            labels: instance.labels.clone(),
            service_account: instance.service_account.clone(),
            trust_domain: mesh.trust_domain().to_string(),
            kind: if is_gateway {
                NodeKind::Gateway
            } else {
                NodeKind::Sidecar
            },
            cluster_id: telemetry::cluster_id(mesh),
            telemetry: telemetry::compile(snapshot, instance),
        },
        ..Default::default()
    };
    // A sidecar's outbound listeners, route tables and clusters are its outbound part.
    match proxy {
        ProxySettings::Transparent {
            inbound, tunnel, ..
        } => {
            listeners::transparent_inbound(&ctx, *inbound, &mut cfg);
            tunnel::transparent(proxy_id, *tunnel, &mut cfg);
        }
        ProxySettings::Explicit {
            inbound, tunnel, ..
        } => {
            listeners::explicit_inbound(&ctx, inbound, &mut cfg);
            if let Some(tunnel) = tunnel {
                tunnel::explicit(proxy_id, *tunnel, inbound, &mut cfg);
            }
        }
        ProxySettings::Gateway { ports } => {
            outbound_clusters(&ctx, &mut cfg);
            gateway::build(&ctx, ports, &mut cfg);
            gateway_api::gateway::build(&ctx, ports, &mut cfg);
        }
    }
    gateway_api::grpc_upstreams(&mut cfg);
    ratelimit::apply(&ctx, &mut cfg);
    finish(&mut cfg);
    Ok(cfg)
}

/// A cluster per visible service port, one per DestinationRule subset too, plus the
/// passthrough and blackhole clusters.
fn outbound_clusters(ctx: &context::Ctx, cfg: &mut ProxyConfig) {
    for svc in &ctx.services {
        let rule = ctx.rule_for(svc);
        for port in &svc.ports {
            cfg.clusters.push(destination::build_cluster(
                svc,
                port.number,
                None,
                rule.as_ref(),
                ctx.mesh,
                ctx.peers,
            ));
            for subset in rule.iter().flat_map(|r| r.subsets.iter()) {
                cfg.clusters.push(destination::build_cluster(
                    svc,
                    port.number,
                    Some(subset),
                    rule.as_ref(),
                    ctx.mesh,
                    ctx.peers,
                ));
            }
        }
    }
    let special = |name: &str, discovery: Discovery| Cluster {
        name: name.to_string(),
        service: None,
        policy_origin: None,
        discovery,
        endpoints: Vec::new(),
        lb: LbPolicy::LeastRequest,
        connect_timeout: ctx.mesh.connect_timeout(),
        limits: ConnectionLimits::default(),
        max_requests_per_connection: 0,
        idle_timeout: Some(std::time::Duration::from_secs(3600)),
        tcp_keepalive: None,
        outlier_detection: None,
        protocol: UpstreamProtocol::SameAsDownstream,
        tls: UpstreamTls::Disabled,
    };
    cfg.clusters.push(special(
        listeners::PASSTHROUGH_CLUSTER,
        Discovery::OriginalDestination,
    ));
    cfg.clusters
        .push(special(listeners::BLACKHOLE_CLUSTER, Discovery::Blackhole));
}

/// Cross-cutting fix-ups and deterministic order.
fn finish(cfg: &mut ProxyConfig) {
    // Retrying on another host defeats consistent hashing: Istio drops the
    // previous-hosts predicate when a destination hashes.
    let hashing: std::collections::BTreeSet<String> = cfg
        .clusters
        .iter()
        .filter(|c| matches!(c.lb, LbPolicy::RingHash { .. } | LbPolicy::Maglev { .. }))
        .map(|c| c.name.clone())
        .collect();
    for table in &mut cfg.route_tables {
        for vh in &mut table.virtual_hosts {
            for r in &mut vh.routes {
                if let RouteAction::Forward(f) = &mut r.action
                    && f.clusters.iter().any(|c| hashing.contains(&c.cluster))
                    && let Some(retry) = &mut f.retry
                {
                    retry.other_host = false;
                }
            }
        }
    }
    cfg.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    cfg.route_tables.sort_by(|a, b| a.name.cmp(&b.name));
    cfg.route_tables.dedup_by(|a, b| a.name == b.name);
    cfg.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    cfg.clusters.dedup_by(|a, b| a.name == b.name);
}

/// Read a registry file (YAML or JSON), reporting errors at file:line:col.
pub fn load_registry(path: &std::path::Path) -> Result<Registry, weft_config::Diagnostic> {
    use weft_config::diag::codes;
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        weft_config::Diagnostic::error(
            codes::UNREADABLE,
            format!("cannot read registry {name}: {e}"),
        )
    })?;
    parse_registry(&name, &text)
}

/// Parse registry YAML text.
pub fn parse_registry(name: &str, text: &str) -> Result<Registry, weft_config::Diagnostic> {
    use weft_config::diag::codes;
    let file = std::sync::Arc::new(weft_config::source::SourceFile {
        name: name.to_string(),
        text: text.to_string(),
    });
    let docs = weft_config::yaml::parse_documents(&file)
        .map_err(|e| weft_config::Diagnostic::error(codes::SYNTAX, e.message).with_span(e.span))?;
    let Some(doc) = docs.first() else {
        return Ok(Registry::default());
    };
    weft_config::de::from_node(doc, &weft_config::FieldPath::root()).map_err(|e| {
        let mut d = weft_config::Diagnostic::error(codes::SCHEMA, e.to_string());
        d.hint = e.hint;
        d.span = e.span;
        d
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_parses_with_positions() {
        let r = parse_registry(
            "r.yaml",
            "instances:\n- name: cart-0\n  namespace: shop\n  address: 127.0.0.3\n  labels: {app: cart}\n  proxy:\n    capture: explicit\n    outboundHttpProxy: 127.0.0.3:15001\n    inbound: [{port: 3002, bind: '127.0.0.3:3002', app: '127.0.0.3:13002'}]\n",
        )
        .unwrap();
        let i = &r.instances[0];
        assert_eq!(i.proxy_id(), "cart-0.shop");
        assert_eq!(i.service_account, "default");
        assert!(
            matches!(&i.proxy, Some(ProxySettings::Explicit { inbound, .. }) if inbound[0].app.port() == 13002)
        );
        let e = parse_registry(
            "r.yaml",
            "instances:\n- name: a\n  namespace: n\n  adress: 1.2.3.4\n",
        )
        .unwrap_err();
        assert!(
            e.message.contains("unknown field `adress`"),
            "{}",
            e.message
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `address`?"));
        assert_eq!(e.span.unwrap().start.line, 4);
    }
}
