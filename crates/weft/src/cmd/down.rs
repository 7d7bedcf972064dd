//! `weft down [DIR]`: stop a running `weft up` from another terminal. It sends SIGTERM to
//! the `weft up` process, which stops its applications and proxies and cleans up, and
//! waits until it has exited.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::up::state::{self, UpState};

#[derive(clap::Args)]
pub struct Args {
    /// The directory `weft up` runs; optional when only one `weft up` runs.
    dir: Option<PathBuf>,
    /// The run directory of that `weft up` (as given to `weft up --run-dir`).
    #[arg(long, conflicts_with = "dir")]
    run_dir: Option<PathBuf>,
    /// How long to wait for it to stop before killing what is left: 30s, 2m.
    #[arg(long, default_value = "30s", value_parser = super::up::parse_duration)]
    timeout: Duration,
}

/// Exit codes: 0 when it stopped (or nothing was running), 1 otherwise.
pub fn run(args: Args) -> ExitCode {
    match down(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn find(args: &Args) -> anyhow::Result<Option<(PathBuf, UpState)>> {
    let run_dir = match (&args.run_dir, &args.dir) {
        (Some(r), _) => r.clone(),
        (None, Some(d)) => state::run_dir_for(d),
        (None, None) => {
            let running = state::running();
            return match running.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some((one.run_dir.clone(), one.clone()))),
                many => {
                    let dirs: Vec<String> = many
                        .iter()
                        .map(|s| format!("  {}", s.dir.display()))
                        .collect();
                    bail!(
                        "{} weft up are running; name one: weft down DIR\n{}",
                        many.len(),
                        dirs.join("\n")
                    )
                }
            };
        }
    };
    Ok(state::read(&run_dir)?.map(|s| (run_dir, s)))
}

fn down(args: Args) -> anyhow::Result<()> {
    let Some((run_dir, up)) = find(&args)? else {
        println!(
            "no weft up is running (nothing found under {})",
            state::base_dir().display()
        );
        return Ok(());
    };
    if !state::alive(up.pid) {
        let killed = state::kill_leftovers(&up);
        let problems = state::remove_network_leftovers(&up);
        if !problems.is_empty() {
            bail!(
                "weft up (pid {}) is gone but its network could not be removed: {}",
                up.pid,
                problems.join("; ")
            );
        }
        let _ = std::fs::remove_file(run_dir.join(state::STATE_FILE));
        println!(
            "weft up for {} is not running (pid {} is gone){}",
            up.dir.display(),
            up.pid,
            if killed > 0 {
                format!("; stopped {killed} processes it left behind")
            } else {
                String::new()
            }
        );
        return Ok(());
    }
    let pid = Pid::from_raw(i32::try_from(up.pid)?);
    kill(pid, Signal::SIGTERM)?;
    println!(
        "stopping weft up for {} (pid {})...",
        up.dir.display(),
        up.pid
    );
    let deadline = Instant::now() + args.timeout;
    while state::alive(up.pid) {
        if Instant::now() >= deadline {
            let _ = kill(pid, Signal::SIGKILL);
            // What it saved last lists the namespaces it made.
            let last = state::read(&run_dir).ok().flatten().unwrap_or(up);
            let killed = state::kill_leftovers(&last);
            let problems = state::remove_network_leftovers(&last);
            let up = last;
            bail!(
                "weft up (pid {}) did not stop within {:?}; killed it and {killed} of its processes{}",
                up.pid,
                args.timeout,
                if problems.is_empty() {
                    String::new()
                } else {
                    format!("; left behind: {}", problems.join("; "))
                }
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("stopped");
    Ok(())
}
