//! DestinationRules: which one applies to a service for a client (lookup order client
//! namespace → service namespace → root namespace), merging several for one host, and the
//! effective traffic policy of a (service, port, subset) — turned into a cluster.

use std::time::Duration;

use weft_api::{
    Cluster, ConnectionLimits, Discovery, Endpoint, HashKey, LbPolicy, MtlsMode, Origin,
    OriginateTls, OutlierDetection, TcpKeepalive, UpstreamProtocol, UpstreamTls,
};
use weft_config::kinds::istio::{
    ClientTLSMode, ClientTLSSettings, ConnectionPoolSettings, DestinationRule, H2UpgradePolicy,
    LoadBalancerSettings, MeshConfig, Resolution, SimpleLB, Subset, TrafficPolicy,
};
use weft_config::{Body, Object};

use crate::peer_auth::PeerPolicies;
use crate::registry::{
    Protocol, Service, ServiceEndpoint, ServiceSource, host_matches, resolve_host,
};
use crate::scope::{export_or_default, exported_to};

/// Istio's default ring size for consistent hashing.
const DEFAULT_RING_SIZE: u64 = 1024;
const DEFAULT_MAGLEV_TABLE: u64 = 65537;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// The DestinationRules of one host as one: the first top-level policy and the first
/// definition of each subset win.
#[derive(Debug, Clone, Default)]
pub struct MergedRule {
    pub traffic_policy: Option<TrafficPolicy>,
    pub subsets: Vec<Subset>,
    /// The first rule merged; the one named in errors.
    pub origin: Option<Origin>,
}

impl MergedRule {
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }
}

/// All DestinationRules, oldest first, with their resolved hosts.
pub struct RuleIndex<'a> {
    rules: Vec<(&'a Object, &'a DestinationRule, String)>,
    root_ns: String,
    default_export: Vec<String>,
}

