//! PLACEHOLDER: replaced by the full typed schema.
use serde::Deserialize;
#[derive(Debug, Clone, Default, Deserialize)] pub struct ServiceProfile {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct Server {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct ServerAuthorization {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct AuthorizationPolicy {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct MeshTlsAuthentication {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct NetworkAuthentication {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct TrafficSplit {}
