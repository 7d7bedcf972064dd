//! Span export to real loopback collectors: OTLP/gRPC (decoded with OpenTelemetry's own
//! protobuf crate), OTLP/HTTP and Zipkin JSON; a collector that never answers (the traffic
//! side drops and counts, never waits); a collector that is down (one retry, then the
//! batch is dropped and counted); exporters surviving config changes in the hub.

mod trace_support;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use weft_api::{Node, TraceProtocol, TracingConfig};
use weft_proxy::telemetry::trace::export::{Exporter, TraceCounters};
use weft_proxy::telemetry::trace::sampler::Sampler;
use weft_proxy::telemetry::trace::{ProxyTracer, collector_config};
use weft_proxy::telemetry::{Hub, Telemetry, Tracer};

use trace_support::{Collector, Exchange, GotSpan};

const WAIT: Duration = Duration::from_secs(10);

fn node(workload: &str) -> Node {
    Node {
        id: format!("{workload}-1.shop"),
        namespace: "shop".into(),
        workload: workload.into(),
        labels: [("app".to_string(), workload.to_string())].into(),
        trust_domain: "cluster.local".into(),
        ..Node::default()
    }
}

fn tracer(cfg: &TracingConfig, workload: &str, counters: Arc<TraceCounters>) -> ProxyTracer {
    let exporter = Exporter::new(cfg.provider.clone(), counters);
    ProxyTracer::new(cfg, &node(workload), Some(exporter), Sampler::new(100.0))
}

/// gateway (client span) -> product sidecar inbound (server span) -> product sidecar
/// outbound to cart (client span, failing with a proxy error), each hop reading the
/// headers the previous one wrote. Returns the three handles' span ids in hop order.
fn three_hops(gateway: &ProxyTracer, product: &ProxyTracer) -> Vec<String> {
    let mut headers = HeaderMap::new();
    headers.insert("user-agent", "it/1".parse().unwrap());
    let mut ids = Vec::new();
    let hops = [
        (gateway, true, "shop.example.com", 200, None),
        (product, false, "product.shop:9080", 200, None),
        (
            product,
            true,
            "cart.shop:3002",
            503,
            Some("upstream_connect_failure"),
        ),
    ];
    for (tracer, client_side, authority, status, error) in hops {
        let span = tracer.start(&mut headers, client_side).expect("sampled");
        ids.push(span.span_id_hex());
        let mut ex = Exchange::new(client_side, authority, status);
        ex.error_code = error;
        ex.request_id = headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        tracer.finish(span.clone(), &ex.record(Some(&span)));
    }
    ids
}

fn by_id<'a>(spans: &'a [GotSpan], id: &str) -> &'a GotSpan {
    spans
        .iter()
        .find(|s| s.span_id == id)
        .unwrap_or_else(|| panic!("span {id} not received: {spans:#?}"))
}

