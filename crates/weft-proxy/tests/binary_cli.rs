//! The `weft-proxy` binary as a process: its flags, its admin port before any config
//! arrives, and a drain on SIGTERM. (Against a real control plane it is exercised through
//! `weft proxy --control`, the same code, by the `weft` crate's tests.)

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use weft_testkit::client::TestClient;
use weft_testkit::wait;

const BIN: &str = env!("CARGO_BIN_EXE_weft-proxy");
const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn help_documents_the_control_plane_flags() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--control",
        "--id",
        "--token",
        "--ca-addr",
        "--admin",
        "--drain-grace",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn missing_or_malformed_flags_are_refused() {
    let out = Command::new(BIN).args(["--id", "a.b"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--control"));

    let out = Command::new(BIN)
        .args(["--control", "127.0.0.1:1", "--id", "a.b", "--label", "app"])
        .args(["--admin", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--label app: write KEY=VALUE"),
        "{out:?}"
    );
}

/// Stderr lines of the child, read on a thread.
struct Proxy {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proxy {
    fn start(args: &[&str]) -> Proxy {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Proxy {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The admin address the proxy logs once it started (`--admin 127.0.0.1:0`).
    async fn admin_addr(&mut self) -> SocketAddr {
        let mut found = None;
        let started = wait::until(DEADLINE, || {
            while let Ok(line) = self.lines.try_recv() {
                if line.contains("weft proxy started") {
                    found = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("admin="))
                        .and_then(|a| a.parse().ok());
                }
                self.seen.push(line);
            }
            std::future::ready(found.is_some())
        })
        .await;
        assert!(started, "no start line; stderr:\n{}", self.seen.join("\n"));
        found.unwrap()
    }

    async fn exit_status(&mut self) -> ExitStatus {
        let mut status = None;
        let exited = wait::until(DEADLINE, || {
            status = self.child.try_wait().unwrap();
            std::future::ready(status.is_some())
        })
        .await;
        assert!(exited, "the proxy did not exit after SIGTERM");
        status.unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut client = TestClient::h1(admin).await.unwrap();
    let resp = client.get("admin", path, &[]).await.unwrap();
    (resp.status.as_u16(), resp.text())
}

#[tokio::test]
async fn without_a_control_plane_it_is_live_not_ready_and_drains_on_sigterm() {
    // Nothing listens on port 1: the push stream keeps retrying with backoff.
    let mut proxy = Proxy::start(&[
        "--control",
        "127.0.0.1:1",
        "--id",
        "gateway-0.test",
        "--token",
        "t",
        "--admin",
        "127.0.0.1:0",
        "--drain-grace",
        "100ms",
    ]);
    let admin = proxy.admin_addr().await;

    assert_eq!(admin_get(admin, "/live").await.0, 200);
    let (status, body) = admin_get(admin, "/ready").await;
    assert_eq!(status, 503, "{body}");
    // Neither a config nor (so) a certificate: the first missing piece is named.
    assert!(body.starts_with("not ready: "), "{body}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(proxy.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = proxy.exit_status().await;
    assert!(status.success(), "exit after SIGTERM: {status:?}");
}
