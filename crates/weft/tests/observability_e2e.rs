//! Observability end to end (issue 6), on `weft up` of the shop with the real shop
//! applications and real collectors:
//!
//! - a real Prometheus server (Debian's `prometheus`), started by the test on loopback,
//!   scrapes every proxy's `/stats/prometheus`; its HTTP API must return
//!   `istio_requests_total` with Istio's labels and exactly the requests the test sent,
//!   from both reporters (the gateway as client, product's sidecar as server);
//! - the access log: a root-namespace Telemetry turns on the built-in `envoy` provider, and
//!   the gateway proxy's stdout (its log file under the run directory) carries one line per
//!   request in Istio's default text format;
//! - traces: see `tracing_e2e.rs`.
//!
//! Needs the shop's binaries next to `weft` (`cargo build -p weft-shop`) and Prometheus
//! (`.ci/run` installs it; without it the test fails, it does not skip).

// Shared with the shop suite, which uses more of them.
#[path = "shop_e2e/explicit.rs"]
mod explicit;
#[allow(dead_code)]
#[path = "shop_e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "shop_e2e/http.rs"]
mod http;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use weft_testkit::wait::until;

use explicit::Explicit;
use harness::{MeshUnderTest, Up};
use http::Req;

const DEADLINE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A Prometheus server scraping `targets` every second; killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(targets: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n- job_name: weft-proxy\n  metrics_path: /stats/prometheus\n  \
             static_configs:\n  - targets: [{}]\n",
            list.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write config");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "Prometheus runs (Debian package `prometheus`; .ci/run installs it): \
                 the scrape test needs the real server",
            );
        let prom = Prometheus {
            child,
            addr,
            _dir: dir,
        };
        let ready = until(DEADLINE, || async {
            http::send(addr, &Req::get(&addr.to_string(), "/-/ready"), false)
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(ready, "prometheus did not become ready on {addr}");
        prom
    }

    /// The instant vector for `query` (the `data.result` array of the HTTP API).
    async fn query(&self, query: &str) -> Vec<Value> {
        let path = format!("/api/v1/query?query={}", percent_encode(query));
        let Ok(resp) = http::send(self.addr, &Req::get(&self.addr.to_string(), &path), false).await
        else {
            return Vec::new();
        };
        let body = resp.json();
        assert_eq!(body["status"], "success", "query {query}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every target's scrape health (`up`), by instance.
    async fn targets_up(&self) -> usize {
        self.query("up == 1").await.len()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The value of a one-sample result.
fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Access logs for every proxy, Istio's default format on stdout.
const ACCESS_LOG: &str = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n\
    metadata: {name: mesh-default, namespace: istio-system}\n\
    spec:\n  accessLogging:\n  - providers: [{name: envoy}]\n";

async fn start_shop(tmp: &Path) -> Up {
    harness::require_shop_binaries();
    let dir = tmp.join("shop");
    harness::copy_shop(&dir);
    std::fs::write(dir.join("mesh/telemetry.yaml"), ACCESS_LOG).expect("write telemetry");
    Up::start(
        &Explicit::new(),
        &dir,
        &tmp.join("run"),
        &tmp.join("up.out"),
    )
    .await
}

/// The admin address of every proxy `weft up` runs (sidecars and the gateway).
fn proxy_admins(m: &MeshUnderTest) -> Vec<SocketAddr> {
    m.proxied_replicas().iter().map(|r| m.admin(r)).collect()
}

const SENT: usize = 25;

/// Both reporters' series for the gateway → product-v2 hop, and nothing else from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_istio_metrics_from_the_mesh() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let up = start_shop(tmp.path()).await;
    let m = &up.mesh;
    let admins = proxy_admins(m);
    assert!(
        admins.len() >= 6,
        "expected the gateway and five sidecars, got {admins:?} in {}",
        m.state()
    );
    let prom = Prometheus::start(&admins).await;
    let all_up = until(DEADLINE, || async {
        prom.targets_up().await == admins.len()
    })
    .await;
    assert!(
        all_up,
        "not every proxy is scraped: {:?}",
        prom.query("up").await
    );

    for _ in 0..SENT {
        // VIPs always get product v2 (the gateway splits everyone else 90/10).
        let resp = m
            .gateway(Req::get("", "/products").header("user-type", "vip"))
            .await;
        assert_eq!(resp.status, 200, "{}", resp.describe());
    }
    let missing = m.gateway(Req::get("", "/nowhere")).await;
    assert_eq!(missing.status, 404, "{}", missing.describe());

    // Server side: product-v2's sidecar saw SENT requests from the gateway over mTLS.
    let server = "istio_requests_total{reporter=\"destination\",destination_workload=\"product-v2\",\
                  source_workload=\"istio-ingressgateway\"}";
    let counted = until(DEADLINE, || async {
        let r = prom.query(server).await;
        r.len() == 1 && value(&r[0]) == SENT as f64
    })
    .await;
    assert!(
        counted,
        "{server}: {:?}\nall product-v2 series: {:#?}",
        prom.query(server).await,
        prom.query("istio_requests_total{destination_workload=\"product-v2\"}")
            .await
    );
    let series = &prom.query(server).await[0]["metric"];
    let expect = [
        ("__name__", "istio_requests_total"),
        ("job", "weft-proxy"),
        ("reporter", "destination"),
        ("source_workload", "istio-ingressgateway"),
        ("source_workload_namespace", "istio-system"),
        (
            "source_principal",
            "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway",
        ),
        ("source_app", "istio-ingressgateway"),
        ("destination_workload", "product-v2"),
        ("destination_workload_namespace", "shop"),
        (
            "destination_principal",
            "spiffe://cluster.local/ns/shop/sa/product",
        ),
        ("destination_app", "product"),
        ("destination_version", "v2"),
        ("destination_service", "product.shop.svc.cluster.local"),
        ("destination_service_name", "product"),
        ("destination_service_namespace", "shop"),
        ("destination_cluster", "Kubernetes"),
        ("request_protocol", "http"),
        ("response_code", "200"),
        ("grpc_response_status", ""),
        ("response_flags", "-"),
        ("connection_security_policy", "mutual_tls"),
    ];
    for (label, want) in expect {
        let got = series[label].as_str().unwrap_or("");
        assert_eq!(got, want, "label {label} of {series}");
    }

    // Client side: the gateway reported the same requests, with the source-side rules.
    let client = "istio_requests_total{reporter=\"source\",source_workload=\"istio-ingressgateway\",\
                  destination_workload=\"product-v2\"}";
    // The gateway may be scraped a moment after product's sidecar.
    let reported = until(DEADLINE, || async {
        let r = prom.query(client).await;
        r.len() == 1 && value(&r[0]) == SENT as f64
    })
    .await;
    let r = prom.query(client).await;
    assert!(reported, "{client}: {r:?}");
    assert_eq!(value(&r[0]), SENT as f64, "{client}: {r:?}");
    let series = &r[0]["metric"];
    assert_eq!(series["connection_security_policy"], "unknown", "{series}");
    assert_eq!(
        series["destination_principal"],
        "spiffe://cluster.local/ns/shop/sa/product"
    );
    assert_eq!(
        series["destination_service"],
        "product.shop.svc.cluster.local"
    );

    // The request no route took: 404 with Envoy's NR flag, destination unknown.
    let nr =
        "istio_requests_total{reporter=\"source\",response_code=\"404\",response_flags=\"NR\"}";
    let counted = until(DEADLINE, || async {
        let r = prom.query(nr).await;
        r.len() == 1 && value(&r[0]) == 1.0
    })
    .await;
    let r = prom.query(nr).await;
    assert!(counted, "{nr}: {r:?}");
    assert_eq!(r[0]["metric"]["destination_workload"], "unknown");

    // Histograms with Envoy's default buckets: the count matches, `le` runs to 3600000.
    let count = "sum(istio_request_duration_milliseconds_count{reporter=\"destination\",\
                 destination_workload=\"product-v2\",source_workload=\"istio-ingressgateway\"})";
    let r = prom.query(count).await;
    assert_eq!(r.len(), 1, "{count}: {r:?}");
    assert_eq!(value(&r[0]), SENT as f64);
    let buckets = "istio_request_duration_milliseconds_bucket{reporter=\"destination\",\
                   destination_workload=\"product-v2\",source_workload=\"istio-ingressgateway\"}";
    let mut les: Vec<f64> = prom
        .query(buckets)
        .await
        .iter()
        .filter_map(|s| s["metric"]["le"].as_str()?.parse().ok())
        .collect();
    les.sort_by(f64::total_cmp);
    let envoy = [
        0.5,
        1.0,
        5.0,
        10.0,
        25.0,
        50.0,
        100.0,
        250.0,
        500.0,
        1000.0,
        2500.0,
        5000.0,
        10000.0,
        30000.0,
        60000.0,
        300000.0,
        600000.0,
        1800000.0,
        3600000.0,
        f64::INFINITY,
    ];
    assert_eq!(les, envoy, "bucket bounds of {buckets}");
    let bytes = "sum(istio_response_bytes_count{reporter=\"destination\",destination_workload=\"product-v2\"})";
    let r = prom.query(bytes).await;
    assert!(
        r.len() == 1 && value(&r[0]) >= SENT as f64,
        "{bytes}: {r:?}"
    );
    drop(prom);

    // The access log: one line per request in Istio's default format (the gateway's
    // stdout goes to its log file).
    let log = m.run_dir.join("logs/istio-ingressgateway-0.proxy.log");
    let lines = until(DEADLINE, || async {
        access_lines(&log, "/products").len() >= SENT
    })
    .await;
    assert!(
        lines,
        "{} has {} access-log lines for /products",
        log.display(),
        access_lines(&log, "/products").len()
    );
    for line in access_lines(&log, "/products") {
        check_istio_format(&line);
    }
    let nr = access_lines(&log, "/nowhere");
    assert_eq!(nr.len(), 1, "{nr:?}");
    assert!(nr[0].contains("\" 404 NR "), "{}", nr[0]);
    up.down();
}

/// The access-log lines of `path` in a proxy log (its other lines are the proxy's own logs).
fn access_lines(log: &Path, path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with('[') && l.contains(&format!("\"GET {path} HTTP/1.1\"")))
        .map(str::to_string)
        .collect()
}

/// `[START_TIME] "GET /products HTTP/1.1" 200 - via_upstream - "-" 0 BYTES DURATION - "-"
/// "UA" "REQUEST-ID" "AUTHORITY" "UPSTREAM_HOST" outbound|3001|v2|product... LOCAL
/// DOWNSTREAM_LOCAL DOWNSTREAM_REMOTE - ROUTE`, field by field.
fn check_istio_format(line: &str) {
    let re = regex::Regex::new(concat!(
        r#"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /products HTTP/1\.1" 200 - via_upstream - "-" "#,
        r#"0 \d+ \d+ \S+ "-" "[^"]*" "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}" "[^"]+" "#,
        r#""127\.\d+\.\d+\.\d+:\d+" outbound\|3001\|v2\|product\.shop\.svc\.cluster\.local \S+ "#,
        r#"127\.\d+\.\d+\.\d+:80 127\.\d+\.\d+\.\d+:\d+ - products-vip$"#,
    ))
    .expect("regex");
    assert!(re.is_match(line), "not Istio's default format: {line}");
}