/// The three spans form one trace with the right links, kinds, names and tags.
fn assert_three_hop_trace(spans: &[GotSpan], ids: &[String], otlp: bool) {
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let (gw, inbound, outbound) = (
        by_id(spans, &ids[0]),
        by_id(spans, &ids[1]),
        by_id(spans, &ids[2]),
    );
    assert!(spans.iter().all(|s| s.trace_id == gw.trace_id));
    assert_eq!(gw.parent_id, None);
    assert_eq!(inbound.parent_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(outbound.parent_id.as_deref(), Some(ids[1].as_str()));
    assert_eq!(
        [
            gw.kind.as_str(),
            inbound.kind.as_str(),
            outbound.kind.as_str()
        ],
        ["CLIENT", "SERVER", "CLIENT"]
    );
    assert_eq!(gw.service, "gateway.istio-system");
    assert_eq!(inbound.service, "product.shop");
    assert_eq!(gw.name, "shop.example.com:3002/*");
    assert_eq!(outbound.name, "cart.shop:3002/*");
    // One x-request-id across the hops.
    let rid = gw.tag("guid:x-request-id").expect("request id tag");
    assert_eq!(rid.len(), 36);
    assert!(
        spans
            .iter()
            .all(|s| s.tag("guid:x-request-id") == Some(rid))
    );
    assert_eq!(gw.tag("http.status_code"), Some("200"));
    assert_eq!(gw.tag("user_agent"), Some("it/1"));
    assert_eq!(gw.tag("istio.canonical_service"), Some("gateway"));
    assert_eq!(inbound.tag("istio.canonical_service"), Some("product"));
    assert_eq!(gw.tag("error"), None);
    assert_eq!(outbound.tag("http.status_code"), Some("503"));
    assert_eq!(outbound.tag("error"), Some("true"));
    assert_eq!(
        outbound.tag("x-weft-error"),
        Some("upstream_connect_failure")
    );
    if otlp {
        assert!(outbound.status_error && !gw.status_error);
    }
    assert!(
        spans
            .iter()
            .all(|s| s.duration_us > 0 && s.start_us > 1_600_000_000_000_000)
    );
}

async fn export_three_hops(protocol: TraceProtocol, mut collector: Collector) {
    let counters = Arc::new(TraceCounters::default());
    let gw_cfg = collector_config(protocol, collector.addr, "gateway.istio-system");
    let product_cfg = collector_config(protocol, collector.addr, "product.shop");
    let gateway = tracer(&gw_cfg, "gateway", counters.clone());
    let product = tracer(&product_cfg, "product", counters.clone());
    let ids = three_hops(&gateway, &product);
    let spans = collector.take(3, WAIT).await;
    assert_three_hop_trace(&spans, &ids, protocol != TraceProtocol::ZipkinJson);
    let (path, ctype) = collector.requests.recv().await.unwrap();
    match protocol {
        TraceProtocol::OtlpGrpc => assert!(path.ends_with("TraceService/Export")),
        TraceProtocol::OtlpHttp => {
            assert_eq!(
                (path.as_str(), ctype.as_str()),
                ("/v1/traces", "application/x-protobuf")
            )
        }
        TraceProtocol::ZipkinJson => {
            assert_eq!(
                (path.as_str(), ctype.as_str()),
                ("/api/v2/spans", "application/json")
            )
        }
    }
    assert!(
        weft_testkit::wait::until(WAIT, || async { counters.spans_exported() == 3 }).await,
        "exported {}",
        counters.spans_exported()
    );
    assert_eq!(
        (counters.spans_dropped(), counters.export_failures()),
        (0, 0)
    );
}

#[tokio::test]
async fn otlp_grpc_three_hop_trace() {
    export_three_hops(
        TraceProtocol::OtlpGrpc,
        trace_support::otlp_grpc_collector().await,
    )
    .await;
}

#[tokio::test]
async fn otlp_http_three_hop_trace() {
    export_three_hops(
        TraceProtocol::OtlpHttp,
        trace_support::otlp_http_collector().await,
    )
    .await;
}

#[tokio::test]
async fn zipkin_three_hop_trace() {
    export_three_hops(
        TraceProtocol::ZipkinJson,
        trace_support::zipkin_collector().await,
    )
    .await;
}

#[tokio::test]
async fn batches_are_cut_at_max_batch() {
    let mut collector = trace_support::otlp_http_collector().await;
    let mut cfg = collector_config(TraceProtocol::OtlpHttp, collector.addr, "product.shop");
    cfg.provider.max_batch = 4;
    // Only full batches go out before this.
    cfg.provider.flush_interval = Duration::from_secs(3600);
    let t = tracer(&cfg, "product", Arc::new(TraceCounters::default()));
    for _ in 0..8 {
        let mut h = HeaderMap::new();
        let span = t.start(&mut h, true).unwrap();
        let ex = Exchange::new(true, "cart.shop:3002", 200);
        t.finish(span.clone(), &ex.record(Some(&span)));
    }
    let spans = collector.take(8, WAIT).await;
    assert_eq!(spans.len(), 8);
    // Two requests of four.
    assert!(collector.requests.recv().await.is_some());
    assert!(collector.requests.recv().await.is_some());
    assert!(collector.requests.try_recv().is_err());
}

#[tokio::test]
async fn a_hung_collector_never_blocks_traffic_and_drops_are_counted() {
    let silent = trace_support::silent_collector().await;
    let mut cfg = collector_config(TraceProtocol::OtlpHttp, silent.addr, "product.shop");
    cfg.provider.max_queued_spans = 4;
    cfg.provider.max_batch = 1;
    let counters = Arc::new(TraceCounters::default());
    let t = tracer(&cfg, "product", counters.clone());
    let finish_one = || {
        let mut h = HeaderMap::new();
        let span = t.start(&mut h, true).unwrap();
        let ex = Exchange::new(true, "cart.shop:3002", 200);
        t.finish(span.clone(), &ex.record(Some(&span)));
    };
    // The first span is taken off the queue and its request hangs at the collector.
    finish_one();
    let received = silent.received.clone();
    assert!(
        weft_testkit::wait::until(WAIT, || {
            let r = received.clone();
            async move { r.load(std::sync::atomic::Ordering::SeqCst) > 0 }
        })
        .await,
        "the exporter never reached the collector"
    );
    // The queue holds four; the other 96 are dropped, each `finish` returning at once.
    for _ in 0..100 {
        finish_one();
    }
    assert_eq!(counters.spans_dropped(), 96);
    assert_eq!(counters.spans_exported(), 0);
    assert_eq!(
        counters.export_failures(),
        0,
        "the first request is still waiting"
    );
}

#[tokio::test]
async fn a_down_collector_is_retried_once_then_the_batch_is_dropped() {
    // A port nothing listens on.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for protocol in [
        TraceProtocol::OtlpGrpc,
        TraceProtocol::OtlpHttp,
        TraceProtocol::ZipkinJson,
    ] {
        let mut cfg = collector_config(protocol, addr, "product.shop");
        cfg.provider.max_batch = 3;
        let counters = Arc::new(TraceCounters::default());
        let t = tracer(&cfg, "product", counters.clone());
        for _ in 0..3 {
            let mut h = HeaderMap::new();
            let span = t.start(&mut h, true).unwrap();
            let ex = Exchange::new(true, "cart.shop:3002", 200);
            t.finish(span.clone(), &ex.record(Some(&span)));
        }
        assert!(
            weft_testkit::wait::until(WAIT, || async { counters.spans_dropped() == 3 }).await,
            "{protocol:?}: dropped {}",
            counters.spans_dropped()
        );
        assert_eq!(
            counters.export_failures(),
            2,
            "{protocol:?}: one try, one retry"
        );
        assert_eq!(counters.spans_exported(), 0);
    }
}

