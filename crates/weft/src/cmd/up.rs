//! `weft up DIR`: run a directory of Services, Workloads and mesh config as a local mesh
//! (see [`crate::up`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::up::{self, UpOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Directory of Kubernetes Services, weft Workloads and mesh config (Istio, Gateway
    /// API, Linkerd), searched recursively and watched for changes.
    dir: PathBuf,
    /// Where logs, the state file and the CA live (default: $XDG_RUNTIME_DIR/weft/<dir>-<hash>,
    /// or /tmp/weft-<uid>/<dir>-<hash>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Where proxies reach the control plane (gRPC); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The control plane's debug API, read by `weft status` [default: 127.0.0.1:15014, or a
    /// free port when that one is taken].
    #[arg(long)]
    debug: Option<SocketAddr>,
    /// Loopback network for replica addresses: replicas get <NET>.1, <NET>.2, ...
    #[arg(long, default_value = "127.0.1", value_parser = parse_net)]
    loopback_net: [u8; 3],
    /// Address gateways bind their ports on (ports below 1024 move up by 8000 without root).
    #[arg(long, default_value = "127.0.0.1")]
    gateway_address: IpAddr,
    /// Plaintext between proxies instead of mesh mTLS.
    #[arg(long)]
    no_mtls: bool,
    /// Transparent mode (root): each replica in its own network namespace on a bridge,
    /// with the iptables capture a Kubernetes pod gets and the Services in its hosts file,
    /// so applications call plain `http://cart:3002` with no proxy settings.
    #[arg(long, conflicts_with = "loopback_net")]
    netns: bool,
    /// How long to wait for proxies and applications to become ready: 30s, 500ms, 2m.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    ready_timeout: Duration,
    /// How long a process gets between SIGTERM and SIGKILL when stopping.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    grace: Duration,
    /// How long proxies drain open connections when stopping.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    drain_grace: Duration,
    /// Open the dashboard (served by the control plane on the debug address) in a browser
    /// ($BROWSER, else xdg-open) once the mesh is ready.
    #[arg(long)]
    open: bool,
}

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

fn parse_net(s: &str) -> Result<[u8; 3], String> {
    let parts: Vec<u8> = s
        .split('.')
        .map(|p| p.parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("`{s}`: write three numbers, e.g. 127.0.1"))?;
    match parts.as_slice() {
        [127, b, c] => Ok([127, *b, *c]),
        [_, _, _] => Err(format!("`{s}` is not on loopback: it must start with 127.")),
        _ => Err(format!("`{s}`: write three numbers, e.g. 127.0.1")),
    }
}

/// Exit codes: 0 after a clean stop, 1 when the mesh cannot start (invalid config, a
/// missing command, a port in use).
pub fn run(args: Args) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
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
    let opts = UpOptions {
        dir: args.dir,
        run_dir: args.run_dir,
        listen: args.listen,
        debug: args.debug,
        loopback_net: args.loopback_net,
        gateway_address: args.gateway_address,
        mtls: !args.no_mtls,
        ready_timeout: args.ready_timeout,
        grace: args.grace,
        drain: args.drain_grace,
        netns: args.netns,
        open: args.open,
    };
    match runtime.block_on(up::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_nets_must_be_on_127() {
        assert_eq!(parse_net("127.0.1"), Ok([127, 0, 1]));
        assert!(parse_net("10.0.1").is_err());
        assert!(parse_net("127.0").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }
}
