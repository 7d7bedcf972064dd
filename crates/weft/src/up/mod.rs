//! `weft up DIR`: run a directory of Services, weft `Workload`s and mesh config as a local
//! mesh. In order: validate DIR (`weft analyze` diagnostics; errors stop here), start the
//! control plane in-process (with a CA and a bootstrap token per proxy), one proxy per
//! replica, the gateways the config asks for, then the applications; wait for readiness;
//! print a table. Then supervise (a process that exits is reported and restarted with
//! backoff), follow edits of DIR (mesh config applies live after validation; a changed
//! Workload restarts only its replicas) and stop everything on Ctrl-C / SIGTERM /
//! `weft down`.
//!
//! - [`plan`]: DIR's objects → what to run ([`plan::Topology`]).
//! - [`placement`]: where each replica runs; [`placement::Explicit`] is the no-root mode,
//!   [`netns::Transparent`] (`--netns`) the Kubernetes-like one ([`netns_net`]: the host
//!   side of it).
//! - [`mesh`]: the running processes and the registry; [`supervisor`]: restarts;
//!   [`readiness`]: a Workload's `readinessProbe`.
//! - [`watch`]: DIR edits through the control plane's directory source, validated first.
//! - [`state`]: the run directory and the state file `weft down` / `weft status` read.

pub mod launch;
pub mod mesh;
pub mod netns;
pub mod netns_net;
pub mod placement;
pub mod plan;
pub mod readiness;
pub mod state;
pub mod supervisor;
pub mod table;
pub mod watch;

mod run;

pub use run::{UpOptions, run};
pub use state::resolve_debug_addr;
