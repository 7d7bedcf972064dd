//! The iptables rules that capture a pod's traffic for its sidecar (transparent mode).
//!
//! The scheme is Istio's (`istio-iptables`), in the `nat` table, IPv4:
//!
//! ```text
//! PREROUTING -p tcp -> WEFT_INBOUND
//!   WEFT_INBOUND:  RETURN for the proxy's own ports (admin, outbound, inbound, tunnel) and the
//!                  excluded inbound ports, then -> WEFT_IN_REDIRECT
//!   WEFT_IN_REDIRECT: REDIRECT --to-ports 15006
//! OUTPUT -p tcp -> WEFT_OUTPUT
//!   WEFT_OUTPUT:   RETURN for the proxy's own traffic (owner uid / gid), for anything
//!                  leaving through loopback, and for the excluded outbound ports,
//!                  then -> WEFT_REDIRECT
//!   WEFT_REDIRECT: REDIRECT --to-ports 15001
//! ```
//!
//! The proxy finds out where a redirected connection was going with `SO_ORIGINAL_DST`.
//!
//! **How the proxy's own traffic is told apart.** Without an exception the proxy's upstream
//! connections would be captured again and loop. Like Istio, we match the socket owner
//! (`-m owner`): `--uid-owner` and `--gid-owner`, both 1337 by default, either one is
//! enough. The GID exception lets the proxy keep root's (or the user's) UID, which is what
//! `weft up --netns` and the namespace tests do: the proxy reads root-owned config files and
//! only its group marks it. A packet mark (`SO_MARK`) would need CAP_NET_ADMIN in the proxy
//! and a socket option on every upstream connection, so it is not offered.
//!
//! Loopback is excluded as a whole (`-o lo`): the inbound proxy reaches the application on
//! 127.0.0.1, and admin calls from inside the pod never loop through the proxy. IPv6
//! (`ip6tables`) is not set up yet.
//!
//! [`rules`] and [`removal`] are pure (they are what the tests check); [`apply`] and
//! [`remove`] run them with whichever iptables binary exists.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Chains this module owns in the `nat` table.
pub const CHAINS: [&str; 4] = [
    "WEFT_INBOUND",
    "WEFT_IN_REDIRECT",
    "WEFT_OUTPUT",
    "WEFT_REDIRECT",
];

/// Istio's proxy identity: the `istio-proxy` user and group.
pub const DEFAULT_PROXY_ID: u32 = 1337;

/// What to capture and what to leave alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectConfig {
    /// Where outbound TCP is sent (the transparent `outbound` listener).
    pub outbound_port: u16,
    /// Where inbound TCP is sent (the transparent `inbound` listener).
    pub inbound_port: u16,
    /// The admin port: never captured inbound.
    pub admin_port: u16,
    /// The mesh tunnel port (mTLS between proxies): never captured inbound, so peers'
    /// tunnel connections reach the tunnel listener instead of the inbound one.
    pub tunnel_port: u16,
    /// Sockets owned by this UID are the proxy's and are not captured.
    pub proxy_uid: Option<u32>,
    /// Sockets owned by this GID are the proxy's and are not captured.
    pub proxy_gid: Option<u32>,
    /// Destination ports applications reach directly (Istio's `excludeOutboundPorts`).
    pub exclude_outbound_ports: Vec<u16>,
    /// Ports served without the proxy (Istio's `excludeInboundPorts`).
    pub exclude_inbound_ports: Vec<u16>,
}

impl Default for RedirectConfig {
    fn default() -> Self {
        RedirectConfig {
            outbound_port: 15001,
            inbound_port: 15006,
            admin_port: 15000,
            tunnel_port: 15008,
            proxy_uid: Some(DEFAULT_PROXY_ID),
            proxy_gid: Some(DEFAULT_PROXY_ID),
            exclude_outbound_ports: Vec::new(),
            exclude_inbound_ports: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    #[error(
        "no iptables binary found (looked for iptables, iptables-nft, iptables-legacy in PATH, /usr/sbin and /sbin); install the iptables package"
    )]
    NoIptables,
    #[error(
        "the redirect needs the proxy's uid or gid to exclude its own traffic; without one every upstream connection would loop back into the proxy"
    )]
    NoProxyIdentity,
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("removing the redirect left chains behind in {where_}: {left}")]
    Leftover { where_: String, left: String },
}

