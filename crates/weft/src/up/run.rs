//! The `weft up` session: start in phases, supervise, follow DIR, stop.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use weft_config::analyze::{self, MeshInputs};
use weft_config::{Bundle, Severity};
use weft_control::ca::TokenStore;
use weft_control::source::DirectorySource;
use weft_control::{CaSettings, ControlPlane, Options};

use super::launch::{RunPaths, resolve_command};
use super::mesh::{Mesh, Probe};
use super::netns::Transparent;
use super::placement::{Explicit, Placement};
use super::plan::{self, Topology};
use super::state::{self, UpState};
use super::supervisor::Report;
use super::table;
use super::watch::{DirChange, DirObjects, GatedSource};
use crate::render;

/// The debug API `weft status` reads by default.
pub const DEFAULT_DEBUG: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15014);
/// Edits closer together than this are applied once.
const SETTLE: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
pub struct UpOptions {
    pub dir: PathBuf,
    pub run_dir: Option<PathBuf>,
    /// Where proxies connect (gRPC); port 0 picks one.
    pub listen: SocketAddr,
    /// The debug API; none: 127.0.0.1:15014, or any free port when that is taken.
    pub debug: Option<SocketAddr>,
    /// Replicas get `<net>.1`, `<net>.2`, ...
    pub loopback_net: [u8; 3],
    /// Where gateways bind their server ports.
    pub gateway_address: IpAddr,
    pub mtls: bool,
    pub ready_timeout: Duration,
    /// How long a process gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// The proxies' drain period on stop.
    pub drain: Duration,
    /// Transparent mode: a network namespace per replica with iptables capture (root).
    pub netns: bool,
    /// Open the dashboard in a browser once the mesh is ready.
    pub open: bool,
}

struct Session {
    opts: UpOptions,
    mesh: Mesh,
    cp: ControlPlane,
    state: UpState,
    reports: mpsc::UnboundedReceiver<Report>,
    dir_changes: mpsc::UnboundedReceiver<DirChange>,
    shutdown: mpsc::UnboundedReceiver<&'static str>,
    objects: DirObjects,
    synced: bool,
    /// Labels that exited and wait for their restart (their next start is reported).
    restarting: BTreeSet<String>,
}

/// Run until stopped. Errors before anything started leave nothing behind.
pub async fn run(opts: UpOptions) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&opts.dir)
        .with_context(|| format!("cannot open {}", opts.dir.display()))?;
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    if opts.netns {
        super::netns::check_requirements().map_err(anyhow::Error::msg)?;
        if !opts.mtls {
            bail!(
                "--no-mtls does not apply to --netns: transparent proxies always accept the mesh tunnel (use a PeerAuthentication to choose what inbound accepts)"
            );
        }
    }
    println!("weft up {}", dir.display());
    let topology = load(&dir)?;
    let weft = std::env::current_exe().context("cannot find the weft executable")?;
    let run_dir = opts
        .run_dir
        .clone()
        .unwrap_or_else(|| state::run_dir_for(&dir));
    prepare_run_dir(&run_dir, &dir)?;
    let paths = RunPaths {
        logs: run_dir.join("logs"),
        data: run_dir.join("data"),
    };
    let privileged = can_bind_low_port(opts.gateway_address);
    let mut listen = opts.listen;
    let mut vips = None;
    let placement: Box<dyn Placement> = if opts.netns {
        let p = Transparent::create(&run_dir.display().to_string(), opts.gateway_address)?;
        // Proxies in the namespaces reach the control plane over the bridge.
        if listen.ip().is_loopback() {
            listen = SocketAddr::new(IpAddr::V4(p.bridge_ip()), listen.port());
        }
        vips = Some(p.vips());
        Box::new(p)
    } else {
        Box::new(Explicit::new(
            opts.loopback_net,
            opts.gateway_address,
            privileged,
            opts.mtls,
        ))
    };
    let mode = placement.mode();
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let mut mesh = Mesh {
        root: dir.clone(),
        paths,
        weft,
        drain: opts.drain,
        placement,
        topology: Topology::default(),
        members: Default::default(),
        reports: reports_tx,
        restarts: Default::default(),
    };
    let (dir_tx, dir_changes) = mpsc::unbounded_channel();
    let debug = match opts.debug {
        Some(a) => a,
        None if std::net::TcpListener::bind(DEFAULT_DEBUG).is_ok() => DEFAULT_DEBUG,
        None => SocketAddr::new(DEFAULT_DEBUG.ip(), 0),
    };
    let started = async {
        mesh.place_all(topology)?;
        let mut source = GatedSource::new(DirectorySource::new(&dir)?, dir_tx);
        if let Some(v) = vips {
            source = source.with_service_addresses(v);
        }
        ControlPlane::start(
            Options {
                listen,
                debug: Some(debug),
                token: None,
                tokens: Some(Arc::new(TokenStore::new())),
                registry: mesh.registry(),
                ca: Some(CaSettings::new(run_dir.join("ca"))),
            },
            Box::new(source),
        )
        .await
        .context("cannot start the control plane")
    }
    .await;
    let cp = match started {
        Ok(cp) => cp,
        Err(e) => {
            // Nothing runs yet; what the placement created goes.
            report_leftovers(&mesh.placement.teardown());
            return Err(e);
        }
    };
    let debug = cp.debug_addr().unwrap_or(debug);
    phase(
        "control plane",
        format!(
            "grpc {}  debug http://{debug}  dashboard http://{debug}/",
            cp.grpc_addr()
        ),
    );
    let state = UpState {
        pid: std::process::id(),
        dir: dir.clone(),
        run_dir: run_dir.clone(),
        control: cp.grpc_addr().to_string(),
        debug: debug.to_string(),
        mode: mode.to_string(),
        ..Default::default()
    };
    let shutdown = match shutdown_signals() {
        Ok(s) => s,
        Err(e) => {
            cp.stop();
            report_leftovers(&mesh.placement.teardown());
            return Err(e);
        }
    };
    let mut session = Session {
        shutdown,
        opts,
        mesh,
        cp,
        state,
        reports,
        dir_changes,
        objects: DirObjects::default(),
        synced: false,
        restarting: BTreeSet::new(),
    };
    session.save();
    let result = session.start_and_serve().await;
    session.stop().await;
    result
}