impl<'a> RuleIndex<'a> {
    /// From the snapshot's objects, oldest first.
    pub fn from_aged(aged: &[&'a Object], mesh: &MeshConfig) -> RuleIndex<'a> {
        let rules = aged
            .iter()
            .copied()
            .filter_map(|o| match &o.body {
                Body::DestinationRule(dr) => Some((o, dr, resolve_host(&dr.host, o.namespace()))),
                _ => None,
            })
            .collect();
        RuleIndex {
            rules,
            root_ns: mesh.root_namespace().to_string(),
            default_export: mesh.default_destination_rule_export_to(),
        }
    }

    /// The rule for `service` seen from a client in `client_ns` with `client_labels`.
    /// Namespaces are tried in order client → service → root; within the first namespace
    /// that has rules for the host, the most specific host wins and its rules are merged
    /// (rules selecting the client by workloadSelector first).
    pub fn lookup(
        &self,
        fqdn: &str,
        service_ns: &str,
        client_ns: &str,
        client_labels: &std::collections::BTreeMap<String, String>,
    ) -> Option<MergedRule> {
        let mut namespaces = vec![client_ns, service_ns, self.root_ns.as_str()];
        namespaces.dedup();
        for ns in namespaces {
            let candidates: Vec<_> = self
                .rules
                .iter()
                .filter(|(o, dr, host)| {
                    o.namespace() == ns
                        && host_matches(host, fqdn)
                        && exported_to(
                            &export_or_default(&dr.export_to, self.default_export.clone()),
                            ns,
                            client_ns,
                        )
                        && match &dr.workload_selector {
                            Some(sel) if !sel.match_labels.is_empty() => {
                                ns == client_ns
                                    && weft_config::kinds::common::labels_match(
                                        &sel.match_labels,
                                        client_labels,
                                    )
                            }
                            _ => true,
                        }
                })
                .collect();
            // Most specific host: exact beats wildcards, longer wildcards beat shorter.
            let Some(best) = candidates.iter().map(|(_, _, h)| specificity(h)).max() else {
                continue;
            };
            let mut chosen: Vec<_> = candidates
                .into_iter()
                .filter(|(_, _, h)| specificity(h) == best)
                .collect();
            // Stable: rules with a workloadSelector first, then by age.
            chosen.sort_by_key(|(_, dr, _)| {
                dr.workload_selector
                    .as_ref()
                    .is_none_or(|s| s.match_labels.is_empty())
            });
            let mut merged = MergedRule::default();
            for (o, dr, _) in chosen {
                merged.origin.get_or_insert_with(|| Origin {
                    kind: "DestinationRule".into(),
                    namespace: o.namespace().into(),
                    name: o.name().into(),
                });
                if merged.traffic_policy.is_none() {
                    merged.traffic_policy = dr.traffic_policy.clone();
                }
                for s in &dr.subsets {
                    if merged.subset(&s.name).is_none() {
                        merged.subsets.push(s.clone());
                    }
                }
            }
            return Some(merged);
        }
        None
    }
}

fn specificity(host: &str) -> (bool, usize) {
    (!host.starts_with('*'), host.len())
}

/// The four settings a policy level can set.
#[derive(Debug, Clone, Default)]
pub struct EffectivePolicy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<weft_config::kinds::istio::OutlierDetection>,
    pub tls: Option<ClientTLSSettings>,
}

/// Istio's `MergeTrafficPolicy`: the top-level policy with its port-level settings for
/// `port` replacing it wholesale, then the subset's fields overriding one by one, then the
/// subset's port-level settings replacing the result wholesale. Port-level settings do not
/// inherit: fields they omit take the defaults.
pub fn effective_policy(
    top: Option<&TrafficPolicy>,
    subset: Option<&TrafficPolicy>,
    port: u16,
) -> EffectivePolicy {
    let level = |tp: &TrafficPolicy| -> EffectivePolicy {
        match tp.port_settings(u32::from(port)) {
            Some(pl) => EffectivePolicy {
                load_balancer: pl.load_balancer.clone(),
                connection_pool: pl.connection_pool.clone(),
                outlier_detection: pl.outlier_detection.clone(),
                tls: pl.tls.clone(),
            },
            None => EffectivePolicy {
                load_balancer: tp.load_balancer.clone(),
                connection_pool: tp.connection_pool.clone(),
                outlier_detection: tp.outlier_detection.clone(),
                tls: tp.tls.clone(),
            },
        }
    };
    let mut out = top.map(level).unwrap_or_default();
    if let Some(sp) = subset {
        if sp.load_balancer.is_some() {
            out.load_balancer = sp.load_balancer.clone();
        }
        if sp.connection_pool.is_some() {
            out.connection_pool = sp.connection_pool.clone();
        }
        if sp.outlier_detection.is_some() {
            out.outlier_detection = sp.outlier_detection.clone();
        }
        if sp.tls.is_some() {
            out.tls = sp.tls.clone();
        }
        if let Some(pl) = sp.port_settings(u32::from(port)) {
            out = EffectivePolicy {
                load_balancer: pl.load_balancer.clone(),
                connection_pool: pl.connection_pool.clone(),
                outlier_detection: pl.outlier_detection.clone(),
                tls: pl.tls.clone(),
            };
        }
    }
    out
}

/// `outbound|<port>|<subset>|<fqdn>`.
pub fn cluster_name(port: u16, subset: &str, fqdn: &str) -> String {
    format!("outbound|{port}|{subset}|{fqdn}")
}

/// Build the cluster for `service` port `port`, optionally restricted to `subset`.
/// `peers` decides auto-mTLS per endpoint.
pub fn build_cluster(
    service: &Service,
    port: u16,
    subset: Option<&Subset>,
    rule: Option<&MergedRule>,
    mesh: &MeshConfig,
    peers: &PeerPolicies<'_>,
) -> Cluster {
    let top = rule.and_then(|r| r.traffic_policy.as_ref());
    let policy = effective_policy(top, subset.and_then(|s| s.traffic_policy.as_ref()), port);
    let svc_port = service.port(port);
    let protocol = svc_port.map(|p| p.protocol).unwrap_or(Protocol::Unknown);
    let pool = policy.connection_pool.as_ref();
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    let http = pool.and_then(|p| p.http.as_ref());
    let limit = |v: Option<i64>| match v {
        // 0 cannot be told apart from unset in Istio: both mean the default.
        Some(n) if n > 0 => u32::try_from(n).unwrap_or(u32::MAX),
        _ => u32::MAX,
    };
    let upgrade = http.and_then(|h| h.h2_upgrade_policy) == Some(H2UpgradePolicy::Upgrade);
    let use_client = http.and_then(|h| h.use_client_protocol) == Some(true);
    let upstream = match protocol {
        _ if use_client && protocol.is_http() => UpstreamProtocol::SameAsDownstream,
        Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb => UpstreamProtocol::Http2,
        Protocol::Http if upgrade => UpstreamProtocol::Http2,
        Protocol::Http => UpstreamProtocol::Http1,
        Protocol::Unknown => UpstreamProtocol::SameAsDownstream,
        // Originating TLS on a TLS port: HTTP routed there (the port-rewrite pattern of
        // Istio's egress examples) keeps its protocol inside the TLS the proxy adds.
        Protocol::Tls
            if policy.tls.as_ref().is_some_and(|t| {
                matches!(t.mode(), ClientTLSMode::Simple | ClientTLSMode::Mutual)
            }) =>
        {
            UpstreamProtocol::SameAsDownstream
        }
        Protocol::Tcp | Protocol::Tls => UpstreamProtocol::Tcp,
    };
    let (lb, passthrough) = lb_policy(policy.load_balancer.as_ref());
    let discovery = if passthrough {
        Discovery::OriginalDestination
    } else {
        discovery(service, port)
    };
    let tls = upstream_tls(policy.tls.as_ref(), mesh);
    let endpoints = match discovery {
        Discovery::Static => service
            .endpoints
            .iter()
            .filter(|e| {
                subset
                    .is_none_or(|s| weft_config::kinds::common::labels_match(&s.labels, &e.labels))
            })
            .filter_map(|e| {
                let p = e.ports.get(&port)?;
                Some(Endpoint {
                    address: join_host_port(&e.host, *p),
                    weight: e.weight,
                    labels: e.labels.clone(),
                    identity: e.identity.clone(),
                    tunnel: endpoint_tunnel(e, *p, &service.namespace, &tls, peers),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    Cluster {
        name: cluster_name(
            port,
            subset.map(|s| s.name.as_str()).unwrap_or(""),
            &service.fqdn,
        ),
        service: Some(service.fqdn.clone()),
        policy_origin: rule.and_then(|r| r.origin.clone()),
        discovery,
        endpoints,
        lb,
        connect_timeout: tcp
            .and_then(|t| t.connect_timeout)
            .map(|d| d.as_std())
            .unwrap_or_else(|| mesh.connect_timeout()),
        limits: ConnectionLimits {
            max_connections: limit(tcp.and_then(|t| t.max_connections)),
            max_pending_requests: limit(http.and_then(|h| h.http1_max_pending_requests)),
            max_requests: limit(http.and_then(|h| h.http2_max_requests)),
            max_retries: limit(http.and_then(|h| h.max_retries)),
        },
        max_requests_per_connection: http
            .and_then(|h| h.max_requests_per_connection)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        idle_timeout: Some(
            http.and_then(|h| h.idle_timeout)
                .or_else(|| tcp.and_then(|t| t.idle_timeout))
                .map(|d| d.as_std())
                .unwrap_or(DEFAULT_IDLE_TIMEOUT),
        ),
        tcp_keepalive: tcp
            .and_then(|t| t.tcp_keepalive.as_ref())
            .map(|k| TcpKeepalive {
                probes: k.probes,
                time: k.time.map(|d| d.as_std()),
                interval: k.interval.map(|d| d.as_std()),
            }),
        outlier_detection: policy.outlier_detection.as_ref().map(outlier),
        protocol: upstream,
        tls,
    }
}

/// The tunnel an endpoint is reached through. Auto-mTLS, as Istio decides it per endpoint:
/// only when the destination's effective PeerAuthentication for the target port is not
/// DISABLE (plaintext then goes to `address`). An explicit ISTIO_MUTUAL keeps the tunnel
/// whatever the destination says. Instances share their service's namespace.
fn endpoint_tunnel(
    e: &ServiceEndpoint,
    target_port: u16,
    namespace: &str,
    tls: &UpstreamTls,
    peers: &PeerPolicies<'_>,
) -> Option<String> {
    let tunnel = e.tunnel.clone()?;
    let disabled = matches!(tls, UpstreamTls::IstioMutualAuto)
        && peers.effective(namespace, &e.labels, target_port).mode == MtlsMode::Disable;
    (!disabled).then_some(tunnel)
}

/// `ip:port`, with brackets for IPv6.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn discovery(service: &Service, port: u16) -> Discovery {
    match service.source {
        ServiceSource::Kubernetes | ServiceSource::ServiceEntry(Resolution::Static) => {
            Discovery::Static
        }
        ServiceSource::ServiceEntry(Resolution::Dns | Resolution::DnsRoundRobin) => {
            match service.endpoints.as_slice() {
                // No endpoints: resolve the host itself.
                [] => Discovery::Dns {
                    hostname: service.fqdn.clone(),
                    port,
                },
                // One endpoint named by DNS: resolve it.
                [e] if e.host.parse::<std::net::IpAddr>().is_err() => Discovery::Dns {
                    hostname: e.host.clone(),
                    port: e.ports.get(&port).copied().unwrap_or(port),
                },
                // Several: the proxy resolves each `host:port` endpoint.
                _ => Discovery::Static,
            }
        }
        ServiceSource::ServiceEntry(Resolution::None | Resolution::DynamicDns) => {
            Discovery::OriginalDestination
        }
    }
}

/// The load balancer, and whether it is PASSTHROUGH (original destination).
fn lb_policy(lb: Option<&LoadBalancerSettings>) -> (LbPolicy, bool) {
    let Some(lb) = lb else {
        return (LbPolicy::LeastRequest, false);
    };
    if let Some(ch) = &lb.consistent_hash {
        let key = if let Some(h) = &ch.http_header_name {
            Some(HashKey::Header(h.to_ascii_lowercase()))
        } else if let Some(c) = &ch.http_cookie {
            Some(HashKey::Cookie {
                name: c.name.clone(),
                path: (!c.path.is_empty()).then(|| c.path.clone()),
                ttl: c.ttl.map(|d| d.as_std()),
            })
        } else if ch.use_source_ip == Some(true) {
            Some(HashKey::SourceIp)
        } else {
            ch.http_query_parameter_name
                .clone()
                .map(HashKey::QueryParameter)
        };
        if let Some(key) = key {
            if let Some(m) = &ch.maglev {
                return (
                    LbPolicy::Maglev {
                        key,
                        table_size: m.table_size.unwrap_or(DEFAULT_MAGLEV_TABLE),
                    },
                    false,
                );
            }
            let size = ch
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size)
                .unwrap_or(DEFAULT_RING_SIZE);
            return (
                LbPolicy::RingHash {
                    key,
                    minimum_ring_size: size,
                },
                false,
            );
        }
    }
    match lb.simple {
        Some(SimpleLB::RoundRobin) => (LbPolicy::RoundRobin, false),
        Some(SimpleLB::Random) => (LbPolicy::Random, false),
        Some(SimpleLB::Passthrough) => (LbPolicy::LeastRequest, true),
        _ => (LbPolicy::LeastRequest, false),
    }
}

/// An `outlierDetection` block: present means on, with Istio's defaults for what it omits.
fn outlier(o: &weft_config::kinds::istio::OutlierDetection) -> OutlierDetection {
    let consecutive_5xx = o
        .consecutive_5xx_errors
        .or_else(|| o.consecutive_errors.and_then(|n| u32::try_from(n).ok()))
        .unwrap_or(5);
    let pct = |v: Option<i64>, d: u32| v.and_then(|n| u32::try_from(n).ok()).unwrap_or(d).min(100);
    OutlierDetection {
        consecutive_5xx,
        consecutive_gateway_errors: o.consecutive_gateway_errors.unwrap_or(0),
        interval: o
            .interval
            .map(|d| d.as_std())
            .unwrap_or(Duration::from_secs(10)),
        base_ejection_time: o
            .base_ejection_time
            .map(|d| d.as_std())
            .unwrap_or(Duration::from_secs(30)),
        max_ejection_percent: pct(o.max_ejection_percent, 10),
        min_health_percent: pct(o.min_health_percent, 0),
    }
}

fn upstream_tls(tls: Option<&ClientTLSSettings>, mesh: &MeshConfig) -> UpstreamTls {
    let Some(tls) = tls else {
        return if mesh.enable_auto_mtls() {
            UpstreamTls::IstioMutualAuto
        } else {
            UpstreamTls::Disabled
        };
    };
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match tls.mode() {
        ClientTLSMode::Disable => UpstreamTls::Disabled,
        ClientTLSMode::IstioMutual => UpstreamTls::IstioMutual,
        ClientTLSMode::Simple | ClientTLSMode::Mutual => UpstreamTls::Originate(OriginateTls {
            sni: opt(&tls.sni),
            ca_certificates: opt(&tls.ca_certificates),
            client_certificate: opt(&tls.client_certificate),
            private_key: opt(&tls.private_key),
            subject_alt_names: tls.subject_alt_names.clone(),
            insecure_skip_verify: tls.insecure_skip_verify == Some(true),
        }),
    }
}
