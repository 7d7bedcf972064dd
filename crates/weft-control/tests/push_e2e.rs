//! The control plane and a real proxy on loopback, in one process: the proxy gets its
//! config over `Discovery/Stream` and serves traffic; a config change reaches it; a
//! resource it cannot apply is NACKed, shows in the status and the rest applies; when the
//! control plane is gone traffic keeps flowing, and a change made meanwhile arrives after a
//! restart without unchanged resources being resent.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use weft_compile::Registry;
use weft_control::debug::StatusReport;
use weft_control::source::{Event, MemoryHandle, MemorySource};
use weft_control::{ControlPlane, Options};
use weft_proxy::app::{self, ProxyOptions, Running};
use weft_proxy::xds::{Backoff, XdsClient, XdsOptions, XdsStats};
use weft_testkit::echo::EchoServer;

const DEADLINE: Duration = Duration::from_secs(30);
const TOKEN: &str = "bootstrap-secret";
const URL: &str = "http://web.demo:8080/hello";

fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn service(web: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: demo}}\n\
         spec:\n  selector: {{app: web}}\n  ports: [{{name: http, port: 8080, targetPort: {}}}]\n",
        web.port()
    )
}

fn direct_response(body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: web, namespace: demo}}\nspec:\n  hosts: [web]\n  http:\n  \
         - directResponse: {{status: 200, body: {{string: {body}}}}}\n"
    )
}

/// The client proxy (explicit HTTP proxy on `proxy_port`, optional inbound port) and the
/// web instance.
fn registry(proxy_port: u16, inbound: Option<u16>) -> Registry {
    let inbound = inbound
        .map(|p| {
            format!(", inbound: [{{port: 9000, bind: \"127.0.0.1:{p}\", app: \"127.0.0.1:1\"}}]")
        })
        .unwrap_or_default();
    let text = format!(
        "instances:\n\
         - {{name: client-0, namespace: demo, labels: {{app: client}}, address: 127.0.0.1, \
            proxy: {{capture: explicit, outboundHttpProxy: \"127.0.0.1:{proxy_port}\"{inbound}}}}}\n\
         - {{name: web-0, namespace: demo, labels: {{app: web}}, address: 127.0.0.1}}\n"
    );
    weft_compile::parse_registry("registry.yaml", &text).expect("registry parses")
}

async fn control(listen: SocketAddr, registry: Registry) -> (ControlPlane, MemoryHandle) {
    let options = Options {
        listen,
        debug: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        token: Some(TOKEN.into()),
        registry,
        ..Options::default()
    };
    // The previous control plane on this port may still be releasing it.
    let started = Mutex::new(None);
    let last_error = Mutex::new(String::new());
    let ok = weft_testkit::wait::until(DEADLINE, || async {
        let (source, handle) = MemorySource::new();
        match ControlPlane::start(options.clone(), Box::new(source)).await {
            Ok(cp) => {
                *started.lock().unwrap() = Some((cp, handle));
                true
            }
            Err(e) => {
                *last_error.lock().unwrap() = e.to_string();
                false
            }
        }
    })
    .await;
    assert!(ok, "{}", last_error.lock().unwrap());
    started.into_inner().unwrap().expect("started")
}

async fn proxy(control: SocketAddr) -> (Running, Arc<Mutex<XdsStats>>) {
    let (client, source) = XdsClient::new(XdsOptions {
        address: format!("http://{control}"),
        proxy_id: "client-0.demo".into(),
        token: TOKEN.into(),
        labels: Default::default(),
        service_account: String::new(),
        workload_address: String::new(),
        admin_address: String::new(),
        backoff: Backoff::new(Duration::from_millis(50), Duration::from_millis(500)),
    });
    let stats = client.stats();
    let options = ProxyOptions {
        admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ProxyOptions::default()
    };
    let running = app::build(options, source).await.expect("proxy starts");
    tokio::spawn(client.run(running.status()));
    (running, stats)
}

/// `(status, body)` of a GET through the HTTP proxy at `proxy`.
async fn get_via(proxy: SocketAddr) -> Option<(u16, String)> {
    let stream = TcpStream::connect(proxy).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(URL)
        .header("host", "web.demo:8080")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = send.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn debug_status(addr: SocketAddr) -> Option<StatusReport> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/debug/status")
        .header("host", "debug")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let body = send
        .send_request(req)
        .await
        .ok()?
        .into_body()
        .collect()
        .await
        .ok()?;
    serde_json::from_slice(&body.to_bytes()).ok()
}

