//! Running `weft up` on a copy of the shop and looking at it from outside: the state file,
//! each proxy's admin endpoint, the watched directory, the gateway.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use weft_testkit::wait::until;

use super::http::{self, InsideClient, Req, Resp};

/// Starting, restarting a workload, a config push: each is given this long.
pub const DEADLINE: Duration = Duration::from_secs(90);
/// Every proxy's admin endpoint is on its replica's address.
pub const ADMIN_PORT: u16 = 15000;
/// The application binaries `weft up` finds next to the `weft` executable.
const SHOP_BINARIES: [&str; 4] = ["shop-product", "shop-cart", "shop-order", "shop-user"];

/// What differs between capture modes, for [`crate::shop_suite`]: how `weft up` is
/// started and how a client sends from inside the mesh. Everything else (the state file,
/// the admin endpoints on each replica's address, the gateway URL) is the same.
pub trait Mode {
    fn name(&self) -> &'static str;
    /// Arguments for `weft up DIR --run-dir R` beyond those.
    fn up_args(&self) -> Vec<String>;
    /// The in-mesh client for the running mesh described by `state` (state.json).
    fn inside_client(&self, state: &Value) -> Arc<dyn InsideClient>;
}

/// Fails the test when the shop's binaries were not built (CI's `cargo nextest run
/// --workspace` builds them; a single-package run does not).
pub fn require_shop_binaries() {
    let weft = Path::new(env!("CARGO_BIN_EXE_weft"));
    let dir = weft.parent().expect("target dir");
    let missing: Vec<&str> = SHOP_BINARIES
        .into_iter()
        .filter(|b| !dir.join(b).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "{} not found in {}: run `cargo build -p weft-shop` first (weft up finds the shop's \
         applications next to the weft executable)",
        missing.join(", "),
        dir.display()
    );
}

/// A copy of what `weft up examples/shop` reads (every YAML file under it; the
/// applications' source in app/ is not config), for checks to edit.
pub fn copy_shop(to: &Path) {
    let shop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
    copy_tree(&shop, to, &["app"]);
}

fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("examples/shop") {
        let path = entry.expect("entry").path();
        let name = path.file_name().expect("name");
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        if path.is_dir() {
            copy_tree(&path, &to.join(name), &[]);
        } else {
            std::fs::copy(&path, to.join(name)).expect("copy");
        }
    }
}

/// The fault overlay users copy into the running shop.
pub fn cart_faults_overlay() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/shop/scenarios/cart-faults.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `weft up` as a child; when a failing check drops it, it is stopped as `weft down`
/// would (SIGTERM: it stops its processes), and whatever it started that still runs is
/// killed, so a failed run leaves nothing behind.
struct UpChild {
    child: Child,
    run_dir: PathBuf,
}

impl Drop for UpChild {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill, killpg};
        use nix::unistd::Pid;
        if matches!(self.child.try_wait(), Ok(None)) {
            let started = read_state(&self.run_dir);
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            weft_testkit::wait::until_blocking(Duration::from_secs(20), || {
                !matches!(self.child.try_wait(), Ok(None))
            });
            let _ = self.child.kill();
            // Each process `weft up` starts leads its own process group.
            for pid in started.iter().flat_map(process_pids) {
                if alive(pid)
                    && let Ok(raw) = i32::try_from(pid)
                {
                    let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
                }
            }
        }
        let _ = self.child.wait();
    }
}