/// The argument lists (without the binary) that install the capture, in order.
pub fn rules(cfg: &RedirectConfig) -> Result<Vec<Vec<String>>, RedirectError> {
    if cfg.proxy_uid.is_none() && cfg.proxy_gid.is_none() {
        return Err(RedirectError::NoProxyIdentity);
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut push = |args: &[&str]| {
        let mut rule = vec!["-t".to_string(), "nat".to_string()];
        rule.extend(args.iter().map(|a| a.to_string()));
        out.push(rule);
    };
    for chain in CHAINS {
        push(&["-N", chain]);
    }
    let inbound = cfg.inbound_port.to_string();
    let outbound = cfg.outbound_port.to_string();
    push(&[
        "-A",
        "WEFT_IN_REDIRECT",
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &inbound,
    ]);
    push(&[
        "-A",
        "WEFT_REDIRECT",
        "-p",
        "tcp",
        "-j",
        "REDIRECT",
        "--to-ports",
        &outbound,
    ]);

    // Inbound: the proxy's own ports, then the exclusions, then capture.
    push(&["-A", "PREROUTING", "-p", "tcp", "-j", "WEFT_INBOUND"]);
    let mut own = vec![
        cfg.admin_port,
        cfg.outbound_port,
        cfg.inbound_port,
        cfg.tunnel_port,
    ];
    own.extend(&cfg.exclude_inbound_ports);
    own.sort_unstable();
    own.dedup();
    for port in own {
        let port = port.to_string();
        push(&[
            "-A",
            "WEFT_INBOUND",
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "RETURN",
        ]);
    }
    push(&["-A", "WEFT_INBOUND", "-p", "tcp", "-j", "WEFT_IN_REDIRECT"]);

    // Outbound: the proxy's own sockets, loopback, the exclusions, then capture.
    push(&["-A", "OUTPUT", "-p", "tcp", "-j", "WEFT_OUTPUT"]);
    if let Some(uid) = cfg.proxy_uid {
        let uid = uid.to_string();
        push(&[
            "-A",
            "WEFT_OUTPUT",
            "-m",
            "owner",
            "--uid-owner",
            &uid,
            "-j",
            "RETURN",
        ]);
    }
    if let Some(gid) = cfg.proxy_gid {
        let gid = gid.to_string();
        push(&[
            "-A",
            "WEFT_OUTPUT",
            "-m",
            "owner",
            "--gid-owner",
            &gid,
            "-j",
            "RETURN",
        ]);
    }
    push(&["-A", "WEFT_OUTPUT", "-o", "lo", "-j", "RETURN"]);
    let mut excluded = cfg.exclude_outbound_ports.clone();
    excluded.sort_unstable();
    excluded.dedup();
    for port in excluded {
        let port = port.to_string();
        push(&[
            "-A",
            "WEFT_OUTPUT",
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "RETURN",
        ]);
    }
    push(&["-A", "WEFT_OUTPUT", "-j", "WEFT_REDIRECT"]);
    Ok(out)
}

/// The argument lists that undo [`rules`]: unhook the chains, flush them, delete them.
pub fn removal() -> Vec<Vec<String>> {
    let nat = |args: &[&str]| {
        let mut rule = vec!["-t".to_string(), "nat".to_string()];
        rule.extend(args.iter().map(|a| a.to_string()));
        rule
    };
    let mut out = vec![
        nat(&["-D", "PREROUTING", "-p", "tcp", "-j", "WEFT_INBOUND"]),
        nat(&["-D", "OUTPUT", "-p", "tcp", "-j", "WEFT_OUTPUT"]),
    ];
    out.extend(CHAINS.iter().map(|c| nat(&["-F", c])));
    out.extend(CHAINS.iter().map(|c| nat(&["-X", c])));
    out
}

/// The iptables binary to use: `iptables` when installed (the distribution's choice of
/// backend), else `iptables-nft`, else `iptables-legacy`.
pub fn find_iptables() -> Result<PathBuf, RedirectError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]);
    for name in ["iptables", "iptables-nft", "iptables-legacy"] {
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p)) {
            return Ok(found);
        }
    }
    Err(RedirectError::NoIptables)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Install the capture in network namespace `netns` (through `ip netns exec`), or in the
/// caller's own namespace when `None`. Leftovers of an earlier install are removed first,
/// so applying twice gives the same rules.
pub fn apply(netns: Option<&str>, cfg: &RedirectConfig) -> Result<(), RedirectError> {
    let rules = rules(cfg)?;
    let iptables = find_iptables()?;
    for args in removal() {
        // Most of these fail on a clean namespace (nothing to delete); that is fine.
        let _ = iptables_cmd(&iptables, netns, &args);
    }
    for args in rules {
        iptables_cmd(&iptables, netns, &args)?;
    }
    Ok(())
}

/// Remove the capture; succeeds when none of the chains is left, also if none was there.
pub fn remove(netns: Option<&str>) -> Result<(), RedirectError> {
    let iptables = find_iptables()?;
    for args in removal() {
        let _ = iptables_cmd(&iptables, netns, &args);
    }
    let listing = iptables_output(&iptables, netns, &["-t", "nat", "-S"])?;
    let left: Vec<&str> = CHAINS
        .iter()
        .copied()
        .filter(|c| {
            listing
                .lines()
                .any(|l| l.split_whitespace().any(|w| w == *c))
        })
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    Err(RedirectError::Leftover {
        where_: netns.map_or_else(|| "this namespace".to_string(), |n| format!("netns {n}")),
        left: left.join(", "),
    })
}

/// The current `nat` table as `iptables -t nat -S` prints it.
pub fn list(netns: Option<&str>) -> Result<String, RedirectError> {
    let iptables = find_iptables()?;
    iptables_output(&iptables, netns, &["-t", "nat", "-S"])
}

fn iptables_cmd(
    iptables: &Path,
    netns: Option<&str>,
    args: &[String],
) -> Result<(), RedirectError> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    iptables_output(iptables, netns, &args).map(drop)
}

