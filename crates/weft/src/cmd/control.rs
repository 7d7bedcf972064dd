//! `weft control --config-dir DIR [--registry FILE]`: run the control plane.
//!
//! Config objects come from the directory (recursive, debounced, a file that does not
//! parse keeps its previous objects); the registry file is reloaded when it changes (a
//! registry that does not load keeps the previous one). Proxies connect on `--listen`;
//! `weft status`, `weft proxy-status` and `weft proxy-config` read `--debug`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{info, warn};
use weft_compile::Registry;
use weft_control::source::DirectorySource;
use weft_control::{ControlPlane, Options};

const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(clap::Args)]
pub struct Args {
    /// Directory of mesh configuration, searched recursively and watched for changes.
    #[arg(long)]
    config_dir: PathBuf,
    /// Registry file: the workload instances and their proxies (watched for changes).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Where proxies connect (gRPC).
    #[arg(long, default_value = "127.0.0.1:15010")]
    listen: SocketAddr,
    /// The debug HTTP API (`weft status` reads it).
    #[arg(long, default_value = "127.0.0.1:15014")]
    debug: SocketAddr,
    /// Bootstrap token proxies must present (`weft proxy --token`); none accepts any proxy.
    #[arg(long)]
    token: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
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
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: &Path) -> anyhow::Result<Registry> {
    weft_compile::load_registry(path).map_err(|d| match &d.hint {
        Some(h) => anyhow::anyhow!("{d} (help: {h})"),
        None => anyhow::anyhow!("{d}"),
    })
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let registry = match &args.registry {
        Some(p) => load(p)?,
        None => Registry::default(),
    };
    let source = DirectorySource::new(&args.config_dir)?;
    let cp = ControlPlane::start(
        Options {
            listen: args.listen,
            debug: Some(args.debug),
            token: args.token.clone(),
            registry,
        },
        Box::new(source),
    )
    .await?;
    info!(listen = %cp.grpc_addr(), debug = ?cp.debug_addr(), "weft control started");
    let (tx, mut changes) = mpsc::unbounded_channel();
    let _watcher = match &args.registry {
        Some(path) => Some(watch_file(path, tx)?),
        None => None,
    };
    let terminate = tokio::signal::ctrl_c();
    tokio::pin!(terminate);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    loop {
        tokio::select! {
            Some(()) = changes.recv() => {
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, changes.recv()).await {}
                if let Some(path) = &args.registry {
                    match load(path) {
                        Ok(r) => {
                            info!(instances = r.instances.len(), "registry reloaded");
                            cp.set_registry(r);
                        }
                        Err(e) => warn!(error = %e, "registry does not load; keeping the previous one"),
                    }
                }
            }
            _ = &mut terminate => break,
            _ = term.recv() => break,
        }
    }
    info!("stopping");
    cp.stop();
    Ok(())
}

/// Watch the registry's directory (editors replace files by renaming over them).
fn watch_file(
    path: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res
            && !matches!(event.kind, notify::EventKind::Access(_))
            && event
                .paths
                .iter()
                .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
        {
            let _ = tx.send(());
        }
    })
    .context("cannot start the file watcher")?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    Ok(watcher)
}
