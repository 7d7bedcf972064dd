//! Control-plane scale benchmark (issue 4): one control plane, a generated mesh of
//! `--services` Kubernetes Services with `--endpoints` registry instances each, and
//! `--proxies-per-service` simulated proxies per service connected over loopback.
//!
//! ```text
//! scale run [--scoped] [--services 1000] [--namespaces 50] [--endpoints 4]
//!           [--proxies-per-service 2] [--changes 50] [--channels 20]
//! ```
//!
//! `run` writes the mesh to a temporary directory and starts the control plane as a child
//! process (this program's `serve` mode: the directory source and a registry, as
//! `weft control` runs them), so the RSS and CPU reported are the control plane's alone.
//! It then measures: the time until every proxy received and ACKed its first full
//! config; and, `--changes` times, moving one endpoint of one service (an instance that
//! runs no connected proxy) and the time until every proxy that can see that service
//! received the push. Bench: `bench/control-scale.sh`.

mod mesh;
mod serve;
mod sim;
mod sizes;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use weft_api::pb;

/// Set when measuring is over: streams then end because the control plane is stopped.
static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Every wait is bounded.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(600);
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let shape = mesh::Shape {
        services: arg(&args, "--services", 1000),
        namespaces: arg(&args, "--namespaces", 50),
        endpoints: arg(&args, "--endpoints", 4),
        proxies_per_service: arg(&args, "--proxies-per-service", 2),
        scoped: args.iter().any(|a| a == "--scoped"),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.get(1).map(String::as_str) {
        Some("serve") => runtime.block_on(serve::serve(&args, shape)),
        Some("run") => runtime.block_on(run(&args, shape)),
        Some("sizes") => sizes::sizes(shape),
        _ => {
            eprintln!("usage: scale run [--scoped] [--services N] [--proxies-per-service N] ...");
            std::process::exit(2);
        }
    }
}

struct ControlChild {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ControlChild {
    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        self.stdout.read_line(&mut l)?;
        Ok(l.trim().to_string())
    }

    /// (RSS now, peak RSS) in MiB and CPU seconds (user + system) so far.
    fn usage(&self) -> (f64, f64, f64) {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kb = |field: &str| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which may contain spaces): utime is the 12th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu = (ticks(11) + ticks(12)) / 100.0;
        (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0, cpu)
    }
}