fn iptables_output(
    iptables: &Path,
    netns: Option<&str>,
    args: &[&str],
) -> Result<String, RedirectError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(iptables);
            c
        }
        None => Command::new(iptables),
    };
    // `-w`: wait for the xtables lock instead of failing when another iptables runs.
    cmd.arg("-w").args(args);
    let command = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| RedirectError::Command {
        command: command.clone(),
        detail: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(RedirectError::Command {
        command,
        detail: format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(cfg: &RedirectConfig) -> Vec<String> {
        rules(cfg)
            .unwrap()
            .into_iter()
            .map(|r| r.join(" "))
            .collect()
    }

    #[test]
    fn default_rules_follow_istio() {
        let r = joined(&RedirectConfig::default());
        let expected = [
            "-t nat -N WEFT_INBOUND",
            "-t nat -N WEFT_IN_REDIRECT",
            "-t nat -N WEFT_OUTPUT",
            "-t nat -N WEFT_REDIRECT",
            "-t nat -A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
            "-t nat -A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
            "-t nat -A PREROUTING -p tcp -j WEFT_INBOUND",
            "-t nat -A WEFT_INBOUND -p tcp --dport 15000 -j RETURN",
            "-t nat -A WEFT_INBOUND -p tcp --dport 15001 -j RETURN",
            "-t nat -A WEFT_INBOUND -p tcp --dport 15006 -j RETURN",
            "-t nat -A WEFT_INBOUND -p tcp --dport 15008 -j RETURN",
            "-t nat -A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT",
            "-t nat -A OUTPUT -p tcp -j WEFT_OUTPUT",
            "-t nat -A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN",
            "-t nat -A WEFT_OUTPUT -m owner --gid-owner 1337 -j RETURN",
            "-t nat -A WEFT_OUTPUT -o lo -j RETURN",
            "-t nat -A WEFT_OUTPUT -j WEFT_REDIRECT",
        ];
        assert_eq!(r, expected);
    }

    #[test]
    fn exclusions_come_before_capture() {
        let cfg = RedirectConfig {
            proxy_uid: None,
            exclude_outbound_ports: vec![5432, 22, 5432],
            exclude_inbound_ports: vec![9090, 15000],
            ..RedirectConfig::default()
        };
        let r = joined(&cfg);
        let pos = |s: &str| {
            r.iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("{s} in {r:#?}"))
        };
        let capture_in = pos("-t nat -A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT");
        assert!(pos("-t nat -A WEFT_INBOUND -p tcp --dport 9090 -j RETURN") < capture_in);
        // The admin port is listed once even when also excluded explicitly.
        assert_eq!(r.iter().filter(|x| x.contains("--dport 15000")).count(), 1);
        let capture_out = pos("-t nat -A WEFT_OUTPUT -j WEFT_REDIRECT");
        assert!(pos("-t nat -A WEFT_OUTPUT -p tcp --dport 22 -j RETURN") < capture_out);
        assert_eq!(r.iter().filter(|x| x.contains("--dport 5432")).count(), 1);
        assert!(!r.iter().any(|x| x.contains("--uid-owner")));
        assert!(pos("-t nat -A WEFT_OUTPUT -m owner --gid-owner 1337 -j RETURN") < capture_out);
    }

    #[test]
    fn custom_ports_and_ids() {
        let cfg = RedirectConfig {
            outbound_port: 16001,
            inbound_port: 16006,
            tunnel_port: 16008,
            proxy_gid: Some(2000),
            proxy_uid: None,
            ..RedirectConfig::default()
        };
        let r = joined(&cfg);
        assert!(r.contains(&"-t nat -A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports 16001".into()));
        assert!(
            r.contains(&"-t nat -A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006".into())
        );
        assert!(r.contains(&"-t nat -A WEFT_OUTPUT -m owner --gid-owner 2000 -j RETURN".into()));
        // Peers reach the tunnel port directly; capturing it would send them to 16006.
        assert!(r.contains(&"-t nat -A WEFT_INBOUND -p tcp --dport 16008 -j RETURN".into()));
    }

    #[test]
    fn a_proxy_identity_is_required() {
        let cfg = RedirectConfig {
            proxy_uid: None,
            proxy_gid: None,
            ..RedirectConfig::default()
        };
        assert!(matches!(rules(&cfg), Err(RedirectError::NoProxyIdentity)));
    }

    #[test]
    fn removal_undoes_every_chain() {
        let r: Vec<String> = removal().into_iter().map(|r| r.join(" ")).collect();
        assert_eq!(r[0], "-t nat -D PREROUTING -p tcp -j WEFT_INBOUND");
        assert_eq!(r[1], "-t nat -D OUTPUT -p tcp -j WEFT_OUTPUT");
        for chain in CHAINS {
            let flush = r
                .iter()
                .position(|x| *x == format!("-t nat -F {chain}"))
                .unwrap();
            let delete = r
                .iter()
                .position(|x| *x == format!("-t nat -X {chain}"))
                .unwrap();
            assert!(flush < delete);
        }
    }
}
