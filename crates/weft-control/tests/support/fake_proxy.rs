//! A fake proxy for the dashboard tests (shared with `crates/weft/tests/dashboard_browser.rs`
//! through `#[path]`): an admin port whose `/stats/prometheus` serves Istio's standard
//! metrics, counters moving by a fixed amount on every scrape (so rates are known), and a push stream whose hello
//! announces that port and that ACKs every push. Plus plain HTTP/1 GET and POST helpers.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use weft_api::pb::{self, discovery_client::DiscoveryClient};

/// Envoy's default histogram buckets (what Istio's proxies export), in milliseconds.
const BUCKETS: [&str; 19] = [
    "0.5", "1", "5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000",
    "30000", "60000", "300000", "600000", "1800000", "3600000",
];
/// Every request of the fake takes 7 ms: the (5, 10] bucket.
const LATENCY_BUCKET: usize = 3;

/// One edge of traffic as one side reports it; counts grow by `ok`/`failed` per scrape.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub reporter: &'static str,
    pub source: &'static str,
    pub source_version: &'static str,
    pub destination: &'static str,
    pub destination_version: &'static str,
    /// The destination service's name (namespace `shop`).
    pub service: &'static str,
    pub ok: u64,
    pub failed: u64,
    /// `connection_security_policy`: `mutual_tls`/`none` (destination), `unknown` (source).
    pub policy: &'static str,
}

impl Traffic {
    pub fn new(
        reporter: &'static str,
        (source, source_version): (&'static str, &'static str),
        (destination, destination_version): (&'static str, &'static str),
        service: &'static str,
        ok: u64,
    ) -> Traffic {
        Traffic {
            reporter,
            source,
            source_version,
            destination,
            destination_version,
            service,
            ok,
            failed: 0,
            policy: if reporter == "source" {
                "unknown"
            } else {
                "mutual_tls"
            },
        }
    }

    fn labels(&self, code: &str) -> String {
        let app = |w: &str| w.split("-v").next().unwrap_or(w).to_owned();
        format!(
            "reporter=\"{}\",source_workload=\"{}\",source_workload_namespace=\"shop\",\
             source_principal=\"spiffe://cluster.local/ns/shop/sa/{}\",source_app=\"{}\",\
             source_version=\"{}\",source_cluster=\"Kubernetes\",destination_workload=\"{}\",\
             destination_workload_namespace=\"shop\",destination_principal=\"unknown\",\
             destination_app=\"{}\",destination_version=\"{}\",\
             destination_service=\"{}.shop.svc.cluster.local\",destination_service_name=\"{}\",\
             destination_service_namespace=\"shop\",destination_cluster=\"Kubernetes\",\
             request_protocol=\"http\",response_code=\"{code}\",grpc_response_status=\"\",\
             response_flags=\"-\",connection_security_policy=\"{}\"",
            self.reporter,
            self.source,
            app(self.source),
            app(self.source),
            self.source_version,
            self.destination,
            app(self.destination),
            self.destination_version,
            self.service,
            self.service,
            self.policy
        )
    }
}

/// One edge's counters so far.
#[derive(Debug, Clone)]
struct Counted {
    traffic: Traffic,
    ok: u64,
    failed: u64,
}

impl Counted {
    fn same_series(&self, t: &Traffic) -> bool {
        let a = &self.traffic;
        (a.reporter, a.source, a.destination, a.service, a.policy)
            == (t.reporter, t.source, t.destination, t.service, t.policy)
    }
}

