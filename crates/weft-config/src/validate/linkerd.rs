//! PLACEHOLDER
use super::Report;
use crate::kinds::linkerd::*;
pub fn service_profile(_: &ServiceProfile, _: &mut Report) {}
pub fn server(_: &Server, _: &mut Report) {}
pub fn server_authorization(_: &ServerAuthorization, _: &mut Report) {}
pub fn authorization_policy(_: &AuthorizationPolicy, _: &mut Report) {}
pub fn mesh_tls_authentication(_: &MeshTlsAuthentication, _: &mut Report) {}
pub fn network_authentication(_: &NetworkAuthentication, _: &mut Report) {}
pub fn traffic_split(_: &TrafficSplit, _: &mut Report) {}
