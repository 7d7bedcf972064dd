//! The run directory of a `weft up` and its state file, which `weft down` and
//! `weft status` read from another terminal.
//!
//! ```text
//! $XDG_RUNTIME_DIR/weft/<dir name>-<hash>/   (or /tmp/weft-<uid>/<dir name>-<hash>/)
//!   state.json      pid of `weft up`, control plane addresses, gateway URLs, processes
//!   ca/             the mesh CA (removed on exit)
//!   logs/<replica>.app.log, logs/<replica>.proxy.log
//!   data/<replica>/ DATA_DIR of each application (kept)
//! ```

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::netns_net::{self, NetworkRecord};

pub const STATE_FILE: &str = "state.json";

/// What a running `weft up` publishes about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpState {
    /// The `weft up` process (`weft down` signals it).
    pub pid: u32,
    /// The directory it runs.
    pub dir: PathBuf,
    pub run_dir: PathBuf,
    /// Where proxies connect (gRPC).
    pub control: String,
    /// The control plane's debug API (`weft status --control-debug`).
    pub debug: String,
    pub gateways: Vec<String>,
    pub mode: String,
    /// Every process started and probed ready (or given up on after the timeout).
    pub ready: bool,
    /// Every supervised process; `pid` is absent while it waits for a restart.
    pub processes: Vec<ProcessEntry>,
    /// `--netns`: the bridge and namespaces it created, removed on stop.
    #[serde(default)]
    pub network: Option<NetworkRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessEntry {
    /// `app cart-0`, `proxy cart-0`.
    pub label: String,
    /// `app` or `proxy`.
    pub role: String,
    /// `namespace/workload`.
    pub workload: String,
    pub replica: String,
    /// The replica's address (its proxy's inbound ports are there).
    pub address: String,
    pub pid: Option<u32>,
    pub log: PathBuf,
    /// Restarts since `weft up` started it.
    pub restarts: u32,
}

/// Where run directories live: `$XDG_RUNTIME_DIR/weft`, else `/tmp/weft-<uid>`.
pub fn base_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("weft"),
        _ => {
            // The owner of /proc/self is this process's effective user.
            let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
            std::env::temp_dir().join(format!("weft-{uid}"))
        }
    }
}

/// The run directory for `dir`: its name plus a hash of its absolute path, so two
/// projects both called `shop` do not meet.
pub fn run_dir_for(dir: &Path) -> PathBuf {
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut h = DefaultHasher::new();
    abs.hash(&mut h);
    let name = abs
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .unwrap_or("root");
    base_dir().join(format!("{name}-{:08x}", h.finish() as u32))
}

/// Whether process `pid` exists and has not exited. A zombie (exited, not yet reaped by
/// its parent) counts as gone: it runs nothing and holds no port.
pub fn alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)` (comm may contain one).
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The process group of `pid` (field 5 of `/proc/<pid>/stat`).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// SIGKILL the process groups a `weft up` that did not stop cleanly left running. Only
/// processes still leading their own group are touched: a recycled pid is left alone.
/// Returns how many were killed.
pub fn kill_leftovers(state: &UpState) -> usize {
    let mut killed = 0;
    for p in &state.processes {
        let Some(pid) = p.pid else {
            continue;
        };
        if alive(pid)
            && process_group(pid) == Some(pid)
            && let Ok(raw) = i32::try_from(pid)
            && nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        {
            killed += 1;
        }
    }
    killed
}

/// Remove the network a `--netns` run that did not stop cleanly left behind (call after
/// [`kill_leftovers`]). Returns what could not be removed.
pub fn remove_network_leftovers(state: &UpState) -> Vec<String> {
    match &state.network {
        Some(record) => netns_net::teardown(record),
        None => Vec::new(),
    }
}

pub fn read(run_dir: &Path) -> anyhow::Result<Option<UpState>> {
    let path = run_dir.join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let state = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a weft up state file", path.display()))?;
    Ok(Some(state))
}

/// Replace the state file in one step (readers never see half of it).
pub fn write(run_dir: &Path, state: &UpState) -> anyhow::Result<()> {
    let path = run_dir.join(STATE_FILE);
    let tmp = run_dir.join(format!(".{STATE_FILE}.tmp"));
    let text = serde_json::to_string_pretty(state)?;
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The run directories under [`base_dir`] whose `weft up` is still running.
pub fn running() -> Vec<UpState> {
    let Ok(entries) = std::fs::read_dir(base_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<UpState> = entries
        .flatten()
        .filter_map(|e| read(&e.path()).ok().flatten())
        .filter(|s| alive(s.pid))
        .collect();
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// The debug API of the one `weft up` running, if exactly one runs.
pub fn discover_debug_addr() -> Option<String> {
    match running().as_slice() {
        [one] => Some(one.debug.clone()),
        _ => None,
    }
}

/// The debug address `weft status` and friends read: `given`, unless it is the default
/// (127.0.0.1:15014), nothing answers there, and exactly one `weft up` runs (its debug
/// API moved to a free port because 15014 was taken).
pub fn resolve_debug_addr(given: &str) -> String {
    let default = super::run::DEFAULT_DEBUG;
    if given == default.to_string()
        && std::net::TcpStream::connect_timeout(&default, std::time::Duration::from_millis(300))
            .is_err()
        && let Some(found) = discover_debug_addr()
    {
        return found;
    }
    given.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_dead_pid_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        let state = UpState {
            pid: std::process::id(),
            dir: "/x".into(),
            debug: "127.0.0.1:1".into(),
            ..Default::default()
        };
        write(dir.path(), &state).unwrap();
        let back = read(dir.path()).unwrap().unwrap();
        assert_eq!(back.pid, std::process::id());
        assert!(alive(back.pid));
        assert!(!alive(0));
        // Pid numbers this high are never handed out (pid_max is at most 2^22).
        assert!(!alive(1 << 30));
    }

    #[test]
    fn run_dirs_differ_for_same_named_directories() {
        let a = run_dir_for(Path::new("/a/shop"));
        let b = run_dir_for(Path::new("/b/shop"));
        assert_ne!(a, b);
        assert!(
            a.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("shop-")
        );
    }
}
