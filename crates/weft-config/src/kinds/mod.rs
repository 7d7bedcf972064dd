//! Every kind weft understands: its API group, accepted versions, and typed body.
//!
//! All API versions Istio (or Linkerd, or the Gateway API) accepts for a kind share one
//! schema, so a kind is identified by group and kind name; the version only has to be one
//! of the accepted ones.

pub mod common;
pub mod gateway_api;
pub mod istio;
pub mod k8s;
pub mod linkerd;
pub mod weft;

use serde::de::DeserializeOwned;

use crate::de::{DeError, from_node};
use crate::path::FieldPath;
use crate::yaml::{Node, Value};

/// Which part of the document holds a kind's body.
enum Layout {
    /// The body is `spec` (most kinds).
    Spec,
    /// The body is the document without apiVersion/kind/metadata/status (ConfigMap, Secret…).
    TopLevel,
}

macro_rules! kinds {
    ($(
        $(#[$doc:meta])*
        $variant:ident: $group:literal / [$($version:literal),+] $kind:literal, $layout:ident, $namespaced:literal => $ty:ty;
    )*) => {
        /// A kind weft knows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind { $( $(#[$doc])* $variant, )* }

        /// The typed body of an object.
        #[derive(Debug, Clone)]
        #[allow(clippy::large_enum_variant)]
        pub enum Body { $( $variant($ty), )* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The kind's name as written in YAML (`VirtualService`).
            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => $kind,)* }
            }

            /// The API group (`networking.istio.io`; "" for Kubernetes core).
            pub fn group(self) -> &'static str {
                match self { $(Kind::$variant => $group,)* }
            }

            /// The versions accepted for this kind.
            pub fn versions(self) -> &'static [&'static str] {
                match self { $(Kind::$variant => &[$($version),+],)* }
            }

            pub fn namespaced(self) -> bool {
                match self { $(Kind::$variant => $namespaced,)* }
            }

            fn layout(self) -> Layout {
                match self { $(Kind::$variant => Layout::$layout,)* }
            }

            fn parse_body(self, node: &Node, base: &FieldPath) -> Result<Body, DeError> {
                match self { $(Kind::$variant => from_node::<$ty>(node, base).map(Body::$variant),)* }
            }
        }
    };
}

