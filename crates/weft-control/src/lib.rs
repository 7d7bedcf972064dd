//! weft-control: config sources, service registry, compile-on-change, push with ACK/NACK,
//! the CA, status and the debug API.
//!
//! The control plane arrives with issue #4; until then this crate is intentionally empty.
