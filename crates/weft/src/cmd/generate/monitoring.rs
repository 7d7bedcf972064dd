//! `weft generate monitoring`: writes four Grafana dashboards and a Prometheus rule file that
//! read Istio's standard metrics (so they also work for Istio workloads) and weft's proxy and
//! control plane metrics. See `docs/monitoring.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::alerts::{self, Thresholds};
use super::dashboards;
use super::promql::{Scrape, label_name};

/// The alert rule file's name.
pub const RULES_FILE: &str = "weft-alerts.yaml";

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write the files into (created when missing).
    #[arg(long, default_value = "monitoring")]
    out: PathBuf,
    /// The Prometheus `job` that scrapes the proxies' admin endpoint (/stats/prometheus).
    #[arg(long, default_value = "weft-proxy")]
    proxy_job: String,
    /// The Prometheus `job` that scrapes the control plane's /metrics.
    #[arg(long, default_value = "weft-control")]
    control_job: String,
    /// Target label your scrape config puts a proxy's namespace in.
    #[arg(long, default_value = "namespace", value_parser = label_name)]
    namespace_label: String,
    /// Target label your scrape config puts a proxy's workload name in.
    #[arg(long, default_value = "workload", value_parser = label_name)]
    workload_label: String,
    /// Regex (anchored) matching the workload names of gateways, in `source_workload` and in
    /// the workload target label.
    #[arg(long, default_value = ".*gateway.*")]
    gateway_workloads: String,
    /// Alert when a proxy's resident memory stays above this many bytes.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    proxy_memory_bytes: u64,
    /// Alert when the CA's root or intermediate certificate (the control plane's
    /// weft_control_ca_cert_expiry_seconds) expires sooner than this: 30d, 12h, 90m.
    #[arg(long, default_value = "30d", value_parser = parse_span)]
    cert_expiry_warning: u64,
    /// Alert when a proxy's workload certificate expires sooner than this. Proxies renew at
    /// half the lifetime, so the default, a quarter of the 24 h default lifetime, means
    /// renewal has been failing for 6 hours; scale it with the CA's workload lifetime.
    #[arg(long, default_value = "6h", value_parser = parse_span)]
    workload_cert_expiry_warning: u64,
}

/// `30d`, `12h`, `90m` as seconds.
fn parse_span(s: &str) -> Result<u64, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{s}` has no unit; write e.g. 30d, 12h or 90m"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("`{s}` is not a duration"))?;
    let unit = match unit {
        "d" => 86400,
        "h" => 3600,
        "m" => 60,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`; use d, h or m")),
    };
    n.checked_mul(unit)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("`{s}` is out of range"))
}

pub fn run(args: Args) -> ExitCode {
    match generate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn generate(args: &Args) -> anyhow::Result<()> {
    let scrape = Scrape {
        proxy_job: args.proxy_job.clone(),
        control_job: args.control_job.clone(),
        namespace_label: args.namespace_label.clone(),
        workload_label: args.workload_label.clone(),
        gateway_workloads: args.gateway_workloads.clone(),
    };
    let thresholds = Thresholds {
        proxy_memory_bytes: args.proxy_memory_bytes,
        cert_expiry_seconds: args.cert_expiry_warning,
        workload_cert_expiry_seconds: args.workload_cert_expiry_warning,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for (name, dashboard) in dashboards::all(&scrape) {
        let mut text = serde_json::to_string_pretty(&dashboard)?;
        text.push('\n');
        let path = write(&args.out, name, &text)?;
        let panels = dashboard["panels"]
            .as_array()
            .map_or(0, |p| p.iter().filter(|p| p["type"] != "row").count());
        println!(
            "wrote {}  (Grafana dashboard \"{}\", {panels} panels)",
            path.display(),
            dashboard["title"].as_str().unwrap_or_default()
        );
    }
    let (rules, count) = alerts::rules_yaml(&scrape, &thresholds);
    let path = write(&args.out, RULES_FILE, &rules)?;
    println!(
        "wrote {}  (Prometheus alerting rules, {count} alerts)",
        path.display()
    );
    println!(
        "\nImport the dashboards in Grafana (Dashboards > New > Import) and pick your Prometheus \
         data source; add {RULES_FILE} to `rule_files:` in prometheus.yml. The queries expect \
         the proxies scraped as job=\"{}\" and the control plane as job=\"{}\" \
         (see docs/monitoring.md).",
        args.proxy_job, args.control_job
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(parse_span("30d"), Ok(30 * 86400));
        assert_eq!(parse_span("12h"), Ok(12 * 3600));
        assert_eq!(parse_span("90m"), Ok(5400));
        assert!(parse_span("30").is_err());
        assert!(parse_span("0d").is_err());
        assert!(parse_span("3w").is_err());
    }
}
