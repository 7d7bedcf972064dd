//! The running mesh of a `weft up`: every replica's proxy and application and every
//! gateway, under supervision, with the registry the control plane compiles from.
//! [`Mesh::reconcile`] applies an edited DIR: only Workloads that changed restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::mpsc;
use weft_compile::Registry;
use weft_control::ControlPlane;

use super::launch::{RunPaths, app_spec, in_netns, proxy_spec, resolve_command};
use super::placement::{Placed, Placement};
use super::plan::{GatewayDef, Topology, WorkloadDef};
use super::readiness::HttpProbe;
use super::state::{ProcessEntry, UpState};
use super::supervisor::{Report, Supervised, stop_all};

/// One replica (or gateway) and its processes.
pub struct Member {
    /// `namespace/workload`.
    pub workload: String,
    pub replica: String,
    pub placed: Placed,
    pub proxy: Option<Supervised>,
    pub app: Option<Supervised>,
    pub app_log: Option<PathBuf>,
    pub proxy_log: PathBuf,
}

impl Member {
    fn key(&self) -> String {
        format!("{}/{}", self.placed.instance.namespace, self.replica)
    }
}

pub struct Mesh {
    pub root: PathBuf,
    pub paths: RunPaths,
    pub weft: PathBuf,
    pub drain: Duration,
    pub placement: Box<dyn Placement>,
    pub topology: Topology,
    /// Replicas by `namespace/replica`, gateways by `namespace/<gateway>-0`.
    pub members: BTreeMap<String, Member>,
    pub reports: mpsc::UnboundedSender<Report>,
    pub restarts: BTreeMap<String, u32>,
}

impl Mesh {
    /// Place every replica and gateway of `topology` (no process starts yet).
    pub fn place_all(&mut self, topology: Topology) -> anyhow::Result<()> {
        self.placement.prepare(&topology)?;
        for w in topology.workloads.values() {
            self.place_workload(w, &topology)?;
        }
        for g in &topology.gateways {
            self.place_gateway(g)?;
        }
        self.topology = topology;
        Ok(())
    }

    fn place_workload(&mut self, w: &WorkloadDef, t: &Topology) -> anyhow::Result<()> {
        for replica in w.replica_names() {
            let placed = self.placement.place(&replica, w, &t.tcp_services)?;
            let m = Member {
                workload: w.key(),
                app_log: Some(self.paths.app_log(&replica)),
                proxy_log: self.paths.proxy_log(&replica),
                replica,
                placed,
                proxy: None,
                app: None,
            };
            self.members.insert(m.key(), m);
        }
        Ok(())
    }

    fn place_gateway(&mut self, g: &GatewayDef) -> anyhow::Result<()> {
        let placed = self.placement.place_gateway(g)?;
        let replica = placed.instance.name.clone();
        let m = Member {
            workload: format!("{}/{}", g.namespace, g.name),
            proxy_log: self.paths.proxy_log(&replica),
            app_log: None,
            replica,
            placed,
            proxy: None,
            app: None,
        };
        self.members.insert(m.key(), m);
        Ok(())
    }

    pub fn registry(&self) -> Registry {
        Registry {
            instances: self
                .members
                .values()
                .map(|m| m.placed.instance.clone())
                .collect(),
        }
    }

    /// Start the proxies that are not running (call after the registry is set).
    pub fn start_proxies(&mut self, cp: &ControlPlane) -> anyhow::Result<Vec<String>> {
        let mut started = Vec::new();
        for m in self.members.values_mut().filter(|m| m.proxy.is_none()) {
            let id = m.placed.instance.proxy_id();
            // A fresh token per start: the instance's identity may have changed.
            if let Some(old) = cp.tokens().token_of_proxy(&id) {
                cp.tokens().revoke(&old);
            }
            let token = cp
                .issue_proxy_token(&id)
                .with_context(|| format!("cannot issue a bootstrap token for {id}"))?;
            let spec = proxy_spec(
                &self.weft,
                cp.grpc_addr(),
                &id,
                &token,
                m.placed.admin,
                self.drain,
                m.proxy_log.clone(),
            );
            let spec = match &m.placed.netns {
                // In the group the capture rules exclude, so its own traffic is not
                // redirected back into itself.
                Some(ns) => in_netns(spec, ns, Some(super::netns::PROXY_GID)),
                None => spec,
            };
            let label = format!("proxy {}", m.replica);
            m.proxy = Some(Supervised::start(
                label,
                Box::new(spec),
                self.reports.clone(),
            ));
            started.push(m.key());
        }
        Ok(started)
    }

    /// Start the applications that are not running.
    pub fn start_apps(&mut self) -> anyhow::Result<Vec<String>> {
        let mut started = Vec::new();
        for m in self.members.values_mut().filter(|m| m.app.is_none()) {
            let (Some(w), Some(log)) = (self.topology.workloads.get(&m.workload), &m.app_log)
            else {
                continue;
            };
            let program =
                resolve_command(&w.spec.command, w, &self.root).map_err(anyhow::Error::msg)?;
            let data = self.paths.data.join(&m.replica);
            std::fs::create_dir_all(&data)
                .with_context(|| format!("cannot create {}", data.display()))?;
            let spec = app_spec(program, w, m.placed.app_env.clone(), data, log.clone());
            let spec = match &m.placed.netns {
                Some(ns) => in_netns(spec, ns, None),
                None => spec,
            };
            m.app = Some(Supervised::start(
                format!("app {}", m.replica),
                Box::new(spec),
                self.reports.clone(),
            ));
            started.push(m.key());
        }
        Ok(started)
    }

