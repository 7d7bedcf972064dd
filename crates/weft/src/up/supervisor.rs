//! Keeping child processes running: each one is started, watched, reported when it exits
//! and restarted with exponential backoff (1 s doubling to 30 s, back to 1 s once a run
//! lasted 10 s). Stopping sends SIGTERM to the process group, waits for a grace period,
//! then SIGKILLs what is left.
//!
//! Processes are started through [`Launcher`] so the restart policy and its timers are
//! tested with fake processes under tokio's paused clock.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run at least this long counts as healthy: the next crash restarts after 1 s again.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// The delay before each restart.
#[derive(Debug, Clone)]
pub struct RestartBackoff {
    next: Duration,
}

impl Default for RestartBackoff {
    fn default() -> Self {
        RestartBackoff {
            next: INITIAL_BACKOFF,
        }
    }
}

impl RestartBackoff {
    /// The delay after a process that ran for `ran_for` exited.
    pub fn after_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= STABLE_AFTER {
            self.next = INITIAL_BACKOFF;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        delay
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A started process.
pub trait Running: Send {
    fn pid(&self) -> u32;
    /// Resolves when the process exits, with how it ended (`status 1`, `signal 9`).
    /// Cancel-safe: it may be dropped and called again.
    fn wait(&mut self) -> BoxFuture<'_, String>;
    fn signal(&mut self, signal: Signal);
}

/// Starts a process (again).
pub trait Launcher: Send + 'static {
    fn launch(&mut self) -> std::io::Result<Box<dyn Running>>;
}

/// What supervision reports, in order, for the progress output and the state file.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Started {
        label: String,
        pid: u32,
    },
    Exited {
        label: String,
        status: String,
        restart_in: Duration,
    },
    SpawnFailed {
        label: String,
        error: String,
        restart_in: Duration,
    },
    Stopped {
        label: String,
    },
}

/// A process under supervision.
pub struct Supervised {
    pid: Arc<AtomicU32>,
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
}

impl Supervised {
    pub fn start(
        label: String,
        launcher: Box<dyn Launcher>,
        reports: mpsc::UnboundedSender<Report>,
    ) -> Supervised {
        let pid = Arc::new(AtomicU32::new(0));
        let (stop, stop_rx) = watch::channel(None);
        let task = tokio::spawn(supervise(label, launcher, pid.clone(), stop_rx, reports));
        Supervised { pid, stop, task }
    }

    /// The running process's pid (none between restarts).
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    /// Ask the process to stop (SIGTERM, SIGKILL after `grace`); await the handle.
    pub fn stop(self, grace: Duration) -> JoinHandle<()> {
        self.stop.send_replace(Some(grace));
        self.task
    }
}

/// Stop every process at once and wait until all are gone.
pub async fn stop_all(processes: Vec<Supervised>, grace: Duration) {
    let handles: Vec<JoinHandle<()>> = processes.into_iter().map(|p| p.stop(grace)).collect();
    for h in handles {
        let _ = h.await;
    }
}

enum Outcome {
    Exited(String),
    Stop,
}

