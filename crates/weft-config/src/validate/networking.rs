//! PLACEHOLDER
use super::Report;
use crate::kinds::istio::*;
pub fn virtual_service(_: &VirtualService, _: &mut Report) {}
pub fn destination_rule(_: &DestinationRule, _: &mut Report) {}
pub fn gateway(_: &Gateway, _: &mut Report) {}
pub fn service_entry(_: &ServiceEntry, _: &mut Report) {}
pub fn sidecar(_: &Sidecar, _: &mut Report) {}
pub fn workload_entry(_: &WorkloadEntry, _: &mut Report) {}
pub fn workload_group(_: &WorkloadGroup, _: &mut Report) {}
pub fn envoy_filter(_: &EnvoyFilter, _: &mut Report) {}
pub fn proxy_config(_: &ProxyConfig, _: &mut Report) {}