    /// The proxies' admin endpoints, or (`apps`) the applications' addresses, to probe
    /// for readiness.
    pub fn probes(&self, keys: &[String], apps: bool) -> Vec<(String, Probe)> {
        let mut out = Vec::new();
        for k in keys {
            if let Some(m) = self.members.get(k) {
                if !apps && m.proxy.is_some() {
                    out.push((format!("proxy {}", m.replica), Probe::Admin(m.placed.admin)));
                }
                if apps && m.app.is_some() && !m.placed.app_addrs.is_empty() {
                    let probe = match (self.http_probe(m), &m.placed.netns) {
                        (Some((probe, addr)), netns) => Probe::Http {
                            probe,
                            addr,
                            netns: netns.clone(),
                        },
                        (None, Some(ns)) => Probe::ListeningIn {
                            netns: ns.clone(),
                            addrs: m.placed.app_addrs.clone(),
                        },
                        (None, None) => Probe::Listening(m.placed.app_addrs.clone()),
                    };
                    out.push((format!("app {}", m.replica), probe));
                }
            }
        }
        out
    }

    /// The Workload's `readinessProbe` of `m` and the application address it probes
    /// (placement gives the application an address per Workload port, in port order).
    fn http_probe(&self, m: &Member) -> Option<(HttpProbe, SocketAddr)> {
        let w = self.topology.workloads.get(&m.workload)?;
        let probe = w.readiness.clone()?;
        let i = w.ports.iter().position(|p| *p == probe.port)?;
        let addr = *m.placed.app_addrs.get(i)?;
        Some((probe, addr))
    }

    /// Stop everything: applications first (they may still send requests through their
    /// proxies while they shut down), then proxies, which drain.
    pub async fn stop(&mut self, grace: Duration) {
        let apps = self
            .members
            .values_mut()
            .filter_map(|m| m.app.take())
            .collect();
        stop_all(apps, grace).await;
        let proxies = self
            .members
            .values_mut()
            .filter_map(|m| m.proxy.take())
            .collect();
        stop_all(proxies, self.drain + grace).await;
    }

    /// Apply an edited DIR: stop removed and changed Workloads' replicas (their proxies too
    /// when labels, ports or identity changed), place the new ones, and update the
    /// registry. The caller then starts what is not running. Returns lines to print.
    pub async fn reconcile(
        &mut self,
        new: Topology,
        grace: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        self.placement.prepare(&new)?;
        let old = std::mem::take(&mut self.topology);
        let mut stop_apps = Vec::new();
        let mut stop_proxies = Vec::new();
        let mut replace = Vec::new();
        for (key, w) in &old.workloads {
            match new.workloads.get(key) {
                Some(n) if n == w => {}
                Some(n) => {
                    let proxies_too = n.proxy_changed(w);
                    lines.push(format!(
                        "workload {key} changed: restarting {}{}",
                        if proxies_too {
                            "its replicas and proxies"
                        } else {
                            "its replicas"
                        },
                        replica_delta(w, n)
                    ));
                    replace.push((key.clone(), proxies_too));
                }
                None => {
                    lines.push(format!("workload {key} removed: stopping its replicas"));
                    replace.push((key.clone(), true));
                }
            }
        }
        for (key, proxies_too) in &replace {
            let keep = new.workloads.get(key);
            let members: Vec<String> = self
                .members
                .iter()
                .filter(|(_, m)| &m.workload == key)
                .map(|(k, _)| k.clone())
                .collect();
            for k in members {
                let Some(m) = self.members.get_mut(&k) else {
                    continue;
                };
                stop_apps.extend(m.app.take());
                let gone = keep.is_none_or(|w| !w.replica_names().contains(&m.replica));
                if *proxies_too || gone {
                    stop_proxies.extend(m.proxy.take());
                }
                if gone {
                    self.placement.release(&k);
                    self.members.remove(&k);
                }
            }
        }
        for key in new
            .workloads
            .keys()
            .filter(|k| !old.workloads.contains_key(*k))
        {
            lines.push(format!("workload {key} added: starting it"));
        }
        // Gateways: by name; a changed port set only needs the registry.
        for g in &old.gateways {
            if !new
                .gateways
                .iter()
                .any(|n| n.namespace == g.namespace && n.name == g.name)
            {
                lines.push(format!(
                    "gateway {}/{} no longer needed: stopping it",
                    g.namespace, g.name
                ));
                let k = format!("{}/{}-0", g.namespace, g.name);
                if let Some(mut m) = self.members.remove(&k) {
                    stop_proxies.extend(m.proxy.take());
                    self.placement.release(&k);
                }
            }
        }
        stop_all(stop_apps, grace).await;
        stop_all(stop_proxies, self.drain + grace).await;
        // Re-place what changed or is new (a replica keeps its address).
        for (key, w) in &new.workloads {
            for replica in w.replica_names() {
                let k = format!("{}/{replica}", w.namespace);
                let placed = self.placement.place(&replica, w, &new.tcp_services)?;
                match self.members.get_mut(&k) {
                    Some(m) => {
                        m.placed = placed;
                        m.workload = key.clone();
                    }
                    None => {
                        self.members.insert(
                            k,
                            Member {
                                workload: key.clone(),
                                app_log: Some(self.paths.app_log(&replica)),
                                proxy_log: self.paths.proxy_log(&replica),
                                replica,
                                placed,
                                proxy: None,
                                app: None,
                            },
                        );
                    }
                }
            }
        }
        for g in &new.gateways {
            let k = format!("{}/{}-0", g.namespace, g.name);
            let placed = self.placement.place_gateway(g)?;
            match self.members.get_mut(&k) {
                Some(m) => m.placed = placed,
                None => {
                    lines.push(format!(
                        "gateway {}/{} needed: starting it",
                        g.namespace, g.name
                    ));
                    self.place_gateway(g)?;
                }
            }
        }
        self.topology = new;
        Ok(lines)
    }

