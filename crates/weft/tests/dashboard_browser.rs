//! Headless Chromium (the Debian package) loads the dashboard of a running mesh while
//! traffic flows: the rendered DOM has the expected graph edges (as SVG elements with
//! data attributes), recent traces and a rejected config object with its reason.
//!
//! The main test runs `weft up` on a copy of examples/shop (explicit capture, the real
//! shop applications and proxies), keeps orders and product listings flowing through the
//! gateway, routes every proxy's spans to the dashboard's Zipkin collector, writes an
//! invalid VirtualService into the watched directory and saves a screenshot to
//! `target/dashboard.png`. A second test, on fake proxies, covers what the shop cannot
//! show (its namespace is STRICT): a plaintext edge.
//!
//! Needs the shop's binaries next to `weft` (`cargo build -p weft -p weft-proxy -p
//! weft-shop`) and Chromium (with `CI=true` a missing browser fails the test).

#[path = "shop_e2e/checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "shop_e2e/explicit.rs"]
mod explicit;
#[path = "dashboard_browser/fake_mesh.rs"]
mod fake_mesh;
#[path = "../../weft-control/tests/support/fake_proxy.rs"]
mod fake_proxy;
#[allow(dead_code)]
#[path = "shop_e2e/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "shop_e2e/http.rs"]
mod http;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use weft_testkit::wait::until;

use explicit::Explicit;
use harness::{MeshUnderTest, Up};
use http::Req;

const CHROMIUM: &str = "/usr/bin/chromium";
const DEADLINE: Duration = Duration::from_secs(60);

/// A dashboard and what it must show.
pub struct Expect {
    pub debug: SocketAddr,
    /// `(source, destination, mtls)` of the edges that must carry traffic, node ids as
    /// the graph names them.
    pub edges: Vec<(&'static str, &'static str, &'static str)>,
    /// Every edge the page may draw (traffic that comes and goes at random).
    pub allowed: Vec<(&'static str, &'static str, &'static str)>,
    /// `(namespace/name, status, a word of its reason)` of the rejected object.
    pub rejected: (&'static str, &'static str, &'static str),
    /// At least this many spans in the selected trace's waterfall.
    pub spans: usize,
    /// Some listed trace crosses every one of these services.
    pub trace_services: Vec<&'static str>,
}

/// Rejected by validation: the regex does not compile.
pub const BAD_ROUTE: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
    metadata: {name: broken, namespace: shop}\nspec:\n  hosts: [product]\n  http:\n  \
    - match: [{uri: {regex: '('}}]\n    route:\n    - destination: {host: product}\n";

const GATEWAY: &str = "istio-ingressgateway.istio-system";

/// The shop's call graph: the gateway calls every service (product v2 for VIP users),
/// order calls user and cart, cart looks products up (10% of them on v2, the canary).
fn shop_expect(debug: SocketAddr) -> Expect {
    let mtls = "mutual_tls";
    let edges = vec![
        (GATEWAY, "order.shop", mtls),
        (GATEWAY, "user.shop", mtls),
        (GATEWAY, "cart.shop", mtls),
        (GATEWAY, "product-v1.shop", mtls),
        (GATEWAY, "product-v2.shop", mtls),
        ("order.shop", "user.shop", mtls),
        ("order.shop", "cart.shop", mtls),
        ("cart.shop", "product-v1.shop", mtls),
    ];
    let mut allowed = edges.clone();
    allowed.push(("cart.shop", "product-v2.shop", mtls));
    Expect {
        debug,
        edges,
        allowed,
        // `weft up` holds the invalid file back (the previous config stays in force) and
        // hands its diagnostics to the control plane, whose status lists the object as
        // `error` with the validation message.
        rejected: ("shop/broken", "rejected", "regex"),
        // The newest trace may still be missing spans a proxy has not exported yet.
        spans: 1,
        trace_services: vec![
            GATEWAY,
            "order.shop",
            "user.shop",
            "cart.shop",
            "product.shop",
        ],
    }
}

/// Every proxy sends every request's spans to the dashboard's Zipkin collector.
fn telemetry_yaml(debug: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\n\
         data:\n  mesh: |\n    extensionProviders:\n    \
         - name: dashboard\n      zipkin: {{service: {}, port: {}}}\n\
         ---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\n\
         metadata: {{name: mesh-default, namespace: istio-system}}\n\
         spec:\n  tracing:\n  - providers: [{{name: dashboard}}]\n    randomSamplingPercentage: 100\n",
        debug.ip(),
        debug.port()
    )
}

/// The load never runs longer than this many rounds (one every [`ROUND`]).
const MAX_ROUNDS: usize = 1500;
const ROUND: Duration = Duration::from_millis(100);

/// Users sign up, fill their carts and order; product listings, some as VIP users. Runs
/// until `stop` (or [`MAX_ROUNDS`]); returns the rounds done.
async fn load(m: &MeshUnderTest, stop: &AtomicBool) -> usize {
    let mut tick = tokio::time::interval(ROUND);
    // A slow round delays the next one instead of bunching the missed ones up.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds = 0;
    while rounds < MAX_ROUNDS && !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let user = checks::new_user(m, &format!("browser{rounds}")).await;
        checks::add_to_cart(m, user, 1 + (rounds % 6) as i64).await;
        checks::place_order(m, user).await;
        let list = m.gateway(Req::get("", "/products")).await;
        assert_eq!(list.status, 200, "GET /products: {}", list.describe());
        let vip = m
            .gateway(Req::get("", "/products").header("user-type", "vip"))
            .await;
        assert_eq!(vip.status, 200, "GET /products (vip): {}", vip.describe());
        rounds += 1;
    }
    rounds
}

async fn get_json(addr: SocketAddr, path: &str) -> Option<Value> {
    let resp = http::send(addr, &Req::get(&addr.to_string(), path), false)
        .await
        .ok()?;
    (resp.status == 200).then(|| resp.json())
}

/// Wait until the API has what the page must draw: traffic with its mTLS state on every
/// expected edge, a trace across the expected services and the rejected object.
async fn wait_for_data(x: &Expect) {
    let last = Mutex::new(Vec::new());
    let ok = until(DEADLINE, || async {
        let graph = get_json(x.debug, "/api/graph?window=10").await;
        let traces = get_json(x.debug, "/api/traces?limit=50").await;
        let config = get_json(x.debug, "/api/config").await;
        let (Some(graph), Some(traces), Some(config)) = (graph, traces, config) else {
            return false;
        };
        let edges = graph["edges"].as_array().cloned().unwrap_or_default();
        let has_edges = x.edges.iter().all(|(s, d, mtls)| {
            edges.iter().any(|e| {
                e["source"] == *s
                    && e["destination"] == *d
                    && e["mtls"] == *mtls
                    && e["rps"].as_f64() > Some(0.0)
            })
        });
        let has_trace = traces["traces"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                x.trace_services.iter().all(|s| {
                    t["services"]
                        .as_array()
                        .is_some_and(|l| l.contains(&(*s).into()))
                })
            })
        });
        let (name, status, word) = x.rejected;
        let has_rejected = config["objects"].as_array().is_some_and(|os| {
            os.iter().any(|o| {
                format!(
                    "{}/{}",
                    o["namespace"].as_str().unwrap_or(""),
                    o["name"].as_str().unwrap_or("")
                ) == name
                    && o["status"] == status
                    && o["errors"].to_string().contains(word)
            })
        });
        *last.lock().unwrap() = vec![graph, traces, config];
        has_edges && has_trace && has_rejected
    })
    .await;
    assert!(
        ok,
        "the API never showed what the page must draw: {:#?}",
        last.lock().unwrap()
    );
}

