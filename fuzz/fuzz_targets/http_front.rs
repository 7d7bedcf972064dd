//! The HTTP server in front of every HTTP listener reads raw bytes from clients. Whatever
//! they send, the connection must end (answered or closed) within a bounded time once the
//! client goes away, never panic, and never answer with an error the proxy did not explain
//! (`500` without `x-weft-error`, or a `503` without it).
//!
//! The bytes are one client's stream into `http::serve_connection` over an in-memory duplex;
//! the route table sends `/direct` to a direct response and everything else to a cluster with
//! no endpoints, so nothing leaves the process. The tokio clock is paused: timeouts fire as
//! soon as everything is idle, so a hang shows up as a failed assertion, not a slow run.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_api::{
    Cluster, ConnectionLimits, DirectResponse, Direction, Discovery, Forward, HttpChain, LbPolicy,
    PathMatch, ProxyConfig, Route, RouteAction, RouteMatch, RouteTable, UpstreamProtocol,
    VirtualHost, WeightedCluster,
};
use weft_proxy::runtime::Runtime;
use weft_proxy::{ConnInfo, RuntimeHandle};

/// How long (paused-clock time) the client waits for answers before it hangs up.
const CLIENT_PATIENCE: Duration = Duration::from_secs(30);
/// How long the server may take to finish after the client hung up.
const CLOSE_DEADLINE: Duration = Duration::from_secs(60);
const MAX_RESPONSE_BYTES: usize = 1 << 20;

struct Fixture {
    tokio: tokio::runtime::Runtime,
    rt: RuntimeHandle,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("tokio runtime");
        let runtime = Runtime::build(config(), None).expect("fuzz config builds");
        Fixture {
            tokio,
            rt: Arc::new(ArcSwap::from_pointee(runtime)),
        }
    })
}

fn config() -> ProxyConfig {
    let route = |name: &str, matches: Vec<RouteMatch>, action: RouteAction| Route {
        name: name.into(),
        origin: None,
        matches,
        action,
        request_headers: Default::default(),
        response_headers: Default::default(),
        fault: None,
        cors: None,
        rate_limit: None,
    };
    let direct = route(
        "direct",
        vec![RouteMatch {
            path: Some(PathMatch::Prefix {
                value: "/direct".into(),
                ignore_case: false,
            }),
            ..Default::default()
        }],
        RouteAction::DirectResponse(DirectResponse {
            status: 200,
            body: Some("direct\n".into()),
        }),
    );
    let forward = route(
        "empty",
        Vec::new(),
        RouteAction::Forward(Forward {
            clusters: vec![WeightedCluster {
                cluster: "empty".into(),
                weight: 100,
                ..Default::default()
            }],
            timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        }),
    );
    ProxyConfig {
        version: "fuzz".into(),
        route_tables: vec![RouteTable {
            name: "fuzz".into(),
            virtual_hosts: vec![VirtualHost {
                name: "any".into(),
                domains: vec!["*".into()],
                routes: vec![direct, forward],
                rate_limit: None,
            }],
            not_found: Default::default(),
        }],
        clusters: vec![Cluster {
            name: "empty".into(),
            service: None,
            policy_origin: None,
            discovery: Discovery::Static,
            endpoints: Vec::new(),
            lb: LbPolicy::RoundRobin,
            connect_timeout: Duration::from_secs(1),
            limits: ConnectionLimits::default(),
            max_requests_per_connection: 0,
            idle_timeout: None,
            tcp_keepalive: None,
            outlier_detection: None,
            protocol: UpstreamProtocol::Http1,
            tls: Default::default(),
        }],
        ..ProxyConfig::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    fx.tokio.block_on(run(data, fx.rt.clone()));
});

async fn run(data: &[u8], rt: RuntimeHandle) {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let addr = SocketAddr::from(([127, 0, 0, 1], 15001));
    let conn = ConnInfo {
        listener: Arc::from("fuzz"),
        direction: Direction::Outbound,
        peer: SocketAddr::from(([127, 0, 0, 1], 40000)),
        original_dst: addr,
        local: addr,
        sni: None,
        peer_identity: None,
        local_identity: None,
    };
    let chain = HttpChain {
        route_table: "fuzz".into(),
        http_proxy: true,
        ..HttpChain::default()
    };
    let (_drain_tx, drain) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(weft_proxy::http::serve_connection(
        server, chain, conn, rt, drain,
    ));

    // Write the request bytes while reading answers (a large input must not deadlock on a
    // full pipe), until the server closes or the client loses patience.
    let (mut rd, mut wr) = tokio::io::split(&mut client);
    let writer = async {
        let _ = wr.write_all(data).await;
        let _ = wr.flush().await;
    };
    let mut answer = Vec::new();
    let reader = async {
        let mut buf = [0u8; 8192];
        while answer.len() < MAX_RESPONSE_BYTES {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(CLIENT_PATIENCE, async { tokio::join!(writer, reader) }).await;
    drop(client);

    match tokio::time::timeout(CLOSE_DEADLINE, server).await {
        Ok(Ok(_)) => {}
        Ok(Err(join)) => panic!("serve_connection panicked: {join}"),
        Err(_) => panic!("connection still open {CLOSE_DEADLINE:?} after the client hung up"),
    }
    check_http1_answers(&answer);
}

/// HTTP/1 answers: every status line is well formed and every 500/503 names its reason.
/// (HTTP/2 answers are binary frames; the panic and hang checks cover them.)
fn check_http1_answers(answer: &[u8]) {
    if !answer.starts_with(b"HTTP/1.") {
        return;
    }
    let text = String::from_utf8_lossy(answer);
    for head in text.split("\r\n\r\n").filter(|h| h.starts_with("HTTP/1.")) {
        let status_line = head.lines().next().unwrap_or_default();
        let code = status_line
            .get(9..12)
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("malformed status line {status_line:?}"));
        assert!((100..600).contains(&code), "status {code} out of range");
        let explained = head.to_ascii_lowercase().contains("\r\nx-weft-error:");
        if code == 500 || code == 503 {
            assert!(explained, "{code} without x-weft-error:\n{head}");
        }
    }
}
