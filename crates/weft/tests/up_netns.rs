//! `weft up DIR --netns` as a real process (root; CI runs it): every replica in a network
//! namespace of its own on a bridge, with the production iptables capture.
//!
//! The `caller` app (the `up_echo` example, with no proxy settings) is asked to fetch
//! `http://callee:8080/hello`: the name resolves through the namespace's hosts file, the
//! capture takes the connection into caller's sidecar, mesh mTLS carries it to callee's
//! sidecar (the callee sees `x-forwarded-client-cert` naming caller's identity and the
//! `x-request-id` the proxies add). The gateway, in the host's namespace, reaches callee
//! too. A plain client without a sidecar reaches callee's port through its inbound
//! capture under PERMISSIVE, and no longer once a STRICT PeerAuthentication is added
//! (while mesh calls go on). `weft down` removes every namespace, the bridge and the
//! hosts files; so does `weft down` after `weft up` was SIGKILLed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;
use weft_testkit::client::TestClient;
use weft_testkit::netns;
use weft_testkit::wait::{eventually, until};

const TEST: &str = "up_netns";
const DEADLINE: Duration = Duration::from_secs(90);

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

/// A `weft up` that, when the test ends early, is killed and cleaned up after with
/// `weft down` (which removes what a killed `weft up` left: processes and namespaces).
struct KillOnDrop(Child, PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = down(&self.1);
    }
}

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn config(app: &Path) -> String {
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
metadata: {{name: callee, namespace: demo, labels: {{app: callee, version: v1}}}}
spec:
  command: {app}
  serviceAccount: callee
  ports: [{{name: http, port: 8080}}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {{name: caller, namespace: demo, labels: {{app: caller, version: v1}}}}
spec:
  command: {app}
  serviceAccount: caller
  ports: [{{name: http, port: 9000}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: front, namespace: demo}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: front, namespace: demo}}
spec:
  hosts: ["*"]
  gateways: [front]
  http:
  - route:
    - destination: {{host: callee}}
"#
    )
}

