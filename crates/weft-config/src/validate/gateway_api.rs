//! PLACEHOLDER
use super::Report;
use crate::kinds::gateway_api::*;
pub fn http_route(_: &HttpRoute, _: &mut Report) {}
pub fn gateway(_: &Gateway, _: &mut Report) {}
pub fn gateway_class(_: &GatewayClass, _: &mut Report) {}
pub fn grpc_route(_: &GrpcRoute, _: &mut Report) {}
pub fn tcp_route(_: &TcpRoute, _: &mut Report) {}
pub fn tls_route(_: &TlsRoute, _: &mut Report) {}
pub fn reference_grant(_: &ReferenceGrant, _: &mut Report) {}
