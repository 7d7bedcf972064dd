//! DestinationRule (`networking.istio.io`): `istio/api:networking/v1alpha3/destination_rule.proto`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::virtual_service::NetworkingPortSelector;
use crate::kinds::common::{Duration, WorkloadSelector};
use crate::path::FieldPath;

/// Policies for traffic to a service after routing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DestinationRule {
    pub host: String,
    pub traffic_policy: Option<TrafficPolicy>,
    pub subsets: Vec<Subset>,
    pub export_to: Vec<String>,
    /// The rule then applies only to the selected client workloads. Unlike the other
    /// networking kinds this is `matchLabels` (Istio's `type.v1beta1.WorkloadSelector`).
    pub workload_selector: Option<WorkloadSelector>,
}

impl DestinationRule {
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// Every traffic policy in the rule with its path: top level, its port-level
    /// settings, each subset's, and each subset's port-level settings. Port-level entries
    /// are reported as the `PortTrafficPolicy` they are (see [`PolicyRef`]).
    pub fn all_policies(&self) -> Vec<(FieldPath, PolicyRef<'_>)> {
        fn with_ports<'a>(
            base: FieldPath,
            tp: &'a TrafficPolicy,
            out: &mut Vec<(FieldPath, PolicyRef<'a>)>,
        ) {
            for (i, pl) in tp.port_level_settings.iter().enumerate() {
                out.push((base.key("portLevelSettings").index(i), PolicyRef::Port(pl)));
            }
            out.push((base, PolicyRef::Top(tp)));
        }
        let spec = FieldPath::root().key("spec");
        let mut out = Vec::new();
        if let Some(tp) = &self.traffic_policy {
            with_ports(spec.key("trafficPolicy"), tp, &mut out);
        }
        for (i, s) in self.subsets.iter().enumerate() {
            if let Some(tp) = &s.traffic_policy {
                with_ports(
                    spec.key("subsets").index(i).key("trafficPolicy"),
                    tp,
                    &mut out,
                );
            }
        }
        out
    }

    /// Every `tls` block with its path (top level, port level, subsets).
    pub fn all_tls(&self) -> Vec<(FieldPath, &ClientTLSSettings)> {
        self.all_policies()
            .into_iter()
            .filter_map(|(p, pol)| pol.tls().map(|t| (p.key("tls"), t)))
            .collect()
    }
}

/// A traffic policy or a port-level one; both carry the same core settings.
#[derive(Debug, Clone, Copy)]
pub enum PolicyRef<'a> {
    Top(&'a TrafficPolicy),
    Port(&'a PortTrafficPolicy),
}

impl<'a> PolicyRef<'a> {
    pub fn tls(self) -> Option<&'a ClientTLSSettings> {
        match self {
            PolicyRef::Top(t) => t.tls.as_ref(),
            PolicyRef::Port(t) => t.tls.as_ref(),
        }
    }

    pub fn load_balancer(self) -> Option<&'a LoadBalancerSettings> {
        match self {
            PolicyRef::Top(t) => t.load_balancer.as_ref(),
            PolicyRef::Port(t) => t.load_balancer.as_ref(),
        }
    }

    pub fn connection_pool(self) -> Option<&'a ConnectionPoolSettings> {
        match self {
            PolicyRef::Top(t) => t.connection_pool.as_ref(),
            PolicyRef::Port(t) => t.connection_pool.as_ref(),
        }
    }

    pub fn outlier_detection(self) -> Option<&'a OutlierDetection> {
        match self {
            PolicyRef::Top(t) => t.outlier_detection.as_ref(),
            PolicyRef::Port(t) => t.outlier_detection.as_ref(),
        }
    }
}

/// A named version of a service, selected by endpoint labels.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Subset {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub traffic_policy: Option<TrafficPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TrafficPolicy {
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTLSSettings>,
    /// Replace the settings above for one port each; at most 4096.
    pub port_level_settings: Vec<PortTrafficPolicy>,
    pub tunnel: Option<TunnelSettings>,
    pub proxy_protocol: Option<ProxyProtocol>,
    pub retry_budget: Option<RetryBudget>,
}

impl TrafficPolicy {
    pub fn is_empty(&self) -> bool {
        self.load_balancer.is_none()
            && self.connection_pool.is_none()
            && self.outlier_detection.is_none()
            && self.tls.is_none()
            && self.port_level_settings.is_empty()
            && self.tunnel.is_none()
            && self.proxy_protocol.is_none()
            && self.retry_budget.is_none()
    }

