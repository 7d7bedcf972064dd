//! A sidecar's config in two parts, so that a control plane compiles the large part once
//! for many proxies.
//!
//! - The *outbound* part (clusters of the services it sees, the outbound route tables and
//!   listeners) depends only on the proxy's namespace, its outbound capture settings and
//!   the values of the few labels some selector asks about (Sidecar, DestinationRule and
//!   EnvoyFilter `workloadSelector`, VirtualService `sourceLabels`). [`OutboundKey`] is
//!   exactly that; [`compile_outbound`] compiles from the key alone, so every proxy with
//!   an equal key gets an equal outbound part by construction.
//! - The proxy's *own* part (its node, inbound listeners, clusters and route tables, its
//!   mesh tunnel) is compiled per proxy ([`crate::compile_own`]).
//!
//! [`crate::compile_unversioned`] is the merge of the two, so the golden tests check the
//! split as well as the rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use weft_api::ProxyConfig;
use weft_config::{Body, Object};

use crate::context::Ctx;
use crate::input::{ProxySettings, WorkloadInstance, default_inbound, default_tunnel};
use crate::registry::ServiceIndex;
use crate::{Snapshot, finish, gateway_api, listeners, outbound_clusters, ratelimit, routes};

/// What a sidecar's outbound part is compiled from: an instance reduced to its namespace,
/// the labels some selector reads and its outbound capture settings. Proxies with equal
/// keys have equal outbound parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutboundKey {
    /// Name, address, ports, service account and inbound settings left empty.
    instance: WorkloadInstance,
}

impl OutboundKey {
    pub fn namespace(&self) -> &str {
        &self.instance.namespace
    }
}

/// The label keys a selector that picks sidecars by their own labels reads: `labels_match`
/// only looks at the selector's keys, so a proxy's other labels cannot change its
/// outbound part.
pub(crate) fn proxy_selector_keys(objects: &[Object]) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut add = |labels: &BTreeMap<String, String>| keys.extend(labels.keys().cloned());
    for o in objects {
        match &o.body {
            Body::Sidecar(s) => {
                if let Some(w) = &s.workload_selector {
                    add(&w.labels);
                }
            }
            Body::DestinationRule(dr) => {
                if let Some(w) = &dr.workload_selector {
                    add(&w.match_labels);
                }
            }
            Body::EnvoyFilter(ef) => {
                if let Some(w) = &ef.workload_selector {
                    add(&w.labels);
                }
            }
            Body::VirtualService(vs) => {
                for m in vs.http.iter().flat_map(|h| h.r#match.iter()) {
                    add(&m.source_labels);
                }
                for m in vs.tls.iter().flat_map(|t| t.r#match.iter()) {
                    add(&m.source_labels);
                }
                for m in vs.tcp.iter().flat_map(|t| t.r#match.iter()) {
                    add(&m.source_labels);
                }
            }
            _ => {}
        }
    }
    keys
}

impl Snapshot<'_> {
    /// The key of a sidecar's outbound part; None for gateways (compiled whole) and
    /// instances without a proxy.
    pub fn outbound_key(&self, instance: &WorkloadInstance) -> Option<OutboundKey> {
        let proxy = match instance.proxy.as_ref()? {
            ProxySettings::Transparent { outbound, .. } => ProxySettings::Transparent {
                outbound: *outbound,
                inbound: default_inbound(),
                tunnel: default_tunnel(),
            },
            ProxySettings::Explicit {
                outbound_http_proxy,
                tcp_upstreams,
                ..
            } => ProxySettings::Explicit {
                outbound_http_proxy: *outbound_http_proxy,
                tcp_upstreams: tcp_upstreams.clone(),
                inbound: Vec::new(),
                tunnel: None,
            },
            ProxySettings::Gateway { .. } => return None,
        };
        let labels = instance
            .labels
            .iter()
            .filter(|(k, _)| self.selector_keys.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(OutboundKey {
            instance: WorkloadInstance {
                name: String::new(),
                namespace: instance.namespace.clone(),
                workload: String::new(),
                labels,
                service_account: String::new(),
                address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                ports: BTreeMap::new(),
                proxy: Some(proxy),
            },
        })
    }
}