async fn supervise(
    label: String,
    mut launcher: Box<dyn Launcher>,
    pid: Arc<AtomicU32>,
    mut stop: watch::Receiver<Option<Duration>>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut backoff = RestartBackoff::default();
    let grace = |stop: &watch::Receiver<Option<Duration>>| *stop.borrow();
    loop {
        if grace(&stop).is_some() {
            break;
        }
        let started = Instant::now();
        let delay = match launcher.launch() {
            Ok(mut child) => {
                pid.store(child.pid(), Ordering::SeqCst);
                let _ = reports.send(Report::Started {
                    label: label.clone(),
                    pid: child.pid(),
                });
                let outcome = {
                    let wait = child.wait();
                    tokio::pin!(wait);
                    tokio::select! {
                        status = &mut wait => Outcome::Exited(status),
                        _ = stop.changed() => Outcome::Stop,
                    }
                };
                match outcome {
                    Outcome::Exited(status) => {
                        pid.store(0, Ordering::SeqCst);
                        // Whatever it started in its group goes with it.
                        child.signal(Signal::SIGKILL);
                        let restart_in = backoff.after_exit(started.elapsed());
                        let _ = reports.send(Report::Exited {
                            label: label.clone(),
                            status,
                            restart_in,
                        });
                        restart_in
                    }
                    Outcome::Stop => {
                        let grace = grace(&stop).unwrap_or_default();
                        terminate(child.as_mut(), grace).await;
                        pid.store(0, Ordering::SeqCst);
                        let _ = reports.send(Report::Stopped {
                            label: label.clone(),
                        });
                        return;
                    }
                }
            }
            Err(e) => {
                let restart_in = backoff.after_exit(Duration::ZERO);
                let _ = reports.send(Report::SpawnFailed {
                    label: label.clone(),
                    error: e.to_string(),
                    restart_in,
                });
                restart_in
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => break,
        }
    }
    let _ = reports.send(Report::Stopped { label });
}

/// SIGTERM, wait up to `grace`, SIGKILL; then the rest of the group goes too.
async fn terminate(child: &mut dyn Running, grace: Duration) {
    child.signal(Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        child.signal(Signal::SIGKILL);
        child.wait().await;
    }
    child.signal(Signal::SIGKILL);
}

/// How to run one real process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
    /// Run in this group (the `--netns` proxies: the capture rules exclude group 1337).
    pub gid: Option<u32>,
    /// Variables not passed on from `weft up`'s own environment.
    pub unset: Vec<String>,
}

impl Launcher for ProcessSpec {
    fn launch(&mut self) -> std::io::Result<Box<dyn Running>> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        writeln!(
            log,
            "--- weft up: starting {} {} (unix time {now}) ---",
            self.program.display(),
            self.args.join(" ")
        )?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own group: a terminal's Ctrl-C reaches `weft up` only, which stops the
            // children in order; and a signal to the group reaches what the child spawned.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some(gid) = self.gid {
            cmd.gid(gid);
        }
        for name in &self.unset {
            cmd.env_remove(name);
        }
        let child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        Ok(Box::new(Child { child, pid }))
    }
}

struct Child {
    child: tokio::process::Child,
    pid: u32,
}

