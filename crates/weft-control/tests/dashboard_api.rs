//! The dashboard's API against a running control plane and two fake proxies on loopback:
//! their hellos announce admin ports serving Istio metrics, the control plane scrapes
//! them, and `/api/graph` shows the edge with its rate, error share, p99 and mTLS; a
//! change in traffic shows up; Zipkin spans POSTed to `/api/v2/spans` come back from
//! `/api/traces`; `/metrics` counts connected proxies, pushes, ACKs and rejected objects.

#[path = "support/fake_proxy.rs"]
mod fake_proxy;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use weft_control::source::{Event, MemorySource};
use weft_control::{ControlPlane, Options};
use weft_testkit::wait::{eventually, until};

use fake_proxy::{FakeAdmin, FakeStream, Traffic, get, get_json, request};

const DEADLINE: Duration = Duration::from_secs(30);
const ORDER: (&str, &str) = ("order", "v1");
const PRODUCT: (&str, &str) = ("product-v2", "v2");

fn registry() -> weft_compile::Registry {
    let text = "instances:\n\
        - {name: order-0, namespace: shop, workload: order, labels: {app: order, version: v1}, address: 127.0.0.1, proxy: {capture: transparent}}\n\
        - {name: product-v2-0, namespace: shop, workload: product-v2, labels: {app: product, version: v2}, address: 127.0.0.2, proxy: {capture: transparent}}\n";
    weft_compile::parse_registry("registry.yaml", text).expect("registry parses")
}

const SERVICES: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: product, namespace: shop}\n\
    spec: {selector: {app: product}, ports: [{name: http, port: 3001}]}\n\
    ---\napiVersion: v1\nkind: Service\nmetadata: {name: order, namespace: shop}\n\
    spec: {selector: {app: order}, ports: [{name: http, port: 3003}]}\n";

/// Rejected by validation: the regex does not compile.
const BAD_ROUTE: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
    metadata: {name: broken, namespace: shop}\nspec:\n  hosts: [product]\n  http:\n  \
    - match: [{uri: {regex: '('}}]\n    route:\n    - destination: {host: product}\n";

