//! `weft proxy --config-dir DIR --registry FILE --id NAME`: run one proxy from local files.
//!
//! The config directory and the registry are compiled into the proxy's `ProxyConfig` and
//! recompiled whenever either changes (debounced). Problems are printed as one-line
//! diagnostics (`weft analyze` prints the full report): an object with errors is skipped
//! and the rest is compiled; a file that does not parse, a registry that does not load or
//! a compile error keeps the running config unchanged. SIGTERM / Ctrl-C drain the proxy.
//!
//! `weft proxy --control ADDR --id NAME --token TOKEN` takes the config from a control plane
//! (`weft control`) instead: see `weft_proxy::xds`; the proxy's identity, labels and address
//! come from its registry entry held by the control plane unless `--label`,
//! `--service-account` or `--address` announce others.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{info, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};
use weft_config::diag::codes;
use weft_config::{Bundle, Diagnostic, Severity};
use weft_proxy::admin::LogControl;
use weft_proxy::app::{self, ProxyOptions, Running};
use weft_proxy::source::{ChannelSource, ConfigPublisher};

/// Changes closer together than this are compiled once (editors write files in steps).
const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(clap::Args)]
pub struct Args {
    /// Directory of mesh configuration (Istio, Gateway API, Linkerd/SMI, Kubernetes YAML),
    /// searched recursively and watched for changes.
    #[arg(
        long = "config-dir",
        value_name = "DIR",
        required_unless_present = "control"
    )]
    config_dir_arg: Option<PathBuf>,
    /// Registry file: the workload instances and how their proxies capture traffic
    /// (watched for changes).
    #[arg(
        long = "registry",
        value_name = "FILE",
        required_unless_present = "control"
    )]
    registry_arg: Option<PathBuf>,
    #[arg(skip)]
    config_dir: PathBuf,
    #[arg(skip)]
    registry: PathBuf,
    /// Take config from a control plane (`weft control`) at this address instead of a
    /// directory: `127.0.0.1:15010` or `http://host:port`.
    #[arg(long, conflicts_with_all = ["config_dir_arg", "registry_arg"])]
    control: Option<String>,
    #[command(flatten)]
    control_args: super::control_proxy::ControlArgs,
    /// The proxy to run: its workload instance as `name.namespace` (e.g. `cart-0.shop`).
    #[arg(long)]
    id: String,
    /// Admin endpoint (/ready, /config_dump, /quitquitquit, ...).
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    /// How long a drain (SIGTERM, /quitquitquit) waits for open connections: 5s, 500ms, 1m.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_grace: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit; write e.g. 5s or 500ms"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("unknown unit `{unit}` in `{s}`; use ms, s or m")),
    }
}

