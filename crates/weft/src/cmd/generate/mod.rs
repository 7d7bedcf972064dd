//! `weft generate ...`: files that help run weft with other tools (today: monitoring).

mod alerts;
mod dashboards;
mod grafana;
pub mod monitoring;
mod promql;

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Grafana dashboards and Prometheus alerting rules for the mesh, the proxies and the
    /// control plane (Istio's standard metrics plus weft's own).
    Monitoring(monitoring::Args),
}

pub fn run(args: Args) -> ExitCode {
    match args.what {
        What::Monitoring(args) => monitoring::run(args),
    }
}