/// The outbound part of every sidecar whose [`Snapshot::outbound_key`] is `key`: only
/// listeners, route tables and clusters are filled, each sorted by name.
pub fn compile_outbound(
    snapshot: &Snapshot<'_>,
    index: &ServiceIndex,
    key: &OutboundKey,
) -> ProxyConfig {
    let instance = &key.instance;
    let ctx = Ctx::new(snapshot, index, instance, false);
    let mut cfg = ProxyConfig::default();
    outbound_clusters(&ctx, &mut cfg);
    let routes = routes::sidecar_host_routes(&ctx);
    match &instance.proxy {
        Some(ProxySettings::Transparent { outbound, .. }) => {
            listeners::transparent_outbound(&ctx, &routes, *outbound, &mut cfg);
        }
        Some(ProxySettings::Explicit {
            outbound_http_proxy,
            tcp_upstreams,
            ..
        }) => {
            listeners::explicit_outbound(
                &ctx,
                &routes,
                *outbound_http_proxy,
                tcp_upstreams,
                &mut cfg,
            );
        }
        Some(ProxySettings::Gateway { .. }) | None => {}
    }
    // Each is confined to one side: gRPC upstreams are the clusters of this part's own
    // routes, rate limits apply per listener direction and route table side, and the
    // retry fix-up of `finish` pairs routes with the clusters they name (outbound routes
    // never name inbound clusters nor the reverse).
    gateway_api::grpc_upstreams(&mut cfg);
    ratelimit::apply(&ctx, &mut cfg);
    finish(&mut cfg);
    cfg
}

/// Lay an outbound part over a proxy's own part. The order is the one compiling the
/// proxy whole gives: by name, the outbound entry first where both parts have one name
/// (route tables and clusters keep only that one, as [`finish`] does).
pub fn merge(own: &mut ProxyConfig, outbound: ProxyConfig) {
    own.listeners = merge_by_name(
        outbound.listeners,
        std::mem::take(&mut own.listeners),
        false,
        |l| &l.name,
    );
    own.route_tables = merge_by_name(
        outbound.route_tables,
        std::mem::take(&mut own.route_tables),
        true,
        |t| &t.name,
    );
    own.clusters = merge_by_name(
        outbound.clusters,
        std::mem::take(&mut own.clusters),
        true,
        |c| &c.name,
    );
}

/// `outbound` then `own` (each sorted by name), sorted by name with a stable sort; with
/// `dedup`, the first of equal names only. What [`merge`] does per list, for a caller
/// holding the parts in another form (the control plane's encoded resources).
pub fn merge_by_name<T>(
    outbound: Vec<T>,
    own: Vec<T>,
    dedup: bool,
    name: impl Fn(&T) -> &str,
) -> Vec<T> {
    let sorted = |v: &[T]| v.is_sorted_by(|a, b| name(a) <= name(b));
    let mut all = if sorted(&outbound) && sorted(&own) {
        // One pass (a sidecar seeing 1,000 services merges 1,000s per proxy); on equal
        // names the outbound entry first, as the stable sort below would.
        let mut all = Vec::with_capacity(outbound.len() + own.len());
        let mut own = own.into_iter().peekable();
        for o in outbound {
            while let Some(x) = own.next_if(|x| name(x) < name(&o)) {
                all.push(x);
            }
            all.push(o);
        }
        all.extend(own);
        all
    } else {
        let mut all = outbound;
        all.extend(own);
        all.sort_by(|a, b| name(a).cmp(name(b)));
        all
    };
    if dedup {
        all.dedup_by(|a, b| name(a) == name(b));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: a}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: b}
spec: {selector: {app: api}, ports: [{name: http, port: 9090}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: a}
spec:
  workloadSelector: {labels: {role: narrow}}
  egress: [{hosts: ['./*']}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api-gold, namespace: a}
spec:
  host: api.b.svc.cluster.local
  workloadSelector: {matchLabels: {tier: gold}}
  trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: b}
