//! Per-kind validation: the rules Istio's webhook and CRD schemas enforce (and a few more
//! that only weft checks), reported at the field responsible.

mod gateway_api;
mod k8s;
mod linkerd;
mod networking;
pub mod rules;
mod security;
mod telemetry;
mod telemetry_text;

use crate::diag::{Diagnostic, Severity, codes};
use crate::kinds::Body;
use crate::object::Object;
use crate::path::FieldPath;

/// Collects diagnostics about one object, resolving field paths to positions.
pub struct Report<'a> {
    obj: &'a Object,
    out: &'a mut Vec<Diagnostic>,
}

impl<'a> Report<'a> {
    pub fn new(obj: &'a Object, out: &'a mut Vec<Diagnostic>) -> Report<'a> {
        Report { obj, out }
    }

    pub fn object(&self) -> &Object {
        self.obj
    }

    /// A schema error (IST0106) at `path`.
    pub fn error(
        &mut self,
        path: impl Into<FieldPath>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(codes::SCHEMA, Severity::Error, path, message)
    }

    /// A schema warning (IST0133) at `path`.
    pub fn warning(
        &mut self,
        path: impl Into<FieldPath>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.push(codes::SCHEMA_WARNING, Severity::Warning, path, message)
    }

    pub fn push(
        &mut self,
        code: &'static str,
        severity: Severity,
        path: impl Into<FieldPath>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let path = path.into();
        let mut d = Diagnostic::new(code, severity, message);
        d.span = Some(self.obj.span_of(&path));
        d.resource = Some(self.obj.resource_ref());
        d.field = (!path.is_root()).then_some(path);
        self.out.push(d);
        self.out.last_mut().expect("just pushed")
    }
}

impl Diagnostic {
    /// Set the fix-it hint in place (for use on [`Report`] results).
    pub fn hint(&mut self, hint: impl Into<String>) -> &mut Diagnostic {
        self.hint = Some(hint.into());
        self
    }
}

/// Validate one object.
pub fn validate(obj: &Object) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut r = Report::new(obj, &mut out);
    k8s::metadata(&mut r);
    match &obj.body {
        Body::VirtualService(v) => networking::virtual_service(v, &mut r),
        Body::DestinationRule(v) => networking::destination_rule(v, &mut r),
        Body::Gateway(v) => networking::gateway(v, &mut r),
        Body::ServiceEntry(v) => networking::service_entry(v, &mut r),
        Body::Sidecar(v) => networking::sidecar(v, &mut r),
        Body::WorkloadEntry(v) => networking::workload_entry(v, &mut r),
        Body::WorkloadGroup(v) => networking::workload_group(v, &mut r),
        Body::EnvoyFilter(v) => networking::envoy_filter(v, &mut r),
        Body::ProxyConfig(v) => networking::proxy_config(v, &mut r),
        Body::PeerAuthentication(v) => security::peer_authentication(v, &mut r),
        Body::RequestAuthentication(v) => security::request_authentication(v, &mut r),
        Body::AuthorizationPolicy(v) => security::authorization_policy(v, &mut r),
        Body::Telemetry(v) => telemetry::telemetry(v, &mut r),
        Body::WasmPlugin(v) => telemetry::wasm_plugin(v, &mut r),
        Body::IstioOperator(v) => telemetry::istio_operator(v, &mut r),
        Body::ServiceProfile(v) => linkerd::service_profile(v, &mut r),
        Body::LinkerdServer(v) => linkerd::server(v, &mut r),
        Body::ServerAuthorization(v) => linkerd::server_authorization(v, &mut r),
        Body::LinkerdAuthorizationPolicy(v) => linkerd::authorization_policy(v, &mut r),
        Body::MeshTlsAuthentication(v) => linkerd::mesh_tls_authentication(v, &mut r),
        Body::NetworkAuthentication(v) => linkerd::network_authentication(v, &mut r),
        Body::TrafficSplit(v) => linkerd::traffic_split(v, &mut r),
        Body::LinkerdHttpRoute(v) | Body::HttpRoute(v) => gateway_api::http_route(v, &mut r),
        Body::KubeGateway(v) => gateway_api::gateway(v, &mut r),
        Body::GatewayClass(v) => gateway_api::gateway_class(v, &mut r),
        Body::GrpcRoute(v) => gateway_api::grpc_route(v, &mut r),
        Body::TcpRoute(v) => gateway_api::tcp_route(v, &mut r),
        Body::TlsRoute(v) => gateway_api::tls_route(v, &mut r),
        Body::ReferenceGrant(v) => gateway_api::reference_grant(v, &mut r),
        Body::Service(v) => k8s::service(v, &mut r),
        Body::Workload(v) => k8s::weft_workload(v, &mut r),
        Body::Namespace(_)
        | Body::Pod(_)
        | Body::Deployment(_)
        | Body::StatefulSet(_)
        | Body::DaemonSet(_)
        | Body::ReplicaSet(_)
        | Body::ConfigMap(_)
        | Body::Secret(_)
        | Body::MutatingWebhookConfiguration(_)
        | Body::ValidatingWebhookConfiguration(_)
        | Body::CustomResourceDefinition(_) => {}
    }
    out
}