async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    weft_testkit::wait::eventually(what, DEADLINE, check).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_config_follows_changes_and_reports_nacks() {
    let web = EchoServer::start("web").await.unwrap();
    let proxy_port = free_port();
    let (cp, objects) = control(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        registry(proxy_port, None),
    )
    .await;
    objects.apply_yaml("svc.yaml", &service(web.addr));
    objects.send(Event::Synced);
    let (_running, stats) = proxy(cp.grpc_addr()).await;
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], proxy_port));

    eventually("traffic through the pushed config", || async {
        get_via(proxy_addr).await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    assert!(web.requests() >= 1);

    objects.apply_yaml("vs.yaml", &direct_response("changed"));
    eventually("the change reaches the proxy", || async {
        get_via(proxy_addr)
            .await
            .is_some_and(|(_, b)| b == "changed")
    })
    .await;

    // An inbound port on an address already taken: that listener is NACKed, the rest
    // (its route table and cluster, the outbound config) applies.
    let busy = StdListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    cp.set_registry(registry(proxy_port, Some(busy_port)));
    let debug = cp.debug_addr().expect("debug port");
    eventually("the NACK shows in the status", || async {
        debug_status(debug).await.is_some_and(|r| {
            r.rejected_resources
                .iter()
                .any(|n| n.resource == "listener/inbound|9000" && n.reason.contains("cannot bind"))
        })
    })
    .await;
    let proxies = cp.proxies();
    let p = &proxies[0];
    assert_eq!(p.sync_state(), "NACKED");
    assert!(
        p.acked.contains_key("cluster/inbound|9000||"),
        "{:?}",
        p.acked
    );
    assert!(
        stats
            .lock()
            .unwrap()
            .rejected
            .contains_key("listener/inbound|9000")
    );
    assert_eq!(
        get_via(proxy_addr).await.map(|(_, b)| b),
        Some("changed".into())
    );

    // Freeing the port and changing the inbound port clears it.
    drop(busy);
    cp.set_registry(registry(proxy_port, None));
    eventually("the NACK clears", || async {
        debug_status(debug)
            .await
            .is_some_and(|r| r.rejected_resources.is_empty())
    })
    .await;
    let report = debug_status(debug).await.unwrap();
    assert!(
        report
            .objects
            .iter()
            .all(|o| o.status == "accepted" && o.programmed == 1),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_keeps_traffic_and_resumes_with_held_versions() {
    let web = EchoServer::start("web").await.unwrap();
    let proxy_port = free_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (cp, objects) = control(listen, registry(proxy_port, None)).await;
    objects.apply_yaml("svc.yaml", &service(web.addr));
    objects.apply_yaml("vs.yaml", &direct_response("before"));
    objects.send(Event::Synced);
    let (_running, stats) = proxy(listen).await;
    let proxy_addr = SocketAddr::from(([127, 0, 0, 1], proxy_port));
    eventually("first config", || async {
        get_via(proxy_addr)
            .await
            .is_some_and(|(_, b)| b == "before")
    })
    .await;
    let total = cp
        .proxy_config("client-0.demo")
        .map(|c| c.listeners.len() + c.route_tables.len() + c.clusters.len());

    cp.stop();
    drop(cp);
    eventually("the proxy sees the control plane gone", || async {
        !stats.lock().unwrap().connected
    })
    .await;
    assert_eq!(
        get_via(proxy_addr).await.map(|(_, b)| b),
        Some("before".into())
    );

    // A change made while it was down: the restarted control plane has it.
    let (cp, objects) = control(listen, registry(proxy_port, None)).await;
    objects.apply_yaml("svc.yaml", &service(web.addr));
    objects.apply_yaml("vs.yaml", &direct_response("after"));
    objects.send(Event::Synced);
    eventually("the change arrives after the restart", || async {
        get_via(proxy_addr).await.is_some_and(|(_, b)| b == "after")
    })
    .await;
    let mut changes = cp.status_changes();
    eventually("acknowledged", || {
        let acked = cp
            .proxies()
            .first()
            .is_some_and(|p| p.sync_state() == "ACKED");
        let _ = changes.borrow_and_update();
        async move { acked }
    })
    .await;
    let sent = cp.proxies()[0].resources_sent;
    let total = total.expect("config compiled before the outage");
    assert!(
        sent >= 1 && (sent as usize) < total,
        "resent {sent} of {total} resources"
    );
    let s = stats.lock().unwrap().clone();
    assert!(s.connects >= 2 && !s.disconnects.is_empty(), "{s:?}");
}
