//! Network-namespace harness for end-to-end tests (Linux, root).
//!
//! A [`Network`] is one test's private topology, after ztunnel's `NamespaceManager`:
//!
//! ```text
//!   <prefix>-router            <prefix>-a              <prefix>-b
//!   br0 ── v0 ════════════════ eth0 10.248.0.10/16
//!       └─ v1 ════════════════════════════════════════ eth0 10.248.0.11/16
//! ```
//!
//! - Every namespace name starts with a prefix derived from the test name and the process
//!   id, so tests run in parallel and never meet leftovers of another run.
//! - The bridge lives in a "router" namespace of its own and the veth pairs are created
//!   there, so nothing is configured in the host's namespace: interface names only have to
//!   be unique inside each test's namespaces.
//! - Pod addresses are deterministic (`10.248.0.<10 + index>`) on a /16, so any
//!   `10.248.x.y` (a Service's cluster IP, for instance) is routable from every pod: traffic
//!   to such an address leaves through `eth0`, where iptables can capture it.
//! - Dropping the [`Network`] (also while a failed test unwinds) deletes every namespace,
//!   which removes the veths and the bridge with them.
//!
//! Code runs inside a pod on an OS thread that joined the namespace (`setns`) and drives a
//! current-thread tokio runtime ([`Pod::run`], [`Pod::start`]), because a network namespace
//! belongs to a thread; processes run under `ip netns exec` ([`Pod::command`]).
//!
//! Privileges: creating namespaces needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN). [`setup`]
//! turns "not possible here" into a visible skip on a developer machine and into a test
//! failure when `CI=true`, where these tests must run.

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::process::Command;
use std::thread::JoinHandle;

use nix::sched::{CloneFlags, setns};
use tokio::sync::oneshot;

/// The private range pods get addresses from (never routed outside the test namespaces).
pub const POD_PREFIX_LEN: u8 = 16;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "`{command}` failed: {detail} (network namespaces need root: CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    )]
    Command { command: String, detail: String },
    #[error("cannot enter network namespace {name}: {detail}")]
    Enter { name: String, detail: String },
    #[error("cannot start a thread for namespace {name}: {detail}")]
    Thread { name: String, detail: String },
}

/// Create the test's network, or decide what to do when namespaces are unavailable: with
/// `CI=true` that is a test failure (panic); otherwise a message on stderr and `None`, so
/// the caller returns early.
pub fn setup(test: &str) -> Option<Network> {
    match Network::new(test) {
        Ok(net) => Some(net),
        Err(e) => {
            skip_or_fail(test, &format!("network namespaces are unavailable: {e}"));
            None
        }
    }
}

/// With `CI=true` panic (CI must run the namespace tests); otherwise print why the test is
/// skipped.
pub fn skip_or_fail(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: {why}; CI=true, so this test must run (CI runs as root)");
    }
    eprintln!("SKIPPED {test}: {why}. Run as root (as CI does) to run it.");
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// One test's namespaces: a router with a bridge, and the pods attached to it.
pub struct Network {
    prefix: String,
    router: String,
    /// Every namespace created, deleted in reverse order on drop.
    created: Vec<String>,
    pods: usize,
}

impl Network {
    /// Create the router namespace and its bridge. `test` names the namespaces.
    pub fn new(test: &str) -> Result<Network, NetnsError> {
        let prefix = prefix_for(test, std::process::id());
        let router = format!("{prefix}-router");
        let mut net = Network {
            prefix,
            router: router.clone(),
            created: Vec::new(),
            pods: 0,
        };
        net.add_namespace(&router)?;
        ip(&["-n", &router, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &router, "link", "set", "br0", "up"])?;
        Ok(net)
    }

    /// The namespace-name prefix of this test.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A new pod namespace on the bridge, with loopback up and the next address.
    pub fn add_pod(&mut self, name: &str) -> Result<Pod, NetnsError> {
        let index = self.pods;
        let ip_addr = pod_ip(index);
        let ns = format!("{}-{name}", self.prefix);
        self.add_namespace(&ns)?;
        self.pods += 1;
        let veth = format!("v{index}");
        ip(&[
            "-n",
            &self.router,
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ])?;
        ip(&["-n", &self.router, "link", "set", &veth, "master", "br0"])?;
        ip(&["-n", &self.router, "link", "set", &veth, "up"])?;
        let cidr = format!("{ip_addr}/{POD_PREFIX_LEN}");
        ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(Pod {
            netns: ns,
            ip: ip_addr,
        })
    }

    fn add_namespace(&mut self, name: &str) -> Result<(), NetnsError> {
        // A leftover of a crashed run with the same pid would make `add` fail.
        let _ = ip(&["netns", "del", name]);
        ip(&["netns", "add", name])?;
        self.created.push(name.to_string());
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("warning: cleaning up test namespace: {e}");
            }
        }
    }
}

/// `wt-<test name, shortened>-<pid>`: unique per test and per run, short enough to read in
/// `ip netns list`.
fn prefix_for(test: &str, pid: u32) -> String {
    let name: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(24)
        .collect();
    format!("wt-{name}-{pid}")
}

