//! `weft up DIR` as a real process: it starts the control plane, a proxy per replica, the
//! gateway and the applications (the `up_echo` example as stand-in app); a request from
//! one app reaches another through the mesh by service name; a killed app is restarted;
//! a VirtualService edit applies live and an invalid one is reported while the previous
//! config keeps working; a Workload edit restarts only that workload; `weft status` and
//! `weft down` work from other processes, and nothing stays running afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use weft_testkit::client::TestClient;
use weft_testkit::wait::{eventually, until};

const DEADLINE: Duration = Duration::from_secs(90);

/// The stand-in application, built with the tests (cargo builds a package's examples
/// for `cargo test` / `cargo nextest run`).
fn echo_app() -> PathBuf {
    let weft = Path::new(env!("CARGO_BIN_EXE_weft"));
    let exe = weft
        .parent()
        .expect("target dir")
        .join("examples")
        .join("up_echo");
    assert!(exe.exists(), "{} was not built", exe.display());
    exe
}

/// A loopback /24 of its own per test process, so tests running at once do not meet.
fn loopback_net() -> String {
    let pid = std::process::id();
    format!("127.{}.{}", 100 + pid % 100, (pid / 100) % 250 + 1)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn services(app: &Path, caller_env: &str) -> String {
    let app = app.display();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: callee, namespace: demo}}
spec:
  selector: {{app: callee}}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: caller, namespace: demo}}
spec:
  selector: {{app: caller}}
  ports: [{{name: http, port: 9000}}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: callee-v1, namespace: demo, labels: {{app: callee, version: v1}}}}
spec:
  command: {app}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: callee-v2, namespace: demo, labels: {{app: callee, version: v2}}}}
spec:
  command: {app}
  ports: [{{name: http, port: 8080}}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: caller, namespace: demo, labels: {{app: caller, version: v1}}}}
spec:
  command: {app}
  env: {{MARK: "{caller_env}"}}
  ports: [{{name: http, port: 9000}}]
"#
    )
}

const MESH: &str = r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: callee, namespace: demo}
spec:
  host: callee
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: front, namespace: demo}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: front, namespace: demo}
spec:
  hosts: ["*"]
  gateways: [front]
  http:
  - route:
    - destination: {host: callee, subset: v1}
"#;

fn route_to(subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: callee, namespace: demo}}\nspec:\n  hosts: [callee]\n  http:\n  - route:\n    - destination: {{host: callee, subset: {subset}}}\n"
    )
}

/// Write through a temporary file and a rename, as editors do: the watcher never sees
/// half a file.
fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn state(run_dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(run_dir.join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn process<'a>(state: &'a Value, label: &str) -> &'a Value {
    state["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["label"] == label))
        .unwrap_or_else(|| panic!("no process {label} in {state}"))
}

fn pid_of(state: &Value, label: &str) -> Option<u32> {
    process(state, label)["pid"].as_u64().map(|p| p as u32)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X')
    })
}

/// GET `path` on `addr`, the body as JSON when the answer is a 200.
async fn get_json(addr: &str, path: &str) -> Option<Value> {
    let mut client = TestClient::h1(addr.parse().ok()?).await.ok()?;
    let resp = client.get(addr, path, &[]).await.ok()?;
    if resp.status != 200 {
        return None;
    }
    serde_json::from_slice(&resp.body).ok()
}

