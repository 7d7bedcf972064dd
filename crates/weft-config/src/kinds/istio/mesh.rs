//! Mesh-wide configuration (Istio's MeshConfig) and the IstioOperator that may carry it.
//!
//! The fields weft acts on are typed; the rest of Istio's MeshConfig is accepted (as free-form
//! values) so that real `istio` ConfigMaps and IstioOperator files load unchanged, while a
//! misspelt top-level field is still reported with a "did you mean".

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::de::from_node;
use crate::diag::{Diagnostic, Severity, codes};
use crate::kinds::Body;
use crate::kinds::common::Duration;
use crate::object::Object;
use crate::path::FieldPath;
use crate::source::{SourceFile, Span};

/// Istio's defaults, returned by the accessors when a field is unset.
pub mod defaults {
    pub const ROOT_NAMESPACE: &str = "istio-system";
    pub const TRUST_DOMAIN: &str = "cluster.local";
    pub const CONNECT_TIMEOUT_SECS: u64 = 10;
    pub const DNS_REFRESH_RATE_SECS: u64 = 60;
    pub const PROXY_LISTEN_PORT: u32 = 15001;
    pub const PROXY_INBOUND_LISTEN_PORT: u32 = 15006;
}

/// The tracing/metrics/access-log providers every mesh has without declaring them.
pub const BUILTIN_PROVIDERS: &[&str] = &["prometheus", "stackdriver", "envoy"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Namespace whose selector-less policies apply mesh-wide (default `istio-system`).
    pub root_namespace: Option<String>,
    /// SPIFFE trust domain (default `cluster.local`).
    pub trust_domain: Option<String>,
    pub trust_domain_aliases: Vec<String>,
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    pub inbound_traffic_policy: Option<InboundTrafficPolicy>,
    /// Proxy defaults for every workload.
    pub default_config: Option<MeshProxyConfig>,
    pub extension_providers: Vec<ExtensionProvider>,
    pub default_providers: Option<DefaultProviders>,
    /// Default true.
    pub enable_auto_mtls: Option<bool>,
    /// Empty (default) turns the built-in access log off; `/dev/stdout` turns it on.
    pub access_log_file: Option<String>,
    pub access_log_format: Option<String>,
    pub access_log_encoding: Option<AccessLogEncoding>,
    /// Default true.
    pub enable_tracing: Option<bool>,
    pub default_http_retry_policy: Option<MeshRetryPolicy>,
    /// Default 10s.
    pub connect_timeout: Option<Duration>,
    /// Default 0s (no timeout).
    pub protocol_detection_timeout: Option<Duration>,
    pub ingress_class: Option<String>,
    pub ingress_service: Option<String>,
    pub ingress_controller_mode: Option<IngressControllerMode>,
    pub ingress_selector: Option<String>,
    pub default_service_export_to: Vec<String>,
    pub default_virtual_service_export_to: Vec<String>,
    pub default_destination_rule_export_to: Vec<String>,
    /// Same shape as DestinationRule `localityLbSetting`.
    pub locality_lb_setting: Option<Json>,
    /// Default 60s.
    pub dns_refresh_rate: Option<Duration>,
    pub proxy_listen_port: Option<u32>,
    pub proxy_inbound_listen_port: Option<u32>,
    pub proxy_http_port: Option<u32>,
    pub enable_prometheus_merge: Option<bool>,
    pub enable_envoy_access_log_service: Option<bool>,
    pub disable_envoy_listener_log: Option<bool>,
    pub h2_upgrade_policy: Option<String>,
    pub inbound_cluster_stat_name: Option<String>,
    pub outbound_cluster_stat_name: Option<String>,
    pub verify_certificate_at_client: Option<bool>,
    pub discovery_selectors: Vec<crate::kinds::common::LabelSelector>,
    // Accepted, not interpreted by weft.
    pub tcp_keepalive: Option<Json>,
    pub config_sources: Option<Json>,
    pub ca_certificates: Option<Json>,
    pub certificates: Option<Json>,
    pub thrift_config: Option<Json>,
    pub service_settings: Option<Json>,
    pub ca: Option<Json>,
    pub path_normalization: Option<Json>,
    #[serde(rename = "meshMTLS")]
    pub mesh_mtls: Option<Json>,
    pub tls_defaults: Option<Json>,
    pub service_scope_configs: Option<Json>,
    pub ambient_mesh: Option<Json>,
    pub sds_uds_path: Option<Json>,
    pub enable_sds_token_mount: Option<Json>,
    pub mixer_check_server: Option<Json>,
    pub mixer_report_server: Option<Json>,
    pub disable_policy_checks: Option<Json>,
    pub disable_mixer_http_reports: Option<Json>,
    pub policy_check_fail_open: Option<Json>,
    pub sidecar_to_telemetry_session_affinity: Option<Json>,
    pub auth_policy: Option<Json>,
    pub rds_refresh_delay: Option<Json>,
    pub enable_client_side_policy_check: Option<Json>,
    pub outbound_traffic_policy_mode: Option<Json>,
    pub reinit_on_endpoint_update: Option<Json>,
    pub network: Option<Json>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OutboundTrafficPolicy {
    pub mode: OutboundMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OutboundMode {
    /// Unknown destinations pass through (Istio's default).
    #[default]
    AllowAny,
    /// Only destinations in the registry (Services, ServiceEntries) are reachable.
    RegistryOnly,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InboundTrafficPolicy {
    pub mode: InboundMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InboundMode {
    #[default]
    Passthrough,
    Localhost,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessLogEncoding {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IngressControllerMode {
    Unspecified,
    Off,
    Default,
    Strict,
}

/// `defaultHttpRetryPolicy`: the VirtualService retry shape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct MeshRetryPolicy {
    pub attempts: Option<i64>,
    pub per_try_timeout: Option<Duration>,
    pub retry_on: Option<String>,
    pub retry_remote_localities: Option<bool>,
    pub retry_ignore_previous_hosts: Option<bool>,
    pub backoff: Option<Duration>,
}

/// `defaultConfig`: Istio's ProxyConfig. The fields weft reads are typed; the dozens of
/// others are kept as written in `other`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshProxyConfig {
    /// Environment for the proxy (`ISTIO_META_DNS_CAPTURE: "true"`, ...).
    pub proxy_metadata: BTreeMap<String, String>,
    pub tracing: Option<Json>,
    pub concurrency: Option<i64>,
    pub hold_application_until_proxy_starts: Option<bool>,
    pub image: Option<ProxyImage>,
    pub discovery_address: Option<String>,
    pub termination_drain_duration: Option<Duration>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Json>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProxyImage {
    /// `default`, `debug` or `distroless`.
    pub image_type: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DefaultProviders {
    /// Unset: Istio's Helm default, `[prometheus]`. An explicit `[]` turns Istio's metrics
    /// off.
    pub metrics: Option<Vec<String>>,
    pub tracing: Vec<String>,
    pub access_logging: Vec<String>,
}

/// One entry of `extensionProviders`: a name and exactly one provider body. Bodies are kept
/// free-form (their schemas are large and versioned); the kind is what matters for analysis.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ExtensionProvider {
    pub name: String,
    pub envoy_ext_authz_http: Option<Json>,
    pub envoy_ext_authz_grpc: Option<Json>,
    pub zipkin: Option<Json>,
    pub lightstep: Option<Json>,
    pub datadog: Option<Json>,
    pub stackdriver: Option<Json>,
    pub opencensus: Option<Json>,
    pub skywalking: Option<Json>,
    pub opentelemetry: Option<Json>,
    pub prometheus: Option<Json>,
    pub envoy_file_access_log: Option<Json>,
    pub envoy_http_als: Option<Json>,
    pub envoy_tcp_als: Option<Json>,
    pub envoy_otel_als: Option<Json>,
    pub sds: Option<Json>,
}

/// What an extension provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    ExtAuthzHttp,
    ExtAuthzGrpc,
    Zipkin,
    Lightstep,
    Datadog,
    Stackdriver,
    Opencensus,
    Skywalking,
    Opentelemetry,
    Prometheus,
    FileAccessLog,
    HttpAls,
    TcpAls,
    OtelAls,
    Sds,
}

impl ExtensionProvider {
    /// Every provider body that is set, with its YAML field name.
    pub fn bodies(&self) -> Vec<(&'static str, ProviderKind, &Json)> {
        use ProviderKind::*;
        let all: [(&'static str, ProviderKind, &Option<Json>); 15] = [
            (
                "envoyExtAuthzHttp",
                ExtAuthzHttp,
                &self.envoy_ext_authz_http,
            ),
            (
                "envoyExtAuthzGrpc",
                ExtAuthzGrpc,
                &self.envoy_ext_authz_grpc,
            ),
            ("zipkin", Zipkin, &self.zipkin),
            ("lightstep", Lightstep, &self.lightstep),
            ("datadog", Datadog, &self.datadog),
            ("stackdriver", Stackdriver, &self.stackdriver),
            ("opencensus", Opencensus, &self.opencensus),
            ("skywalking", Skywalking, &self.skywalking),
            ("opentelemetry", Opentelemetry, &self.opentelemetry),
            ("prometheus", Prometheus, &self.prometheus),
            (
                "envoyFileAccessLog",
                FileAccessLog,
                &self.envoy_file_access_log,
            ),
            ("envoyHttpAls", HttpAls, &self.envoy_http_als),
            ("envoyTcpAls", TcpAls, &self.envoy_tcp_als),
            ("envoyOtelAls", OtelAls, &self.envoy_otel_als),
            ("sds", Sds, &self.sds),
        ];
        all.into_iter()
            .filter_map(|(n, k, v)| v.as_ref().map(|v| (n, k, v)))
            .collect()
    }

    /// The provider's kind, when exactly one body is set.
    pub fn kind(&self) -> Option<ProviderKind> {
        match self.bodies().as_slice() {
            [(_, k, _)] => Some(*k),
            _ => None,
        }
    }

    fn body(&self) -> Option<&Json> {
        self.bodies().first().map(|(_, _, v)| *v)
    }

    /// The `service` host of a provider that talks to one (ext-authz, tracers, ALS).
    pub fn service(&self) -> Option<&str> {
        self.body()?.get("service")?.as_str()
    }

    pub fn port(&self) -> Option<u16> {
        self.body()?
            .get("port")?
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
    }

    /// A string field of the provider body (`path` of a file access log, `pathPrefix`...).
    pub fn body_str(&self, field: &str) -> Option<&str> {
        self.body()?.get(field)?.as_str()
    }
}

impl MeshConfig {
    pub fn root_namespace(&self) -> &str {
        self.root_namespace
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(defaults::ROOT_NAMESPACE)
    }

    pub fn trust_domain(&self) -> &str {
        self.trust_domain
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(defaults::TRUST_DOMAIN)
    }

    pub fn enable_auto_mtls(&self) -> bool {
        self.enable_auto_mtls.unwrap_or(true)
    }

    pub fn enable_tracing(&self) -> bool {
        self.enable_tracing.unwrap_or(true)
    }

    pub fn outbound_mode(&self) -> OutboundMode {
        self.outbound_traffic_policy
            .as_ref()
            .map(|p| p.mode)
            .unwrap_or_default()
    }

    pub fn inbound_mode(&self) -> InboundMode {
        self.inbound_traffic_policy
            .as_ref()
            .map(|p| p.mode)
            .unwrap_or_default()
    }

    pub fn connect_timeout(&self) -> std::time::Duration {
        self.connect_timeout
            .map(Duration::as_std)
            .unwrap_or(std::time::Duration::from_secs(
                defaults::CONNECT_TIMEOUT_SECS,
            ))
    }

    /// Zero means no timeout.
    pub fn protocol_detection_timeout(&self) -> std::time::Duration {
        self.protocol_detection_timeout
            .map(Duration::as_std)
            .unwrap_or_default()
    }

    pub fn dns_refresh_rate(&self) -> std::time::Duration {
        self.dns_refresh_rate
            .map(Duration::as_std)
            .unwrap_or(std::time::Duration::from_secs(
                defaults::DNS_REFRESH_RATE_SECS,
            ))
    }

    /// The access log file; empty means the built-in access log is off.
    pub fn access_log_file(&self) -> &str {
        self.access_log_file.as_deref().unwrap_or("")
    }

    pub fn access_log_encoding(&self) -> AccessLogEncoding {
        self.access_log_encoding.unwrap_or_default()
    }

    /// Istio's locality load balancing is on unless `localityLbSetting.enabled: false`.
    pub fn locality_lb_enabled(&self) -> bool {
        self.locality_lb_setting
            .as_ref()
            .and_then(|v| v.get("enabled"))
            .and_then(Json::as_bool)
            .unwrap_or(true)
    }

    fn export_to(list: &[String]) -> Vec<String> {
        if list.is_empty() {
            vec!["*".to_string()]
        } else {
            list.to_vec()
        }
    }

    pub fn default_service_export_to(&self) -> Vec<String> {
        Self::export_to(&self.default_service_export_to)
    }

    pub fn default_virtual_service_export_to(&self) -> Vec<String> {
        Self::export_to(&self.default_virtual_service_export_to)
    }

    pub fn default_destination_rule_export_to(&self) -> Vec<String> {
        Self::export_to(&self.default_destination_rule_export_to)
    }

    pub fn proxy_metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.default_config.as_ref().map(|c| &c.proxy_metadata)
    }

    pub fn extension_provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.extension_providers.iter().find(|p| p.name == name)
    }

    /// Whether `name` names a declared extension provider or a built-in one.
    pub fn has_provider(&self, name: &str) -> bool {
        BUILTIN_PROVIDERS.contains(&name) || self.extension_provider(name).is_some()
    }

    /// Parse mesh config YAML (the content of a ConfigMap's `data.mesh`, or a mesh config
    /// file). `name` names the source in diagnostics. Empty text gives the defaults.
    pub fn parse_str(name: &str, text: &str) -> Result<MeshConfig, Diagnostic> {
        let file = Arc::new(SourceFile {
            name: name.to_string(),
            text: text.to_string(),
        });
        let docs = crate::yaml::parse_documents(&file).map_err(|e| {
            Diagnostic::new(
                codes::SYNTAX,
                Severity::Error,
                format!("invalid mesh config YAML: {}", e.message),
            )
            .with_span(e.span)
        })?;
        let Some(doc) = docs.into_iter().find(|d| !d.is_null()) else {
            return Ok(MeshConfig::default());
        };
        from_node::<MeshConfig>(&doc, &FieldPath::root()).map_err(|e| {
            let span = e
                .span
                .clone()
                .unwrap_or_else(|| Span::whole_file(file.clone()));
            let message = if e.path.is_root() {
                format!("invalid mesh config: {}", e.message)
            } else {
                format!("invalid mesh config: {}: {}", e.path, e.message)
            };
            let mut d = Diagnostic::new(codes::SCHEMA, Severity::Error, message).with_span(span);
            d.hint = e.hint;
            d.field = (!e.path.is_root()).then_some(e.path);
            d
        })
    }

    /// Read a raw mesh config file (what `istioctl analyze --meshConfigFile` takes).
    pub fn load_file(path: &Path) -> Result<MeshConfig, Diagnostic> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostic::new(
                codes::UNREADABLE,
                Severity::Error,
                format!("cannot read mesh config {name}: {e}"),
            )
        })?;
        MeshConfig::parse_str(&name, &text)
    }

    /// The mesh config the objects carry: the `data.mesh` of a ConfigMap named `istio` (or
    /// `istio-<revision>`) in the root namespace, else an IstioOperator's `spec.meshConfig`,
    /// else Istio's defaults. A mesh config that does not parse is ignored here (validation
    /// reports it).
    pub fn from_objects(objects: &[Object]) -> MeshConfig {
        Self::find_in(objects).map(|(m, _)| m).unwrap_or_default()
    }

    /// Like [`MeshConfig::from_objects`], also returning the object it came from.
    pub fn find_in(objects: &[Object]) -> Option<(MeshConfig, &Object)> {
        let mut from_map: Vec<(u8, MeshConfig, &Object)> = Vec::new();
        for o in objects {
            let Body::ConfigMap(cm) = &o.body else {
                continue;
            };
            let name = o.name();
            let rank = if name == "istio" {
                0
            } else if name.starts_with("istio-") {
                1
            } else {
                continue;
            };
            let Some(text) = cm.data.get("mesh") else {
                continue;
            };
            let source = format!(
                "{} (ConfigMap {}/{} data.mesh)",
                o.span().file_name(),
                o.namespace(),
                name
            );
            if let Ok(m) = MeshConfig::parse_str(&source, text) {
                from_map.push((rank, m, o));
            }
        }
        // Prefer a map in the root namespace the map itself declares (istio-system by
        // default), then the unrevisioned `istio`.
        from_map.sort_by_key(|(rank, m, o)| (o.namespace() != m.root_namespace(), *rank));
        if let Some((_, m, o)) = from_map.into_iter().next() {
            return Some((m, o));
        }
        objects.iter().find_map(|o| match &o.body {
            Body::IstioOperator(op) => op.mesh_config.clone().map(|m| (m, o)),
            _ => None,
        })
    }
}

