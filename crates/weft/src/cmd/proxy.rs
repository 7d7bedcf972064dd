//! `weft proxy --config-dir DIR --registry FILE --id NAME`: run one proxy from local files.
//!
//! The config directory and the registry are compiled into the proxy's `ProxyConfig` and
//! recompiled whenever either changes (debounced). Problems are printed as one-line
//! diagnostics (`weft analyze` prints the full report): an object with errors is skipped
//! and the rest is compiled; a file that does not parse, a registry that does not load or
//! a compile error keeps the running config unchanged. SIGTERM / Ctrl-C drain the proxy.
//!
//! `weft proxy --control ADDR --id NAME --token TOKEN` takes the config from a control plane
//! (`weft control`) instead: that mode is `weft_proxy::cli`, the code the lean `weft-proxy`
//! binary runs; this command only parses the flags and calls it.
//!
//! Mesh mTLS needs a workload certificate. With `--control`, the proxy asks the control
//! plane's CA (`weft.v1.CertificateService`, same address and token unless `--ca-addr`)
//! once its first config names the expected SPIFFE ID, and keeps it fresh; it is ready only
//! with a certificate. With `--config-dir`, `--cert-dir DIR` loads Istio's file-mounted
//! layout (`cert-chain.pem`, `key.pem`, `root-cert.pem`) and reloads it when it changes;
//! without it mesh mTLS is off (auto-mTLS sends plaintext, ISTIO_MUTUAL is refused).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::info;
use weft_config::diag::codes;
use weft_config::{Bundle, Diagnostic, Severity};
use weft_proxy::admin::LogControl;
use weft_proxy::app::{self, ProxyOptions, Running};
use weft_proxy::cli::{self, ControlArgs, ProcessArgs};
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
    /// directory: `127.0.0.1:15010` or `http://host:port`. The lean `weft-proxy` binary
    /// runs this mode with the same flags.
    #[arg(long, conflicts_with_all = ["config_dir_arg", "registry_arg"])]
    control: Option<String>,
    #[command(flatten)]
    control_args: ControlArgs,
    /// Mesh mTLS without a control plane: a directory in Istio's file-mounted layout,
    /// `cert-chain.pem` (leaf first), `key.pem` (PKCS#8) and `root-cert.pem`, reloaded
    /// when the files change. Without it (and without --control) mesh mTLS is off.
    #[arg(long, value_name = "DIR", conflicts_with = "control")]
    cert_dir: Option<PathBuf>,
    #[command(flatten)]
    process: ProcessArgs,
}

/// Exit codes: 0 after a drain, 1 when the proxy cannot start.
pub fn run(mut args: Args) -> ExitCode {
    let log_control = cli::init_tracing();
    match args.control.take() {
        Some(control) => cli::run_to_exit(cli::serve_control(
            control,
            args.control_args,
            args.process,
            log_control,
        )),
        None => cli::run_to_exit(async move {
            serve_dir(args, log_control)
                .await
                .map_err(|e| format!("{e:#}"))
        }),
    }
}

/// `--config-dir` mode: compile locally, recompile on change.
async fn serve_dir(mut args: Args, log_control: Arc<dyn LogControl>) -> anyhow::Result<()> {
    args.config_dir = args.config_dir_arg.clone().unwrap_or_default();
    args.registry = args.registry_arg.clone().unwrap_or_default();
    if !args.config_dir.is_dir() {
        bail!(
            "--config-dir {}: not a directory",
            args.config_dir.display()
        );
    }
    let args = Arc::new(args);
    let (source, publisher) = ChannelSource::new();
    // Kept for as long as the proxy runs: it owns the reload loop.
    let cert_dir = match &args.cert_dir {
        Some(dir) => Some(
            weft_proxy::identity::watch_cert_dir(dir.clone())
                .with_context(|| format!("--cert-dir {}", dir.display()))?,
        ),
        None => None,
    };
    let options = ProxyOptions {
        admin: args.process.admin,
        drain_grace: args.process.drain_grace,
        log_control: Some(log_control),
        identity: cert_dir.as_ref().map(|h| h.source()),
    };
    let running = app::build(options, source).await?;
    info!(admin = %running.admin_addr(), id = %args.process.id, "weft proxy started");
    let (events_tx, events) = mpsc::unbounded_channel();
    let _watcher = watch(&args, events_tx)?;
    reload(&args, &publisher, true).await;
    recompile_until_stopped(&args, &running, &publisher, events).await;
    Ok(())
}

/// Recompile on file changes until a signal or `/quitquitquit` stops the proxy.
async fn recompile_until_stopped(
    args: &Arc<Args>,
    running: &Running,
    publisher: &ConfigPublisher,
    mut events: mpsc::UnboundedReceiver<()>,
) {
    let stopped = cli::run_until_stopped(running);
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            Some(()) = events.recv() => {
                // Wait until the files are quiet, then compile once.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {}
                reload(args, publisher, false).await;
            }
            () = &mut stopped => return,
        }
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
    weft_compile::compile(&snapshot, &registry, &args.process.id)
        .map_err(|e| format!("error: compiling proxy {}: {e}", args.process.id))
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
