//! The `weft` command line: thin commands over the weft crates.

mod cmd;
mod render;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => cmd::analyze::run(args),
        Command::Proxy(args) => cmd::proxy::run(args),
    }
}
