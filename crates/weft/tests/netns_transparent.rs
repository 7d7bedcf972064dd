//! Transparent capture end to end, in network namespaces (root; CI runs it).
//!
//! Two pods on a private bridge (`weft_testkit::netns`): `client` and `web`. Each runs the
//! real `weft proxy` binary in transparent mode, compiled from one config directory and
//! registry, with the production iptables rules (`weft_proxy::redirect`) installed in its
//! namespace. The proxies run with group 1337, which the rules exclude from capture.
//!
//! The client is a plain HTTP client with no proxy settings dialling the `web` Service's
//! cluster IP. The answer must come from the echo server behind `web`'s proxy, carrying
//! what only the proxies add (`x-request-id`, a VirtualService header), a VirtualService
//! fault must answer without reaching the echo, and both proxies must have counted the
//! connections on their admin endpoints.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_proxy::redirect::{self, DEFAULT_PROXY_ID, RedirectConfig};
use weft_testkit::client::TestClient;
use weft_testkit::echo::EchoServer;
use weft_testkit::netns::{self, Pod};

const TEST: &str = "netns_transparent";
const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 248, 200, 1);
const SERVICE_PORT: u16 = 8080;
const ADMIN: &str = "127.0.0.1:15000";
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_client_reaches_service_through_both_sidecars() {
    let Some(mut net) = netns::setup(TEST) else {
        return;
    };
    if let Err(e) = redirect::find_iptables() {
        netns::skip_or_fail(TEST, &e.to_string());
        return;
    }
    let client_pod = net.add_pod("client").expect("client pod");
    let web_pod = net.add_pod("web").expect("web pod");

    // The application behind `web`, on loopback inside its pod, as a sidecar's app is.
    let (_web_app, echo) = web_pod
        .start(|| async { EchoServer::start("web-0").await.expect("echo binds") })
        .await;
    let app_port = echo.addr.port();

    let dir = tempfile::tempdir().expect("tempdir");
    let config_dir = dir.path().join("mesh");
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("web.yaml"), mesh_config(app_port)).expect("write config");
    let registry = dir.path().join("registry.yaml");
    std::fs::write(&registry, registry_yaml(&client_pod, &web_pod, app_port))
        .expect("write registry");

    let rules = RedirectConfig::default();
    for pod in [&client_pod, &web_pod] {
        redirect::apply(Some(&pod.netns), &rules).expect("iptables rules install");
        let listing = redirect::list(Some(&pod.netns)).expect("iptables lists");
        assert!(
            listing.contains("-A WEFT_OUTPUT -m owner --gid-owner 1337 -j RETURN"),
            "{listing}"
        );
    }

    let client_proxy = start_proxy(&client_pod, &config_dir, &registry, "client-0.demo");
    let web_proxy = start_proxy(&web_pod, &config_dir, &registry, "web-0.demo");
    wait_ready(&client_pod, &client_proxy).await;
    wait_ready(&web_pod, &web_proxy).await;

    // A plain request to the Service address: no HTTP_PROXY, nothing weft-specific.
    let host = format!("{SERVICE_IP}:{SERVICE_PORT}");
    let resp = client_pod
        .run({
            let host = host.clone();
            move || async move { get(&host, "/hello").await }
        })
        .await;
    let resp = resp.unwrap_or_else(|e| {
        panic!(
            "request failed: {e}\n{}",
            logs(&[&client_proxy, &web_proxy])
        )
    });
    assert_eq!(
        resp.status,
        200,
        "{}\n{}",
        resp.text(),
        logs(&[&client_proxy, &web_proxy])
    );
    let echoed = resp.echoed();
    assert_eq!(echoed.instance, "web-0");
    assert_eq!(echoed.path, "/hello");
    assert!(
        echoed.headers.contains_key("x-request-id"),
        "the proxies add x-request-id: {:?}",
        echoed.headers
    );
    assert_eq!(
        echoed.headers.get("x-vs-rule").map(String::as_str),
        Some("applied"),
        "the VirtualService's header rule ran: {:?}",
        echoed.headers
    );
    assert_eq!(echo.requests(), 1);

    // The VirtualService's fault answers in the client's sidecar; the echo never sees it.
    let fault = client_pod
        .run({
            let host = host.clone();
            move || async move { get(&host, "/fault").await }
        })
        .await
        .expect("fault response");
    assert_eq!(fault.status, 418, "{}", fault.text());
    assert!(
        fault.header("x-weft-error").is_some(),
        "{:?}",
        fault.headers
    );
    assert_eq!(
        echo.requests(),
        1,
        "the fault must not reach the application"
    );

    // Both proxies saw the traffic: the client's outbound and the web pod's inbound.
    for (pod, proxy) in [(&client_pod, &client_proxy), (&web_pod, &web_proxy)] {
        let stats = pod
            .run(|| async { admin_get("/stats/prometheus").await })
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        let accepted = metric(&stats, "weft_downstream_connections_total");
        assert!(
            accepted >= 1.0,
            "{} accepted no connection:\n{stats}\n{}",
            pod.netns,
            logs(&[proxy])
        );
    }

    // Removing the capture leaves no chain behind.
    for pod in [&client_pod, &web_pod] {
        redirect::remove(Some(&pod.netns)).expect("rules removed");
        let listing = redirect::list(Some(&pod.netns)).expect("iptables lists");
        assert!(!listing.contains("WEFT_"), "{listing}");
    }
}