impl Running for Child {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn wait(&mut self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            match self.child.wait().await {
                Ok(status) => describe(status),
                Err(e) => format!("unknown status ({e})"),
            }
        })
    }

    fn signal(&mut self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid)
            && pid > 0
        {
            // ESRCH (the group is gone) is the outcome wanted.
            let _ = killpg(Pid::from_raw(pid), signal);
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({})", s.as_str()),
            Err(_) => format!("signal {sig}"),
        },
        (None, None) => "unknown status".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A fake process that exits by itself after `runs_for` (or never), and obeys SIGTERM
    /// unless told to ignore it.
    struct FakeChild {
        runs_for: Option<Duration>,
        started: Instant,
        ignores_term: bool,
        signals: Arc<Mutex<Vec<Signal>>>,
        killed: watch::Sender<bool>,
    }

    impl Running for FakeChild {
        fn pid(&self) -> u32 {
            4242
        }
        fn wait(&mut self) -> BoxFuture<'_, String> {
            let mut killed = self.killed.subscribe();
            let end = self.runs_for.map(|d| self.started + d);
            Box::pin(async move {
                let exit = async {
                    match end {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = exit => "status 1".to_string(),
                    _ = killed.wait_for(|k| *k) => "signal".to_string(),
                }
            })
        }
        fn signal(&mut self, signal: Signal) {
            self.signals.lock().unwrap().push(signal);
            if signal == Signal::SIGKILL || !self.ignores_term {
                self.killed.send_replace(true);
            }
        }
    }

    struct FakeLauncher {
        runs: Vec<Option<Duration>>,
        ignores_term: bool,
        launches: Arc<Mutex<Vec<Instant>>>,
        signals: Arc<Mutex<Vec<Signal>>>,
    }

    impl Launcher for FakeLauncher {
        fn launch(&mut self) -> std::io::Result<Box<dyn Running>> {
            let mut launches = self.launches.lock().unwrap();
            let runs_for = self.runs.get(launches.len()).copied().flatten();
            launches.push(Instant::now());
            Ok(Box::new(FakeChild {
                runs_for,
                started: Instant::now(),
                ignores_term: self.ignores_term,
                signals: self.signals.clone(),
                killed: watch::Sender::new(false),
            }))
        }
    }

    type Shared<T> = Arc<Mutex<Vec<T>>>;

    fn fake(
        runs: Vec<Option<Duration>>,
        ignores_term: bool,
    ) -> (FakeLauncher, Shared<Instant>, Shared<Signal>) {
        let launches = Arc::new(Mutex::new(Vec::new()));
        let signals = Arc::new(Mutex::new(Vec::new()));
        (
            FakeLauncher {
                runs,
                ignores_term,
                launches: launches.clone(),
                signals: signals.clone(),
            },
            launches,
            signals,
        )
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_stable_run() {
        let mut b = RestartBackoff::default();
        let delays: Vec<u64> = (0..7)
            .map(|_| b.after_exit(Duration::from_millis(10)).as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.after_exit(Duration::from_secs(11)).as_secs(), 1);
        assert_eq!(b.after_exit(Duration::ZERO).as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashing_process_is_reported_and_restarted_with_backoff() {
        let short = Some(Duration::from_millis(100));
        // Three quick crashes, one 20 s run (stable), one more crash, then it stays up.
        let (launcher, launches, _) = fake(
            vec![
                short,
                short,
                short,
                Some(Duration::from_secs(20)),
                short,
                None,
            ],
            false,
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        let p = Supervised::start("app cart-0".into(), Box::new(launcher), tx);
        let mut restarts = Vec::new();
        while restarts.len() < 5 {
            match rx.recv().await.unwrap() {
                Report::Exited {
                    label,
                    status,
                    restart_in,
                } => {
                    assert_eq!(label, "app cart-0");
                    assert_eq!(status, "status 1");
                    restarts.push(restart_in.as_secs());
                }
                Report::Started { pid, .. } => assert_eq!(pid, 4242),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(restarts, vec![1, 2, 4, 1, 2]);
        // The sixth launch happens 2 s after the fifth crash.
        let expected_gap = Duration::from_millis(100) + Duration::from_secs(2);
        weft_testkit::wait::eventually("the sixth launch", Duration::from_secs(60), || async {
            launches.lock().unwrap().len() >= 6
        })
        .await;
        let l = launches.lock().unwrap().clone();
        assert_eq!(l[5] - l[4], expected_gap);
        assert_eq!(p.pid(), Some(4242));
        p.stop(Duration::from_secs(1)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stop_terms_then_kills_after_the_grace_period() {
        let (launcher, _, signals) = fake(vec![None], true);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let p = Supervised::start("proxy cart-0".into(), Box::new(launcher), tx);
        assert!(matches!(rx.recv().await, Some(Report::Started { .. })));
        let before = Instant::now();
        p.stop(Duration::from_secs(5)).await.unwrap();
        assert_eq!(before.elapsed(), Duration::from_secs(5));
        let s = signals.lock().unwrap().clone();
        assert_eq!(s[..2], [Signal::SIGTERM, Signal::SIGKILL]);
        assert!(matches!(rx.recv().await, Some(Report::Stopped { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_the_backoff_ends_without_a_restart() {
        let (launcher, launches, _) = fake(vec![Some(Duration::from_millis(5))], false);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let p = Supervised::start("app x-0".into(), Box::new(launcher), tx);
        assert!(matches!(rx.recv().await, Some(Report::Started { .. })));
        assert!(matches!(rx.recv().await, Some(Report::Exited { .. })));
        p.stop(Duration::from_secs(1)).await.unwrap();
        assert_eq!(launches.lock().unwrap().len(), 1);
    }
}
