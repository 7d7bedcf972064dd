//! `security.istio.io`: PeerAuthentication, RequestAuthentication, AuthorizationPolicy.

mod authorization;
mod peer;
mod request;

pub use authorization::*;
pub use peer::*;
pub use request::*;
