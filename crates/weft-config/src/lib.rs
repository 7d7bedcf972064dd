//! weft's configuration model: typed Istio, Gateway API, Linkerd/SMI, Kubernetes and weft
//! kinds; loading from YAML/JSON with positions; per-kind validation; cross-resource
//! analysis (`weft analyze`).
//!
//! This crate reads files and nothing else: it knows nothing of proxies.

// Errors here carry a whole diagnostic (message, hint, field path, span) and are built on the
// cold path only; boxing them would add noise to every signature for no gain.
#![allow(clippy::result_large_err)]

pub mod analyze;
pub mod de;
pub mod diag;
pub mod kinds;
pub mod load;
pub mod log_format;
pub mod object;
pub mod path;
pub mod source;
pub mod telemetry_expr;
#[cfg(test)]
pub(crate) mod testing;
pub mod tree;
pub mod validate;
pub mod yaml;

pub use diag::{Diagnostic, Severity};
pub use kinds::{Body, Kind};
pub use load::Bundle;
pub use object::Object;
pub use path::FieldPath;