/// STRICT for callee only: this test asks caller's app for calls in plaintext.
const STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict, namespace: demo}\nspec:\n  selector: {matchLabels: {app: callee}}\n  mtls: {mode: STRICT}\n";

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn state(run_dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(run_dir.join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn address_of(state: &Value, label: &str) -> String {
    state["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["label"] == label))
        .and_then(|p| p["address"].as_str())
        .unwrap_or_else(|| panic!("no process {label} in {state}"))
        .to_string()
}

fn logs(run_dir: &Path, out: &Path) -> String {
    let mut text = format!(
        "--- weft up ---\n{}",
        std::fs::read_to_string(out).unwrap_or_default()
    );
    if let Ok(dir) = std::fs::read_dir(run_dir.join("logs")) {
        for e in dir.flatten() {
            let body = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: String = body
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            text.push_str(&format!("\n--- {} ---\n{tail}", e.path().display()));
        }
    }
    text
}

/// `GET path` on `addr` with `Host: host`; the status and body, None when the
/// connection fails.
async fn get(addr: &str, host: &str, path: &str) -> Option<(u16, String)> {
    let attempt = async {
        let mut client = TestClient::h1(addr.parse().ok()?).await.ok()?;
        let resp = client.get(host, path, &[]).await.ok()?;
        Some((resp.status.as_u16(), resp.text()))
    };
    tokio::time::timeout(Duration::from_secs(15), attempt)
        .await
        .ok()
        .flatten()
}

/// Asks caller's app to fetch `http://callee:8080/hello` (plain HTTP, no proxy settings):
/// what callee's app answered (replica, headers), when it answered 200.
async fn caller_fetches_callee(caller_ip: &str) -> Option<Value> {
    let addr = format!("{caller_ip}:9000");
    let (status, body) = get(&addr, &addr, "/call/callee:8080/hello").await?;
    if status != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

fn namespaces_named(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Nothing of the run is left: namespaces, the bridge, the hosts files.
fn assert_nothing_left(prefix: &str, bridge: &str) {
    let left = namespaces_named(prefix);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        !Path::new("/sys/class/net").join(bridge).exists(),
        "bridge {bridge} left behind"
    );
    let etc: Vec<String> = std::fs::read_dir("/etc/netns")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(etc.is_empty(), "/etc/netns entries left behind: {etc:?}");
}

/// Start `weft up --netns` and wait until it reports ready; its state.
async fn start_up(dir: &Path, run_dir: &Path, gateway_ip: &str, out: &Path) -> (KillOnDrop, Value) {
    let out_file = std::fs::File::create(out).expect("out file");
    let up = weft()
        .arg("up")
        .arg(dir)
        .arg("--netns")
        .arg("--run-dir")
        .arg(run_dir)
        .args(["--gateway-address", gateway_ip])
        .args(["--debug", "127.0.0.1:0", "--ready-timeout", "60s"])
        .args(["--drain-grace", "200ms"])
        .stdout(out_file.try_clone().expect("dup"))
        .stderr(out_file)
        .spawn()
        .expect("weft up runs");
    let up = KillOnDrop(up, run_dir.to_path_buf());
    let pid = up.0.id();
    let ready = until(DEADLINE, || async {
        state(run_dir).is_some_and(|s| s["ready"] == true) || !alive(pid)
    })
    .await;
    let st = state(run_dir).filter(|s| s["ready"] == true);
    let Some(st) = st.filter(|_| ready) else {
        panic!(
            "weft up --netns did not become ready\n{}",
            logs(run_dir, out)
        );
    };
    (up, st)
}

/// Whether `pid` runs (a zombie waiting for its parent does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X')
    })
}

fn down(run_dir: &Path) -> std::process::Output {
    weft()
        .arg("down")
        .arg("--run-dir")
        .arg(run_dir)
        .output()
        .expect("weft down runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netns_mesh_captures_plain_http_and_cleans_up_everything() {
    // Namespaces must be possible here (and are required under CI=true).
    match netns::setup(TEST) {
        Some(probe) => drop(probe),
        None => return,
    }
    if let Err(e) = weft_proxy::redirect::find_iptables() {
        netns::skip_or_fail(TEST, &e.to_string());
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("demo");
    std::fs::create_dir(&dir).expect("mkdir");
    let run_dir = tmp.path().join("run");
    write(&dir.join("mesh.yaml"), &config(&echo_app()));
    let pid = std::process::id();
    let gateway_ip = format!("127.{}.{}.250", 100 + pid % 100, (pid / 100) % 250 + 1);
    let out = tmp.path().join("up.out");

    let (mut up, st) = start_up(&dir, &run_dir, &gateway_ip, &out).await;
    let network = &st["network"];
    let prefix = network["prefix"].as_str().expect("prefix").to_string();
    let bridge = network["bridge"].as_str().expect("bridge").to_string();
    assert!(
        prefix.starts_with("weft-") && bridge.starts_with("weft-"),
        "{st}"
    );
    let made = namespaces_named(&prefix);
    assert_eq!(made.len(), 2, "one namespace per replica: {made:?}");
    assert_eq!(st["mode"], "transparent");

    // Each replica has its own address on the bridge, and its hosts file names callee.
    let caller_ip = address_of(&st, "app caller-0");
    let callee_ip = address_of(&st, "app callee-0");
    assert_ne!(caller_ip, callee_ip);
    let caller_ns = format!("{prefix}demo-caller-0");
    let hosts = std::fs::read_to_string(format!("/etc/netns/{caller_ns}/hosts"))
        .unwrap_or_else(|e| panic!("hosts file of {caller_ns}: {e}; made {made:?}"));
    assert!(
        hosts
            .lines()
            .any(|l| l.split_whitespace().any(|w| w == "callee")),
        "{hosts}"
    );

    // caller's app fetches http://callee:8080 with no proxy settings; both sidecars carry it.
    let answer = std::sync::Mutex::new(None);
    let fetched = until(DEADLINE, || async {
        let got = caller_fetches_callee(&caller_ip).await;
        let ok = got.is_some();
        *answer.lock().expect("lock") = got;
        ok
    })
    .await;
    let answer = answer.into_inner().expect("lock");
    let answer = answer.filter(|_| fetched).unwrap_or_else(|| {
        panic!(
            "caller never reached callee by name\n{}",
            logs(&run_dir, &out)
        )
    });
    assert_eq!(answer["replica"], "callee-0", "{answer}");
    assert_eq!(
        answer["http_proxy"], "",
        "no proxy settings in the app: {answer}"
    );
    let headers = &answer["headers"];
    assert!(
        headers["x-request-id"].is_string(),
        "the proxies add x-request-id: {headers}"
    );
    let xfcc = headers["x-forwarded-client-cert"].as_str().unwrap_or("");
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/demo/sa/caller"),
        "callee's sidecar saw caller's mesh identity: {headers}"
    );

    // The gateway, in the host's namespace, routes to callee over the bridge.
    let gw = format!("{gateway_ip}:80");
    eventually("the gateway reaches callee", DEADLINE, || async {
        get(&gw, "shop.example", "/via-gateway")
            .await
            .is_some_and(|(s, b)| s == 200 && b.contains("callee-0"))
    })
    .await;

    // A plain client without a sidecar (this test, on the host) dials callee's pod
    // address: its inbound capture takes it; PERMISSIVE accepts plaintext...
    let direct = format!("{callee_ip}:8080");
    let (status, body) = get(&direct, "callee", "/direct")
        .await
        .unwrap_or_else(|| panic!("direct request failed\n{}", logs(&run_dir, &out)));
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("x-forwarded-client-cert"),
        "plaintext carries no client identity: {body}"
    );
    // ...and STRICT does not, while the mesh call still works.
    write(&dir.join("strict.yaml"), STRICT);
    eventually("STRICT closes plaintext to callee", DEADLINE, || async {
        !matches!(get(&direct, "callee", "/direct").await, Some((200, _)))
    })
    .await;
    assert!(
        caller_fetches_callee(&caller_ip).await.is_some(),
        "mesh mTLS still passes under STRICT\n{}",
        logs(&run_dir, &out)
    );

    // `weft down`: everything goes.
    let stopped = down(&run_dir);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let up_pid = up.0.id();
    let exited = until(DEADLINE, || async { !alive(up_pid) }).await;
    assert!(exited, "weft up did not exit\n{}", logs(&run_dir, &out));
    assert!(
        up.0.wait().expect("status").success(),
        "{}",
        logs(&run_dir, &out)
    );
    assert_nothing_left(&prefix, &bridge);

    // A `weft up` killed with SIGKILL leaves its namespaces; `weft down` removes them.
    let (mut up, st) = start_up(&dir, &run_dir, &gateway_ip, &out).await;
    assert_eq!(namespaces_named(&prefix).len(), 2, "{st}");
    up.0.kill().expect("SIGKILL weft up");
    let _ = up.0.wait();
    assert_eq!(
        namespaces_named(&prefix).len(),
        2,
        "still there after SIGKILL"
    );
    let stopped = down(&run_dir);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert_nothing_left(&prefix, &bridge);
    let pids: Vec<u64> = st["processes"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["pid"].as_u64()).collect())
        .unwrap_or_default();
    for pid in pids {
        let pid = u32::try_from(pid).expect("pid");
        let gone = until(DEADLINE, || async { !alive(pid) }).await;
        assert!(gone, "process {pid} of the killed weft up still runs");
    }
}
