//! The `weft` command line: thin commands over the weft crates.

mod cmd;
mod render;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "A service mesh that runs the Istio configuration you already write"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and analyze mesh configuration (Istio, Gateway API, Linkerd/SMI, Kubernetes).
    Analyze(cmd::analyze::Args),
    /// Run a proxy from a config directory and a registry, recompiling when they change.
    Proxy(cmd::proxy::Args),
    /// Run the control plane: push config to proxies, report status.
    Control(cmd::control::Args),
    /// Config objects and their status (accepted, rejected, programmed on N of M proxies).
    Status(cmd::status::StatusArgs),
    /// Connected proxies: identity, connected since, config version, ACK/NACK.
    ProxyStatus(cmd::status::ProxyStatusArgs),
    /// The config the control plane compiled for one proxy.
    ProxyConfig(cmd::status::ProxyConfigArgs),
    /// Run DIR (Services, weft Workloads, mesh config) as a local mesh: control plane,
    /// proxies, gateway and applications, supervised and live-reloaded.
    Up(cmd::up::Args),
    /// Stop a running `weft up` (from another terminal).
    Down(cmd::down::Args),
    /// Generate files for other tools: `weft generate monitoring` (Grafana, Prometheus).
    Generate(cmd::generate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::Control(args) => cmd::control::run(args),
        Command::Status(args) => cmd::status::status(args),
        Command::ProxyStatus(args) => cmd::status::proxy_status(args),
        Command::ProxyConfig(args) => cmd::status::proxy_config(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Down(args) => cmd::down::run(args),
        Command::Generate(args) => cmd::generate::run(args),
    }
}