#[tokio::test]
async fn the_hub_keeps_an_exporter_while_its_provider_is_unchanged() {
    let hub = Arc::new(Hub::default());
    let mut collector = trace_support::zipkin_collector().await;
    let mut n = node("product");
    n.telemetry.tracing = Some(collector_config(
        TraceProtocol::ZipkinJson,
        collector.addr,
        "product.shop",
    ));
    let first = Telemetry::build(&n, hub.clone());
    let a = hub
        .tracing
        .exporter(n.telemetry.tracing.as_ref().map(|c| &c.provider));
    // Same provider, other span settings: same exporter.
    n.telemetry.tracing.as_mut().unwrap().enable_istio_tags = false;
    let second = Telemetry::build(&n, hub.clone());
    let b = hub
        .tracing
        .exporter(n.telemetry.tracing.as_ref().map(|c| &c.provider));
    assert!(Arc::ptr_eq(a.as_ref().unwrap(), b.as_ref().unwrap()));
    drop(first);

    // The config's tracer sends through it.
    let t = second.tracer().expect("tracing configured");
    let mut h = HeaderMap::new();
    let span = t.start(&mut h, true).unwrap();
    let ex = Exchange::new(true, "cart.shop:3002", 200);
    t.finish(span.clone(), &ex.record(Some(&span)));
    let got = collector.take(1, WAIT).await;
    assert_eq!(got[0].span_id, span.span_id_hex());

    // Another provider: another exporter; tracing off: none.
    n.telemetry.tracing.as_mut().unwrap().provider.service_name = "other".into();
    let _third = Telemetry::build(&n, hub.clone());
    let c = hub
        .tracing
        .exporter(n.telemetry.tracing.as_ref().map(|c| &c.provider));
    assert!(!Arc::ptr_eq(a.as_ref().unwrap(), c.as_ref().unwrap()));
    n.telemetry.tracing = None;
    let off = Telemetry::build(&n, hub.clone());
    assert!(off.tracer().is_none());
    let counters = hub.tracing.counters().clone();
    assert!(weft_testkit::wait::until(WAIT, || async { counters.spans_exported() == 1 }).await);
}
