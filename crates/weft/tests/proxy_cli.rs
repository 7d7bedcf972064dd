//! `weft proxy` end to end: the real binary runs a proxy compiled from a config directory
//! and a registry; a plain HTTP client uses it as HTTP proxy; editing the directory
//! changes what it does; a broken file changes nothing; SIGTERM drains and exits 0.

use std::io::Read;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The application behind the `web` Service.
async fn web_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: hyper::Request<_>| async move {
                    let body = format!("web app {}", req.uri().path());
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                        body,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// `(status, body)` of a GET through the HTTP proxy at `proxy` (absolute-form request).
async fn get_via(proxy: SocketAddr, url: &str) -> Option<(u16, String)> {
    let stream = TcpStream::connect(proxy).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(url)
        .header("host", "web.demo:8080")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn admin_status(admin: SocketAddr, path: &str) -> Option<u16> {
    let stream = TcpStream::connect(admin).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "admin")
        .body(Empty::<Bytes>::new())
        .ok()?;
    Some(send.send_request(req).await.ok()?.status().as_u16())
}

/// Poll until `check` holds; panic with `what` and the proxy's stderr after the deadline.
async fn eventually<F, Fut>(what: &str, stderr: &Arc<Mutex<String>>, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !weft_testkit::wait::until(DEADLINE, check).await {
        panic!(
            "timed out: {what}\nproxy stderr:\n{}",
            stderr.lock().unwrap()
        );
    }
}

fn write(path: &Path, text: &str) {
    // Write a temporary and rename it over, as editors do, so the watcher never reads half
    // a file.
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Collect the child's stderr in the background.
fn capture_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr piped");
    let sink = out.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_runs_compiled_config_and_follows_file_changes() {
    let web = web_app().await;
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("mesh");
    std::fs::create_dir(&config_dir).unwrap();
    let proxy_port = free_port();
    let admin_port = free_port();
    std::fs::write(
        config_dir.join("web.yaml"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: demo}}\n\
             spec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 8080, targetPort: {}}}]\n",
            web.port()
        ),
    )
    .unwrap();
    let registry = dir.path().join("registry.yaml");
    std::fs::write(
        &registry,
        format!(
            "instances:\n\
             - {{name: client-0, namespace: demo, labels: {{app: client}}, address: 127.0.0.1, \
                proxy: {{capture: explicit, outboundHttpProxy: \"127.0.0.1:{proxy_port}\"}}}}\n\
             - {{name: web-0, namespace: demo, labels: {{app: web}}, address: 127.0.0.1}}\n"
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["proxy", "--config-dir"])
        .arg(&config_dir)
        .arg("--registry")
        .arg(&registry)
        .args(["--id", "client-0.demo", "--admin"])
        .arg(format!("127.0.0.1:{admin_port}"))
        .args(["--drain-grace", "2s"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft binary runs");
    let stderr = capture_stderr(&mut child);
    let mut child = KillOnDrop(child);
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let proxy = SocketAddr::from(([127, 0, 0, 1], proxy_port));
    let url = "http://web.demo:8080/hello";

    eventually("proxy ready", &stderr, || async {
        admin_status(admin, "/ready").await == Some(200)
    })
    .await;
    let first = get_via(proxy, url).await;
    assert_eq!(
        first,
        Some((200, "web app /hello".to_string())),
        "stderr:\n{}",
        stderr.lock().unwrap()
    );

    // A VirtualService appears: the proxy answers from it.
    write(
        &config_dir.join("vs.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {name: web, namespace: demo}\nspec:\n  hosts: [web]\n  http:\n  \
         - directResponse: {status: 200, body: {string: changed by a VirtualService}}\n",
    );
    eventually("new behaviour", &stderr, || async {
        get_via(proxy, url)
            .await
            .is_some_and(|(_, b)| b == "changed by a VirtualService")
    })
    .await;

    // A file that does not parse: reported, and the running config stays.
    write(&config_dir.join("broken.yaml"), "kind: [unclosed\n");
    eventually("parse error reported", &stderr, || async {
        let err = stderr.lock().unwrap();
        err.contains("WEFT0002") && err.contains("the running config stays in force")
    })
    .await;
    let after = get_via(proxy, url).await;
    assert_eq!(
        after,
        Some((200, "changed by a VirtualService".to_string()))
    );

    // SIGTERM: drain and exit 0.
    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let exited = weft_testkit::wait::until(DEADLINE, || {
        let done = child.0.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    assert!(exited, "proxy did not exit after SIGTERM");
    let status = child.0.try_wait().unwrap().expect("exited");
    assert!(
        status.success(),
        "exit {status}; stderr:\n{}",
        stderr.lock().unwrap()
    );
}