fn mesh_config(app_port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: demo}}\n\
         spec:\n  clusterIP: {SERVICE_IP}\n  selector: {{app: web}}\n  \
         ports: [{{name: http, port: {SERVICE_PORT}, targetPort: {app_port}}}]\n\
         ---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: web, namespace: demo}}\nspec:\n  hosts: [web]\n  http:\n  \
         - match: [{{uri: {{prefix: /fault}}}}]\n    \
           fault: {{abort: {{httpStatus: 418, percentage: {{value: 100}}}}}}\n    \
           route: [{{destination: {{host: web}}}}]\n  \
         - headers: {{request: {{set: {{x-vs-rule: applied}}}}}}\n    \
           route: [{{destination: {{host: web}}}}]\n"
    )
}

fn registry_yaml(client: &Pod, web: &Pod, app_port: u16) -> String {
    format!(
        "instances:\n\
         - {{name: client-0, namespace: demo, labels: {{app: client}}, address: {}, \
            proxy: {{capture: transparent}}}}\n\
         - {{name: web-0, namespace: demo, labels: {{app: web}}, address: {}, \
            ports: {{http: {app_port}}}, proxy: {{capture: transparent}}}}\n",
        client.ip, web.ip
    )
}

/// A `weft proxy` process inside `pod`, in group 1337 so the capture leaves its own
/// connections alone. Killed on drop.
struct ProxyProcess {
    child: Child,
    stderr: Arc<Mutex<String>>,
    id: &'static str,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_proxy(pod: &Pod, config_dir: &Path, registry: &Path, id: &'static str) -> ProxyProcess {
    let mut child = pod
        .command(env!("CARGO_BIN_EXE_weft"))
        .args(["proxy", "--config-dir"])
        .arg(config_dir)
        .arg("--registry")
        .arg(registry)
        .args(["--id", id, "--admin", ADMIN, "--drain-grace", "1s"])
        .env("RUST_LOG", "info")
        .gid(DEFAULT_PROXY_ID)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`ip netns exec weft proxy` starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    if let Some(mut pipe) = child.stderr.take() {
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    ProxyProcess { child, stderr, id }
}

fn logs(proxies: &[&ProxyProcess]) -> String {
    proxies
        .iter()
        .map(|p| {
            let text = p.stderr.lock().map(|s| s.clone()).unwrap_or_default();
            format!("--- {} stderr ---\n{text}", p.id)
        })
        .collect()
}

/// Poll the proxy's `/ready` inside its pod until it answers 200 (bounded).
async fn wait_ready(pod: &Pod, proxy: &ProxyProcess) {
    let ready = pod
        .run(|| async {
            weft_testkit::wait::until(DEADLINE, || async {
                matches!(admin_get("/ready").await, Some((200, _)))
            })
            .await
        })
        .await;
    assert!(ready, "{} never became ready\n{}", proxy.id, logs(&[proxy]));
}

async fn admin_get(path: &str) -> Option<(u16, String)> {
    let admin: SocketAddr = ADMIN.parse().ok()?;
    let mut client = TestClient::h1(admin).await.ok()?;
    let resp = client.get("admin", path, &[]).await.ok()?;
    Some((resp.status.as_u16(), resp.text()))
}

async fn get(host: &str, path: &str) -> Result<weft_testkit::client::TestResponse, String> {
    let addr = SocketAddr::new(IpAddr::V4(SERVICE_IP), SERVICE_PORT);
    let mut client = tokio::time::timeout(DEADLINE, TestClient::h1(addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    tokio::time::timeout(DEADLINE, client.get(host, path, &[]))
        .await
        .map_err(|_| format!("GET {path} timed out"))?
        .map_err(|e| format!("GET {path}: {e}"))
}

/// The value of an unlabelled Prometheus sample, 0 when absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