kinds! {
    // Istio networking.
    VirtualService: "networking.istio.io"/["v1", "v1beta1", "v1alpha3"] "VirtualService", Spec, true => istio::VirtualService;
    DestinationRule: "networking.istio.io"/["v1", "v1beta1", "v1alpha3"] "DestinationRule", Spec, true => istio::DestinationRule;
    Gateway: "networking.istio.io"/["v1", "v1beta1", "v1alpha3"] "Gateway", Spec, true => istio::Gateway;
    ServiceEntry: "networking.istio.io"/["v1", "v1beta1", "v1alpha3"] "ServiceEntry", Spec, true => istio::ServiceEntry;
    Sidecar: "networking.istio.io"/["v1", "v1beta1", "v1alpha3"] "Sidecar", Spec, true => istio::Sidecar;
    WorkloadEntry: "networking.istio.io"/["v1", "v1beta1", "v1alpha3"] "WorkloadEntry", Spec, true => istio::WorkloadEntry;
    WorkloadGroup: "networking.istio.io"/["v1", "v1beta1", "v1alpha3"] "WorkloadGroup", Spec, true => istio::WorkloadGroup;
    EnvoyFilter: "networking.istio.io"/["v1alpha3"] "EnvoyFilter", Spec, true => istio::EnvoyFilter;
    ProxyConfig: "networking.istio.io"/["v1beta1"] "ProxyConfig", Spec, true => istio::ProxyConfig;
    // Istio security.
    PeerAuthentication: "security.istio.io"/["v1", "v1beta1"] "PeerAuthentication", Spec, true => istio::PeerAuthentication;
    RequestAuthentication: "security.istio.io"/["v1", "v1beta1"] "RequestAuthentication", Spec, true => istio::RequestAuthentication;
    AuthorizationPolicy: "security.istio.io"/["v1", "v1beta1"] "AuthorizationPolicy", Spec, true => istio::AuthorizationPolicy;
    // Istio telemetry, extensions and install.
    Telemetry: "telemetry.istio.io"/["v1", "v1alpha1"] "Telemetry", Spec, true => istio::Telemetry;
    WasmPlugin: "extensions.istio.io"/["v1alpha1"] "WasmPlugin", Spec, true => istio::WasmPlugin;
    IstioOperator: "install.istio.io"/["v1alpha1"] "IstioOperator", Spec, true => istio::IstioOperator;
    // Linkerd and SMI.
    ServiceProfile: "linkerd.io"/["v1alpha2", "v1alpha1"] "ServiceProfile", Spec, true => linkerd::ServiceProfile;
    LinkerdServer: "policy.linkerd.io"/["v1beta3", "v1beta2", "v1beta1", "v1alpha1"] "Server", Spec, true => linkerd::Server;
    ServerAuthorization: "policy.linkerd.io"/["v1beta1", "v1alpha1"] "ServerAuthorization", Spec, true => linkerd::ServerAuthorization;
    LinkerdAuthorizationPolicy: "policy.linkerd.io"/["v1alpha1"] "AuthorizationPolicy", Spec, true => linkerd::AuthorizationPolicy;
    MeshTlsAuthentication: "policy.linkerd.io"/["v1alpha1"] "MeshTLSAuthentication", Spec, true => linkerd::MeshTlsAuthentication;
    NetworkAuthentication: "policy.linkerd.io"/["v1alpha1"] "NetworkAuthentication", Spec, true => linkerd::NetworkAuthentication;
    LinkerdHttpRoute: "policy.linkerd.io"/["v1beta3", "v1beta2", "v1beta1", "v1alpha1"] "HTTPRoute", Spec, true => gateway_api::HttpRoute;
    TrafficSplit: "split.smi-spec.io"/["v1alpha4", "v1alpha3", "v1alpha2", "v1alpha1"] "TrafficSplit", Spec, true => linkerd::TrafficSplit;
    // Kubernetes Gateway API.
    KubeGateway: "gateway.networking.k8s.io"/["v1", "v1beta1", "v1alpha2"] "Gateway", Spec, true => gateway_api::Gateway;
    GatewayClass: "gateway.networking.k8s.io"/["v1", "v1beta1", "v1alpha2"] "GatewayClass", Spec, false => gateway_api::GatewayClass;
    HttpRoute: "gateway.networking.k8s.io"/["v1", "v1beta1", "v1alpha2"] "HTTPRoute", Spec, true => gateway_api::HttpRoute;
    GrpcRoute: "gateway.networking.k8s.io"/["v1", "v1alpha2"] "GRPCRoute", Spec, true => gateway_api::GrpcRoute;
    TcpRoute: "gateway.networking.k8s.io"/["v1", "v1alpha2"] "TCPRoute", Spec, true => gateway_api::TcpRoute;
    TlsRoute: "gateway.networking.k8s.io"/["v1", "v1alpha3", "v1alpha2"] "TLSRoute", Spec, true => gateway_api::TlsRoute;
    ReferenceGrant: "gateway.networking.k8s.io"/["v1", "v1beta1", "v1alpha2"] "ReferenceGrant", Spec, true => gateway_api::ReferenceGrant;
    // Kubernetes core and apps: enough to know workloads and services from plain manifests.
    Namespace: ""/["v1"] "Namespace", Spec, false => k8s::NamespaceSpec;
    Service: ""/["v1"] "Service", Spec, true => k8s::ServiceSpec;
    Pod: ""/["v1"] "Pod", Spec, true => k8s::PodSpec;
    Deployment: "apps"/["v1"] "Deployment", Spec, true => k8s::WorkloadSpec;
    StatefulSet: "apps"/["v1"] "StatefulSet", Spec, true => k8s::WorkloadSpec;
    DaemonSet: "apps"/["v1"] "DaemonSet", Spec, true => k8s::WorkloadSpec;
    ReplicaSet: "apps"/["v1"] "ReplicaSet", Spec, true => k8s::WorkloadSpec;
    ConfigMap: ""/["v1"] "ConfigMap", TopLevel, true => k8s::ConfigMapBody;
    Secret: ""/["v1"] "Secret", TopLevel, true => k8s::SecretBody;
    MutatingWebhookConfiguration: "admissionregistration.k8s.io"/["v1"] "MutatingWebhookConfiguration", TopLevel, false => k8s::WebhookConfigurationBody;
    ValidatingWebhookConfiguration: "admissionregistration.k8s.io"/["v1"] "ValidatingWebhookConfiguration", TopLevel, false => k8s::WebhookConfigurationBody;
    CustomResourceDefinition: "apiextensions.k8s.io"/["v1"] "CustomResourceDefinition", Spec, false => k8s::CrdSpec;
    // weft's own.
    /// A process weft runs in local mode (`weft up`).
    Workload: "weft.dev"/["v1alpha1"] "Workload", Spec, true => weft::WorkloadSpec;
}

