//! weft-testkit (dev only): in-process control plane, fake CA, echo/HTTP/gRPC test servers
//! and the network-namespace harness.
//!
//! It grows with the data plane and control plane (issues #3, #4); until then this crate is
//! intentionally empty.