/// Chromium, or why not: with `CI=true` a missing browser fails the test.
fn chromium() -> Option<&'static str> {
    if Path::new(CHROMIUM).exists() {
        return Some(CHROMIUM);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{CHROMIUM} is missing; CI=true, so this test must run (apt-get install chromium)"
    );
    eprintln!("SKIPPED dashboard_browser: {CHROMIUM} is missing (apt-get install chromium)");
    None
}

async fn run_chromium(browser: &str, profile: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), out)
        .await
        .expect("chromium finishes within 90 s")
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The attributes of every start tag `<name ...>` in `html` whose class contains `class`,
/// with what follows up to the first `</name>` (right for elements that do not nest).
fn elements(html: &str, name: &str, class: &str) -> Vec<(BTreeMap<String, String>, String)> {
    let (open, close) = (format!("<{name} "), format!("</{name}>"));
    html.match_indices(&open)
        .filter_map(|(at, _)| {
            let rest = &html[at + open.len()..];
            let end = rest.find('>')?;
            let attrs = attributes(&rest[..end]);
            let inner = &rest[end + 1..];
            let inner = &inner[..inner.find(&close).unwrap_or(inner.len())];
            attrs
                .get("class")
                .is_some_and(|c| c.split(' ').any(|c| c == class))
                .then(|| (attrs, inner.to_owned()))
        })
        .collect()
}

/// `key="value"` pairs of a serialized start tag (Chromium always quotes with `"` and
/// escapes `"` inside values).
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let key = rest[..eq].trim().to_owned();
        let after = &rest[eq + 2..];
        let Some(end) = after.find('"') else { break };
        out.insert(key, after[..end].replace("&amp;", "&"));
        rest = &after[end + 1..];
    }
    out
}

