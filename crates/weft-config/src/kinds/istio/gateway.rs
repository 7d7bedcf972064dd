//! Gateway (`networking.istio.io`): `istio/api:networking/v1alpha3/gateway.proto`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A load balancer at the edge of the mesh: which ports it opens, for which hosts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Gateway {
    pub servers: Vec<Server>,
    /// Labels of the gateway pods (any namespace by default). Empty selects every workload.
    pub selector: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Server {
    pub port: Option<Port>,
    /// IP or `unix://` address to bind to.
    pub bind: String,
    /// `[ns/]dnsName`; ns is `*` (default), `.` or a namespace name.
    pub hosts: Vec<String>,
    pub tls: Option<ServerTLSSettings>,
    /// Hidden in Istio's docs.
    pub default_endpoint: String,
    pub name: String,
}

impl Server {
    /// The server's hosts split into (namespace, dnsName); namespace `*` when absent.
    pub fn host_parts(&self) -> Vec<(&str, &str)> {
        self.hosts
            .iter()
            .map(|h| split_namespace_host(h, "*"))
            .collect()
    }

    /// The port's protocol, upper-cased (`HTTP`, `HTTPS`…); "" when unset.
    pub fn protocol(&self) -> String {
        self.port
            .as_ref()
            .map(|p| p.protocol.to_ascii_uppercase())
            .unwrap_or_default()
    }

    pub fn tls_mode(&self) -> Option<ServerTLSMode> {
        self.tls.as_ref().map(ServerTLSSettings::mode)
    }
}

/// Split `ns/host` into its parts; a host without `/` gets `default_ns`.
pub fn split_namespace_host<'a>(h: &'a str, default_ns: &'a str) -> (&'a str, &'a str) {
    match h.split_once('/') {
        Some((ns, host)) => (ns, host),
        None => (default_ns, h),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Port {
    pub number: u32,
    /// HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS (and REDIS, MYSQL); case-insensitive.
    pub protocol: String,
    pub name: String,
    /// Deprecated and ignored.
    pub target_port: Option<u32>,
}

/// TLS settings of a gateway server (also used by Sidecar ingress listeners).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerTLSSettings {
    pub https_redirect: bool,
    /// Unset means PASSTHROUGH.
    pub mode: Option<ServerTLSMode>,
    pub server_certificate: String,
    pub private_key: String,
    pub ca_certificates: String,
    pub ca_crl: String,
    pub credential_name: String,
    pub credential_names: Vec<String>,
    pub tls_certificates: Vec<TLSCertificate>,
    pub ca_cert_credential_name: String,
    pub subject_alt_names: Vec<String>,
    pub verify_certificate_spki: Vec<String>,
    pub verify_certificate_hash: Vec<String>,
    pub min_protocol_version: Option<TLSProtocol>,
    pub max_protocol_version: Option<TLSProtocol>,
    pub cipher_suites: Vec<String>,
}

impl ServerTLSSettings {
    pub fn mode(&self) -> ServerTLSMode {
        self.mode.unwrap_or(ServerTLSMode::Passthrough)
    }

    /// Whether certificates come from a Kubernetes Secret rather than files.
    pub fn uses_credentials(&self) -> bool {
        !self.credential_name.is_empty() || !self.credential_names.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServerTLSMode {
    Passthrough,
    Simple,
    Mutual,
    AutoPassthrough,
    IstioMutual,
    OptionalMutual,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TLSCertificate {
    pub server_certificate: String,
    pub private_key: String,
    pub ca_certificates: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TLSProtocol {
    #[serde(rename = "TLS_AUTO")]
    TlsAuto,
    #[serde(rename = "TLSV1_0")]
    TlsV1_0,
    #[serde(rename = "TLSV1_1")]
    TlsV1_1,
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
}
