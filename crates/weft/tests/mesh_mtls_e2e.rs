//! Mesh mTLS with real processes: one `weft control` (CA + config push, a bootstrap token
//! per proxy) and two `weft proxy --control` sidecars in explicit capture on their own
//! loopback addresses (client 127.0.0.2, server 127.0.0.3), an echo app behind the server
//! sidecar, the test as the client app speaking through the client sidecar's HTTP proxy
//! (and its local TCP port for a TCP service). Checked: the server side sees the client's
//! SPIFFE ID; STRICT refuses plaintext on the service port while mesh traffic passes; a
//! live switch to PERMISSIVE accepts both; certificates rotating every second break neither
//! keep-alive requests nor a long-lived TCP stream; a SIGKILLed control plane leaves mTLS
//! traffic flowing and the proxies reconnect to its restart.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weft_testkit::echo::EchoServer;
use weft_testkit::tcp::TcpEchoServer;

const DEADLINE: Duration = Duration::from_secs(40);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const CLIENT_ID: &str = "spiffe://cluster.local/ns/demo/sa/client";
const SERVER_ID: &str = "spiffe://cluster.local/ns/demo/sa/web";

fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A `weft` child process whose stderr is kept for failure messages; killed when dropped.
struct Process {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Process {
    fn spawn(mut command: Command) -> Process {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weft binary runs");
        let log = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr piped");
        let sink = log.clone();
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
        Process { child, log }
    }