impl Drop for ControlChild {
    /// Ask the child to exit (a profiler wrapping it writes its output at exit), then kill
    /// it if it has not within a few seconds.
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn run(args: &[String], shape: mesh::Shape) -> Result<(), Box<dyn std::error::Error>> {
    let changes: usize = arg(args, "--changes", 50);
    let channels: usize = arg(args, "--channels", 20).max(1);
    let dir = tempfile::tempdir()?;
    mesh::write(&shape, dir.path())?;
    let exe = std::env::current_exe()?;
    // `SCALE_SERVE_WRAPPER="valgrind --tool=massif"` runs the control plane under a tool.
    let wrapper: Vec<String> = std::env::var("SCALE_SERVE_WRAPPER")
        .map(|w| w.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    let mut command = match wrapper.split_first() {
        Some((tool, tool_args)) => {
            let mut c = Command::new(tool);
            c.args(tool_args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = command
        .arg("serve")
        .arg("--dir")
        .arg(dir.path())
        .args(args.iter().skip(2))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
    let mut cp = ControlChild {
        child,
        stdin,
        stdout,
    };
    // A wrapping tool may print its own lines first.
    let mut ready = cp.line()?;
    while !ready.is_empty() && !ready.starts_with("READY ") {
        ready = cp.line()?;
    }
    let addr = ready
        .strip_prefix("READY ")
        .ok_or_else(|| format!("control plane did not start: {ready:?}"))?
        .to_string();
    let (rss_idle, _, cpu_idle) = cp.usage();
    let mut pool = Vec::new();
    for _ in 0..channels {
        pool.push(
            Endpoint::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        );
    }
    let proxies = shape.proxy_ids();
    let (report, mut received) = mpsc::unbounded_channel();
    let started = Instant::now();
    for (n, (id, service)) in proxies.iter().enumerate() {
        let k = n % shape.proxies_per_service;
        let hello = pb::Hello {
            proxy_id: id.clone(),
            namespace: mesh::namespace(shape.namespace_of(*service)),
            labels: [
                ("app".to_string(), format!("svc{service}")),
                ("version".to_string(), "v1".to_string()),
            ]
            .into_iter()
            .collect(),
            service_account: format!("svc{service}"),
            address: mesh::instance_address(*service, k).to_string(),
            workload: format!("svc{service}"),
            ..Default::default()
        };
        let channel = pool[n % channels].clone();
        let report = report.clone();
        tokio::spawn(async move {
            if let Err(e) = sim::run(channel, n, hello, report).await
                && !DONE.load(std::sync::atomic::Ordering::Relaxed)
            {
                eprintln!("proxy {n}: {e}");
            }
        });
    }
    let mut first: Vec<Option<Instant>> = vec![None; proxies.len()];
    let mut pending = proxies.len();
    let mut resources = 0usize;
    let mut bytes = 0usize;
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    while pending > 0 {
        let Ok(Some(r)) = tokio::time::timeout_at(deadline, received.recv()).await else {
            return Err(
                format!("{pending} proxies got no config within {CONVERGE_TIMEOUT:?}").into(),
            );
        };
        if first[r.proxy].is_none() {
            first[r.proxy] = Some(r.at);
            resources += r.resources;
            bytes += r.bytes;
            pending -= 1;
        }
    }
    let converged = started.elapsed();
    let (rss_full, hwm_full, cpu_full) = cp.usage();
    // Endpoint moves: one service at a time, spread over the namespaces.
    let mut latencies = Vec::new();
    let mut pushed_counts = Vec::new();
    for round in 0..changes {
        let service = (round * 37) % shape.services;
        let moved = shape.endpoints - 1;
        let expected: BTreeSet<usize> = proxies
            .iter()
            .enumerate()
            .filter(|(_, (_, client))| shape.sees(*client, service))
            .map(|(n, _)| n)
            .collect();
        while received.try_recv().is_ok() {}
        let t0 = Instant::now();
        writeln!(cp.stdin, "move {service} {moved} {round}")?;
        cp.stdin.flush()?;
        let mut got: BTreeSet<usize> = BTreeSet::new();
        let mut extra = 0usize;
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        while got.len() < expected.len() {
            let Ok(Some(r)) = tokio::time::timeout_at(deadline, received.recv()).await else {
                return Err(format!(
                    "change {round}: {} of {} proxies got it within {CHANGE_TIMEOUT:?}",
                    got.len(),
                    expected.len()
                )
                .into());
            };
            if expected.contains(&r.proxy) {
                got.insert(r.proxy);
            } else {
                extra += 1;
            }
        }
        latencies.push(t0.elapsed());
        pushed_counts.push((expected.len(), extra));
    }
    let (rss_end, hwm_end, cpu_end) = cp.usage();
    DONE.store(true, std::sync::atomic::Ordering::Relaxed);
    latencies.sort();
    let affected = pushed_counts.first().map(|(e, _)| *e).unwrap_or(0);
    let extra: usize = pushed_counts.iter().map(|(_, x)| x).sum();
    println!(
        "| mesh | {} services x {} endpoints, {} namespaces, {} proxies, scope: {} |",
        shape.services,
        shape.endpoints,
        shape.namespaces,
        proxies.len(),
        if shape.scoped {
            format!("Sidecar egress of {} namespaces", mesh::SCOPE_WIDTH)
        } else {
            "all services (no Sidecar)".into()
        }
    );
    println!("|---|---|");
    println!(
        "| full push: all proxies configured and ACKed | {} ({} resources, {:.1} MiB sent; {:.1} KiB per proxy) |",
        ms(converged),
        resources,
        bytes as f64 / 1048576.0,
        bytes as f64 / 1024.0 / proxies.len().max(1) as f64
    );
    println!(
        "| one endpoint change -> affected proxies ({affected} per change, {changes} changes) | p50 {} / p99 {} / max {} |",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    println!("| pushes to proxies outside the affected set | {extra} |");
    println!(
        "| control plane RSS: idle / after full push / end (peak) | {rss_idle:.0} / {rss_full:.0} / {rss_end:.0} MiB (peak {:.0}) |",
        hwm_end.max(hwm_full)
    );
    println!(
        "| control plane CPU: full push / {changes} changes | {:.2} s / {:.2} s |",
        cpu_full - cpu_idle,
        cpu_end - cpu_full
    );
    Ok(())
}