    /// The processes for the state file.
    pub fn entries(&self) -> Vec<ProcessEntry> {
        let mut out = Vec::new();
        for m in self.members.values() {
            let mut push = |role: &str, p: &Option<Supervised>, log: &Path| {
                let label = format!("{role} {}", m.replica);
                out.push(ProcessEntry {
                    restarts: self.restarts.get(&label).copied().unwrap_or(0),
                    label,
                    role: role.to_string(),
                    workload: m.workload.clone(),
                    replica: m.replica.clone(),
                    address: m.placed.instance.address.to_string(),
                    pid: p.as_ref().and_then(Supervised::pid),
                    log: log.to_path_buf(),
                });
            };
            push("proxy", &m.proxy, &m.proxy_log);
            if let Some(log) = &m.app_log {
                push("app", &m.app, log);
            }
        }
        out
    }

    pub fn fill_state(&self, state: &mut UpState) {
        state.processes = self.entries();
        state.network = self.placement.network();
        state.gateways = self
            .members
            .values()
            .flat_map(|m| m.placed.urls.iter().map(|(_, u)| u.clone()))
            .collect();
    }
}

fn replica_delta(old: &WorkloadDef, new: &WorkloadDef) -> String {
    if old.spec.replicas == new.spec.replicas {
        String::new()
    } else {
        format!(" ({} -> {} replicas)", old.spec.replicas, new.spec.replicas)
    }
}

/// A readiness check.
#[derive(Debug, Clone)]
pub enum Probe {
    /// The proxy's admin `/ready` answers 200.
    Admin(SocketAddr),
    /// The application accepts connections on every address.
    Listening(Vec<SocketAddr>),
    /// The same, from inside a network namespace (outside it, the capture would accept
    /// for the application).
    ListeningIn {
        netns: String,
        addrs: Vec<SocketAddr>,
    },
    /// The Workload's `readinessProbe` answers 2xx/3xx at the application's address (from
    /// inside its network namespace, if it has one).
    Http {
        probe: HttpProbe,
        addr: SocketAddr,
        netns: Option<String>,
    },
}

impl Probe {
    pub async fn check(&self) -> bool {
        match self {
            Probe::Admin(addr) => admin_ready(*addr).await,
            Probe::Listening(addrs) => {
                for a in addrs {
                    let connect = tokio::net::TcpStream::connect(a);
                    if !matches!(
                        tokio::time::timeout(Duration::from_secs(1), connect).await,
                        Ok(Ok(_))
                    ) {
                        return false;
                    }
                }
                true
            }
            Probe::ListeningIn { netns, addrs } => listening_in(netns, addrs).await,
            Probe::Http { probe, addr, netns } => probe.check(netns.as_deref(), *addr).await,
        }
    }

    /// How long to wait after a failed check: the probe's `periodSeconds`, or (connection
    /// checks) a short poll.
    pub fn period(&self) -> Duration {
        match self {
            Probe::Http { probe, .. } => probe.period,
            _ => Duration::from_millis(100),
        }
    }
}

/// Connect to `addrs` from a thread that joined `netns` (a namespace belongs to a
/// thread; this one ends after the check, so no other work runs in the namespace).
async fn listening_in(netns: &str, addrs: &[SocketAddr]) -> bool {
    use nix::sched::{CloneFlags, setns};
    let Ok(file) = std::fs::File::open(format!("/var/run/netns/{netns}")) else {
        return false;
    };
    let addrs = addrs.to_vec();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("probe {netns}"))
        .spawn(move || {
            let ok = setns(&file, CloneFlags::CLONE_NEWNET).is_ok()
                && addrs.iter().all(|a| {
                    std::net::TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok()
                });
            let _ = tx.send(ok);
        });
    spawned.is_ok() && rx.await.unwrap_or(false)
}

async fn admin_ready(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /ready HTTP/1.1\r\nHost: weft\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}