/// Load the page in Chromium and check its DOM against `x`; the DOM.
async fn check_page(browser: &str, profile: &Path, x: &Expect) -> String {
    let url = format!("http://{}/", x.debug);
    let dom = run_chromium(
        browser,
        profile,
        &["--virtual-time-budget=10000", "--dump-dom", &url],
    )
    .await;
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page never loaded its data:\n{dom}"
    );
    let edges: Vec<_> = elements(&dom, "g", "edge")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    for (source, destination, mtls) in &x.edges {
        let e = edges
            .iter()
            .find(|e| e["data-source"] == *source && e["data-destination"] == *destination)
            .unwrap_or_else(|| panic!("no edge {source} -> {destination} in {edges:#?}"));
        assert_eq!(e["data-mtls"], *mtls, "{e:?}");
        let rps: f64 = e["data-rps"].parse().expect("data-rps is a number");
        assert!(rps > 0.0, "{e:?}");
        assert!(
            e.contains_key("data-error-rate") && e.contains_key("data-p99"),
            "{e:?}"
        );
    }
    for e in &edges {
        let drawn = (
            e["data-source"].as_str(),
            e["data-destination"].as_str(),
            e["data-mtls"].as_str(),
        );
        assert!(x.allowed.contains(&drawn), "unexpected edge {e:?}");
        // mTLS edges look locked, the others plain.
        let look = if drawn.2 == "mutual_tls" {
            "mtls"
        } else {
            "plain"
        };
        assert!(e["class"].split(' ').any(|c| c == look), "{e:?}");
    }
    // Each edge has a visible label with its numbers.
    assert!(dom.contains("rps · "), "no edge label in the DOM");

    // Recent traces are listed (one across the expected services) and the selected
    // one's waterfall drawn.
    let traces = elements(&dom, "tr", "trace");
    assert!(
        traces
            .iter()
            .any(|(_, row)| x.trace_services.iter().all(|s| row.contains(s))),
        "no trace across {:?} in {traces:#?}",
        x.trace_services
    );
    let spans = elements(&dom, "div", "span-row");
    assert!(
        spans.len() >= x.spans,
        "{} spans drawn: {spans:?}",
        spans.len()
    );

    let (name, status, word) = x.rejected;
    let rows = elements(&dom, "tr", "config-row");
    let (_, row) = rows
        .iter()
        .find(|(a, _)| a["data-name"] == name && a["data-status"] == status)
        .unwrap_or_else(|| panic!("no {status} row for {name} in {rows:#?}"));
    assert!(
        row.contains(&format!("<span class=\"badge {status}\">{status}</span>")),
        "{row}"
    );
    let reason = &row[row.find("class=\"reason\">").expect("a reason cell")..];
    assert!(
        reason.contains(word),
        "the reason does not mention {word}: {row}"
    );
    dom
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// A 1400x1000 screenshot of the page at `target/dashboard.png`.
async fn screenshot(browser: &str, profile: &Path, debug: SocketAddr) {
    let shot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        browser,
        profile,
        &[
            "--virtual-time-budget=10000",
            "--window-size=1400,1000",
            &format!("--screenshot={}", shot.display()),
            &format!("http://{debug}/"),
        ],
    )
    .await;
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1400, 1000));
    // A blank or error page compresses to a few KiB; the dashboard does not.
    assert!(png.len() > 30_000, "screenshot only {} bytes", png.len());
    println!(
        "dashboard screenshot: {}",
        shot.canonicalize().unwrap_or(shot).display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_running_shop() {
    let Some(browser) = chromium() else { return };
    harness::require_shop_binaries();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("shop");
    harness::copy_shop(&dir);
    let (run, out) = (tmp.path().join("run"), tmp.path().join("up.out"));
    let up = Up::start(&Explicit::new(), &dir, &run, &out).await;
    let m = &up.mesh;
    let debug = m.debug();
    m.write("mesh/telemetry.yaml", &telemetry_yaml(debug));
    m.write("mesh/broken.yaml", BAD_ROUTE);
    let expect = shop_expect(debug);
    let profile = tempfile::tempdir().expect("browser profile");

    let stop = AtomicBool::new(false);
    let (rounds, ()) = tokio::join!(load(m, &stop), async {
        wait_for_data(&expect).await;
        check_page(browser, profile.path(), &expect).await;
        screenshot(browser, profile.path(), debug).await;
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        rounds < MAX_ROUNDS,
        "the load ran out before the page was checked"
    );
    // The orders kept succeeding: the invalid file changed nothing, as weft up says.
    let said = m.output();
    assert!(
        said.contains("mesh/broken.yaml rejected") && said.contains("previous config stays"),
        "{said}"
    );
    up.down();
}

/// A plaintext edge is drawn as such (`data-mtls="none"`, the `plain` look).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_a_plaintext_edge() {
    let Some(browser) = chromium() else { return };
    let (expect, _keep) = fake_mesh::start().await;
    wait_for_data(&expect).await;
    let profile = tempfile::tempdir().expect("browser profile");
    let dom = check_page(browser, profile.path(), &expect).await;
    let edges = elements(&dom, "g", "edge");
    assert_eq!(edges.len(), expect.edges.len(), "{edges:#?}");
}
