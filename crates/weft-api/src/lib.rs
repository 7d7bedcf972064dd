//! weft-api: the protobuf/gRPC definitions shared by the control plane and the proxy — the
//! data-plane model (`ProxyConfig` resources), the push transport and the CA service.
//!
//! It holds definitions only, no logic. The definitions arrive with the data plane (issue
//! #3) and the control plane (issue #4); until then this crate is intentionally empty.
