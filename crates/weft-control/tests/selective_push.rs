//! Recompilation is selective: a change recompiles and pushes only the proxies it can
//! affect, and a change that affects everyone reaches everyone. Proxies are plain tonic
//! clients speaking the push protocol on loopback and ACKing everything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_api::pb::{self, ProxyMessage, ResourceVersion, discovery_client::DiscoveryClient};
use weft_compile::Registry;
use weft_control::source::{MemoryHandle, MemorySource};
use weft_control::{ControlPlane, Options};
use weft_testkit::wait;

const DEADLINE: Duration = Duration::from_secs(30);

/// Namespaces `a` and `b`, each with a Sidecar importing only its own namespace, two
/// services per namespace, one proxy per service and one proxy-less endpoint of `a1`.
fn registry(a1_extra: &str) -> Registry {
    let mut text = String::from("instances:\n");
    let mut n = 1;
    for ns in ["a", "b"] {
        for s in 1..=2 {
            text.push_str(&format!(
                "- {{name: {ns}{s}-0, namespace: {ns}, labels: {{app: {ns}{s}}}, address: 10.0.0.{n}, \
                 proxy: {{capture: transparent}}}}\n"
            ));
            n += 1;
        }
    }
    text.push_str(&format!(
        "- {{name: a1-1, namespace: a, labels: {{app: a1}}, address: {a1_extra}}}\n"
    ));
    weft_compile::parse_registry("registry.yaml", &text).expect("registry parses")
}