    /// The port-level settings for `port`, if any.
    pub fn port_settings(&self, port: u32) -> Option<&PortTrafficPolicy> {
        self.port_level_settings
            .iter()
            .find(|p| p.port.as_ref().and_then(|s| s.number) == Some(port))
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PortTrafficPolicy {
    pub port: Option<NetworkingPortSelector>,
    pub load_balancer: Option<LoadBalancerSettings>,
    pub connection_pool: Option<ConnectionPoolSettings>,
    pub outlier_detection: Option<OutlierDetection>,
    pub tls: Option<ClientTLSSettings>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LoadBalancerSettings {
    /// Unset means LEAST_REQUEST.
    pub simple: Option<SimpleLB>,
    pub consistent_hash: Option<ConsistentHashLB>,
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Deprecated: use `warmup.duration`.
    pub warmup_duration_secs: Option<Duration>,
    pub warmup: Option<WarmupConfiguration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimpleLB {
    Unspecified,
    /// Deprecated alias of LEAST_REQUEST.
    LeastConn,
    Random,
    Passthrough,
    RoundRobin,
    LeastRequest,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConsistentHashLB {
    pub http_header_name: Option<String>,
    pub http_cookie: Option<HTTPCookie>,
    pub use_source_ip: Option<bool>,
    pub http_query_parameter_name: Option<String>,
    pub ring_hash: Option<RingHash>,
    pub maglev: Option<MagLev>,
    /// Deprecated: use `ringHash.minimumRingSize`.
    pub minimum_ring_size: Option<u64>,
}

impl ConsistentHashLB {
    /// How many of the hash keys (header, cookie, source IP, query parameter) are set.
    pub fn hash_key_count(&self) -> usize {
        [
            self.http_header_name.is_some(),
            self.http_cookie.is_some(),
            self.use_source_ip.is_some(),
            self.http_query_parameter_name.is_some(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPCookie {
    pub name: String,
    pub path: String,
    /// Present: generate the cookie when missing (`0s` = session cookie).
    pub ttl: Option<Duration>,
    pub attributes: Vec<CookieAttribute>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CookieAttribute {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RingHash {
    /// Default 1024.
    pub minimum_ring_size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MagLev {
    /// Default 65537; must be prime.
    pub table_size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LocalityLoadBalancerSetting {
    pub distribute: Vec<LocalityDistribute>,
    pub failover: Vec<LocalityFailover>,
    pub failover_priority: Vec<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LocalityDistribute {
    pub from: String,
    pub to: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LocalityFailover {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WarmupConfiguration {
    /// Required.
    pub duration: Option<Duration>,
    /// Default 10.
    pub minimum_percent: Option<f64>,
    /// Default 1.0 (linear).
    pub aggression: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ConnectionPoolSettings {
    pub tcp: Option<TCPSettings>,
    pub http: Option<HTTPSettings>,
}

/// Integer limits are signed so that negative values reach validation with a clear message.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TCPSettings {
    pub max_connections: Option<i64>,
    pub connect_timeout: Option<Duration>,
    pub tcp_keepalive: Option<TcpKeepalive>,
    pub max_connection_duration: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TcpKeepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HTTPSettings {
    pub http1_max_pending_requests: Option<i64>,
    pub http2_max_requests: Option<i64>,
    /// 0 = unlimited; 1 disables keep-alive.
    pub max_requests_per_connection: Option<i64>,
    pub max_retries: Option<i64>,
    pub idle_timeout: Option<Duration>,
    pub h2_upgrade_policy: Option<H2UpgradePolicy>,
    pub use_client_protocol: Option<bool>,
    pub max_concurrent_streams: Option<i64>,
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum H2UpgradePolicy {
    Default,
    DoNotUpgrade,
    Upgrade,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Http2KeepAlive {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OutlierDetection {
    /// Deprecated: use `consecutive5xxErrors`.
    pub consecutive_errors: Option<i64>,
    pub split_external_local_origin_errors: Option<bool>,
    pub consecutive_local_origin_failures: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    /// Default 5; 0 disables.
    pub consecutive_5xx_errors: Option<u32>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    /// Default 10.
    pub max_ejection_percent: Option<i64>,
    /// Default 0.
    pub min_health_percent: Option<i64>,
}

/// TLS settings for connections to the destination.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClientTLSSettings {
    /// Unset means DISABLE.
    pub mode: Option<ClientTLSMode>,
    pub client_certificate: String,
    pub private_key: String,
    pub ca_certificates: String,
    pub credential_name: String,
    pub subject_alt_names: Vec<String>,
    pub sni: String,
    pub insecure_skip_verify: Option<bool>,
    pub ca_crl: String,
}

impl ClientTLSSettings {
    pub fn mode(&self) -> ClientTLSMode {
        self.mode.unwrap_or(ClientTLSMode::Disable)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientTLSMode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

/// Tunnel TCP/TLS traffic through an HTTP CONNECT or POST proxy.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`, case-insensitive.
    pub protocol: String,
    pub target_host: String,
    pub target_port: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyProtocol {
    /// Default V1.
    pub version: Option<ProxyProtocolVersion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ProxyProtocolVersion {
    V1,
    V2,
}

/// A limit on concurrent retries relative to active requests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryBudget {
    /// Default 20.
    pub percent: Option<f64>,
    /// Default 3.
    pub min_retry_concurrency: Option<u32>,
    pub budget_interval: Option<Duration>,
}