/// Say what could not be removed (the user has to clean it up by hand).
fn report_leftovers(problems: &[String]) {
    for p in problems {
        eprintln!("warning: cleanup: {p}");
    }
}

fn phase(name: &str, detail: String) {
    println!("  {name:<14} {detail}");
}

/// Load and analyze DIR; errors stop `weft up` with the `weft analyze` report.
fn load(dir: &Path) -> anyhow::Result<Topology> {
    let bundle = Bundle::load_paths(&[dir]);
    let diags = analyze::analyze_bundle(&bundle, MeshInputs::default());
    let shown: Vec<_> = diags
        .iter()
        .filter(|d| d.severity >= Severity::Warning)
        .cloned()
        .collect();
    if !shown.is_empty() {
        eprint!("{}", render::human(&shown, color_wanted()));
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if bundle.unreadable || errors > 0 {
        bail!(
            "{} has {errors} error(s); nothing was started (`weft analyze {}` shows the same report)",
            dir.display(),
            dir.display()
        );
    }
    let topology = plan::topology(&bundle.objects);
    if topology.workloads.is_empty() {
        bail!(
            "{}: no Workload objects, nothing to run (add `apiVersion: weft.dev/v1alpha1`, `kind: Workload` with spec.command)",
            dir.display()
        );
    }
    for w in topology.workloads.values() {
        resolve_command(&w.spec.command, w, dir).map_err(anyhow::Error::msg)?;
    }
    let services: usize = bundle
        .objects
        .iter()
        .filter(|o| o.kind == weft_config::Kind::Service)
        .count();
    phase(
        "config",
        format!(
            "{} objects in {} files: {} workloads, {services} services, {} gateways; {} warnings",
            bundle.objects.len(),
            bundle.files.len(),
            topology.workloads.len(),
            topology.gateways.len(),
            shown.len()
        ),
    );
    Ok(topology)
}

fn color_wanted() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Refuse to run twice for one directory; clear what a `weft up` that died left behind.
fn prepare_run_dir(run_dir: &Path, dir: &Path) -> anyhow::Result<()> {
    if let Some(old) = state::read(run_dir)? {
        if state::alive(old.pid) {
            bail!(
                "weft up is already running for {} (pid {}); stop it with `weft down {}`",
                dir.display(),
                old.pid,
                dir.display()
            );
        }
        let killed = state::kill_leftovers(&old);
        if killed > 0 {
            println!("  cleanup        stopped {killed} processes left by an earlier weft up");
        }
        if old.network.is_some() {
            let problems = state::remove_network_leftovers(&old);
            report_leftovers(&problems);
            if problems.is_empty() {
                println!(
                    "  cleanup        removed the namespaces and bridge an earlier weft up left"
                );
            }
        }
        let _ = std::fs::remove_file(run_dir.join(state::STATE_FILE));
    }
    for sub in ["logs", "data"] {
        let p = run_dir.join(sub);
        std::fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    }
    Ok(())
}

/// Whether ports below 1024 can be bound (root or CAP_NET_BIND_SERVICE).
fn can_bind_low_port(ip: IpAddr) -> bool {
    match std::net::TcpListener::bind((ip, 80)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::PermissionDenied,
    }
}

/// Ctrl-C and SIGTERM (what `weft down` sends) ask for a stop.
fn shutdown_signals() -> anyhow::Result<mpsc::UnboundedReceiver<&'static str>> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "interrupt",
            };
            if tx.send(name).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

