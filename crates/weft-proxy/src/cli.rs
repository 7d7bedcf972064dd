//! Running the proxy as a process: the flags, the async runtime, logging and the
//! control-plane mode shared by the lean `weft-proxy` binary and `weft proxy --control`.
//!
//! In control-plane mode the config comes from `weft control` over the push stream
//! ([`crate::xds`]); the proxy's identity, labels and address come from its registry entry
//! held by the control plane unless `--label`, `--service-account` or `--address` announce
//! others. Once the first config names the expected SPIFFE ID, the proxy asks the control
//! plane's CA (`weft.v1.CertificateService`, same address and token unless `--ca-addr`) for
//! its workload certificate and keeps it fresh; it is ready only with a certificate.
//! SIGTERM / Ctrl-C drain the proxy; `/quitquitquit` stops it too.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::admin::LogControl;
use crate::app::{self, AppError, ProxyOptions, Running};
use crate::identity::{
    GrpcCertificateClient, Identity, IdentityError, IdentityManager, IdentityOptions,
    IdentitySource, IdentityStats,
};
use crate::xds::{Backoff, XdsClient, XdsOptions};

/// The flags of the lean `weft-proxy` binary: a proxy configured by a control plane.
#[derive(clap::Parser)]
#[command(
    name = "weft-proxy",
    version,
    about = "The weft sidecar and gateway proxy, configured by a control plane (`weft control`)",
    long_about = "The weft sidecar and gateway proxy, configured by a control plane (`weft control`).\n\n\
        It takes its compiled config over the push stream, asks the control plane's CA for its \
        workload certificate (mesh mTLS) and is ready (`/ready` on the admin port) once it has \
        both. SIGTERM, Ctrl-C or `/quitquitquit` drain it: it stops accepting, lets open \
        connections finish for --drain-grace and exits 0. Exit code 1: it could not start.\n\n\
        `weft proxy --control` runs the same code; `weft proxy --config-dir` (compiling YAML \
        locally) is only in the `weft` CLI."
)]
pub struct ProxyCli {
    /// The control plane (`weft control`) to take config from: `127.0.0.1:15010` or
    /// `http://host:port`.
    #[arg(long, value_name = "ADDR")]
    pub control: String,
    #[command(flatten)]
    pub control_args: ControlArgs,
    #[command(flatten)]
    pub process: ProcessArgs,
}

/// How the proxy finds and authenticates to its control plane and what it announces about
/// itself. Every flag needs `--control` (an argument of the enclosing command).
#[derive(clap::Args, Debug, Clone)]
pub struct ControlArgs {
    /// Bootstrap token the control plane expects (`weft control --token`).
    #[arg(long, requires = "control")]
    pub token: Option<String>,
    /// A label to announce (`--label app=cart`, repeatable); default: the registry's.
    #[arg(long = "label", value_name = "KEY=VALUE", requires = "control")]
    pub labels: Vec<String>,
    /// Service account to announce; default: the registry's.
    #[arg(long, requires = "control")]
    pub service_account: Option<String>,
    /// The address other workloads reach this instance on; default: the registry's.
    #[arg(long, requires = "control")]
    pub address: Option<String>,
    /// The CA to ask for the workload certificate (`weft.v1.CertificateService`, with the
    /// `--token`); default: the `--control` address, where `weft control` serves it.
    #[arg(long, value_name = "ADDR", requires = "control")]
    pub ca_addr: Option<String>,
}

/// What every proxy process has, whatever its config source.
#[derive(clap::Args, Debug, Clone)]
pub struct ProcessArgs {
    /// The proxy to run: its workload instance as `name.namespace` (e.g. `cart-0.shop`).
    #[arg(long)]
    pub id: String,
    /// Admin endpoint (/ready, /live, /config_dump, /logging, /quitquitquit, ...).
    #[arg(long, default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// How long a drain (SIGTERM, /quitquitquit) waits for open connections: 5s, 500ms, 1m.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_grace: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--label {0}: write KEY=VALUE")]
    Label(String),
    #[error("certificate authority {addr}: {source}")]
    CertificateAuthority { addr: String, source: IdentityError },
    #[error(transparent)]
    Start(#[from] AppError),
}

/// `5s`, `500ms`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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

/// `host:port` or a URL, as the gRPC clients want it (`http://host:port`).
fn grpc_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

impl ControlArgs {
    /// The push-stream options for proxy `id` of the control plane at `control`.
    pub fn xds_options(&self, control: &str, id: &str) -> Result<XdsOptions, RunError> {
        let mut labels = BTreeMap::new();
        for l in &self.labels {
            let Some((k, v)) = l.split_once('=') else {
                return Err(RunError::Label(l.clone()));
            };
            labels.insert(k.to_string(), v.to_string());
        }
        Ok(XdsOptions {
            address: grpc_url(control),
            proxy_id: id.to_string(),
            token: self.token.clone().unwrap_or_default(),
            labels,
            service_account: self.service_account.clone().unwrap_or_default(),
            workload_address: self.address.clone().unwrap_or_default(),
            admin_address: String::new(),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(15)),
        })
    }
}

/// The whole `weft-proxy` process: logging, runtime, serve. Exit codes: 0 after a drain,
/// 1 when the proxy cannot start.
pub fn main(cli: ProxyCli) -> std::process::ExitCode {
    let log_control = init_tracing();
    run_to_exit(serve_control(
        cli.control,
        cli.control_args,
        cli.process,
        log_control,
    ))
}

