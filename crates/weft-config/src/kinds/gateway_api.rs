//! PLACEHOLDER: replaced by the full typed schema.
use serde::Deserialize;
#[derive(Debug, Clone, Default, Deserialize)] pub struct Gateway {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct GatewayClass {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct HttpRoute {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct GrpcRoute {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct TcpRoute {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct TlsRoute {}
#[derive(Debug, Clone, Default, Deserialize)] pub struct ReferenceGrant {}