impl Session {
    fn save(&mut self) {
        self.mesh.fill_state(&mut self.state);
        if let Err(e) = state::write(&self.state.run_dir, &self.state) {
            eprintln!("warning: {e:#}");
        }
    }

    async fn start_and_serve(&mut self) -> anyhow::Result<()> {
        let started_at = Instant::now();
        let proxies = self.mesh.start_proxies(&self.cp)?;
        let (gateways, sidecars): (Vec<String>, Vec<String>) = proxies.into_iter().partition(|k| {
            self.mesh
                .members
                .get(k)
                .is_some_and(|m| m.app_log.is_none())
        });
        let mut not_ready = Vec::new();
        let Some(failed) = self.wait_ready(&sidecars, "proxies").await else {
            return Ok(());
        };
        not_ready.extend(failed);
        if !gateways.is_empty() {
            let Some(failed) = self.wait_ready(&gateways, "gateway").await else {
                return Ok(());
            };
            not_ready.extend(failed);
        }
        let apps = self.mesh.start_apps()?;
        let Some(failed) = self.wait_ready(&apps, "apps").await else {
            return Ok(());
        };
        not_ready.extend(failed);
        self.state.ready = true;
        self.save();
        let mtls = self.mtls_text(&self.mesh_objects_initial());
        println!(
            "\nweft up: ready in {:.1}s\n\n{}",
            started_at.elapsed().as_secs_f64(),
            table::render(&self.mesh, &self.state, &mtls, &not_ready)
        );
        if self.opts.open {
            open_browser(&format!("http://{}/", self.state.debug));
        }
        self.serve().await;
        Ok(())
    }

    fn mesh_objects_initial(&self) -> Vec<weft_config::Object> {
        Bundle::load_paths(&[&self.state.dir]).objects
    }

    fn mtls_text(&self, objects: &[weft_config::Object]) -> String {
        if self.opts.mtls {
            format!(
                "{}; proxies talk mesh mTLS (tunnel on <address>:{})",
                plan::mtls_summary(objects),
                super::placement::TUNNEL_PORT
            )
        } else {
            "off (--no-mtls: plaintext between proxies)".to_string()
        }
    }

