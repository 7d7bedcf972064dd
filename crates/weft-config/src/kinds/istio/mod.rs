//! Istio kinds: `networking.istio.io`, `security.istio.io`, `telemetry.istio.io`,
//! `extensions.istio.io` and `install.istio.io` (mesh config).

mod destination_rule;
mod envoy_filter;
mod gateway;
mod mesh;
mod proxy_config;
mod security;
mod service_entry;
mod sidecar;
mod telemetry;
mod virtual_service;
mod wasm;

pub use destination_rule::*;
pub use envoy_filter::*;
pub use gateway::*;
pub use mesh::*;
pub use proxy_config::*;
pub use security::*;
pub use service_entry::*;
pub use sidecar::*;
pub use telemetry::*;
pub use virtual_service::*;
pub use wasm::*;