/// `install.istio.io/v1alpha1` IstioOperator. Only `meshConfig` is typed strictly; the
/// install settings are accepted as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct IstioOperator {
    pub profile: Option<String>,
    pub hub: Option<String>,
    pub tag: Option<Json>,
    pub revision: Option<String>,
    pub namespace: Option<String>,
    pub install_package_path: Option<String>,
    pub resource_suffix: Option<String>,
    pub compatibility_version: Option<String>,
    pub mesh_config: Option<MeshConfig>,
    pub components: Option<Json>,
    pub addon_components: Option<Json>,
    pub values: Option<Json>,
    pub unvalidated_values: Option<Json>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let m = MeshConfig::parse_str("m.yaml", "").unwrap();
        assert_eq!(m.root_namespace(), "istio-system");
        assert_eq!(m.trust_domain(), "cluster.local");
        assert!(m.enable_auto_mtls());
        assert_eq!(m.outbound_mode(), OutboundMode::AllowAny);
        assert_eq!(m.connect_timeout().as_secs(), 10);
        assert_eq!(m.default_service_export_to(), vec!["*"]);
        assert!(m.locality_lb_enabled());
    }

    #[test]
    fn parses_fields_and_reports_typos_with_position() {
        let m = MeshConfig::parse_str(
            "m.yaml",
            "rootNamespace: mesh-root\noutboundTrafficPolicy:\n  mode: REGISTRY_ONLY\nextensionProviders:\n- name: ls\n  lightstep: {service: x, port: 443}\ndefaultConfig:\n  proxyMetadata: {A: \"1\"}\n  holdApplicationUntilProxyStarts: true\n  gatewayTopology: {numTrustedProxies: 1}\n",
        )
        .unwrap();
        assert_eq!(m.root_namespace(), "mesh-root");
        assert_eq!(m.outbound_mode(), OutboundMode::RegistryOnly);
        assert_eq!(
            m.extension_providers[0].kind(),
            Some(ProviderKind::Lightstep)
        );
        assert_eq!(m.extension_providers[0].port(), Some(443));
        let dc = m.default_config.as_ref().unwrap();
        assert_eq!(dc.proxy_metadata["A"], "1");
        assert!(dc.other.contains_key("gatewayTopology"));
        assert!(m.has_provider("envoy") && m.has_provider("ls") && !m.has_provider("nope"));

        let e =
            MeshConfig::parse_str("m.yaml", "enableAutoMtls: true\nrootNamspace: x\n").unwrap_err();
        assert!(e.message.contains("rootNamspace"), "{}", e.message);
        assert_eq!(e.hint.as_deref(), Some("did you mean `rootNamespace`?"));
        assert_eq!(e.span.unwrap().start.line, 2);
    }

    #[test]
    fn from_config_map_and_operator() {
        let b = crate::Bundle::load_str(
            "t.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    trustDomain: example.org\n    enableAutoMtls: false\n",
        );
        let m = MeshConfig::from_objects(&b.objects);
        assert_eq!(m.trust_domain(), "example.org");
        assert!(!m.enable_auto_mtls());

        let b = crate::Bundle::load_str(
            "t.yaml",
            "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: io, namespace: istio-system}\nspec:\n  profile: demo\n  meshConfig:\n    accessLogFile: /dev/stdout\n  values: {global: {proxy: {privileged: true}}}\n",
        );
        assert!(b.diagnostics.is_empty(), "{:?}", b.diagnostics);
        let m = MeshConfig::from_objects(&b.objects);
        assert_eq!(m.access_log_file(), "/dev/stdout");
    }
}