    fn log(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // `Child::kill` is SIGKILL: nothing is flushed or drained.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `weft` with whitespace-separated `args` (add paths with `.arg`: they may hold spaces).
fn weft(args: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.args(args.split_whitespace());
    command
}

/// An HTTP/1.1 response: status and body.
type Reply = (u16, String);

async fn send(sender: &mut SendRequest<Empty<Bytes>>, uri: &str, host: &str) -> Option<Reply> {
    let req = hyper::Request::get(uri)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn connect(addr: SocketAddr) -> Option<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// A GET on a new connection; `None` when the connection gives no answer.
async fn get(addr: SocketAddr, uri: &str, host: &str) -> Option<Reply> {
    send(&mut connect(addr).await?, uri, host).await
}

/// The `x-forwarded-client-cert` the echo app saw, from its JSON body.
fn xfcc(body: &str) -> Option<String> {
    let echoed: serde_json::Value = serde_json::from_str(body).ok()?;
    echoed["headers"]["x-forwarded-client-cert"]
        .as_str()
        .map(str::to_string)
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn peer_authentication(mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: web, namespace: demo}}\n\
         spec:\n  selector: {{matchLabels: {{app: web}}}}\n  mtls: {{mode: {mode}}}\n"
    )
}

/// The control plane, both sidecars, the apps and every address they use.
struct Mesh {
    dir: tempfile::TempDir,
    app: EchoServer,
    tcp_app: TcpEchoServer,
    http_port: u16,
    listen: SocketAddr,
    debug: SocketAddr,
    ttl: Option<&'static str>,
    /// The client app's HTTP proxy (the client sidecar's outbound).
    outbound: SocketAddr,
    /// The client sidecar's local port for the `db` TCP service.
    tcp_local: SocketAddr,
    client_admin: SocketAddr,
    server_admin: SocketAddr,
    control: Option<Process>,
    client: Option<Process>,
    server: Option<Process>,
}

impl Mesh {
    /// Everything up, with the server's PeerAuthentication in `mode`, and one request
    /// answered through both sidecars.
    async fn start(mode: &str, ttl: Option<&'static str>) -> Mesh {
        let app = EchoServer::start("web").await.expect("echo app");
        let tcp_app = TcpEchoServer::start().await.expect("tcp echo app");
        let dir = tempfile::tempdir().expect("tempdir");
        let mesh_dir = dir.path().join("mesh");
        std::fs::create_dir(&mesh_dir).expect("mkdir");
        let (http_port, tcp_port) = (free_port(), free_port());
        let at = |ip: Ipv4Addr, port: u16| SocketAddr::new(IpAddr::V4(ip), port);
        let loopback = |port: u16| at(Ipv4Addr::LOCALHOST, port);
        let outbound = at(CLIENT_IP, free_port());
        let tcp_local = at(CLIENT_IP, free_port());
        std::fs::write(
            mesh_dir.join("services.yaml"),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: demo}}\n\
                 spec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: {http_port}, targetPort: {http_port}}}]\n\
                 ---\napiVersion: v1\nkind: Service\nmetadata: {{name: db, namespace: demo}}\n\
                 spec:\n  selector: {{app: web}}\n  ports: [{{name: tcp, port: {tcp_port}, targetPort: {tcp_port}}}]\n"
            ),
        )
        .expect("write");
        write_atomically(&mesh_dir.join("pa.yaml"), &peer_authentication(mode));
        std::fs::write(
            dir.path().join("registry.yaml"),
            format!(
                "instances:\n\
                 - {{name: client-0, namespace: demo, serviceAccount: client, labels: {{app: client}}, \
                    address: {CLIENT_IP}, \
                    proxy: {{capture: explicit, outboundHttpProxy: \"{outbound}\", \
                       tcpUpstreams: [{{host: db, port: {tcp_port}, bind: \"{tcp_local}\"}}], \
                       tunnel: \"{}\"}}}}\n\
                 - {{name: web-0, namespace: demo, serviceAccount: web, labels: {{app: web}}, \
                    address: {SERVER_IP}, ports: {{http: {http_port}, tcp: {tcp_port}}}, \
                    proxy: {{capture: explicit, outboundHttpProxy: \"{}\", \
                       inbound: [{{port: {http_port}, bind: \"{}\", app: \"{}\"}}, \
                                 {{port: {tcp_port}, bind: \"{}\", app: \"{}\"}}], \
                       tunnel: \"{}\"}}}}\n",
                at(CLIENT_IP, free_port()),
                at(SERVER_IP, free_port()),
                at(SERVER_IP, http_port),
                app.addr,
                at(SERVER_IP, tcp_port),
                tcp_app.addr,
                at(SERVER_IP, free_port()),
            ),
        )
        .expect("write");
        let mut mesh = Mesh {
            dir,
            app,
            tcp_app,
            http_port,
            listen: loopback(free_port()),
            debug: loopback(free_port()),
            ttl,
            outbound,
            tcp_local,
            client_admin: loopback(free_port()),
            server_admin: loopback(free_port()),
            control: None,
            client: None,
            server: None,
        };
        mesh.start_control();
        let written = weft_testkit::wait::until(DEADLINE, || async {
            mesh.token("client-0.demo").is_some() && mesh.token("web-0.demo").is_some()
        })
        .await;
        assert!(written, "no tokens written; logs:\n{}", mesh.logs());
        let server = mesh.sidecar("web-0.demo", mesh.server_admin);
        let client = mesh.sidecar("client-0.demo", mesh.client_admin);
        (mesh.server, mesh.client) = (Some(server), Some(client));
        mesh.wait_until_served().await;
        mesh
    }

    async fn wait_until_served(&self) {
        let up = weft_testkit::wait::until(DEADLINE, || async {
            self.mesh_get().await.is_some_and(|(s, _)| s == 200)
        })
        .await;
        assert!(up, "no 200 through the mesh; logs:\n{}", self.logs());
    }

    /// The bootstrap token `weft control --write-tokens` issued for proxy `id`.
    fn token(&self, id: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.path().join("tokens")).ok()?;
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.len() == 4 && f[3] == id)
            .map(|f| f[0].to_string())
    }

    fn sidecar(&self, id: &str, admin: SocketAddr) -> Process {
        let token = self.token(id).expect("token written");
        let listen = self.listen;
        Process::spawn(weft(&format!(
            "proxy --control {listen} --id {id} --token {token} --admin {admin}"
        )))
    }

    fn start_control(&mut self) {
        let dir = self.dir.path();
        let mut command = weft(&format!(
            "control --listen {} --debug {}",
            self.listen, self.debug
        ));
        command.arg("--config-dir").arg(dir.join("mesh"));
        command.arg("--registry").arg(dir.join("registry.yaml"));
        command.arg("--ca-dir").arg(dir.join("ca"));
        command.arg("--write-tokens").arg(dir.join("tokens"));
        if let Some(ttl) = self.ttl {
            command.args(["--workload-cert-ttl", ttl]);
        }
        self.control = Some(Process::spawn(command));
    }

    fn logs(&self) -> String {
        [
            ("control", &self.control),
            ("client sidecar", &self.client),
            ("server sidecar", &self.server),
        ]
        .iter()
        .filter_map(|(name, p)| p.as_ref().map(|p| format!("--- {name}\n{}", p.log())))
        .collect::<Vec<_>>()
        .join("\n")
    }

    fn uri(&self) -> (String, String) {
        let host = format!("web.demo:{}", self.http_port);
        (format!("http://{host}/hello"), host)
    }

    /// A GET from the client app through both sidecars, on a new connection.
    async fn mesh_get(&self) -> Option<Reply> {
        let (uri, host) = self.uri();
        get(self.outbound, &uri, &host).await
    }

    /// A GET straight to the server sidecar's service port, in plaintext.
    async fn plaintext_get(&self) -> Option<Reply> {
        let (_, host) = self.uri();
        let addr = SocketAddr::new(IpAddr::V4(SERVER_IP), self.http_port);
        get(addr, "/hello", &host).await
    }

    fn set_mode(&self, mode: &str) {
        let path = self.dir.path().join("mesh/pa.yaml");
        write_atomically(&path, &peer_authentication(mode));
    }

    /// The value of an unlabelled metric on a proxy's admin endpoint.
    async fn metric(&self, admin: SocketAddr, name: &str) -> Option<f64> {
        let (status, text) = get(admin, "/stats/prometheus", "admin").await?;
        if status != 200 {
            return None;
        }
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .find_map(|v| v.trim().parse().ok())
    }

    /// Wait until the server sidecar runs the PeerAuthentication `mode` on its service port.
    async fn wait_for_mode(&self, mode: &str) {
        let pushed = weft_testkit::wait::until(DEADLINE, || async {
            let Some((200, dump)) = get(self.server_admin, "/config_dump", "admin").await else {
                return false;
            };
            let dump: String = dump.split_whitespace().collect();
            let has = |m: &str| dump.contains(&format!("\"mtls\":{{\"mode\":\"{m}\""));
            has(mode)
                && ["STRICT", "PERMISSIVE", "DISABLE"]
                    .iter()
                    .all(|m| *m == mode || !has(m))
        })
        .await;
        assert!(pushed, "{mode} never pushed; logs:\n{}", self.logs());
    }

    async fn wait_for_metric(&self, admin: SocketAddr, name: &str, at_least: f64) -> f64 {
        let last = std::cell::Cell::new(None);
        let reached = weft_testkit::wait::until(DEADLINE, || async {
            last.set(self.metric(admin, name).await);
            last.get().is_some_and(|v| v >= at_least)
        })
        .await;
        let last = last.get();
        assert!(
            reached,
            "{name} on {admin} stayed at {last:?} (< {at_least}); logs:\n{}",
            self.logs()
        );
        last.unwrap_or_default()
    }
}