/// The address of the pod with this index: `10.248.0.10`, `10.248.0.11`, ...
pub fn pod_ip(index: usize) -> Ipv4Addr {
    let host = u8::try_from(10 + index).unwrap_or(u8::MAX);
    Ipv4Addr::new(10, 248, 0, host)
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    run(Command::new("ip").args(args))
}

fn run(cmd: &mut Command) -> Result<(), NetnsError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| NetnsError::Command {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetnsError::Command {
        command,
        detail: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// A pod: a network namespace with one interface on the test bridge.
#[derive(Debug, Clone)]
pub struct Pod {
    pub netns: String,
    pub ip: Ipv4Addr,
}

impl Pod {
    /// `ip netns exec <ns> <program>`: a process inside the pod. Add arguments, uid/gid
    /// (`std::os::unix::process::CommandExt`) and pipes as needed.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    /// Run `f` to completion inside the pod, on a thread of its own with a current-thread
    /// runtime, and return its output. A panic inside is re-raised here.
    pub async fn run<F, Fut, T>(&self, f: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let thread = spawn_in(&self.netns, move || {
            let _ = tx.send(block_on_current_thread(f()));
        });
        let thread = thread.unwrap_or_else(|e| panic!("{e}"));
        let out = rx.await;
        join_thread(thread).await;
        match out {
            Ok(value) => value,
            Err(_) => panic!("the thread in {} ended without a result", self.netns),
        }
    }

    /// Start `f` inside the pod and keep its runtime alive (tasks `f` spawned keep
    /// running) until the returned [`Background`] is dropped. Returns once `f` has
    /// finished, with its output: the ready handshake (a bound address, a server handle).
    pub async fn start<F, Fut, T>(&self, f: F) -> (Background, T)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = spawn_in(&self.netns, move || {
            block_on_current_thread(async move {
                let _ = ready_tx.send(f().await);
                // Serve the tasks `f` spawned until told to stop (or the handle is gone).
                let _ = stop_rx.await;
            });
        });
        let thread = thread.unwrap_or_else(|e| panic!("{e}"));
        match ready_rx.await {
            Ok(value) => (
                Background {
                    stop: Some(stop_tx),
                    thread: Some(thread),
                },
                value,
            ),
            Err(_) => {
                // The thread died before it was ready: re-raise its panic.
                join_thread(thread).await;
                panic!("the thread in {} ended before it was ready", self.netns)
            }
        }
    }
}

/// A runtime kept alive inside a namespace; dropping it stops the runtime (cancelling its
/// tasks) and joins the thread.
pub struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Already unwinding or not, a panic of the namespace thread is reported here
            // rather than lost.
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("a namespace thread panicked");
            }
        }
    }
}

/// A thread that joined network namespace `netns` before running `job`.
fn spawn_in<F>(netns: &str, job: F) -> Result<JoinHandle<()>, NetnsError>
where
    F: FnOnce() + Send + 'static,
{
    let path = format!("/var/run/netns/{netns}");
    let file = File::open(&path).map_err(|e| NetnsError::Enter {
        name: netns.to_string(),
        detail: format!("{path}: {e}"),
    })?;
    let name = netns.to_string();
    std::thread::Builder::new()
        .name(format!("netns {netns}"))
        .spawn(move || {
            // Only this thread moves; the rest of the test process stays where it is.
            if let Err(e) = setns(&file, CloneFlags::CLONE_NEWNET) {
                panic!("cannot enter network namespace {name}: {e}");
            }
            job();
        })
        .map_err(|e| NetnsError::Thread {
            name: netns.to_string(),
            detail: e.to_string(),
        })
}

fn block_on_current_thread<Fut: Future>(fut: Fut) -> Fut::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt {
        Ok(rt) => rt.block_on(fut),
        Err(e) => panic!("cannot start a tokio runtime in a namespace thread: {e}"),
    }
}

/// Join without blocking the caller's runtime; re-raise the thread's panic.
async fn join_thread(thread: JoinHandle<()>) {
    let joined = tokio::task::spawn_blocking(move || thread.join()).await;
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => panic!("joining a namespace thread: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_per_test_and_per_process() {
        assert_eq!(
            prefix_for("netns_transparent", 42),
            "wt-netns-transparent-42"
        );
        assert_ne!(prefix_for("a", 1), prefix_for("a", 2));
        assert_ne!(prefix_for("a", 1), prefix_for("b", 1));
        let long = prefix_for(&"x".repeat(100), 7);
        assert!(long.len() <= 3 + 24 + 1 + 10, "{long}");
    }

    #[test]
    fn pod_addresses_are_deterministic_and_private() {
        assert_eq!(pod_ip(0), Ipv4Addr::new(10, 248, 0, 10));
        assert_eq!(pod_ip(1), Ipv4Addr::new(10, 248, 0, 11));
        assert!(pod_ip(3).is_private());
    }
}
