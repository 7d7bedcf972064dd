//! `weft proxy --cert-dir` end to end, two real proxies compiled from one config directory:
//! the client's requests reach the server's application through the mesh tunnel (mTLS with
//! file-mounted certificates), the application sees the client's SPIFFE ID, and a STRICT
//! PeerAuthentication refuses a plaintext client on the service port.

use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use weft_testkit::ca::FakeCa;
use weft_testkit::echo::EchoServer;

const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `(status, body, x-weft-error)` of a GET of `uri` (absolute-form to use `addr` as HTTP
/// proxy) on a new connection to `addr`; `None` when the connection gives no answer.
async fn get(addr: SocketAddr, uri: &str, host: &str) -> Option<(u16, String, String)> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(uri)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let error = resp
        .headers()
        .get("x-weft-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned(), error))
}

struct Proxy {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proxy(config_dir: &Path, registry: &Path, id: &str, certs: &Path, admin: u16) -> Proxy {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["proxy", "--config-dir"])
        .arg(config_dir)
        .arg("--registry")
        .arg(registry)
        .args(["--id", id, "--admin"])
        .arg(format!("127.0.0.1:{admin}"))
        .arg("--cert-dir")
        .arg(certs)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft binary runs");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr piped");
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
    Proxy { child, stderr }
}

fn logs(proxies: &[&Proxy]) -> String {
    proxies
        .iter()
        .map(|p| p.stderr.lock().map(|s| s.clone()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_talk_mtls_with_file_mounted_certificates() {
    let app = EchoServer::start("web").await.expect("app");
    let dir = tempfile::tempdir().expect("tempdir");
    let mesh = dir.path().join("mesh");
    std::fs::create_dir(&mesh).expect("mkdir");
    let (port, http_proxy, tunnel) = (free_port(), free_port(), free_port());
    let server_http_proxy = free_port();
    let (client_admin, server_admin) = (free_port(), free_port());
    std::fs::write(
        mesh.join("web.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: demo}}\n\
             spec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: {port}, targetPort: {port}}}]\n\
             ---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
             metadata: {{name: web, namespace: demo}}\n\
             spec:\n  selector: {{matchLabels: {{app: web}}}}\n  mtls: {{mode: STRICT}}\n"
        ),
    )
    .expect("write");
    let registry = dir.path().join("registry.yaml");
    std::fs::write(
        &registry,
        format!(
            "instances:\n\
             - {{name: client-0, namespace: demo, serviceAccount: client, labels: {{app: client}}, \
                address: 127.0.0.1, \
                proxy: {{capture: explicit, outboundHttpProxy: \"127.0.0.1:{http_proxy}\"}}}}\n\
             - {{name: web-0, namespace: demo, serviceAccount: web, labels: {{app: web}}, \
                address: 127.0.0.1, ports: {{http: {port}}}, \
                proxy: {{capture: explicit, outboundHttpProxy: \"127.0.0.1:{server_http_proxy}\", \
                   inbound: [{{port: {port}, bind: \"127.0.0.1:{port}\", app: \"{}\"}}], \
                   tunnel: \"127.0.0.1:{tunnel}\"}}}}\n",
            app.addr
        ),
    )
    .expect("write");
    let ca = FakeCa::new("cluster.local");
    let day = Duration::from_secs(24 * 3600);
    let (client_certs, server_certs) = (dir.path().join("client"), dir.path().join("web"));
    ca.write_cert_dir(
        &ca.issue_spiffe(&ca.spiffe_id("demo", "client"), day),
        &client_certs,
    )
    .expect("client certs");
    ca.write_cert_dir(
        &ca.issue_spiffe(&ca.spiffe_id("demo", "web"), day),
        &server_certs,
    )
    .expect("server certs");

    let server = proxy(&mesh, &registry, "web-0.demo", &server_certs, server_admin);
    let client = proxy(
        &mesh,
        &registry,
        "client-0.demo",
        &client_certs,
        client_admin,
    );
    let both = [&server, &client];
    let via = SocketAddr::from(([127, 0, 0, 1], http_proxy));
    let url = format!("http://web.demo:{port}/hello");
    let host = format!("web.demo:{port}");
    let ok = weft_testkit::wait::until(DEADLINE, || async {
        get(via, &url, &host)
            .await
            .is_some_and(|(s, _, _)| s == 200)
    })
    .await;
    assert!(ok, "no 200 through the mesh; logs:\n{}", logs(&both));
    let (_, body, _) = get(via, &url, &host).await.expect("response");
    let echoed: serde_json::Value = serde_json::from_str(&body).expect("echo JSON");
    let xfcc = echoed["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(
        xfcc,
        "By=spiffe://cluster.local/ns/demo/sa/web;URI=spiffe://cluster.local/ns/demo/sa/client",
        "{echoed}\nlogs:\n{}",
        logs(&both)
    );

    // STRICT: a plaintext client on the service port gets no answer.
    let direct = SocketAddr::from(([127, 0, 0, 1], port));
    let plain = get(direct, "/hello", &host).await;
    assert!(plain.is_none(), "{plain:?}");
    // Only the two mesh requests reached the app (the first 200 and the XFCC check).
    assert_eq!(app.requests(), 2, "logs:\n{}", logs(&both));
}
