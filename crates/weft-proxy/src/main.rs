//! `weft-proxy --control ADDR --id ID --token T`: the proxy alone, configured by a control
//! plane. The same code runs under `weft proxy --control`; this binary links only the data
//! plane (no YAML loading, no compiler, no control plane), so far less code is resident.

use std::process::ExitCode;

use clap::Parser;
use weft_proxy::cli::{self, ProxyCli};

fn main() -> ExitCode {
    cli::main(ProxyCli::parse())
}