    /// Probe `keys` until all are ready or the timeout passes; prints the phase line and
    /// returns the labels that are not ready. None when a stop was asked for meanwhile.
    async fn wait_ready(&mut self, keys: &[String], what: &str) -> Option<Vec<String>> {
        let apps = what == "apps";
        let probes = self.mesh.probes(keys, apps);
        if probes.is_empty() {
            return Some(Vec::new());
        }
        let started = Instant::now();
        let deadline = started + self.opts.ready_timeout;
        // Each probe with the time of its next check: a failed one waits its period
        // (a readinessProbe's periodSeconds) before the next.
        let mut pending: Vec<(String, Probe, Instant)> =
            probes.into_iter().map(|(l, p)| (l, p, started)).collect();
        loop {
            let mut still = Vec::new();
            for (label, probe, due) in pending {
                let now = Instant::now();
                if due > now {
                    still.push((label, probe, due));
                } else if !probe.check().await {
                    let next = now + probe.period();
                    still.push((label, probe, next));
                }
            }
            pending = still;
            if pending.is_empty() || Instant::now() >= deadline {
                break;
            }
            let next = pending
                .iter()
                .map(|(_, _, due)| *due)
                .min()
                .unwrap_or(deadline)
                .min(deadline);
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                Some(r) = self.reports.recv() => self.on_report(r),
                Some(sig) = self.shutdown.recv() => {
                    println!("\n{sig}: stopping");
                    return None;
                }
            }
        }
        let total = self.mesh.probes(keys, apps).len();
        let failed: Vec<String> = pending.into_iter().map(|(l, _, _)| l).collect();
        let detail = if failed.is_empty() {
            format!("{total} ready ({:.1}s)", started.elapsed().as_secs_f64())
        } else {
            format!(
                "{} of {total} ready after {:?}; not ready: {}",
                total - failed.len(),
                self.opts.ready_timeout,
                failed.join(", ")
            )
        };
        phase(what, detail);
        Some(failed)
    }

    fn on_report(&mut self, report: Report) {
        let log_of = |mesh: &Mesh, label: &str| {
            mesh.entries()
                .into_iter()
                .find(|e| e.label == label)
                .map(|e| e.log.display().to_string())
                .unwrap_or_default()
        };
        match report {
            Report::Started { label, pid } => {
                if self.restarting.remove(&label) {
                    println!("{label} restarted (pid {pid})");
                }
            }
            Report::Exited {
                label,
                status,
                restart_in,
            } => {
                *self.mesh.restarts.entry(label.clone()).or_default() += 1;
                println!(
                    "{label} exited with {status}; restarting in {}s (log: {})",
                    restart_in.as_secs(),
                    log_of(&self.mesh, &label)
                );
                self.restarting.insert(label);
            }
            Report::SpawnFailed {
                label,
                error,
                restart_in,
            } => {
                println!(
                    "{label} could not start: {error}; retrying in {}s",
                    restart_in.as_secs()
                );
                self.restarting.insert(label);
            }
            Report::Stopped { .. } => {}
        }
        self.save();
    }

    async fn serve(&mut self) {
        let mut settle: Option<Instant> = None;
        loop {
            let wake = settle.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                Some(r) = self.reports.recv() => self.on_report(r),
                Some(change) = self.dir_changes.recv() => {
                    if self.on_dir_change(change) {
                        settle = Some(Instant::now() + SETTLE);
                    }
                }
                () = tokio::time::sleep_until(wake), if settle.is_some() => {
                    settle = None;
                    self.apply_dir().await;
                }
                Some(sig) = self.shutdown.recv() => {
                    println!("\n{sig}: stopping");
                    return;
                }
            }
        }
    }

    /// Record a change of DIR; true when the running mesh may need to follow it.
    fn on_dir_change(&mut self, change: DirChange) -> bool {
        let shown = |origin: &str| -> String {
            Path::new(origin)
                .strip_prefix(&self.state.dir)
                .map_or_else(|_| origin.to_string(), |p| p.display().to_string())
        };
        match &change {
            DirChange::Synced => {
                self.synced = true;
                // Files edited while starting are applied now.
                return true;
            }
            DirChange::Applied { origin, objects } if self.synced => {
                println!(
                    "config: {} applied ({} objects)",
                    shown(origin),
                    objects.len()
                );
            }
            DirChange::Deleted { origin } if self.synced => {
                println!("config: {} removed; its objects are gone", shown(origin));
            }
            DirChange::Rejected {
                origin,
                diagnostics,
            } => {
                eprint!("{}", render::human(diagnostics, color_wanted()));
                println!(
                    "config: {} rejected ({} errors); the previous config stays in force",
                    shown(origin),
                    diagnostics.len()
                );
            }
            _ => {}
        }
        self.objects.apply(&change) && self.synced
    }

    /// Follow DIR: restart changed Workloads, start new ones, update the registry.
    async fn apply_dir(&mut self) {
        let topology = plan::topology(&self.objects.all());
        if topology == self.mesh.topology {
            return;
        }
        for w in topology.workloads.values() {
            if let Err(e) = resolve_command(&w.spec.command, w, &self.state.dir) {
                println!("config: {e}; workload left as it runs");
                return;
            }
        }
        let grace = self.opts.grace;
        let lines = match self.mesh.reconcile(topology, grace).await {
            Ok(l) => l,
            Err(e) => {
                println!("config: cannot apply the change: {e:#}");
                return;
            }
        };
        for l in &lines {
            println!("config: {l}");
        }
        self.cp.set_registry(self.mesh.registry());
        let started = self.mesh.start_proxies(&self.cp).and_then(|mut p| {
            p.extend(self.mesh.start_apps()?);
            Ok(p)
        });
        if let Err(e) = started {
            println!("config: cannot start: {e:#}");
        }
        self.save();
    }

    /// Stop everything and clean up the run directory (logs and app data stay).
    async fn stop(&mut self) {
        let count = self
            .mesh
            .entries()
            .iter()
            .filter(|e| e.pid.is_some())
            .count();
        if count > 0 {
            println!(
                "stopping {count} processes: applications, then proxies (drain {:?})",
                self.opts.drain
            );
        }
        self.mesh.stop(self.opts.grace).await;
        self.cp.stop();
        let network = self.mesh.placement.network();
        let problems = self.mesh.placement.teardown();
        report_leftovers(&problems);
        if let Some(n) = network.filter(|_| problems.is_empty()) {
            println!(
                "removed {} network namespaces and bridge {}",
                n.namespaces.len(),
                n.bridge
            );
        }
        let run_dir = self.state.run_dir.clone();
        let _ = std::fs::remove_dir_all(run_dir.join("ca"));
        let _ = std::fs::remove_file(run_dir.join(state::STATE_FILE));
        println!(
            "weft up: stopped; logs in {}",
            run_dir.join("logs").display()
        );
    }
}

/// `weft up --open`: the dashboard in `$BROWSER`, else `xdg-open`; a failure is a warning
/// (the URL is in the table).
fn open_browser(url: &str) {
    let program = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "xdg-open".into());
    let spawned = std::process::Command::new(&program)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Not waited for: a browser outlives this command's interest in it.
        Ok(_) => println!("dashboard: opened {url} with {program}"),
        Err(e) => eprintln!("warning: cannot open {url} with {program}: {e}"),
    }
}
