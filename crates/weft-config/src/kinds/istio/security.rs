//! PLACEHOLDER: replaced by the full typed schema.
use serde::Deserialize;
#[derive(Debug, Clone, Default, Deserialize)] pub struct PeerAuthentication {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct RequestAuthentication {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct AuthorizationPolicy {}