const CONFIG: &str = "
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: a}
spec: {egress: [{hosts: [\"./*\"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: b}
spec: {egress: [{hosts: [\"./*\"]}]}
---
apiVersion: v1
kind: Service
metadata: {name: a1, namespace: a}
spec: {selector: {app: a1}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: a2, namespace: a}
spec: {selector: {app: a2}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b1, namespace: b}
spec: {selector: {app: b1}, ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b2, namespace: b}
spec: {selector: {app: b2}, ports: [{name: http, port: 80}]}
";

const PROXIES: [&str; 4] = ["a1-0.a", "a2-0.a", "b1-0.b", "b2-0.b"];

/// Responses received per proxy.
type Pushes = Arc<Mutex<BTreeMap<String, u64>>>;

async fn connect(addr: SocketAddr, id: &'static str, pushes: Pushes) {
    let (tx, rx) = mpsc::channel(4);
    let hello = pb::Hello {
        proxy_id: id.into(),
        ..Default::default()
    };
    tx.send(ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Hello(hello)),
    })
    .await
    .expect("queue hello");
    let mut client = DiscoveryClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let mut inbound = client
        .stream(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tokio::spawn(async move {
        while let Ok(Some(response)) = inbound.message().await {
            let accepted = response
                .resources
                .iter()
                .map(|r| ResourceVersion {
                    key: r.key.clone(),
                    version: r.version.clone(),
                })
                .collect();
            let ack = pb::Ack {
                nonce: response.nonce,
                accepted,
                rejected: Vec::new(),
            };
            *pushes.lock().unwrap().entry(id.to_string()).or_default() += 1;
            if tx
                .send(ProxyMessage {
                    kind: Some(pb::proxy_message::Kind::Ack(ack)),
                })
                .await
                .is_err()
            {
                break;
            }
        }
    });
}

/// Compiles per proxy, from the debug view of the proxies.
fn compiles(cp: &ControlPlane) -> BTreeMap<String, u64> {
    cp.proxies()
        .into_iter()
        .map(|p| (p.id, p.compiles))
        .collect()
}

fn all_acked(cp: &ControlPlane) -> bool {
    let proxies = cp.proxies();
    proxies.len() == PROXIES.len()
        && proxies
            .iter()
            .all(|p| p.compiles > 0 && p.sync_state() == "ACKED" && p.config.is_some())
}

async fn start() -> (ControlPlane, MemoryHandle, Pushes) {
    let (source, handle) = MemorySource::new();
    let cp = ControlPlane::start(
        Options {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            registry: registry("10.0.1.1"),
            ..Options::default()
        },
        Box::new(source),
    )
    .await
    .expect("control plane starts");
    handle.apply_yaml("mesh.yaml", CONFIG);
    handle.send(weft_control::source::Event::Synced);
    let pushes = Pushes::default();
    for id in PROXIES {
        connect(cp.grpc_addr(), id, pushes.clone()).await;
    }
    wait::eventually("every proxy configured and ACKed", DEADLINE, || async {
        all_acked(&cp)
    })
    .await;
    (cp, handle, pushes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_change_recompiles_only_the_proxies_that_see_the_service() {
    let (cp, _handle, pushes) = start().await;
    let before = compiles(&cp);
    let pushed_before = pushes.lock().unwrap().clone();
    // a1's proxy-less endpoint moves: only namespace a sees a1.
    cp.set_registry(registry("10.0.1.2"));
    wait::eventually("namespace a's proxies recompiled", DEADLINE, || async {
        let now = compiles(&cp);
        now["a1-0.a"] > before["a1-0.a"] && now["a2-0.a"] > before["a2-0.a"] && all_acked(&cp)
    })
    .await;
    let after = compiles(&cp);
    assert_eq!(
        after["b1-0.b"], before["b1-0.b"],
        "b1 must not be recompiled"
    );
    assert_eq!(
        after["b2-0.b"], before["b2-0.b"],
        "b2 must not be recompiled"
    );
    let pushed = pushes.lock().unwrap().clone();
    assert_eq!(pushed["b1-0.b"], pushed_before["b1-0.b"]);
    assert_eq!(pushed["b2-0.b"], pushed_before["b2-0.b"]);
    assert!(
        pushed["a2-0.a"] > pushed_before["a2-0.a"],
        "a2 sees a1's new endpoint"
    );
    let config = cp.proxy_config("a2-0.a").expect("a2's config");
    let endpoints: Vec<String> = config
        .clusters
        .iter()
        .filter(|c| c.name.contains("a1.a.svc"))
        .flat_map(|c| c.endpoints.iter().map(|e| e.address.clone()))
        .collect();
    assert!(
        endpoints.iter().any(|e| e.starts_with("10.0.1.2")),
        "{endpoints:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_service_change_stays_in_its_scope_and_mesh_config_reaches_everyone() {
    let (cp, handle, pushes) = start().await;
    let before = compiles(&cp);
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b2, namespace: b}\n\
              spec:\n  hosts: [b2]\n  http:\n  - route: [{destination: {host: b2}}]\n    timeout: 3s\n";
    handle.apply_yaml("vs.yaml", vs);
    wait::eventually("namespace b's proxies recompiled", DEADLINE, || async {
        let now = compiles(&cp);
        now["b1-0.b"] > before["b1-0.b"] && now["b2-0.b"] > before["b2-0.b"] && all_acked(&cp)
    })
    .await;
    let after = compiles(&cp);
    assert_eq!(after["a1-0.a"], before["a1-0.a"], "a1 does not see b2");
    assert_eq!(after["a2-0.a"], before["a2-0.a"], "a2 does not see b2");
    // Mesh config affects every proxy.
    let pushed_before = pushes.lock().unwrap().clone();
    let mesh = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n\
                data:\n  mesh: |\n    connectTimeout: 7s\n";
    handle.apply_yaml("mesh-config.yaml", mesh);
    wait::eventually("every proxy got the mesh config", DEADLINE, || async {
        let pushed = pushes.lock().unwrap().clone();
        PROXIES.iter().all(|id| pushed[*id] > pushed_before[*id]) && all_acked(&cp)
    })
    .await;
    for id in PROXIES {
        let config = cp.proxy_config(id).expect("config");
        assert!(
            config
                .clusters
                .iter()
                .any(|c| c.connect_timeout == Duration::from_secs(7)),
            "{id} runs the new connect timeout"
        );
    }
}
