//! Distributed tracing end to end (issue 6): `weft up` of the shop with the real shop
//! applications (which forward trace headers, as instrumented apps must), a Telemetry
//! resource sampling 100% and two collectors run by the test on loopback: an OTLP/gRPC
//! receiver (the collector's TraceService built on OpenTelemetry's own protobuf crate,
//! `opentelemetry-proto`) and a Zipkin v2 JSON receiver.
//!
//! One order placed at the gateway must come back as one trace whose spans link up hop by
//! hop: gateway (client) → order (server) → order (client) → cart (server) → cart (client)
//! → product (server), every parent id naming the span before it. Then the Telemetry is
//! switched live to the Zipkin provider and the same chain must arrive as Zipkin JSON.

#[path = "shop_e2e/checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "shop_e2e/explicit.rs"]
mod explicit;
#[allow(dead_code)]
#[path = "shop_e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "shop_e2e/http.rs"]
mod http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
// OpenTelemetry's own definitions (not weft's copy): what any OTLP collector decodes.
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use weft_testkit::wait::until;

use explicit::Explicit;
use harness::Up;

const DEADLINE: Duration = Duration::from_secs(60);

/// One span as both collectors report it.
#[derive(Debug, Clone, PartialEq)]
struct Span {
    trace_id: String,
    id: String,
    parent: Option<String>,
    /// `CLIENT` / `SERVER`.
    kind: String,
    /// `istio.canonical_service` tag: which workload's proxy made it.
    service: String,
    tags: BTreeMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone)]
struct OtlpReceiver(Spans);

#[tonic::async_trait]
impl TraceService for OtlpReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = Vec::new();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    let tags: BTreeMap<String, String> = s
                        .attributes
                        .iter()
                        .filter_map(|kv| {
                            let v = kv.value.as_ref()?.value.as_ref()?;
                            let text = match v {
                                V::StringValue(s) => s.clone(),
                                V::IntValue(i) => i.to_string(),
                                V::BoolValue(b) => b.to_string(),
                                V::DoubleValue(d) => d.to_string(),
                                _ => return None,
                            };
                            Some((kv.key.clone(), text))
                        })
                        .collect();
                    let kind = match SpanKind::try_from(s.kind) {
                        Ok(SpanKind::Client) => "CLIENT",
                        Ok(SpanKind::Server) => "SERVER",
                        _ => "OTHER",
                    };
                    got.push(Span {
                        trace_id: hex(&s.trace_id),
                        id: hex(&s.span_id),
                        parent: (!s.parent_span_id.is_empty()).then(|| hex(&s.parent_span_id)),
                        kind: kind.to_string(),
                        service: tags
                            .get("istio.canonical_service")
                            .cloned()
                            .unwrap_or_default(),
                        tags,
                    });
                }
            }
        }
        self.0.lock().expect("spans").extend(got);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn start_otlp() -> (SocketAddr, Spans) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let spans = Spans::default();
    let service = TraceServiceServer::new(OtlpReceiver(spans.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, spans)
}

/// A Zipkin collector: `POST /api/v2/spans` with a JSON array of v2 spans.
async fn start_zipkin() -> (SocketAddr, Spans) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let spans = Spans::default();
    let sink = spans.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let sink = sink.clone();
                    async move {
                        let ok = req.uri().path() == "/api/v2/spans";
                        let body = req.into_body().collect().await?.to_bytes();
                        if ok && let Ok(Value::Array(list)) = serde_json::from_slice(&body) {
                            let mut got: Vec<Span> = list.iter().filter_map(zipkin_span).collect();
                            sink.lock().expect("spans").append(&mut got);
                        }
                        let status = if ok { 202 } else { 404 };
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, spans)
}

fn zipkin_span(v: &Value) -> Option<Span> {
    let tags: BTreeMap<String, String> = v["tags"]
        .as_object()
        .map(|t| {
            t.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Some(Span {
        trace_id: v["traceId"].as_str()?.to_string(),
        id: v["id"].as_str()?.to_string(),
        parent: v["parentId"].as_str().map(str::to_string),
        kind: v["kind"].as_str().unwrap_or("").to_string(),
        service: tags
            .get("istio.canonical_service")
            .cloned()
            .unwrap_or_default(),
        tags,
    })
}

/// The mesh config naming both collectors, and a root-namespace Telemetry tracing every
/// request with `provider`.
fn telemetry_yaml(otlp: SocketAddr, zipkin: SocketAddr, provider: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\n\
         data:\n  mesh: |\n    extensionProviders:\n    \
         - name: otel\n      opentelemetry: {{service: {}, port: {}}}\n    \
         - name: zipkin\n      zipkin: {{service: {}, port: {}}}\n\
         ---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\n\
         metadata: {{name: mesh-default, namespace: istio-system}}\n\
         spec:\n  tracing:\n  - providers: [{{name: {provider}}}]\n    randomSamplingPercentage: 100\n",
        otlp.ip(),
        otlp.port(),
        zipkin.ip(),
        zipkin.port()
    )
}

/// Places orders until `spans` hold one complete order trace; returns its spans.
async fn order_trace(m: &harness::MeshUnderTest, spans: &Spans) -> Vec<Span> {
    let user = checks::new_user(m, "tracer").await;
    let found = Mutex::new(Vec::new());
    let complete = until(DEADLINE, || async {
        // An order empties the cart: fill it again each time.
        checks::add_to_cart(m, user, 3).await;
        checks::place_order(m, user).await;
        let all = spans.lock().expect("spans").clone();
        match find_order_chain(&all) {
            Some(chain) => {
                *found.lock().expect("found") = chain;
                true
            }
            None => false,
        }
    })
    .await;
    assert!(
        complete,
        "no complete order trace among:\n{}",
        summary(&spans.lock().expect("spans"))
    );
    found.into_inner().expect("found")
}

/// One line per span: trace, id, parent, kind, service, upstream cluster.
fn summary(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} <- {:16} {:6} {:22} {}\n",
                &s.trace_id[..8.min(s.trace_id.len())],
                s.id,
                s.parent.as_deref().unwrap_or("-"),
                s.kind,
                s.service,
                s.tags.get("upstream_cluster").map_or("-", String::as_str)
            )
        })
        .collect()
}

