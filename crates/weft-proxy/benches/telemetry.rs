//! Telemetry microbenchmarks: what the Istio metrics cost one request.
//!
//! - `istio_metrics/http_request`: one finished request recorded into an existing series
//!   (the 25 labels derived, the series found, `istio_requests_total` and the three
//!   histograms updated): the per-request cost on the request path;
//! - `istio_metrics/http_labels`: only the label derivation;
//! - `istio_metrics/http_request_tag_override`: with a `tagOverrides` UPSERT of
//!   `request_host` (a CEL expression evaluated, the label set built per request);
//! - `istio_metrics/tcp_close`: a TCP connection's close (closed count and bytes);
//! - `istio_metrics/scrape_1000_series`: `/stats/prometheus` encoding 1000 request series.
//!
//! Run: `cargo bench -p weft-proxy --bench telemetry` (add `-- --quick` for a short run).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method, Version};
use weft_api::{
    Attribute, Direction, Expr, IstioMetric, MetricOverride, MetricsConfig, ReporterMode,
    TagOverride,
};
use weft_proxy::ConnInfo;
use weft_proxy::telemetry::metrics::{IstioMetrics, encode, labels};
use weft_proxy::telemetry::{HttpRecord, Hub, PeerMeta, Sink, TcpEvent, TcpRecord, UpstreamInfo};

fn meta(workload: &str, app: &str) -> PeerMeta {
    let mut l = BTreeMap::new();
    l.insert("app".to_string(), app.to_string());
    l.insert("version".to_string(), "v1".to_string());
    let mut m = PeerMeta::from_labels(workload, "shop", &l);
    m.cluster = "Kubernetes".into();
    m
}

struct Exchange {
    conn: ConnInfo,
    local: PeerMeta,
    upstream: UpstreamInfo,
    method: Method,
    headers: HeaderMap,
}

impl Exchange {
    fn new() -> Exchange {
        let addr: SocketAddr = "10.0.0.1:40000".parse().expect("address");
        Exchange {
            conn: ConnInfo {
                listener: "outbound".into(),
                direction: Direction::Outbound,
                peer: addr,
                original_dst: addr,
                local: addr,
                sni: None,
                peer_identity: None,
                local_identity: Some("spiffe://cluster.local/ns/shop/sa/sleep".into()),
            },
            local: meta("sleep", "sleep"),
            upstream: UpstreamInfo {
                cluster: "outbound|3002||cart.shop.svc.cluster.local".into(),
                service: Some("cart.shop.svc.cluster.local".into()),
                identity: Some("spiffe://cluster.local/ns/shop/sa/cart".into()),
                peer: Some(Arc::new(meta("cart-v1", "cart"))),
                attempts: 1,
                ..UpstreamInfo::default()
            },
            method: Method::GET,
            headers: HeaderMap::new(),
        }
    }

    fn http(&self, code: u16) -> HttpRecord<'_> {
        HttpRecord {
            client_side: true,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: None,
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(3),
            response_start: Some(Duration::from_millis(2)),
            version: Version::HTTP_11,
            method: &self.method,
            path: "/items",
            authority: "cart.shop:3002",
            scheme: "http",
            grpc: false,
            request_headers: &self.headers,
            response_code: code,
            response_headers: None,
            response_trailers: None,
            grpc_status: None,
            flags: "",
            error_code: None,
            code_details: "via_upstream",
            request_bytes: 120,
            response_bytes: 2048,
            request_messages: 0,
            response_messages: 0,
            route_name: None,
            upstream: Some(&self.upstream),
            request_id: None,
            span: None,
        }
    }

    fn tcp_close(&self) -> TcpRecord<'_> {
        TcpRecord {
            event: TcpEvent::Closed,
            client_side: true,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: None,
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(1),
            received_bytes: 100,
            sent_bytes: 200,
            total_received: 100,
            total_sent: 200,
            flags: "",
            error_code: None,
            termination: None,
            route_name: None,
            upstream: Some(&self.upstream),
        }
    }
}

fn metrics(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let x = Exchange::new();
    let mut group = c.benchmark_group("istio_metrics");

    let hub = Arc::new(Hub::default());
    let sink = IstioMetrics::new(&MetricsConfig::default(), hub.clone()).expect("enabled");
    let rec = x.http(200);
    sink.http(&rec);
    group.bench_function("http_request", |b| b.iter(|| sink.http(black_box(&rec))));
    group.bench_function("http_labels", |b| {
        b.iter(|| black_box(labels::http_values(black_box(&rec))))
    });

    let mut config = MetricsConfig::default();
    config.overrides.push(MetricOverride {
        metric: IstioMetric::RequestCount,
        mode: ReporterMode::ClientAndServer,
        disabled: None,
        tags: vec![TagOverride {
            tag: "request_host".into(),
            value: Some(Expr::Attr(Attribute::RequestHost)),
        }],
    });
    let hub2 = Arc::new(Hub::default());
    let tagged = IstioMetrics::new(&config, hub2).expect("enabled");
    group.bench_function("http_request_tag_override", |b| {
        b.iter(|| tagged.http(black_box(&rec)))
    });

    let tcp = x.tcp_close();
    sink.tcp(&tcp);
    group.bench_function("tcp_close", |b| b.iter(|| sink.tcp(black_box(&tcp))));

    let hub3 = Arc::new(Hub::default());
    let many = IstioMetrics::new(&MetricsConfig::default(), hub3.clone()).expect("enabled");
    let mut paths = Vec::new();
    for i in 0..1000u32 {
        let mut e = Exchange::new();
        e.upstream.service = Some(format!("svc{i}.shop.svc.cluster.local").into());
        paths.push(e);
    }
    for e in &paths {
        many.http(&e.http(200));
    }
    group.bench_function("scrape_1000_series", |b| {
        b.iter(|| black_box(encode::render(hub3.clone(), Vec::new()).expect("encodes")))
    });
    group.finish();
}

criterion_group!(benches, metrics);
criterion_main!(benches);