fn assert_mesh_identity(reply: Option<Reply>, mesh: &Mesh) {
    let (status, body) = reply.unwrap_or_else(|| panic!("no answer; logs:\n{}", mesh.logs()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        xfcc(&body).as_deref(),
        Some(format!("By={SERVER_ID};URI={CLIENT_ID}").as_str()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_request_carries_the_client_identity() {
    let mesh = Mesh::start("STRICT", None).await;
    assert_mesh_identity(mesh.mesh_get().await, &mesh);
    // One tunnel connection from the client sidecar, accepted by the server sidecar.
    mesh.wait_for_metric(mesh.client_admin, "weft_mesh_connections_total", 1.0)
        .await;
    mesh.wait_for_metric(
        mesh.server_admin,
        "weft_tunnel_connections_accepted_total",
        1.0,
    )
    .await;
    mesh.wait_for_metric(mesh.server_admin, "weft_tunnel_streams_received_total", 2.0)
        .await;
    // Both sidecars hold a certificate from the control plane's CA.
    for admin in [mesh.client_admin, mesh.server_admin] {
        mesh.wait_for_metric(admin, "weft_certificate_issued_total", 1.0)
            .await;
        let expiry = mesh
            .metric(admin, "weft_certificate_expiry_seconds")
            .await
            .unwrap_or_default();
        assert!(expiry > 1.0e9, "expiry gauge {expiry}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_plaintext_and_passes_mesh_traffic() {
    let mesh = Mesh::start("STRICT", None).await;
    mesh.wait_for_mode("STRICT").await;
    let served = mesh.app.requests();
    let plain = mesh.plaintext_get().await;
    assert!(plain.is_none(), "plaintext was answered: {plain:?}");
    mesh.wait_for_metric(
        mesh.server_admin,
        "weft_inbound_plaintext_refused_total",
        1.0,
    )
    .await;
    assert_eq!(mesh.app.requests(), served, "plaintext reached the app");
    assert_mesh_identity(mesh.mesh_get().await, &mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_pushed_live_accepts_plaintext_and_mesh_traffic() {
    let mesh = Mesh::start("STRICT", None).await;
    mesh.wait_for_mode("STRICT").await;
    assert!(mesh.plaintext_get().await.is_none(), "STRICT answered");
    let refused = "weft_inbound_plaintext_refused_total";
    mesh.wait_for_metric(mesh.server_admin, refused, 1.0).await;
    mesh.set_mode("PERMISSIVE");
    mesh.wait_for_mode("PERMISSIVE").await;
    let (status, body) = mesh.plaintext_get().await.expect("plaintext answered");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        xfcc(&body),
        None,
        "plaintext carries no peer identity: {body}"
    );
    assert_mesh_identity(mesh.mesh_get().await, &mesh);
    let refused = mesh.metric(mesh.server_admin, refused).await;
    assert_eq!(refused, Some(1.0), "only the STRICT attempt was refused");
}

/// Traffic kept up while certificates rotate: keep-alive requests through the mesh and one
/// TCP stream through the tunnel, each checked on every round.
struct Traffic {
    stop: Arc<AtomicBool>,
    http: tokio::task::JoinHandle<(u32, Vec<String>)>,
    tcp: tokio::task::JoinHandle<(u32, Vec<String>)>,
}

impl Traffic {
    async fn start(mesh: &Mesh) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let (uri, host) = mesh.uri();
        let mut sender = connect(mesh.outbound).await.expect("client sidecar");
        let running = stop.clone();
        let http = tokio::spawn(async move {
            let (mut ok, mut failures) = (0, Vec::new());
            let mut pace = tokio::time::interval(Duration::from_millis(50));
            while !running.load(Ordering::Relaxed) {
                pace.tick().await;
                match send(&mut sender, &uri, &host).await {
                    Some((200, body)) if xfcc(&body).is_some_and(|x| x.contains(CLIENT_ID)) => {
                        ok += 1
                    }
                    other => failures.push(format!("request {ok}: {other:?}")),
                }
            }
            (ok, failures)
        });
        let mut stream = TcpStream::connect(mesh.tcp_local)
            .await
            .unwrap_or_else(|e| panic!("tcp port: {e}; logs:\n{}", mesh.logs()));
        let running = stop.clone();
        let tcp = tokio::spawn(async move {
            let (mut rounds, mut failures) = (0u32, Vec::new());
            let mut pace = tokio::time::interval(Duration::from_millis(50));
            while !running.load(Ordering::Relaxed) && failures.is_empty() {
                pace.tick().await;
                let line = format!("ping-{rounds}\n");
                let mut back = vec![0u8; line.len()];
                let echoed = async {
                    stream.write_all(line.as_bytes()).await?;
                    stream.read_exact(&mut back).await
                };
                match tokio::time::timeout(Duration::from_secs(5), echoed).await {
                    Ok(Ok(_)) if back == line.as_bytes() => rounds += 1,
                    other => failures.push(format!("round {rounds}: {other:?} {back:?}")),
                }
            }
            (rounds, failures)
        });
        Traffic { stop, http, tcp }
    }

    /// Stop and return (requests answered, TCP rounds echoed), failing on any failure.
    async fn finish(self, mesh: &Mesh) -> (u32, u32) {
        self.stop.store(true, Ordering::Relaxed);
        let (requests, http_failures) = self.http.await.expect("http loop");
        let (rounds, tcp_failures) = self.tcp.await.expect("tcp loop");
        assert!(
            http_failures.is_empty() && tcp_failures.is_empty(),
            "failed requests {http_failures:?}, broken stream {tcp_failures:?}; logs:\n{}",
            mesh.logs()
        );
        (requests, rounds)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_live_traffic() {
    // The shortest lifetimes refresh as often as the proxy allows (every second): the CA
    // backdates notBefore by a minute, so half of the life lies in the past already.
    let mesh = Mesh::start("STRICT", Some("10s")).await;
    let admins = [mesh.client_admin, mesh.server_admin];
    let mut before = Vec::new();
    for admin in admins {
        let issued = mesh
            .wait_for_metric(admin, "weft_certificate_issued_total", 1.0)
            .await;
        let expiry = mesh.metric(admin, "weft_certificate_expiry_seconds").await;
        before.push((issued, expiry));
    }
    let traffic = Traffic::start(&mesh).await;
    for (admin, (issued, _)) in admins.iter().zip(&before) {
        mesh.wait_for_metric(
            *admin,
            "weft_certificate_issued_total",
            issued.max(1.0) + 2.0,
        )
        .await;
    }
    let (requests, rounds) = traffic.finish(&mesh).await;
    assert!(
        requests > 0 && rounds > 0,
        "{requests} requests, {rounds} rounds"
    );
    for (admin, (_, expiry)) in admins.iter().zip(&before) {
        let now = mesh.metric(*admin, "weft_certificate_expiry_seconds").await;
        assert!(
            now > *expiry,
            "expiry gauge on {admin}: {expiry:?} -> {now:?}"
        );
    }
    // The long-lived stream is the only TCP connection the app saw: it was never re-opened.
    assert_eq!(mesh.tcp_app.connections(), 1);
    // A new client sidecar handshakes with the server's rotated certificate.
    let mut mesh = mesh;
    let accepted = "weft_tunnel_connections_accepted_total";
    let before = mesh
        .metric(mesh.server_admin, accepted)
        .await
        .unwrap_or_default();
    drop(mesh.client.take());
    mesh.client = Some(mesh.sidecar("client-0.demo", mesh.client_admin));
    mesh.wait_until_served().await;
    assert_mesh_identity(mesh.mesh_get().await, &mesh);
    mesh.wait_for_metric(mesh.server_admin, accepted, before + 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_survives_a_killed_control_plane_and_reconnects() {
    let mut mesh = Mesh::start("STRICT", None).await;
    mesh.wait_for_mode("STRICT").await;
    let tunnels = mesh
        .wait_for_metric(mesh.client_admin, "weft_mesh_connections_total", 1.0)
        .await;
    drop(mesh.control.take());
    // Certificates and config stay: mesh traffic flows, plaintext is still refused.
    for _ in 0..3 {
        assert_mesh_identity(mesh.mesh_get().await, &mesh);
    }
    assert!(mesh.plaintext_get().await.is_none(), "STRICT lost");
    // A change made while the control plane is down arrives once it is back.
    mesh.set_mode("PERMISSIVE");
    mesh.start_control();
    mesh.wait_for_mode("PERMISSIVE").await;
    let (status, _) = mesh.plaintext_get().await.expect("plaintext answered");
    assert_eq!(status, 200);
    assert_mesh_identity(mesh.mesh_get().await, &mesh);
    // The proxy-to-proxy connection was never affected by the control plane.
    let now = mesh
        .metric(mesh.client_admin, "weft_mesh_connections_total")
        .await;
    assert_eq!(now, Some(tunnels), "the tunnel was re-opened");
    // Both proxies are connected to the new control plane and have acknowledged its config.
    let debug = mesh.debug.to_string();
    let both_acked = || async {
        let Ok(out) = weft(&format!("proxy-status --control-debug {debug}")).output() else {
            return false;
        };
        let table = String::from_utf8_lossy(&out.stdout);
        let acked = |id: &str| (table.lines()).any(|l| l.starts_with(id) && l.contains(" ACKED"));
        acked("client-0.demo") && acked("web-0.demo")
    };
    let reconnected = weft_testkit::wait::until(DEADLINE, both_acked).await;
    assert!(
        reconnected,
        "proxies did not reconnect; logs:\n{}",
        mesh.logs()
    );
}
