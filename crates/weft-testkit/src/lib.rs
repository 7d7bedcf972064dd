//! weft-testkit (dev only): test servers and config fixtures for weft's tests.
//!
//! - [`ca::FakeCa`]: a throwaway CA issuing SPIFFE (and DNS) certificates for mTLS tests.
//! - [`echo::EchoServer`]: HTTP/1.1 + h2c server that reports what it received and can be
//!   told, per request, to delay, fail, reset, stream or upgrade.
//! - [`tcp::TcpEchoServer`]: echoes bytes.
//! - [`client::TestClient`]: a small HTTP/1.1 / h2c client that collects whole responses.
//! - [`fixtures`]: concise builders for `ProxyConfig` pieces.
//! - [`wait`]: polling for a condition with a deadline.
//! - [`netns`]: network namespaces (router bridge, pods, veths) for end-to-end tests as root.

pub mod body;
pub mod ca;
pub mod client;
pub mod echo;
pub mod fixtures;
pub mod netns;
pub mod tcp;
pub mod wait;
