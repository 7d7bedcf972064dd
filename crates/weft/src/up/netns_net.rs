//! The host side of `weft up --netns`: a bridge in the host's namespace, one network
//! namespace per replica joined to it by a veth pair, and the per-namespace files
//! `ip netns exec` mounts over `/etc` (`/etc/netns/<ns>/hosts`). Everything is done with
//! the `ip` tool, as a user would, and everything created is listed in a
//! [`NetworkRecord`] that goes to the state file, so [`teardown`] removes exactly that,
//! also after a `weft up` that was killed.
//!
//! ```text
//!   host namespace                        weft-<hash>-<ns>-<replica>
//!   weft-<hash> (bridge) 10.X.0.1/16
//!     └─ wv<hash>-<n> ═══════════════════ eth0 10.X.0.N/16, default via 10.X.0.1
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The prefix length of the run's network: replicas, the bridge and service addresses
/// all live in one /16, so every address of it is on-link inside a replica (traffic to a
/// service address leaves through `eth0`, where the capture sees it first).
pub const PREFIX_LEN: u8 = 16;

/// Where `ip netns exec` finds the files it mounts over `/etc` inside a namespace.
pub const ETC_NETNS: &str = "/etc/netns";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "`{command}` failed: {detail} (weft up --netns needs root: CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    )]
    Command { command: String, detail: String },
    #[error(
        "no free 10.X.0.0/16 network for the replicas: every one overlaps a route or address of this host"
    )]
    NoFreeNetwork,
    #[error("cannot write {path}: {detail}")]
    File { path: String, detail: String },
}

/// What a `weft up --netns` created on the host, for exact cleanup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// The bridge (`weft-<hash>`); deleting it removes its addresses and routes.
    pub bridge: String,
    /// The run's network, e.g. `10.57.0.0/16`.
    pub subnet: String,
    /// The bridge's address (the replicas' default gateway; the control plane listens here).
    pub gateway: String,
    /// Every namespace name handed out. Deleting a namespace removes its veth pair (and
    /// the bridge port with it) and its iptables rules.
    pub namespaces: Vec<String>,
    /// Prefix shared by the names above, to sweep what a record may have missed.
    pub prefix: String,
}

