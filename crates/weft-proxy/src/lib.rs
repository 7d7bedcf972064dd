//! weft-proxy: the sidecar and gateway proxy. It consumes compiled `ProxyConfig` only and
//! never depends on `weft-config` or `weft-compile`.
//!
//! The proxy arrives with issue #3; until then this crate is intentionally empty.
