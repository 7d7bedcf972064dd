//! `weft control` + `weft proxy --control` as real processes on loopback: the proxy gets
//! its config pushed and serves traffic; a listener it cannot bind is NACKed and shows in
//! `weft status` while the rest applies; `weft proxy-status` / `weft proxy-config` read
//! the control plane; killing the control plane leaves traffic flowing, and a change made
//! while it was down arrives after it restarts. With `--write-tokens`, each registry
//! instance gets a bootstrap token; the CA signs its identity and `weft proxy-config <id>
//! secret` and `weft proxy-status` show the certificate.

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
        .arg("--ca-dir")
        .arg(dir.join("ca"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_issues_tokens_and_certificates() {
    use weft_api::pb::CertificateRequest;
    use weft_api::pb::certificate_service_client::CertificateServiceClient;

    let dir = tempfile::tempdir().unwrap();
    let mesh = dir.path().join("mesh");
    std::fs::create_dir(&mesh).unwrap();
    let (proxy_port, listen, debug, admin) = (free_port(), free_port(), free_port(), free_port());
    std::fs::write(
        dir.path().join("registry.yaml"),
        format!(
            "instances:\n\
             - {{name: client-0, namespace: demo, serviceAccount: client, address: 127.0.0.1, \
                proxy: {{capture: explicit, outboundHttpProxy: \"127.0.0.1:{proxy_port}\"}}}}\n\
             - {{name: web-0, namespace: demo, address: 127.0.0.1}}\n"
        ),
    )
    .unwrap();
    let tokens = dir.path().join("tokens");
    let _cp = KillOnDrop(
        weft(&["control", "--config-dir"])
            .arg(&mesh)
            .arg("--registry")
            .arg(dir.path().join("registry.yaml"))
            .args(["--listen", &format!("127.0.0.1:{listen}")])
            .args(["--debug", &format!("127.0.0.1:{debug}")])
            .arg("--ca-dir")
            .arg(dir.path().join("ca"))
            .arg("--write-tokens")
            .arg(&tokens)
            .args(["--workload-cert-ttl", "2h"])
            .spawn()
            .expect("weft control runs"),
    );
    let token_of = |proxy: &str| {
        std::fs::read_to_string(&tokens).ok().and_then(|text| {
            text.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|f| f.len() == 4 && f[3] == proxy)
                .map(|f| f[0].to_string())
        })
    };
    eventually("a token per registry instance is written", || async {
        token_of("client-0.demo").is_some() && token_of("web-0.demo").is_some()
    })
    .await;
    let token = token_of("client-0.demo").unwrap();
    let line = std::fs::read_to_string(&tokens).unwrap();
    assert!(
        line.contains(&format!("{token} demo client client-0.demo")),
        "{line}"
    );

    // A certificate request with the token, as a proxy sends it.
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let mut client = CertificateServiceClient::connect(format!("http://127.0.0.1:{listen}"))
        .await
        .expect("the CA listens on --listen");
    let mut req = tonic::Request::new(CertificateRequest {
        csr,
        validity_duration: 0,
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let resp = client
        .create_certificate(req)
        .await
        .expect("signed")
        .into_inner();
    let leaf = weft_control::ca::certs_from_pem(&resp.cert_chain[0])
        .unwrap()
        .remove(0);
    let x = leaf.x509().unwrap();
    let serial = x.raw_serial_as_string();
    let life = x.validity().not_after.timestamp() - x.validity().not_before.timestamp();
    assert_eq!(life, 2 * 3600 + 60, "--workload-cert-ttl");

    let debug_addr = format!("127.0.0.1:{debug}");
    let d = ["--control-debug", debug_addr.as_str()];
    let table = output(&[&["proxy-config", "client-0.demo", "secret"], &d[..]].concat())
        .expect("proxy-config secret runs");
    let default = table
        .lines()
        .find(|l| l.starts_with("default"))
        .unwrap_or_else(|| panic!("no certificate row: {table}"));
    assert!(
        default.contains("spiffe://cluster.local/ns/demo/sa/client") && default.contains(&serial),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("ROOTCA")).count(),
        1,
        "{table}"
    );
    let json = output(
        &[
            &["proxy-config", "client-0.demo", "secret", "-o", "json"],
            &d[..],
        ]
        .concat(),
    )
    .expect("proxy-config secret -o json runs");
    let secret: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(secret["certificate"]["serial"], serial.as_str(), "{json}");
    assert_eq!(secret["identity"], "demo/client", "{json}");

    // The proxy with that token is admitted, and proxy-status shows the certificate expiry.
    let _proxy = KillOnDrop(
        weft(&["proxy", "--id", "client-0.demo", "--token", &token])
            .args(["--control", &format!("127.0.0.1:{listen}")])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .spawn()
            .expect("weft proxy runs"),
    );
    eventually("proxy-status shows the certificate expiry", || async {
        let status = output(&[&["proxy-status", "-o", "json"], &d[..]].concat());
        let secret = output(
            &[
                &["proxy-config", "client-0.demo", "secret", "-o", "json"],
                &d[..],
            ]
            .concat(),
        );
        let (Some(status), Some(secret)) = (status, secret) else {
            return false;
        };
        let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        let secret: serde_json::Value = serde_json::from_str(&secret).unwrap_or_default();
        let expiry = &secret["certificate"]["not_after"];
        expiry.is_string()
            && status.as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["id"] == "client-0.demo" && p["cert_expiry"] == *expiry)
            })
    })
    .await;
    let table = output(&[&["proxy-status"], &d[..]].concat()).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("client-0.demo") && l.trim_end().ends_with('Z')),
        "{table}"
    );
}