/// The `ip` tool, or an error saying what to install.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]);
    dirs.into_iter().map(|d| d.join(name)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn run(cmd: &mut Command) -> Result<String, NetError> {
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| NetError::Command {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(NetError::Command {
        command,
        detail: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

pub fn ip(args: &[&str]) -> Result<String, NetError> {
    let tool = find_tool("ip").unwrap_or_else(|| PathBuf::from("ip"));
    run(Command::new(tool).args(args))
}

/// An IPv4 network `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Net {
    pub fn parse(text: &str) -> Option<Net> {
        let (a, len) = match text.split_once('/') {
            Some((a, l)) => (a, l.parse().ok()?),
            None => (text, 32),
        };
        let addr: Ipv4Addr = a.parse().ok()?;
        (len <= 32).then_some(Net { addr, len })
    }

    fn mask(len: u8) -> u32 {
        if len == 0 { 0 } else { u32::MAX << (32 - len) }
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other: &Net) -> bool {
        let len = self.len.min(other.len);
        let m = Net::mask(len);
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }
}

/// The networks the host already uses: every route of every table (except the default
/// route) and every address.
fn used_networks() -> Result<Vec<Net>, NetError> {
    let routes = ip(&["-4", "route", "show", "table", "all"])?;
    let addrs = ip(&["-4", "-o", "addr", "show"])?;
    let mut used: Vec<Net> = routes
        .lines()
        .filter_map(|l| {
            let first = l.split_whitespace().next()?;
            // `local 10.1.2.3 ...`, `broadcast ...`: the address is the second word.
            let first = match first {
                "local" | "broadcast" | "unicast" | "multicast" => l.split_whitespace().nth(1)?,
                other => other,
            };
            Net::parse(first)
        })
        .filter(|n| n.len > 0)
        .collect();
    // `2: eth0    inet 192.0.2.2/24 brd ...`
    used.extend(addrs.lines().filter_map(|l| {
        let mut words = l.split_whitespace();
        words.find(|w| *w == "inet")?;
        Net::parse(words.next()?)
    }));
    Ok(used)
}

/// The first 10.X.0.0/16, starting at `preferred` (derived from the run), that overlaps
/// nothing the host routes.
pub fn choose_subnet(preferred: u8) -> Result<u8, NetError> {
    let used = used_networks()?;
    free_subnet(preferred, &used).ok_or(NetError::NoFreeNetwork)
}

pub fn free_subnet(preferred: u8, used: &[Net]) -> Option<u8> {
    (0..=255u16)
        .map(|i| ((u16::from(preferred) + i) % 256) as u8)
        .find(|x| {
            let candidate = Net {
                addr: Ipv4Addr::new(10, *x, 0, 0),
                len: PREFIX_LEN,
            };
            !used.iter().any(|u| u.overlaps(&candidate))
        })
}

/// Create the bridge with `gateway/16` and bring it up.
pub fn create_bridge(bridge: &str, gateway: Ipv4Addr) -> Result<(), NetError> {
    ip(&["link", "add", bridge, "type", "bridge"])?;
    let cidr = format!("{gateway}/{PREFIX_LEN}");
    ip(&["addr", "add", &cidr, "dev", bridge])?;
    ip(&["link", "set", bridge, "up"])?;
    Ok(())
}

/// An extra host address on the bridge (a gateway proxy in the host namespace binds it).
pub fn add_bridge_address(bridge: &str, addr: Ipv4Addr) -> Result<(), NetError> {
    let cidr = format!("{addr}/32");
    match ip(&["addr", "add", &cidr, "dev", bridge]) {
        Err(NetError::Command { detail, .. }) if detail.contains("File exists") => Ok(()),
        other => other.map(drop),
    }
}

/// A namespace with `eth0` (`addr/16`, default route via `gateway`) on the bridge, and
/// `lo` up. `veth` is the host-side name (at most 15 bytes).
pub fn create_namespace(
    ns: &str,
    veth: &str,
    bridge: &str,
    addr: Ipv4Addr,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    ip(&["netns", "add", ns])?;
    ip(&[
        "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
    ])?;
    ip(&["link", "set", veth, "master", bridge])?;
    ip(&["link", "set", veth, "up"])?;
    let cidr = format!("{addr}/{PREFIX_LEN}");
    ip(&["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
    ip(&["-n", ns, "link", "set", "eth0", "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    let gw = gateway.to_string();
    ip(&["-n", ns, "route", "add", "default", "via", &gw])?;
    Ok(())
}

/// Write `/etc/netns/<ns>/hosts` (mounted over `/etc/hosts` for processes started with
/// `ip netns exec`). Replaced in one step: a process resolving meanwhile sees the old or
/// the new file.
pub fn write_hosts(ns: &str, text: &str) -> Result<(), NetError> {
    let dir = Path::new(ETC_NETNS).join(ns);
    let err = |path: &Path, e: std::io::Error| NetError::File {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| err(&dir, e))?;
    let path = dir.join("hosts");
    let tmp = dir.join(".hosts.tmp");
    std::fs::write(&tmp, text).map_err(|e| err(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| err(&path, e))?;
    Ok(())
}

/// Remove one namespace: its capture rules, the namespace (with its veth pair), and its
/// `/etc/netns` files. Returns what could not be removed.
pub fn remove_namespace(ns: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let exists = Path::new("/var/run/netns").join(ns).exists();
    if exists {
        if let Err(e) = weft_proxy::redirect::remove(Some(ns)) {
            problems.push(e.to_string());
        }
        if let Err(e) = ip(&["netns", "del", ns]) {
            problems.push(e.to_string());
        }
    }
    let dir = Path::new(ETC_NETNS).join(ns);
    if dir.exists()
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        problems.push(format!("cannot remove {}: {e}", dir.display()));
    }
    problems
}

/// The namespaces whose names start with `prefix` (`ip netns list`).
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(list) = ip(&["netns", "list"]) else {
        return Vec::new();
    };
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Remove everything `record` lists, plus namespaces and `/etc/netns` directories under
/// its prefix that the record missed (a `weft up` killed between creating and saving).
/// The processes inside must be gone already. Returns what could not be removed.
pub fn teardown(record: &NetworkRecord) -> Vec<String> {
    let mut names: Vec<String> = record.namespaces.clone();
    if !record.prefix.is_empty() {
        names.extend(namespaces_with_prefix(&record.prefix));
        if let Ok(dirs) = std::fs::read_dir(ETC_NETNS) {
            names.extend(
                dirs.flatten()
                    .filter_map(|d| d.file_name().to_str().map(str::to_string))
                    .filter(|n| n.starts_with(&record.prefix)),
            );
        }
    }
    names.sort();
    names.dedup();
    let mut problems: Vec<String> = names.iter().flat_map(|n| remove_namespace(n)).collect();
    if !record.bridge.is_empty()
        && link_exists(&record.bridge)
        && let Err(e) = ip(&["link", "del", &record.bridge])
    {
        problems.push(e.to_string());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_overlap() {
        let n = |s| Net::parse(s).unwrap();
        assert_eq!(n("10.1.2.3").len, 32);
        assert!(n("10.57.0.0/16").overlaps(&n("10.57.3.4")));
        assert!(n("10.0.0.0/8").overlaps(&n("10.57.0.0/16")));
        assert!(!n("10.58.0.0/16").overlaps(&n("10.57.0.0/16")));
        assert!(Net::parse("10.1.2.3/33").is_none());
        assert!(Net::parse("default").is_none());
    }

    #[test]
    fn the_subnet_avoids_what_the_host_routes() {
        let used = [
            Net::parse("10.5.0.0/16").unwrap(),
            Net::parse("10.6.7.0/24").unwrap(),
            Net::parse("192.0.2.0/24").unwrap(),
        ];
        assert_eq!(free_subnet(4, &used), Some(4));
        assert_eq!(free_subnet(5, &used), Some(7));
        assert_eq!(free_subnet(255, &used), Some(255));
        let all = [Net::parse("10.0.0.0/8").unwrap()];
        assert_eq!(free_subnet(5, &all), None);
    }
}
