//! `weft analyze PATH...`: load, validate and analyze configuration; print findings.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::ValueEnum;
use weft_config::analyze::MeshInputs;
use weft_config::kinds::istio::MeshConfig;
use weft_config::{Bundle, Severity, analyze};

use crate::render;

#[derive(clap::Args)]
pub struct Args {
    /// Files or directories (searched recursively for *.yaml, *.yml, *.json); `-` reads stdin.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Human)]
    output: Format,
    /// Exit with status 1 when a finding at or above this severity is reported.
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    fail_on: FailOn,
    /// A mesh config file (MeshConfig YAML, as in Istio's `mesh` ConfigMap key).
    #[arg(long)]
    mesh_config: Option<PathBuf>,
    /// A mesh networks file (MeshNetworks YAML, as in Istio's `meshNetworks` ConfigMap key).
    #[arg(long)]
    mesh_networks: Option<PathBuf>,
    /// Hide info-level findings in human output.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
    Yaml,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailOn {
    Info,
    Warning,
    Error,
}

/// Exit codes: 0 clean, 1 findings at or above `--fail-on`, 2 input could not be read.
pub fn run(args: Args) -> ExitCode {
    let started = Instant::now();
    let bundle = Bundle::load_paths(&args.paths);
    let mut inputs = MeshInputs::default();
    let mesh_config = args
        .mesh_config
        .as_deref()
        .map(MeshConfig::load_file)
        .transpose();
    let mesh_networks = args
        .mesh_networks
        .as_deref()
        .map(analyze::load_mesh_networks)
        .transpose();
    match (mesh_config, mesh_networks) {
        (Ok(c), Ok(n)) => {
            inputs.mesh_config = c;
            inputs.mesh_networks = n;
        }
        (Err(d), _) | (_, Err(d)) => {
            eprint!(
                "{}",
                render::human(std::slice::from_ref(&d), color_wanted())
            );
            return ExitCode::from(2);
        }
    }
    let diags = analyze::analyze_bundle(&bundle, inputs);
    let elapsed = started.elapsed();
    let text = match args.output {
        Format::Human => {
            let shown: Vec<_> = diags
                .iter()
                .filter(|d| !args.quiet || d.severity > Severity::Info)
                .cloned()
                .collect();
            let mut t = render::human(&shown, color_wanted());
            t.push_str(&render::summary(
                &diags,
                bundle.objects.len(),
                bundle.files.len(),
                elapsed,
            ));
            t
        }
        Format::Json => render::json(&diags),
        Format::Yaml => render::yaml(&diags),
    };
    let mut out = std::io::stdout().lock();
    // A closed pipe (e.g. `| head`) is not an error worth reporting.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
    if bundle.unreadable {
        return ExitCode::from(2);
    }
    let threshold = match args.fail_on {
        FailOn::Info => Severity::Info,
        FailOn::Warning => Severity::Warning,
        FailOn::Error => Severity::Error,
    };
    if diags.iter().any(|d| d.severity >= threshold) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn color_wanted() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}