/// The order → product-v2 edge of `/api/graph?window=...`, once it satisfies `check`.
async fn edge_when(debug: SocketAddr, window: u64, check: impl Fn(&Value) -> bool) -> Value {
    let found = std::sync::Mutex::new(Value::Null);
    let ok = until(DEADLINE, || async {
        let Some(graph) = get_json(debug, &format!("/api/graph?window={window}")).await else {
            return false;
        };
        let edge = graph["edges"]
            .as_array()
            .and_then(|edges| {
                edges
                    .iter()
                    .find(|e| e["source"] == "order.shop" && e["destination"] == "product-v2.shop")
            })
            .cloned();
        *found.lock().unwrap() = graph;
        edge.is_some_and(|e| check(&e))
    })
    .await;
    let graph = found.into_inner().unwrap();
    assert!(ok, "the edge never got there; last graph: {graph:#}");
    graph
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_traces_and_metrics_from_fake_proxies() {
    let (source, handle) = MemorySource::new();
    handle.apply_yaml("services.yaml", SERVICES);
    handle.apply_yaml("broken.yaml", BAD_ROUTE);
    handle.send(Event::Synced);
    let cp = ControlPlane::start(
        Options {
            debug: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            registry: registry(),
            ..Options::default()
        },
        Box::new(source),
    )
    .await
    .expect("control plane starts");
    let debug = cp.debug_addr().expect("debug listener");
    assert_eq!(
        cp.zipkin_collector().as_deref(),
        Some(format!("http://{debug}/api/v2/spans").as_str())
    );

    // The caller reports 19 good and 1 failed request per scrape (OpenMetrics text); the
    // server reports them received over mTLS (Prometheus text).
    let caller = Traffic {
        failed: 1,
        ..Traffic::new("source", ORDER, PRODUCT, "product", 19)
    };
    let server = Traffic {
        failed: 1,
        ..Traffic::new("destination", ORDER, PRODUCT, "product", 19)
    };
    let order_admin = FakeAdmin::start(vec![caller.clone()], true).await;
    let product_admin = FakeAdmin::start(vec![server.clone()], false).await;
    let order = FakeStream::connect(cp.grpc_addr(), "order-0.shop", order_admin.addr).await;
    let product =
        FakeStream::connect(cp.grpc_addr(), "product-v2-0.shop", product_admin.addr).await;

    let graph = edge_when(debug, 60, |e| {
        e["rps"].as_f64() > Some(0.0) && e["mtls"] == "mutual_tls"
    })
    .await;
    let edges = graph["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{graph:#}");
    let e = &edges[0];
    assert_eq!(e["service"], "product.shop");
    assert_eq!(e["reporter"], "source");
    assert_eq!(e["protocol"], "http");
    // 20 requests per scrape, one scrape every 2 s.
    let rps = e["rps"].as_f64().unwrap();
    assert!((7.5..=12.5).contains(&rps), "rps {rps}: {e}");
    assert!(
        (e["error_rate"].as_f64().unwrap() - 0.05).abs() < 1e-9,
        "{e}"
    );
    // Every request took 7 ms: in the (5, 10] bucket, p99 interpolates to 9.95.
    assert!((e["p99_ms"].as_f64().unwrap() - 9.95).abs() < 1e-9, "{e}");
    let nodes = graph["nodes"].as_array().unwrap();
    let product_node = nodes
        .iter()
        .find(|n| n["id"] == "product-v2.shop")
        .expect("node");
    assert_eq!(product_node["version"], "v2");
    assert_eq!(product_node["app"], "product");

    // The server starts receiving in plaintext: over a short window the edge says so.
    product_admin.set_traffic(vec![Traffic {
        policy: "none",
        ..server.clone()
    }]);
    edge_when(debug, 5, |e| e["mtls"] == "none").await;
    let services = get_json(debug, "/api/services").await.expect("services");
    assert_eq!(services["services"][0]["service"], "product.shop");
    assert_eq!(services["services"][0]["workloads"][0], "product-v2.shop");
    let signals = get_json(debug, "/api/services/product.shop/signals")
        .await
        .expect("signals");
    let points = signals["points"].as_array().unwrap();
    assert!(
        points.iter().any(|p| p["rps"].as_f64() > Some(0.0)),
        "{signals:#}"
    );
    assert_eq!(
        get(debug, "/api/services/nope.shop/signals")
            .await
            .unwrap()
            .0,
        404
    );

    // Proxies: both, with their admin address and a successful scrape.
    let proxies = get_json(debug, "/api/proxies").await.expect("proxies");
    let list = proxies.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let p = list.iter().find(|p| p["id"] == "order-0.shop").unwrap();
    assert_eq!(p["admin_address"], order_admin.addr.to_string());
    assert_eq!(p["scrape"]["ok"], true, "{p}");
    assert_eq!(p["identity"], "spiffe://cluster.local/ns/shop/sa/default");

    // Config: the broken route is rejected with its reason.
    let config = get_json(debug, "/api/config").await.expect("config");
    let broken = config["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "broken")
        .expect("the broken route is listed");
    assert_eq!(broken["status"], "rejected");
    assert!(
        broken["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("regex"),
        "{broken}"
    );

    // Traces: two spans of one trace in, the trace back with its waterfall.
    let trace_id = "463ac35c9f6413ad48485a3953bb6124";
    let spans = format!(
        "[{{\"traceId\":\"{trace_id}\",\"id\":\"a2fb4a1d1a96d312\",\"parentId\":\"0020000000000001\",\
          \"name\":\"product.shop.svc.cluster.local:3001/*\",\"kind\":\"SERVER\",\
          \"timestamp\":1700000000001000,\"duration\":7000,\
          \"localEndpoint\":{{\"serviceName\":\"product.shop\",\"ipv4\":\"127.0.0.2\",\"port\":3001}},\
          \"tags\":{{\"http.status_code\":\"200\",\"http.method\":\"GET\"}}}},\
         {{\"traceId\":\"{trace_id}\",\"id\":\"0020000000000001\",\
          \"name\":\"product.shop.svc.cluster.local:3001/*\",\"kind\":\"CLIENT\",\
          \"timestamp\":1700000000000000,\"duration\":9000,\
          \"localEndpoint\":{{\"serviceName\":\"order.shop\"}},\
          \"tags\":{{\"http.status_code\":\"503\",\"response_flags\":\"UF\",\"error\":\"true\"}}}}]"
    );
    let posted = request(
        debug,
        "POST",
        "/api/v2/spans",
        Some("application/json"),
        spans.into_bytes(),
    )
    .await
    .expect("post spans");
    assert_eq!(posted.0, 202, "{}", posted.1);
    let bad = request(
        debug,
        "POST",
        "/api/v2/spans",
        Some("application/json"),
        b"[{}]".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(bad.0, 400);
    let proto = request(
        debug,
        "POST",
        "/api/v2/spans",
        Some("application/x-protobuf"),
        vec![1],
    )
    .await
    .unwrap();
    assert_eq!(proto.0, 415);
    let traces = get_json(debug, "/api/traces").await.expect("traces");
    assert_eq!(traces["stored"], 1);
    let t = &traces["traces"][0];
    assert_eq!(t["trace_id"], trace_id);
    assert_eq!(
        (t["spans"].as_u64(), t["errors"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(t["service"], "order.shop");
    assert_eq!(t["duration_us"], 9000);
    let one = get_json(debug, &format!("/api/traces/{trace_id}"))
        .await
        .expect("trace");
    let order_of: Vec<(&str, u64)> = one["span_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(order_of, [("0020000000000001", 0), ("a2fb4a1d1a96d312", 1)]);
    assert_eq!(
        get(debug, "/api/traces/0000000000000001").await.unwrap().0,
        404
    );

    // The control plane's metrics: every push was answered.
    let last = std::sync::Mutex::new(String::new());
    let answered = until(DEADLINE, || async {
        let Some((200, text)) = get(debug, "/metrics").await else {
            return false;
        };
        let pushed = (order.pushes() + product.pushes()) as f64;
        let ok = pushed >= 2.0
            && metric(&text, "weft_control_pushes_total") == Some(pushed)
            && metric(&text, "weft_control_acks_total") == Some(pushed);
        *last.lock().unwrap() = format!("fakes got {pushed} pushes; metrics:\n{text}");
        ok
    })
    .await;
    assert!(answered, "{}", last.lock().unwrap());
    let (_, text) = get(debug, "/metrics").await.unwrap();
    assert_eq!(
        metric(&text, "weft_control_proxies_connected"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "weft_control_nacks_total"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "weft_control_config_objects{status=\"rejected\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "weft_control_config_objects{status=\"accepted\"}"),
        Some(2.0),
        "{text}"
    );
    assert!(
        metric(&text, "weft_control_push_duration_seconds_count") >= Some(2.0),
        "{text}"
    );

    // A proxy that goes away: one connected, its disconnect counted by reason.
    drop(order);
    eventually("the disconnect is counted", DEADLINE, || async {
        let Some((_, text)) = get(debug, "/metrics").await else {
            return false;
        };
        metric(&text, "weft_control_proxies_connected") == Some(1.0)
            && text
                .lines()
                .any(|l| l.starts_with("weft_control_disconnects_total{reason="))
    })
    .await;

    // The page and its assets come from the binary.
    let (status, page) = get(debug, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("<svg id=\"graph\""), "{page}");
    assert!(
        get(debug, "/assets/app.js")
            .await
            .unwrap()
            .1
            .contains("data-mtls")
    );
    assert_eq!(get(debug, "/dashboard").await.unwrap().1, page);
    drop(product);
}