fn process_pids(state: &Value) -> Vec<u32> {
    state["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
        .collect()
}

/// One running `weft up` and the handle checks use (see [`MeshUnderTest`]).
pub struct Up {
    child: UpChild,
    pub mesh: MeshUnderTest,
}

impl Up {
    /// `weft up dir --run-dir run_dir` in `mode`, output appended to `out`; returns once
    /// state.json says ready and every proxy and application passed its readiness check
    /// (the shop's Workloads declare a readinessProbe: `GET /ready`, 200 once the store is
    /// open), so checks start right away.
    pub async fn start(mode: &dyn Mode, dir: &Path, run_dir: &Path, out: &Path) -> Up {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("output file");
        let child = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("up")
            .arg(dir)
            .arg("--run-dir")
            .arg(run_dir)
            .args(mode.up_args())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("weft up runs");
        let child = UpChild {
            child,
            run_dir: run_dir.to_path_buf(),
        };
        let ready = until(DEADLINE, || async {
            read_state(run_dir).is_some_and(|s| s["ready"] == true)
        })
        .await;
        assert!(ready, "weft up not ready:\n{}", text_of(out));
        // weft up also says ready after its --ready-timeout, naming what is not.
        let said = text_of(out);
        assert!(!said.contains("not ready:"), "weft up:\n{said}");
        let state = read_state(run_dir).expect("state");
        let gateway = state["gateways"][0]
            .as_str()
            .and_then(|u| u.trim_start_matches("http://").parse().ok())
            .unwrap_or_else(|| panic!("no gateway URL in {state}"));
        let mesh = MeshUnderTest {
            mode: mode.name(),
            dir: dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            out: out.to_path_buf(),
            gateway,
            inside: mode.inside_client(&state),
        };
        Up { child, mesh }
    }

    /// `weft down` from another process; `weft up` exits 0 and leaves nothing running.
    pub fn down(mut self) {
        let pids: Vec<u32> = self.mesh.pids().into_values().collect();
        let down = Command::new(env!("CARGO_BIN_EXE_weft"))
            .arg("down")
            .arg("--run-dir")
            .arg(&self.mesh.run_dir)
            .output()
            .expect("weft down");
        assert!(
            down.status.success(),
            "weft down: {}",
            String::from_utf8_lossy(&down.stderr)
        );
        let exit = self.child.child.wait().expect("weft up exits");
        assert!(exit.success(), "weft up: {exit}\n{}", self.mesh.output());
        let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
        assert!(left.is_empty(), "still running after weft down: {left:?}");
    }
}

/// The mesh under test: what every check gets, whatever the capture mode.
pub struct MeshUnderTest {
    pub mode: &'static str,
    /// The watched directory (a copy of examples/shop): edits apply live.
    pub dir: PathBuf,
    /// `--run-dir`: state.json, logs, the applications' data.
    pub run_dir: PathBuf,
    /// `weft up`'s own output.
    pub out: PathBuf,
    /// Where the gateway serves (the front door users curl).
    pub gateway: SocketAddr,
    /// Requests from inside the mesh.
    pub inside: Arc<dyn InsideClient>,
}

impl MeshUnderTest {
    pub fn state(&self) -> Value {
        read_state(&self.run_dir).expect("state.json of the running weft up")
    }

    /// The control plane's debug API, which also serves the dashboard (state.json).
    // For the dashboard's browser test; the shop suite itself does not look there.
    #[allow(dead_code)]
    pub fn debug(&self) -> SocketAddr {
        let state = self.state();
        state["debug"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no debug address in {state}"))
    }

    /// `weft up`'s output so far, for failure messages.
    pub fn output(&self) -> String {
        text_of(&self.out)
    }

    /// Every supervised process: (label, role, replica, address).
    pub fn processes(&self) -> Vec<(String, String, String, String)> {
        let state = self.state();
        let field = |p: &Value, k: &str| p[k].as_str().unwrap_or_default().to_string();
        state["processes"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            field(p, "label"),
                            field(p, "role"),
                            field(p, "replica"),
                            field(p, "address"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Label → pid of every running process.
    pub fn pids(&self) -> BTreeMap<String, u32> {
        let state = self.state();
        state["processes"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        let pid = p["pid"].as_u64()? as u32;
                        Some((p["label"].as_str()?.to_string(), pid))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The replicas that run a proxy (applications' and gateways').
    pub fn proxied_replicas(&self) -> Vec<String> {
        self.processes()
            .into_iter()
            .filter(|(_, role, _, _)| role == "proxy")
            .map(|(_, _, replica, _)| replica)
            .collect()
    }

    pub fn address(&self, replica: &str) -> String {
        self.processes()
            .into_iter()
            .find(|(_, _, r, _)| r == replica)
            .map(|(_, _, _, a)| a)
            .unwrap_or_else(|| panic!("no replica {replica} in {}", self.state()))
    }

    pub fn admin(&self, replica: &str) -> SocketAddr {
        format!("{}:{ADMIN_PORT}", self.address(replica))
            .parse()
            .expect("admin address")
    }

    /// A counter or gauge of `replica`'s proxy (`/stats/prometheus`).
    pub async fn metric(&self, replica: &str, name: &str) -> u64 {
        let admin = self.admin(replica);
        let resp = http::send(
            admin,
            &Req::get(&admin.to_string(), "/stats/prometheus"),
            false,
        )
        .await
        .unwrap_or_else(|e| panic!("metrics of {replica}: {e}"));
        resp.text()
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(' ')?;
                (n == name).then(|| v.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("{replica}'s proxy has no metric {name}"))
    }

    /// `name` on every proxy at once.
    pub async fn metric_all(&self, name: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in self.proxied_replicas() {
            out.insert(r.clone(), self.metric(&r, name).await);
        }
        out
    }

    /// The proxy's applied config (`/config_dump`), or nothing while it does not answer.
    pub async fn config_dump(&self, replica: &str) -> Option<Value> {
        let admin = self.admin(replica);
        let resp = http::send(admin, &Req::get(&admin.to_string(), "/config_dump"), false)
            .await
            .ok()?;
        (resp.status == 200).then(|| resp.json())
    }

    /// Through the gateway, as a user outside the mesh.
    pub async fn gateway(&self, req: Req) -> Resp {
        let req = Req {
            authority: self.gateway.to_string(),
            ..req
        };
        http::send(self.gateway, &req, false)
            .await
            .unwrap_or_else(|e| panic!("via the gateway: {e}\n{}", self.output()))
    }

    /// From inside the mesh, as replica `from`'s application.
    pub async fn inside(&self, from: &str, req: Req) -> Result<Resp, String> {
        self.inside.send(from, req).await
    }

    /// Write a file of the watched directory as editors do (temporary file + rename: the
    /// watcher never sees half a file).
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.dir.join(rel);
        let tmp = path.with_extension("tmp~");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).expect("read")
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.dir.join(rel)).expect("remove");
    }

    /// Wait until `replica`'s proxy runs with (`true`) or without a fault on some route.
    pub async fn wait_fault(&self, replica: &str, present: bool) {
        let applied = until(DEADLINE, || async {
            self.config_dump(replica)
                .await
                .is_some_and(|d| has_fault(&d["config"]) == present)
        })
        .await;
        assert!(
            applied,
            "{replica}'s proxy never ran {} a fault:\n{}",
            if present { "with" } else { "without" },
            self.output()
        );
    }
}

/// Whether a `ProxyConfig` has a route with a fault.
fn has_fault(v: &Value) -> bool {
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| (k == "fault" && !v.is_null()) || has_fault(v)),
        Value::Array(a) => a.iter().any(has_fault),
        _ => false,
    }
}

pub fn read_state(run_dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(run_dir.join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn text_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X')
    })
}