/// Exit codes: 0 after a drain, 1 when the proxy cannot start.
pub fn run(args: Args) -> ExitCode {
    let log_control = init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(args, log_control)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn serve(mut args: Args, log_control: Arc<dyn LogControl>) -> anyhow::Result<()> {
    args.config_dir = args.config_dir_arg.clone().unwrap_or_default();
    args.registry = args.registry_arg.clone().unwrap_or_default();
    if let Some(control) = &args.control {
        let options = ProxyOptions {
            admin: args.admin,
            drain_grace: args.drain_grace,
            log_control: Some(log_control),
        };
        let xds = args.control_args.xds_options(control, &args.id)?;
        let (client, source) = weft_proxy::xds::XdsClient::new(xds);
        let running = app::build(options, source).await?;
        info!(admin = %running.admin_addr(), id = %args.id, %control, "weft proxy started");
        tokio::spawn(client.run(running.status()));
        let terminate = terminate_signal();
        tokio::select! {
            () = terminate => {
                info!(grace = ?running.drain_grace(), "signal received; draining");
                running.drain(running.drain_grace()).await;
            }
            () = running.wait() => {}
        }
        return Ok(());
    }
    if !args.config_dir.is_dir() {
        bail!(
            "--config-dir {}: not a directory",
            args.config_dir.display()
        );
    }
    let args = Arc::new(args);
    let (source, publisher) = ChannelSource::new();
    let options = ProxyOptions {
        admin: args.admin,
        drain_grace: args.drain_grace,
        log_control: Some(log_control),
    };
    let running = app::build(options, source).await?;
    info!(admin = %running.admin_addr(), id = %args.id, "weft proxy started");
    let (events_tx, events) = mpsc::unbounded_channel();
    let _watcher = watch(&args, events_tx)?;
    reload(&args, &publisher, true).await;
    run_until_stopped(&args, &running, &publisher, events).await;
    Ok(())
}

/// Recompile on file changes until a signal or `/quitquitquit` stops the proxy.
async fn run_until_stopped(
    args: &Arc<Args>,
    running: &Running,
    publisher: &ConfigPublisher,
    mut events: mpsc::UnboundedReceiver<()>,
) {
    let terminate = terminate_signal();
    tokio::pin!(terminate);
    loop {
        tokio::select! {
            Some(()) = events.recv() => {
                // Wait until the files are quiet, then compile once.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {}
                reload(args, publisher, false).await;
            }
            () = &mut terminate => {
                info!(grace = ?running.drain_grace(), "signal received; draining");
                running.drain(running.drain_grace()).await;
                return;
            }
            () = running.wait() => return,
        }
    }
}

async fn terminate_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C drains");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Watch the config directory (recursively) and the registry file. The registry's
/// directory is watched rather than the file, so editors that replace the file (write a
/// temporary, rename it over) are seen too.
fn watch(args: &Args, tx: mpsc::UnboundedSender<()>) -> anyhow::Result<notify::RecommendedWatcher> {
    let config_dir = args.config_dir.clone();
    let registry = args.registry.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if !is_change(&event.kind) {
            return;
        }
        let relevant = event
            .paths
            .iter()
            .any(|p| p.starts_with(&config_dir) || same_file_name(p, &registry));
        if relevant {
            let _ = tx.send(());
        }
    })
    .context("cannot start the file watcher")?;
    watcher
        .watch(&args.config_dir, RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", args.config_dir.display()))?;
    let registry_dir = match args.registry.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher
        .watch(&registry_dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", registry_dir.display()))?;
    Ok(watcher)
}

/// Writes, creations, removals and renames; not reads (our own reloads read the files).
fn is_change(kind: &EventKind) -> bool {
    use notify::event::ModifyKind;
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

fn same_file_name(path: &Path, registry: &Path) -> bool {
    path.file_name().is_some() && path.file_name() == registry.file_name()
}

/// Load, compile and publish. Reading files and compiling run on a blocking thread.
async fn reload(args: &Arc<Args>, publisher: &ConfigPublisher, startup: bool) {
    let job = args.clone();
    let compiled = tokio::task::spawn_blocking(move || compile(&job, startup)).await;
    match compiled {
        Ok(Ok(config)) => {
            info!(version = %config.version, "config compiled");
            publisher.publish(config);
        }
        Ok(Err(e)) => eprintln!("{e}; the running config stays in force"),
        Err(e) => eprintln!("error: compiling failed: {e}; the running config stays in force"),
    }
}

/// Load the directory and the registry and compile this proxy's config. Diagnostics are
/// printed; the error says why nothing was compiled.
fn compile(args: &Args, startup: bool) -> Result<weft_api::ProxyConfig, String> {
    let bundle = Bundle::load_paths(std::slice::from_ref(&args.config_dir));
    let mut errors: Vec<Diagnostic> = bundle
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .cloned()
        .collect();
    // A file that does not parse contributes no objects: applying the rest could drop
    // routes the file holds, so a reload keeps the running config (at startup there is
    // nothing to keep, and the rest is better than nothing).
    let unparsed = bundle.unreadable
        || errors
            .iter()
            .any(|d| d.code == codes::SYNTAX || d.code == codes::UNREADABLE);
    let mut objects = Vec::with_capacity(bundle.objects.len());
    for obj in bundle.objects {
        let problems: Vec<Diagnostic> = weft_config::validate::validate(&obj)
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        if problems.is_empty() {
            objects.push(obj);
        } else {
            errors.extend(problems);
        }
    }
    print_diagnostics(&errors);
    if !errors.is_empty() {
        eprintln!(
            "{} error(s): objects with errors are left out (`weft analyze` shows the details)",
            errors.len()
        );
    }
    if unparsed && !startup {
        return Err(format!(
            "error: {} has files that do not parse",
            args.config_dir.display()
        ));
    }
    let registry = weft_compile::load_registry(&args.registry).map_err(|d| {
        print_diagnostics(std::slice::from_ref(&d));
        format!("error: registry {} does not load", args.registry.display())
    })?;
    let snapshot = weft_compile::Snapshot::new(&objects);
    weft_compile::compile(&snapshot, &registry, &args.id)
        .map_err(|e| format!("error: compiling proxy {}: {e}", args.id))
}

/// One line per problem, as `weft analyze` names them (code, object, message, position),
/// plus the hint when there is one.
fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        match &d.hint {
            Some(h) => eprintln!("{d} (help: {h})"),
            None => eprintln!("{d}"),
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), changeable at runtime through
/// the admin `/logging` endpoint.
fn init_tracing() -> Arc<dyn LogControl> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .try_init();
    Arc::new(ReloadableFilter { handle })
}

struct ReloadableFilter {
    handle: reload::Handle<EnvFilter, Registry>,
}

impl LogControl for ReloadableFilter {
    fn current(&self) -> String {
        self.handle
            .with_current(|f| f.to_string())
            .unwrap_or_else(|e| format!("unknown ({e})"))
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        let new = EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
        self.handle.reload(new).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
    }
}
