//! PeerAuthentication, RequestAuthentication and AuthorizationPolicy, plus the scope checks
//! (workload selector, targetRef/targetRefs) the security, telemetry and extension kinds
//! share.

mod authz;
mod jwt;
mod scope;
#[cfg(test)]
mod tests;

pub use authz::authorization_policy;
pub use jwt::request_authentication;
pub(super) use scope::policy_scope;

use super::Report;
use crate::kinds::istio::*;
use crate::path::FieldPath;
use scope::workload_selector;

fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

pub fn peer_authentication(p: &PeerAuthentication, r: &mut Report) {
    if let Some(sel) = &p.selector {
        workload_selector(r, sel, spec().key("selector"));
    }
    let Some(ports) = &p.port_level_mtls else {
        return;
    };
    let at = spec().key("portLevelMtls");
    if ports.is_empty() {
        r.error(
            at.clone(),
            "portLevelMtls, if set, must have at least one port",
        )
        .hint("remove `portLevelMtls: {}` or add a port, e.g. `\"8080\": {mode: DISABLE}`");
        return;
    }
    if !p.has_selector() {
        r.error(
            at.clone(),
            "portLevelMtls requires selector: a mesh/namespace peer authentication cannot have port level mTLS",
        )
        .hint("add `selector.matchLabels` naming the workloads whose ports these are");
    }
    for k in ports.keys() {
        match k.trim().parse::<u64>() {
            Err(_) => {
                r.error(
                    at.key(k.clone()),
                    format!(
                        "type conversion error from `{k}`: portLevelMtls keys must be port numbers"
                    ),
                )
                .hint("key each entry by the workload's container port, e.g. \"8080\"");
            }
            Ok(n) if !(1..=65535).contains(&n) => {
                r.error(
                    at.key(k.clone()),
                    format!("port must be between 1-65535, found {n}"),
                )
                .hint("use the workload's container (target) port");
            }
            Ok(_) => {}
        }
    }
}
