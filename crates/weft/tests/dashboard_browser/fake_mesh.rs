//! The plaintext case the shop cannot show (its namespace is STRICT): the control plane
//! in-process, watching a config directory that holds a broken route, and fake proxies
//! (`weft-control/tests/support`) whose admin ports serve Istio metrics with moving
//! counters: order calls product v1 over mTLS and v2 in plaintext.

use std::net::SocketAddr;

use weft_control::source::DirectorySource;
use weft_control::{ControlPlane, Options};

use super::Expect;
use super::fake_proxy::{self, FakeAdmin, FakeStream, Traffic};

const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: product, namespace: shop}\n\
    spec: {selector: {app: product}, ports: [{name: http, port: 3001}]}\n\
    ---\napiVersion: v1\nkind: Service\nmetadata: {name: order, namespace: shop}\n\
    spec: {selector: {app: order}, ports: [{name: http, port: 3003}]}\n";

/// Whatever keeps the fake mesh running (control plane, fake proxies, temp dir).
pub type Keep = Vec<Box<dyn std::any::Any>>;

/// The control plane on a config directory, with an order proxy calling product v1 and v2
/// (v1 over mTLS, v2 in plaintext, 5% of v2's answers failing). The control plane reads
/// the broken route itself, so it rejects the object (status `rejected`).
pub async fn start() -> (Expect, Keep) {
    let dir = tempfile::tempdir().expect("config dir");
    std::fs::write(dir.path().join("services.yaml"), SERVICES).unwrap();
    std::fs::write(dir.path().join("broken.yaml"), super::BAD_ROUTE).unwrap();
    let registry = weft_compile::parse_registry(
        "registry.yaml",
        "instances:\n\
         - {name: order-0, namespace: shop, workload: order, labels: {app: order, version: v1}, address: 127.0.0.1, proxy: {capture: transparent}}\n\
         - {name: product-v1-0, namespace: shop, workload: product-v1, labels: {app: product, version: v1}, address: 127.0.0.2, proxy: {capture: transparent}}\n\
         - {name: product-v2-0, namespace: shop, workload: product-v2, labels: {app: product, version: v2}, address: 127.0.0.3, proxy: {capture: transparent}}\n",
    )
    .expect("registry parses");
    let cp = ControlPlane::start(
        Options {
            debug: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            registry,
            ..Options::default()
        },
        Box::new(DirectorySource::new(dir.path()).expect("watch the config dir")),
    )
    .await
    .expect("control plane starts");
    let (order, v1, v2) = (("order", "v1"), ("product-v1", "v1"), ("product-v2", "v2"));
    let order_admin = FakeAdmin::start(
        vec![
            Traffic::new("source", order, v1, "product", 30),
            Traffic {
                failed: 1,
                ..Traffic::new("source", order, v2, "product", 19)
            },
        ],
        true,
    )
    .await;
    let v1_admin = FakeAdmin::start(
        vec![Traffic::new("destination", order, v1, "product", 30)],
        false,
    )
    .await;
    let v2_admin = FakeAdmin::start(
        vec![Traffic {
            failed: 1,
            policy: "none",
            ..Traffic::new("destination", order, v2, "product", 19)
        }],
        false,
    )
    .await;
    let debug = cp.debug_addr().expect("debug listener");
    post_trace(debug).await;
    let grpc = cp.grpc_addr();
    let streams = vec![
        FakeStream::connect(grpc, "order-0.shop", order_admin.addr).await,
        FakeStream::connect(grpc, "product-v1-0.shop", v1_admin.addr).await,
        FakeStream::connect(grpc, "product-v2-0.shop", v2_admin.addr).await,
    ];
    let edges = vec![
        ("order.shop", "product-v1.shop", "mutual_tls"),
        ("order.shop", "product-v2.shop", "none"),
    ];
    let expect = Expect {
        debug,
        allowed: edges.clone(),
        edges,
        rejected: ("shop/broken", "rejected", "regex"),
        spans: 3,
        trace_services: vec!["order.shop", "product-v2.shop"],
    };
    let keep: Keep = vec![
        Box::new(streams),
        Box::new(order_admin),
        Box::new(v1_admin),
        Box::new(v2_admin),
        Box::new(cp),
        Box::new(dir),
    ];
    (expect, keep)
}

/// One trace as the proxies would export it: order's client span, product-v2's server
/// span under it, and product-v2's call to the database.
async fn post_trace(debug: SocketAddr) {
    let span = |id: &str,
                parent: Option<&str>,
                kind: &str,
                service: &str,
                ts: u64,
                dur: u64,
                code: &str| {
        let parent = parent
            .map(|p| format!("\"parentId\":\"{p}\","))
            .unwrap_or_default();
        format!(
            "{{\"traceId\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"id\":\"{id}\",{parent}\
             \"name\":\"product.shop.svc.cluster.local:3001/products\",\"kind\":\"{kind}\",\
             \"timestamp\":{ts},\"duration\":{dur},\
             \"localEndpoint\":{{\"serviceName\":\"{service}\"}},\
             \"tags\":{{\"http.method\":\"GET\",\"http.status_code\":\"{code}\",\
             \"istio.canonical_service\":\"{service}\"}}}}"
        )
    };
    let t0 = 1_700_000_000_000_000u64;
    let (root, server, db) = ("00f067aa0ba902b7", "00f067aa0ba902b8", "00f067aa0ba902b9");
    let body = format!(
        "[{},{},{}]",
        span(root, None, "CLIENT", "order.shop", t0, 12_000, "200"),
        span(
            server,
            Some(root),
            "SERVER",
            "product-v2.shop",
            t0 + 1_000,
            10_000,
            "200"
        ),
        span(
            db,
            Some(server),
            "CLIENT",
            "product-v2.shop",
            t0 + 3_000,
            6_000,
            "503"
        ),
    );
    let posted = fake_proxy::request(
        debug,
        "POST",
        "/api/v2/spans",
        Some("application/json"),
        body.into_bytes(),
    )
    .await
    .expect("post spans");
    assert_eq!(posted.0, 202, "{}", posted.1);
}
