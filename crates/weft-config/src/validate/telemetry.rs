//! PLACEHOLDER
use super::Report;
use crate::kinds::istio::*;
pub fn telemetry(_: &Telemetry, _: &mut Report) {}
pub fn wasm_plugin(_: &WasmPlugin, _: &mut Report) {}
pub fn istio_operator(_: &IstioOperator, _: &mut Report) {}
