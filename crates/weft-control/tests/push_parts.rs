//! A push larger than one part (see `DeltaResponse.more` in discovery.proto) reaches a real
//! proxy in several responses, is applied whole, once, and ACKed once; a resource the proxy
//! refuses in such a push is NACKed on its own while the rest applies.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_compile::Registry;
use weft_control::source::{Event, MemorySource};
use weft_control::{ControlPlane, Options};
use weft_proxy::app::{self, ProxyOptions, Running};
use weft_proxy::xds::{Backoff, XdsClient, XdsOptions, XdsStats};
use weft_testkit::wait;

const DEADLINE: Duration = Duration::from_secs(60);
const PROXY: &str = "client-0.demo";
/// Enough services that the client's clusters alone take several 64 KiB parts.
const SERVICES: usize = 400;

/// The client proxy (explicit HTTP proxy, optional inbound port bound to `inbound`) and
/// one instance per service.
fn registry(inbound: Option<u16>) -> Registry {
    let inbound = inbound
        .map(|p| {
            format!(", inbound: [{{port: 9000, bind: \"127.0.0.1:{p}\", app: \"127.0.0.1:1\"}}]")
        })
        .unwrap_or_default();
    let mut text = format!(
        "instances:\n\
         - {{name: client-0, namespace: demo, labels: {{app: client}}, address: 127.0.0.1, \
            proxy: {{capture: explicit, outboundHttpProxy: \"127.0.0.1:0\"{inbound}}}}}\n"
    );
    for i in 0..SERVICES {
        text.push_str(&format!(
            "- {{name: svc{i}-0, namespace: demo, labels: {{app: svc{i}}}, address: 10.1.{}.{}}}\n",
            i / 200,
            i % 200 + 1
        ));
    }
    weft_compile::parse_registry("registry.yaml", &text).expect("registry parses")
}

fn services() -> String {
    (0..SERVICES)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: svc{i}, namespace: demo}}\n\
                 spec: {{selector: {{app: svc{i}}}, ports: [{{name: http, port: 8080}}]}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

async fn start(inbound: Option<u16>) -> (ControlPlane, Running, Arc<Mutex<XdsStats>>) {
    let (source, handle) = MemorySource::new();
    let cp = ControlPlane::start(
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            registry: registry(inbound),
            ..Options::default()
        },
        Box::new(source),
    )
    .await
    .expect("control plane starts");
    handle.apply_yaml("services.yaml", &services());
    handle.send(Event::Synced);
    let (client, source) = XdsClient::new(XdsOptions {
        address: format!("http://{}", cp.grpc_addr()),
        proxy_id: PROXY.into(),
        token: String::new(),
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
    (cp, running, stats)
}

/// Clusters of the control plane's compiled config for the proxy.
fn compiled_clusters(cp: &ControlPlane) -> Vec<String> {
    cp.proxy_config(PROXY)
        .map(|c| c.clusters.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_of_many_parts_is_applied_whole_and_acked_once() {
    let (cp, running, stats) = start(None).await;
    wait::eventually("the proxy ACKed its config", DEADLINE, || async {
        cp.proxies()
            .first()
            .is_some_and(|p| p.sync_state() == "ACKED" && p.config.is_some())
    })
    .await;
    let s = stats.lock().unwrap().clone();
    assert_eq!(s.responses, 1, "one push: {s:?}");
    assert!(s.parts >= 4, "the push came in several parts: {s:?}");
    let status = running.status().borrow().clone();
    assert_eq!(
        status.applied_total, 1,
        "the proxy published the push once, after its last part"
    );
    assert_eq!(status.rejected_total, 0);
    let clusters = compiled_clusters(&cp);
    assert!(clusters.len() >= SERVICES, "{}", clusters.len());
    let p = &cp.proxies()[0];
    for c in &clusters {
        assert!(p.acked.contains_key(&format!("cluster/{c}")), "{c} ACKed");
    }
    assert!(p.nacked.is_empty(), "{:?}", p.nacked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resource_in_a_push_of_many_parts_is_nacked_alone() {
    // An inbound port on an address already taken: that listener cannot bind.
    let busy = StdListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    let (cp, _running, stats) = start(Some(busy_port)).await;
    wait::eventually("the proxy answered its config", DEADLINE, || async {
        cp.proxies()
            .first()
            .is_some_and(|p| p.sync_state() == "NACKED" && p.config.is_some())
    })
    .await;
    let s = stats.lock().unwrap().clone();
    assert!(s.parts >= 4, "the push came in several parts: {s:?}");
    assert_eq!(
        s.rejected.keys().collect::<Vec<_>>(),
        ["listener/inbound|9000"],
        "{s:?}"
    );
    let p = &cp.proxies()[0];
    assert_eq!(
        p.nacked.keys().collect::<Vec<_>>(),
        ["listener/inbound|9000"]
    );
    assert!(
        p.nacked["listener/inbound|9000"]
            .reason
            .contains("cannot bind")
    );
    for c in compiled_clusters(&cp) {
        assert!(p.acked.contains_key(&format!("cluster/{c}")), "{c} ACKed");
    }
    drop(busy);
}
