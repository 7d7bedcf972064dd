//! PLACEHOLDER
use super::Report;
use crate::kinds::istio::*;
pub fn peer_authentication(_: &PeerAuthentication, _: &mut Report) {}
pub fn request_authentication(_: &RequestAuthentication, _: &mut Report) {}
pub fn authorization_policy(_: &AuthorizationPolicy, _: &mut Report) {}