/// From caller's app, through its proxy, to the `callee` service: the version answering.
async fn callee_version(caller: &str) -> Option<String> {
    let v = get_json(&format!("{caller}:9000"), "/call/callee:8080/hello").await?;
    v["version"].as_str().map(str::to_string)
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_mesh_supervises_reloads_and_stops_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    std::fs::create_dir(&dir).expect("mkdir");
    let run_dir = tmp.path().join("run");
    let app = echo_app();
    write(&dir.join("services.yaml"), &services(&app, "a"));
    write(&dir.join("mesh.yaml"), MESH);
    write(&dir.join("route.yaml"), &route_to("v1"));
    let net = loopback_net();
    let out_path = tmp.path().join("up.out");
    let out = std::fs::File::create(&out_path).expect("out file");
    let up = weft()
        .arg("up")
        .arg(&dir)
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--loopback-net", &net])
        .args(["--gateway-address", &format!("{net}.250")])
        .args(["--debug", "127.0.0.1:0"])
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("weft up runs");
    let mut up = KillOnDrop(up);
    let ready = until(DEADLINE, || async {
        state(&run_dir).is_some_and(|s| s["ready"] == true)
    })
    .await;
    assert!(ready, "weft up not ready:\n{}", log_text(&out_path));
    let st = state(&run_dir).expect("state");
    let printed = log_text(&out_path);
    for expected in [
        "WORKLOAD",
        "demo/callee-v1",
        "demo/caller",
        "gateway",
        "mTLS",
    ] {
        assert!(
            printed.contains(expected),
            "table lacks {expected}:\n{printed}"
        );
    }
    let caller = process(&st, "app caller-0")["address"]
        .as_str()
        .expect("address")
        .to_string();
    assert!(caller.starts_with(&net), "{caller} not in {net}");

    // Through the mesh by service name: caller app -> its proxy -> callee v1.
    let seen = std::sync::Mutex::new(None);
    let reached = until(DEADLINE, || async {
        let answer = get_json(&format!("{caller}:9000"), "/call/callee:8080/hello").await;
        let ok = answer.as_ref().is_some_and(|v| v["version"] == "v1");
        *seen.lock().expect("lock") = answer;
        ok
    })
    .await;
    let seen = seen.into_inner().expect("lock");
    assert!(
        reached,
        "callee not reached: {seen:?}\n{}",
        log_text(&out_path)
    );
    let echoed = seen.expect("answer");
    assert_eq!(echoed["path"], "/hello");
    assert!(
        echoed["replica"]
            .as_str()
            .is_some_and(|r| r.starts_with("callee-v1"))
    );
    // The app itself runs with the mesh's HTTP proxy.
    let own = get_json(&format!("{caller}:9000"), "/")
        .await
        .expect("caller answers");
    assert_eq!(own["http_proxy"], format!("http://{caller}:15001"));

    // Through the gateway.
    let gateway = st["gateways"][0].as_str().expect("gateway url").to_string();
    let gw_addr = gateway.trim_start_matches("http://").to_string();
    eventually("the gateway routes to callee v1", DEADLINE, || async {
        get_json(&gw_addr, "/front")
            .await
            .is_some_and(|v| v["version"] == "v1")
    })
    .await;

    // A live VirtualService edit moves traffic to v2.
    write(&dir.join("route.yaml"), &route_to("v2"));
    eventually("the edited route sends to v2", DEADLINE, || async {
        callee_version(&caller).await.as_deref() == Some("v2")
    })
    .await;

    // An invalid edit is reported; v2 keeps answering.
    let broken = route_to("v1").replace("hosts: [callee]", "hosts: [callee]\n  tcp: 7");
    write(&dir.join("route.yaml"), &broken);
    eventually("the invalid file is reported", DEADLINE, || async {
        log_text(&out_path).contains("route.yaml rejected")
    })
    .await;
    for _ in 0..5 {
        assert_eq!(callee_version(&caller).await.as_deref(), Some("v2"));
    }

    // A crashed app is restarted.
    let st = state(&run_dir).expect("state");
    let victim = pid_of(&st, "app callee-v2-0").expect("callee-v2 pid");
    let callee_v1 = pid_of(&st, "app callee-v1-0").expect("callee-v1 pid");
    let caller_pid = pid_of(&st, "app caller-0").expect("caller pid");
    let mut seen_pids = vec![victim, callee_v1, caller_pid];
    assert!(
        Command::new("kill")
            .args(["-9", &victim.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    eventually("the killed app is restarted", DEADLINE, || async {
        state(&run_dir)
            .and_then(|s| pid_of(&s, "app callee-v2-0"))
            .is_some_and(|p| p != victim && alive(p))
    })
    .await;
    assert!(log_text(&out_path).contains("app callee-v2-0 exited with signal 9"));
    eventually("v2 answers again after its restart", DEADLINE, || async {
        callee_version(&caller).await.as_deref() == Some("v2")
    })
    .await;

    // A Workload edit restarts that workload only.
    write(&dir.join("services.yaml"), &services(&app, "b"));
    eventually("the edited caller is restarted", DEADLINE, || async {
        state(&run_dir)
            .and_then(|s| pid_of(&s, "app caller-0"))
            .is_some_and(|p| p != caller_pid && alive(p))
    })
    .await;
    let st = state(&run_dir).expect("state");
    assert_eq!(pid_of(&st, "app callee-v1-0"), Some(callee_v1));

    // `weft status` from another process reads the control plane.
    let status = weft()
        .args([
            "status",
            "--control-debug",
            st["debug"].as_str().expect("debug"),
        ])
        .output()
        .expect("weft status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{text}");
    assert!(
        text.contains("VirtualService") && text.contains("callee"),
        "{text}"
    );

    // `weft down` stops it; nothing it started is left.
    let st = state(&run_dir).expect("state");
    for p in st["processes"].as_array().expect("processes") {
        seen_pids.extend(p["pid"].as_u64().map(|p| p as u32));
    }
    let down = weft()
        .arg("down")
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .expect("weft down");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let exit = up.0.wait().expect("weft up exits");
    assert!(exit.success(), "weft up: {exit}\n{}", log_text(&out_path));
    let left: Vec<u32> = seen_pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    assert!(!run_dir.join("state.json").exists());
    assert!(run_dir.join("logs").join("caller-0.app.log").exists());
}

#[test]
fn an_invalid_dir_is_reported_and_nothing_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("bad");
    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir.join("services.yaml"), &services(&echo_app(), "a"));
    write(
        &dir.join("route.yaml"),
        &route_to("v1").replace("hosts: [callee]", "hosts: [callee]\n  tcp: 7"),
    );
    let run_dir = tmp.path().join("run");
    let out = weft()
        .arg("up")
        .arg(&dir)
        .arg("--run-dir")
        .arg(&run_dir)
        .args(["--loopback-net", &loopback_net()])
        .stdin(Stdio::null())
        .output()
        .expect("weft up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("route.yaml") && err.contains("nothing was started"),
        "{err}"
    );
    assert!(!run_dir.join("state.json").exists());
}

#[test]
fn down_with_nothing_running_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = weft()
        .arg("down")
        .arg("--run-dir")
        .arg(tmp.path())
        .output()
        .expect("weft down");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("no weft up is running"));
}