/// Runs `serve` on the proxy's runtime and maps the outcome to the exit code.
pub fn run_to_exit<E: std::fmt::Display>(
    serve: impl Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    let runtime = match async_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(serve) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// tokio's scheduler for the proxy. With one worker thread (`TOKIO_WORKER_THREADS=1`) the
/// current-thread scheduler does the same work without the multi-thread one's cross-thread
/// queues and wake-ups, which at low request rates cost more than the request itself.
pub fn async_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let one_worker = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v == "1");
    let mut builder = if one_worker {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

/// Run a proxy configured by the control plane at `control` until a signal or
/// `/quitquitquit` stops it (both drain first).
pub async fn serve_control(
    control: String,
    args: ControlArgs,
    process: ProcessArgs,
    log_control: Arc<dyn LogControl>,
) -> Result<(), RunError> {
    let xds = args.xds_options(&control, &process.id)?;
    let ca_addr = match &args.ca_addr {
        Some(a) => grpc_url(a),
        None => xds.address.clone(),
    };
    let ca = GrpcCertificateClient::new(&ca_addr, &xds.token).map_err(|source| {
        RunError::CertificateAuthority {
            addr: ca_addr.clone(),
            source,
        }
    })?;
    let (identity_tx, identity_rx) = watch::channel(None);
    let stats = IdentityStats::default();
    let options = ProxyOptions {
        admin: process.admin,
        drain_grace: process.drain_grace,
        log_control: Some(log_control),
        identity: Some(IdentitySource {
            rx: identity_rx,
            stats: stats.clone(),
        }),
    };
    let (mut client, source) = XdsClient::new(xds);
    let running = app::build(options, source).await?;
    // Known only once bound (the port may be 0).
    client.announce_admin_address(running.admin_addr());
    // Push, ACK and NACK counters on /stats/prometheus.
    running
        .runtime()
        .load()
        .telemetry()
        .hub()
        .metrics
        .attach_xds(client.stats());
    info!(admin = %running.admin_addr(), id = %process.id, %control, "weft proxy started");
    tokio::spawn(client.run(running.status()));
    tokio::spawn(run_identity(
        ca,
        stats,
        identity_tx,
        running.status(),
        running.runtime(),
    ));
    run_until_stopped(&running).await;
    Ok(())
}

/// Serve until SIGTERM / Ctrl-C (then drain) or until `/quitquitquit` ends the proxy.
pub async fn run_until_stopped(running: &Running) {
    tokio::select! {
        () = terminate_signal() => {
            info!(grace = ?running.drain_grace(), "signal received; draining");
            running.drain(running.drain_grace()).await;
        }
        () = running.wait() => {}
    }
}

/// Waits for the first config (its node names the SPIFFE ID the CA must issue), then runs
/// the certificate manager and forwards every certificate to the proxy.
async fn run_identity(
    ca: GrpcCertificateClient,
    stats: IdentityStats,
    tx: watch::Sender<Option<Arc<Identity>>>,
    mut status: watch::Receiver<app::Status>,
    runtime: crate::RuntimeHandle,
) {
    if status.wait_for(|s| s.applied.is_some()).await.is_err() {
        return;
    }
    let node = runtime.load().config.node.clone();
    let expected_identity = (!node.trust_domain.is_empty()
        && !node.namespace.is_empty()
        && !node.service_account.is_empty())
    .then(|| {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            node.trust_domain, node.namespace, node.service_account
        )
    });
    info!(expected = ?expected_identity, "requesting the workload certificate");
    let options = IdentityOptions {
        expected_identity,
        ..IdentityOptions::default()
    };
    let handle = IdentityManager::spawn_with_stats(ca, options, stats);
    let mut rx = handle.subscribe();
    loop {
        tx.send_replace(rx.borrow_and_update().clone());
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminate_signal() {
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

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), changeable at runtime through
/// the admin `/logging` endpoint.
pub fn init_tracing() -> Arc<dyn LogControl> {
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
    use clap::Parser;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn flags_become_push_options() {
        let cli = ProxyCli::try_parse_from([
            "weft-proxy",
            "--control",
            "127.0.0.1:15010",
            "--id",
            "cart-0.shop",
            "--token",
            "t",
            "--label",
            "app=cart",
            "--drain-grace",
            "250ms",
        ])
        .expect("valid flags");
        assert_eq!(cli.process.drain_grace, Duration::from_millis(250));
        let xds = cli
            .control_args
            .xds_options(&cli.control, &cli.process.id)
            .expect("valid labels");
        assert_eq!(xds.address, "http://127.0.0.1:15010");
        assert_eq!(xds.proxy_id, "cart-0.shop");
        assert_eq!(xds.token, "t");
        assert_eq!(xds.labels.get("app").map(String::as_str), Some("cart"));
    }

    #[test]
    fn a_label_without_value_is_refused() {
        let args = ControlArgs {
            token: None,
            labels: vec!["app".into()],
            service_account: None,
            address: None,
            ca_addr: None,
        };
        let err = args.xds_options("127.0.0.1:1", "a.b").unwrap_err();
        assert_eq!(err.to_string(), "--label app: write KEY=VALUE");
    }

    #[test]
    fn control_and_id_are_required() {
        assert!(ProxyCli::try_parse_from(["weft-proxy", "--id", "a.b"]).is_err());
        assert!(ProxyCli::try_parse_from(["weft-proxy", "--control", "127.0.0.1:1"]).is_err());
    }
}