spec:
  host: api
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: b}
spec:
  hosts: [api]
  http:
  - match: [{sourceLabels: {lane: fast}}]
    route: [{destination: {host: api, subset: v2}}]
  - route: [{destination: {host: api, subset: v1}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: limits, namespace: a}
spec:
  workloadSelector: {labels: {limited: 'yes'}}
  configPatches: []
";

    const REGISTRY: &str = "\
instances:
- {name: plain, namespace: a, labels: {app: web}, address: 10.0.0.1, proxy: {capture: transparent}}
- {name: other, namespace: a, labels: {app: web2, other: x}, address: 10.0.0.2, proxy: {capture: transparent}}
- {name: narrow, namespace: a, labels: {app: web, role: narrow}, address: 10.0.0.3, proxy: {capture: transparent}}
- {name: gold, namespace: a, labels: {app: web, tier: gold}, address: 10.0.0.4, proxy: {capture: transparent}}
- {name: fast, namespace: a, labels: {app: web, lane: fast}, address: 10.0.0.5, proxy: {capture: transparent}}
- {name: api-0, namespace: b, labels: {app: api, version: v1}, address: 10.0.1.1}
- {name: api-1, namespace: b, labels: {app: api, version: v2}, address: 10.0.1.2}
";

    #[test]
    fn merging_sorted_parts_is_the_stable_sort_of_both() {
        let sorted = |outbound: Vec<(&'static str, u8)>, own: Vec<(&'static str, u8)>, dedup| {
            let mut all = outbound.clone();
            all.extend(own.clone());
            all.sort_by(|a, b| a.0.cmp(b.0));
            if dedup {
                all.dedup_by(|a, b| a.0 == b.0);
            }
            (merge_by_name(outbound, own, dedup, |x| x.0), all)
        };
        let outbound = vec![("a", 0), ("c", 0), ("c", 1), ("e", 0)];
        let own = vec![("b", 2), ("c", 2), ("d", 2), ("f", 2)];
        for dedup in [false, true] {
            let (merged, expected) = sorted(outbound.clone(), own.clone(), dedup);
            assert_eq!(merged, expected);
            // Unsorted input takes the sort.
            let (merged, expected) = sorted(vec![("z", 0), ("a", 0)], own.clone(), dedup);
            assert_eq!(merged, expected);
        }
        assert_eq!(
            sorted(outbound.clone(), own.clone(), true).0,
            [("a", 0), ("b", 2), ("c", 0), ("d", 2), ("e", 0), ("f", 2)]
        );
    }

    /// The key of an instance without the projection: every label kept.
    fn unprojected(snapshot: &Snapshot<'_>, instance: &WorkloadInstance) -> OutboundKey {
        let mut key = snapshot.outbound_key(instance).expect("a sidecar");
        key.instance.labels = instance.labels.clone();
        key
    }

    #[test]
    fn outbound_key_keeps_exactly_the_labels_selectors_read() {
        let bundle = weft_config::Bundle::load_str("mesh.yaml", CONFIG);
        assert!(
            bundle
                .diagnostics
                .iter()
                .all(|d| d.severity != weft_config::Severity::Error),
            "{:?}",
            bundle.diagnostics
        );
        let registry = crate::parse_registry("registry.yaml", REGISTRY).expect("registry");
        let snapshot = Snapshot::new(&bundle.objects);
        let keys: Vec<&str> = snapshot.selector_keys.iter().map(String::as_str).collect();
        assert_eq!(keys, ["lane", "limited", "role", "tier"]);
        let index = snapshot.service_index(&registry);
        let instance = |name: &str| {
            registry
                .instances
                .iter()
                .find(|i| i.name == name)
                .expect("instance")
        };
        let key = |name: &str| snapshot.outbound_key(instance(name)).expect("a sidecar");
        let outbound = |key: &OutboundKey| compile_outbound(&snapshot, &index, key);
        // Labels no selector reads do not split proxies...
        assert_eq!(key("plain"), key("other"));
        assert_eq!(key("plain").instance.labels, BTreeMap::new());
        // ...and every proxy's outbound part is the one its full labels give.
        for name in ["plain", "other", "narrow", "gold", "fast"] {
            assert_eq!(
                outbound(&key(name)),
                outbound(&unprojected(&snapshot, instance(name))),
                "{name}"
            );
        }
        // A label a Sidecar, DestinationRule or VirtualService selects on does split them,
        // and changes what they get.
        for name in ["narrow", "gold", "fast"] {
            assert_ne!(key(name), key("plain"), "{name}");
            assert_ne!(outbound(&key(name)), outbound(&key("plain")), "{name}");
        }
        // Gateways have no outbound part of their own.
        let mut gateway = instance("plain").clone();
        gateway.proxy = Some(ProxySettings::Gateway {
            ports: BTreeMap::new(),
        });
        assert_eq!(snapshot.outbound_key(&gateway), None);
    }
}