/// Istio metrics for these counters, as OpenMetrics or Prometheus 0.0.4 text.
fn render(counted: &[Counted], openmetrics: bool) -> String {
    let mut out = String::new();
    out.push_str(if openmetrics {
        "# HELP istio_requests Total requests.\n# TYPE istio_requests counter\n"
    } else {
        "# HELP istio_requests_total Total requests.\n# TYPE istio_requests_total counter\n"
    });
    for c in counted {
        let t = &c.traffic;
        out.push_str(&format!(
            "istio_requests_total{{{}}} {}\n",
            t.labels("200"),
            c.ok
        ));
        if c.failed > 0 {
            out.push_str(&format!(
                "istio_requests_total{{{}}} {}\n",
                t.labels("503"),
                c.failed
            ));
        }
    }
    out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
    for c in counted {
        let total = c.ok + c.failed;
        let l = c.traffic.labels("200");
        for (i, le) in BUCKETS.iter().enumerate() {
            let n = if i >= LATENCY_BUCKET { total } else { 0 };
            out.push_str(&format!(
                "istio_request_duration_milliseconds_bucket{{{l},le=\"{le}\"}} {n}\n"
            ));
        }
        out.push_str(&format!(
            "istio_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {total}\n\
             istio_request_duration_milliseconds_sum{{{l}}} {}\n\
             istio_request_duration_milliseconds_count{{{l}}} {total}\n",
            7 * total
        ));
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// The admin port: every `/stats/prometheus` adds each edge's `ok`/`failed` to its
/// counters, then renders them.
pub struct FakeAdmin {
    pub addr: SocketAddr,
    counted: Arc<Mutex<Vec<Counted>>>,
    scrapes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl FakeAdmin {
    pub async fn start(traffic: Vec<Traffic>, openmetrics: bool) -> FakeAdmin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let addr = listener.local_addr().expect("admin addr");
        let counted: Vec<Counted> = traffic
            .into_iter()
            .map(|traffic| Counted {
                traffic,
                ok: 0,
                failed: 0,
            })
            .collect();
        let counted = Arc::new(Mutex::new(counted));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (c, s) = (counted.clone(), scrapes.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (c, s) = (c.clone(), s.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let body = if req.uri().path() == "/stats/prometheus" {
                            let mut counted = c.lock().unwrap();
                            for e in counted.iter_mut() {
                                e.ok += e.traffic.ok;
                                e.failed += e.traffic.failed;
                            }
                            s.fetch_add(1, Ordering::SeqCst);
                            render(&counted, openmetrics)
                        } else {
                            String::new()
                        };
                        async move {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(body),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeAdmin {
            addr,
            counted,
            scrapes,
            task,
        }
    }

    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::SeqCst)
    }

    /// Change what each further scrape adds. An edge with the same labels keeps its
    /// counters; a new one starts from zero; a dropped one stops being served.
    pub fn set_traffic(&self, traffic: Vec<Traffic>) {
        let mut counted = self.counted.lock().unwrap();
        let next = traffic
            .into_iter()
            .map(|t| {
                let (ok, failed) = counted
                    .iter()
                    .find(|c| c.same_series(&t))
                    .map_or((0, 0), |c| (c.ok, c.failed));
                Counted {
                    traffic: t,
                    ok,
                    failed,
                }
            })
            .collect();
        *counted = next;
    }
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A push stream: a hello naming `proxy_id` and announcing `admin`, then an ACK (every
/// resource accepted) for every push.
pub struct FakeStream {
    pub pushes: Arc<AtomicU64>,
    task: JoinHandle<()>,
    _hello: mpsc::Sender<pb::ProxyMessage>,
}

impl FakeStream {
    pub async fn connect(control: SocketAddr, proxy_id: &str, admin: SocketAddr) -> FakeStream {
        let mut client = DiscoveryClient::connect(format!("http://{control}"))
            .await
            .expect("connect to the control plane");
        let (tx, rx) = mpsc::channel(16);
        tx.send(pb::ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Hello(pb::Hello {
                proxy_id: proxy_id.to_owned(),
                namespace: "shop".into(),
                admin_address: admin.to_string(),
                ..Default::default()
            })),
        })
        .await
        .expect("queue the hello");
        let mut responses = client
            .stream(ReceiverStream::new(rx))
            .await
            .expect("the control plane accepts the stream")
            .into_inner();
        let pushes = Arc::new(AtomicU64::new(0));
        let (acks, count) = (tx.clone(), pushes.clone());
        let task = tokio::spawn(async move {
            let mut accepted = Vec::new();
            while let Ok(Some(part)) = responses.message().await {
                accepted.extend(part.resources.iter().map(|r| pb::ResourceVersion {
                    key: r.key.clone(),
                    version: r.version.clone(),
                }));
                if part.more {
                    continue;
                }
                let ack = pb::Ack {
                    nonce: part.nonce.clone(),
                    accepted: std::mem::take(&mut accepted),
                    rejected: Vec::new(),
                };
                count.fetch_add(1, Ordering::SeqCst);
                let msg = pb::ProxyMessage {
                    kind: Some(pb::proxy_message::Kind::Ack(ack)),
                };
                if acks.send(msg).await.is_err() {
                    return;
                }
            }
        });
        FakeStream {
            pushes,
            task,
            _hello: tx,
        }
    }

    pub fn pushes(&self) -> u64 {
        self.pushes.load(Ordering::SeqCst)
    }
}

impl Drop for FakeStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `(status, body)` of an HTTP/1 request to `addr`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Option<(u16, String)> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string());
    if let Some(ct) = content_type {
        req = req.header(hyper::header::CONTENT_TYPE, ct);
    }
    let resp = send
        .send_request(req.body(Full::new(Bytes::from(body))).ok()?)
        .await
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    request(addr, "GET", path, None, Vec::new()).await
}

/// The body of a GET answered 200, as JSON.
pub async fn get_json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    match get(addr, path).await? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}
