//! weft-compile: `compile(&Snapshot, &Registry, &ProxyId) -> ProxyConfig`, where every
//! Istio / Gateway API / Linkerd traffic rule is implemented once. Pure and deterministic.
//!
//! The compiler arrives with the data plane (issue #3); until then this crate is
//! intentionally empty.
