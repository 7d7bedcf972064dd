//! `weft control --config-dir DIR [--registry FILE]`: run the control plane.
//!
//! Config objects come from the directory (recursive, debounced, a file that does not
//! parse keeps its previous objects); the registry file is reloaded when it changes (a
//! registry that does not load keeps the previous one). Proxies connect on `--listen`;
//! `weft status`, `weft proxy-status` and `weft proxy-config` read `--debug`.
//!
//! The CA (`weft.v1.CertificateService/CreateCertificate`) is served on `--listen` too. It
//! signs for the identity a proxy's bootstrap token names: `--tokens FILE` loads
//! `<token> <namespace> <service-account> [<proxy-id>]` lines; `--write-tokens FILE` keeps
//! one token per registry instance there (bound to its proxy id, kept across restarts,
//! extended when the registry gains instances), for `weft proxy --token`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{info, warn};
use weft_compile::Registry;
use weft_control::ca::TokenStore;
use weft_control::source::DirectorySource;
use weft_control::{CaSettings, ControlPlane, Options};

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
    /// A shared bootstrap token any proxy may present (`weft proxy --token`). It names no
    /// identity, so it gets no certificate; use --tokens or --write-tokens for that.
    /// With no token option at all, any proxy is admitted.
    #[arg(long)]
    token: Option<String>,
    /// Per-identity bootstrap tokens: `<token> <namespace> <service-account> [<proxy-id>]`
    /// lines. A proxy may only fetch config and certificates of its token's identity.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Issue a token for every registry instance and keep them in FILE
    /// (`<token> <namespace> <service-account> <proxy-id>`, mode 0600; existing tokens
    /// there are kept).
    #[arg(long, value_name = "FILE")]
    write_tokens: Option<PathBuf>,
    /// The CA's directory, in Istio's cacerts layout (ca-cert.pem, ca-key.pem,
    /// root-cert.pem, cert-chain.pem): a plugged-in CA when the files exist, otherwise a
    /// self-signed root is generated there. An extra root-cert-next.pem joins the trust
    /// bundle (root rotation). Default: $XDG_STATE_HOME/weft/ca (~/.local/state/weft/ca).
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Workload certificate lifetime when a proxy asks for none: 24h, 90m, 3600s, 7d.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    workload_cert_ttl: Duration,
    /// The longest workload certificate lifetime granted.
    #[arg(long, default_value = "90d", value_parser = parse_duration)]
    max_workload_cert_ttl: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit; write e.g. 24h or 90m"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a duration"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use s, m, h or d")),
    };
    match n.checked_mul(secs) {
        Some(0) => Err(format!("`{s}`: a certificate lifetime must not be zero")),
        Some(total) => Ok(Duration::from_secs(total)),
        None => Err(format!("`{s}` is too long")),
    }
}

/// `$XDG_STATE_HOME/weft/ca`, else `~/.local/state/weft/ca`, else `.weft/ca`.
fn default_ca_dir() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
    match state {
        Some(dir) => dir.join("weft/ca"),
        None => PathBuf::from(".weft/ca"),
    }
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
    if args.workload_cert_ttl > args.max_workload_cert_ttl {
        anyhow::bail!(
            "--workload-cert-ttl ({}s) is longer than --max-workload-cert-ttl ({}s)",
            args.workload_cert_ttl.as_secs(),
            args.max_workload_cert_ttl.as_secs()
        );
    }
    let tokens = Arc::new(TokenStore::new());
    let mut tokens_given = false;
    for path in [&args.tokens, &args.write_tokens].into_iter().flatten() {
        // The --write-tokens file may not exist yet: it is created below.
        if path.exists() || Some(path) == args.tokens.as_ref() {
            tokens.load_file(path)?;
        }
        tokens_given = true;
    }
    let ca_dir = args.ca_dir.clone().unwrap_or_else(default_ca_dir);
    let source = DirectorySource::new(&args.config_dir)?;
    let cp = ControlPlane::start(
        Options {
            listen: args.listen,
            debug: Some(args.debug),
            token: args.token.clone(),
            tokens: tokens_given.then_some(tokens),
            registry,
            ca: Some(CaSettings {
                dir: ca_dir.clone(),
                workload_ttl: args.workload_cert_ttl,
                max_workload_ttl: args.max_workload_cert_ttl,
            }),
        },
        Box::new(source),
    )
    .await
    .with_context(|| {
        format!(
            "cannot start the control plane (CA directory {})",
            ca_dir.display()
        )
    })?;
    info!(listen = %cp.grpc_addr(), debug = ?cp.debug_addr(), ca = %ca_dir.display(), "weft control started");
    if let Some(path) = &args.write_tokens {
        write_tokens(&cp, path)?;
    }
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
                            if let Some(path) = &args.write_tokens
                                && let Err(e) = write_tokens(&cp, path)
                            {
                                warn!(error = %e, "cannot write the tokens of new instances");
                            }
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

/// Issue tokens for the registry instances that have none and write them all to `path`.
fn write_tokens(cp: &ControlPlane, path: &Path) -> anyhow::Result<()> {
    let issued = cp.issue_registry_tokens()?;
    cp.tokens().write_proxy_tokens(path)?;
    for (proxy, _) in &issued {
        info!(%proxy, file = %path.display(), "issued a bootstrap token");
    }
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
