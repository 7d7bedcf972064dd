//! `weft control` + `weft proxy --control` as real processes on loopback: the proxy gets
//! its config pushed and serves traffic; a listener it cannot bind is NACKed and shows in
//! `weft status` while the rest applies; `weft proxy-status` / `weft proxy-config` read
//! the control plane; killing the control plane leaves traffic flowing, and a change made
//! while it was down arrives after it restarts.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn weft(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    c.args(args).stderr(Stdio::null()).stdout(Stdio::null());
    c
}

fn control(dir: &Path, listen: u16, debug: u16) -> KillOnDrop {
    let child = weft(&["control", "--config-dir"])
        .arg(dir.join("mesh"))
        .arg("--registry")
        .arg(dir.join("registry.yaml"))
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--debug", &format!("127.0.0.1:{debug}")])
        .args(["--token", "secret"])
        .spawn()
        .expect("weft control runs");
    KillOnDrop(child)
}

/// stdout of a `weft` debug command, if it succeeded.
fn output(args: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn get_via(proxy: SocketAddr) -> Option<(u16, String)> {
    let stream = TcpStream::connect(proxy).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get("http://web.demo:8080/x")
        .header("host", "web.demo:8080")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    weft_testkit::wait::eventually(what, DEADLINE, check).await
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn direct_response(body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: web, namespace: demo}}\nspec:\n  hosts: [web]\n  http:\n  \
         - directResponse: {{status: 200, body: {{string: {body}}}}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_pushes_reports_and_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = dir.path().join("mesh");
    std::fs::create_dir(&mesh).unwrap();
    let busy = StdListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let (proxy_port, listen, debug, admin) = (free_port(), free_port(), free_port(), free_port());
    std::fs::write(
        mesh.join("web.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: demo}\n\
         spec:\n  selector: {app: web}\n  ports: [{name: http, port: 8080, targetPort: 9}]\n",
    )
    .unwrap();
    write(&mesh.join("vs.yaml"), &direct_response("before"));
    std::fs::write(
        dir.path().join("registry.yaml"),
        format!(
            "instances:\n\
             - {{name: client-0, namespace: demo, labels: {{app: client}}, address: 127.0.0.1, \
                proxy: {{capture: explicit, outboundHttpProxy: \"127.0.0.1:{proxy_port}\", \
                inbound: [{{port: 9000, bind: \"127.0.0.1:{busy_port}\", app: \"127.0.0.1:1\"}}]}}}}\n\
             - {{name: web-0, namespace: demo, labels: {{app: web}}, address: 127.0.0.1}}\n"
        ),
    )
    .unwrap();
    let cp = control(dir.path(), listen, debug);
    let _proxy = KillOnDrop(
        weft(&["proxy", "--id", "client-0.demo", "--token", "secret"])
            .args(["--control", &format!("127.0.0.1:{listen}")])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .spawn()
            .expect("weft proxy runs"),
    );
    let proxy = SocketAddr::from(([127, 0, 0, 1], proxy_port));
    eventually("the pushed config serves traffic", || async {
        get_via(proxy).await.is_some_and(|(_, b)| b == "before")
    })
    .await;

    let debug_addr = format!("127.0.0.1:{debug}");
    let d = ["--control-debug", debug_addr.as_str()];
    eventually("weft status shows the NACK", || async {
        output(&[&["status"], &d[..]].concat()).is_some_and(|o| {
            o.contains("listener/inbound|9000") && o.contains("NACKED") && o.contains("cannot bind")
        })
    })
    .await;
    let status = output(&[&["status"], &d[..]].concat()).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("VirtualService") && l.contains("programmed 1/1")),
        "{status}"
    );
    let ps = output(&[&["proxy-status"], &d[..]].concat()).unwrap();
    assert!(
        ps.contains("client-0.demo") && ps.contains("spiffe://cluster.local/ns/demo/sa/default"),
        "{ps}"
    );
    let clusters = output(
        &[
            &["proxy-config", "client-0.demo", "clusters", "-o", "json"],
            &d[..],
        ]
        .concat(),
    )
    .expect("proxy-config runs");
    let parsed: serde_json::Value = serde_json::from_str(&clusters).expect("json");
    assert!(
        parsed.as_array().is_some_and(|a| !a.is_empty()),
        "{clusters}"
    );
    let listeners =
        output(&[&["proxy-config", "client-0.demo", "listeners"], &d[..]].concat()).unwrap();
    assert!(
        listeners.contains("NAME") && listeners.contains("inbound|9000"),
        "{listeners}"
    );

    // Kill the control plane: traffic keeps flowing on the last config.
    drop(cp);
    assert_eq!(get_via(proxy).await.map(|(_, b)| b), Some("before".into()));
    write(&mesh.join("vs.yaml"), &direct_response("after"));
    assert_eq!(get_via(proxy).await.map(|(_, b)| b), Some("before".into()));
    let _cp = control(dir.path(), listen, debug);
    eventually("the change made while down arrives", || async {
        get_via(proxy).await.is_some_and(|(_, b)| b == "after")
    })
    .await;
    drop(busy);
}