/// What an `apiVersion`/`kind` pair names.
pub enum Lookup {
    Known(Kind),
    /// The kind is known but this version is not one weft (or Istio) accepts.
    BadVersion(Kind),
    Unknown,
}

pub fn lookup(api_version: &str, kind: &str) -> Lookup {
    let (group, version) = match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let mut bad = None;
    for k in Kind::ALL {
        if k.name() == kind && k.group() == group {
            if k.versions().contains(&version) {
                return Lookup::Known(*k);
            }
            bad = Some(*k);
        }
    }
    match bad {
        Some(k) => Lookup::BadVersion(k),
        None => Lookup::Unknown,
    }
}

/// Top-level fields every object may carry besides its body.
const ENVELOPE: &[&str] = &["apiVersion", "kind", "metadata", "status"];

impl Kind {
    /// `apiVersion` to write for this kind (its first accepted version).
    pub fn api_version(self) -> String {
        if self.group().is_empty() {
            self.versions()[0].to_string()
        } else {
            format!("{}/{}", self.group(), self.versions()[0])
        }
    }

    /// Parse the body of a document of this kind, refusing unknown top-level fields.
    pub fn parse(self, doc: &Node) -> Result<Body, DeError> {
        let Value::Map(entries) = &doc.value else {
            return Err(DeError {
                message: "an object must be a map".into(),
                hint: None,
                path: FieldPath::root(),
                span: Some(doc.span.clone()),
            });
        };
        match self.layout() {
            Layout::Spec => {
                for (k, _) in entries {
                    let key = k.as_str().unwrap_or("");
                    if key != "spec" && !ENVELOPE.contains(&key) {
                        let mut fields: Vec<&'static str> = ENVELOPE.to_vec();
                        fields.push("spec");
                        let mut e = <DeError as serde::de::Error>::unknown_field(
                            key,
                            &["apiVersion", "kind", "metadata", "spec", "status"],
                        );
                        e.span = Some(k.span.clone());
                        e.path = FieldPath::root().key(key);
                        return Err(e);
                    }
                }
                let base = FieldPath::root().key("spec");
                match doc.get("spec") {
                    Some(spec) => self.parse_body(spec, &base),
                    None => self.parse_body(&null_like(doc), &base),
                }
            }
            Layout::TopLevel => {
                let rest = Node {
                    span: doc.span.clone(),
                    value: Value::Map(
                        entries
                            .iter()
                            .filter(|(k, _)| !ENVELOPE.contains(&k.as_str().unwrap_or("")))
                            .cloned()
                            .collect(),
                    ),
                };
                self.parse_body(&rest, &FieldPath::root())
            }
        }
    }
}

fn null_like(doc: &Node) -> Node {
    Node {
        span: doc.span.clone(),
        value: Value::Scalar(crate::yaml::Scalar {
            text: String::new(),
            plain: true,
        }),
    }
}

/// Parse a free-standing YAML value (e.g. mesh config embedded in a ConfigMap) as `T`.
pub fn parse_value<T: DeserializeOwned>(node: &Node, base: &FieldPath) -> Result<T, DeError> {
    from_node(node, base)
}