/// The chain gateway → order → cart → product in one trace, each span the child of the
/// previous one (searched depth first: order calls cart twice, only one of them reaches
/// product).
fn find_order_chain(all: &[Span]) -> Option<Vec<Span>> {
    // (service, kind, for client spans: the service the upstream cluster reaches)
    const WANT: [(&str, &str, &str); 6] = [
        ("istio-ingressgateway", "CLIENT", "order"),
        ("order", "SERVER", ""),
        ("order", "CLIENT", "cart"),
        ("cart", "SERVER", ""),
        ("cart", "CLIENT", "product"),
        ("product", "SERVER", ""),
    ];
    fn fits(s: &Span, step: usize) -> bool {
        let (service, kind, to) = WANT[step];
        s.service == service
            && s.kind == kind
            && (to.is_empty()
                || s.tags
                    .get("upstream_cluster")
                    .is_some_and(|c| c.contains(&format!("|{to}."))))
    }
    fn extend(all: &[Span], chain: &mut Vec<Span>) -> bool {
        if chain.len() == WANT.len() {
            return true;
        }
        let prev = chain.last().expect("non-empty").clone();
        let step = chain.len();
        for next in all.iter().filter(|s| {
            s.trace_id == prev.trace_id
                && s.parent.as_deref() == Some(prev.id.as_str())
                && fits(s, step)
        }) {
            chain.push(next.clone());
            if extend(all, chain) {
                return true;
            }
            chain.pop();
        }
        false
    }
    all.iter().filter(|s| fits(s, 0)).find_map(|root| {
        let mut chain = vec![root.clone()];
        extend(all, &mut chain).then_some(chain)
    })
}

fn assert_chain(chain: &[Span], collector: &str) {
    let trace = &chain[0].trace_id;
    assert_eq!(trace.len(), 32, "{collector}: trace id {trace}");
    for s in chain {
        assert_eq!(&s.trace_id, trace, "{collector}: {chain:#?}");
        assert!(s.tags.contains_key("http.method"), "{collector}: {s:?}");
        assert!(
            s.tags.contains_key("http.status_code"),
            "{collector}: {s:?}"
        );
        assert!(
            s.tags.contains_key("guid:x-request-id"),
            "{collector}: {s:?}"
        );
    }
    let gateway = &chain[0];
    assert_eq!(
        gateway.parent, None,
        "{collector}: the gateway starts the trace"
    );
    assert_eq!(
        gateway.tags["http.method"], "POST",
        "{collector}: {gateway:?}"
    );
    assert_eq!(
        gateway.tags["http.status_code"], "201",
        "{collector}: {gateway:?}"
    );
    // The order service's own hop carries the request id the gateway gave the request.
    assert_eq!(
        chain[1].tags["guid:x-request-id"], gateway.tags["guid:x-request-id"],
        "{collector}: {chain:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_trace_links_every_hop_over_otlp_and_zipkin() {
    harness::require_shop_binaries();
    let (otlp, otlp_spans) = start_otlp().await;
    let (zipkin, zipkin_spans) = start_zipkin().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("shop");
    harness::copy_shop(&dir);
    std::fs::write(
        dir.join("mesh/telemetry.yaml"),
        telemetry_yaml(otlp, zipkin, "otel"),
    )
    .expect("write telemetry");
    let up = Up::start(
        &Explicit::new(),
        &dir,
        &tmp.path().join("run"),
        &tmp.path().join("up.out"),
    )
    .await;
    let m = &up.mesh;

    let chain = order_trace(m, &otlp_spans).await;
    assert_chain(&chain, "otlp");
    assert!(
        zipkin_spans.lock().expect("spans").is_empty(),
        "zipkin got spans while otel was the provider"
    );

    // Switch the provider live: the same chain arrives as Zipkin JSON.
    m.write(
        "mesh/telemetry.yaml",
        &telemetry_yaml(otlp, zipkin, "zipkin"),
    );
    let chain = order_trace(m, &zipkin_spans).await;
    assert_chain(&chain, "zipkin");
    up.down();
}
