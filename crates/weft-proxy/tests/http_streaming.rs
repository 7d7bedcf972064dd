//! HTTP/2 end to end, streaming both ways, trailers, upgrades, 100-continue, drain,
//! mirrors, CORS, consistent hashing and reloads.

mod http_support;

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use http_support::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weft_api::*;
use weft_testkit::body::channel;
use weft_testkit::client::{TestClient, collect};
use weft_testkit::echo::EchoServer;
use weft_testkit::fixtures::*;

fn h2_cluster(name: &str, addr: std::net::SocketAddr) -> Cluster {
    let mut c = cluster(name, &[addr]);
    c.protocol = UpstreamProtocol::Http2;
    c
}

#[tokio::test]
async fn http2_streams_both_ways_with_trailers() {
    let echo = EchoServer::start("a").await.unwrap();
    let proxy = Proxy::start(
        simple_with(h2_cluster("svc", echo.addr)),
        http_chain("test"),
    )
    .await;
    let mut client = TestClient::h2(proxy.addr).await.unwrap();
    let (tx, body) = channel();
    let req = http::Request::builder()
        .method("POST")
        .uri("http://svc/pkg.Echo/Stream")
        .version(http::Version::HTTP_2)
        .header("x-echo-mode", "echo-body")
        .header("te", "trailers")
        .body(body.boxed())
        .unwrap();
    let resp = client.send_streaming(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    // Each message comes back before the next is sent: nothing is buffered to the end.
    for i in 0..3 {
        assert!(tx.data(format!("msg-{i}")).await);
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("echo arrives while the request is still open")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from(format!("msg-{i}")));
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    assert!(tx.trailers(trailers).await);
    drop(tx);
    let rest = body.collect().await.unwrap();
    assert_eq!(
        rest.trailers().unwrap()["grpc-status"],
        "0",
        "request trailers reach the upstream and response trailers come back"
    );
}

fn simple_with(c: Cluster) -> ProxyConfig {
    let name = c.name.clone();
    config(
        vec![table(
            "test",
            vec![vhost("v", &["*"], vec![route_to("default", &name)])],
        )],
        vec![c],
    )
}

#[tokio::test]
async fn http1_to_http2_upstream_with_streamed_response_and_trailers() {
    let echo = EchoServer::start("a").await.unwrap();
    let proxy = Proxy::start(
        simple_with(h2_cluster("svc", echo.addr)),
        http_chain("test"),
    )
    .await;
    let mut client = TestClient::h2(proxy.addr).await.unwrap();
    let resp = client
        .get(
            "svc",
            "/s",
            &[
                ("x-echo-stream-chunks", "50"),
                ("x-echo-trailers", "x-done=yes"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text().lines().count(), 50);
    assert_eq!(resp.trailers.unwrap()["x-done"], "yes");
    let mut h1 = TestClient::h1(proxy.addr).await.unwrap();
    let e = h1.get("svc", "/x", &[]).await.unwrap().echoed();
    assert_eq!(
        e.version, "HTTP/2.0",
        "the cluster protocol decides the upstream protocol"
    );
}

#[tokio::test]
async fn websocket_upgrade_is_proxied_both_ways() {
    let echo = EchoServer::start("a").await.unwrap();
    let proxy = Proxy::start(simple(&[echo.addr]), http_chain("test")).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for msg in [&b"hello"[..], b"world"] {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg);
    }
}

async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n == 1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body() {
    let echo = EchoServer::start("a").await.unwrap();
    let proxy = Proxy::start(simple(&[echo.addr]), http_chain("test")).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(
        b"POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 100"), "{head}");
    s.write_all(b"hello").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.unwrap();
    let e: weft_testkit::echo::Echoed = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.body, "hello");
    assert!(
        !e.headers.contains_key("expect"),
        "the proxy handled Expect itself"
    );
}

#[tokio::test]
async fn drain_closes_http1_after_the_response_and_sends_goaway_on_http2() {
    let echo = EchoServer::start("a").await.unwrap();
    let proxy = Proxy::start(simple(&[echo.addr]), http_chain("test")).await;
    let mut h1 = TestClient::h1(proxy.addr).await.unwrap();
    let mut h2 = TestClient::h2(proxy.addr).await.unwrap();
    assert_eq!(h1.get("svc", "/", &[]).await.unwrap().status, 200);
    assert_eq!(h2.get("svc", "/", &[]).await.unwrap().status, 200);
    // Requests in flight when the drain starts still complete.
    let mut second = h2.try_clone().unwrap();
    let h2_inflight = tokio::spawn(async move {
        let req = weft_testkit::client::request(
            "GET",
            "svc",
            "/",
            &[("x-echo-delay-ms", "300")],
            Bytes::new(),
            true,
        );
        collect(second.send_streaming(req).await.unwrap())
            .await
            .unwrap()
            .status
    });
    let h1_inflight = tokio::spawn(async move {
        let resp = h1
            .get("svc", "/", &[("x-echo-delay-ms", "300")])
            .await
            .unwrap();
        let again = h1.get("svc", "/", &[]).await;
        (
            resp.status,
            resp.header("connection").map(str::to_string),
            again.is_err(),
        )
    });
    weft_testkit::wait::eventually(
        "the in-flight requests reaching the upstream",
        Duration::from_secs(5),
        || async { echo.requests() >= 4 },
    )
    .await;
    proxy.drain.send(true).unwrap();
    assert_eq!(h2_inflight.await.unwrap(), 200);
    let (status, connection, closed) = h1_inflight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        connection.as_deref(),
        Some("close"),
        "an HTTP/1 answer during drain says close"
    );
    assert!(closed, "the HTTP/1 connection is closed after that answer");
    assert!(h2.get("svc", "/", &[]).await.is_err(), "HTTP/2 got GOAWAY");
}

#[tokio::test]
async fn mirror_copies_to_the_shadow_host_without_touching_the_response() {
    let main = EchoServer::start("main").await.unwrap();
    let shadow = EchoServer::start("shadow").await.unwrap();
    let fwd = Forward {
        mirrors: vec![Mirror {
            cluster: "shadow".into(),
            percent: 100.0,
        }],
        ..forward(vec![weighted("main", 1)])
    };
    let cfg = config(
        vec![table(
            "t",
            vec![vhost(
                "v",
                &["*"],
                vec![route("r", vec![], RouteAction::Forward(fwd))],
            )],
        )],
        vec![
            cluster("main", &[main.addr]),
            cluster("shadow", &[shadow.addr]),
        ],
    );
    let proxy = Proxy::start(cfg, http_chain("t")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let req = weft_testkit::client::request(
        "POST",
        "cart.shop:3002",
        "/m",
        &[],
        Bytes::from("payload"),
        false,
    );
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.header("x-echo-instance"), Some("main"));
    weft_testkit::wait::eventually("the mirrored request", Duration::from_secs(5), || async {
        shadow.requests() > 0
    })
    .await;
    assert_eq!(main.requests(), 1);
    // The shadow copy: check via a direct look at what it received.
    let mut direct = TestClient::h1(shadow.addr).await.unwrap();
    assert_eq!(
        direct
            .get("x", "/", &[])
            .await
            .unwrap()
            .header("x-echo-request-count"),
        Some("2")
    );
}

#[tokio::test]
async fn cors_preflight_and_simple_requests() {
    let echo = EchoServer::start("a").await.unwrap();
    let mut cfg = simple(&[echo.addr]);
    cfg.route_tables[0].virtual_hosts[0].routes[0].cors = Some(CorsPolicy {
        allow_origins: vec![
            StringMatch::Exact("https://shop.example".into()),
            StringMatch::Suffix(".trusted.example".into()),
        ],
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_headers: vec!["x-user".into()],
        expose_headers: vec!["x-echo-instance".into()],
        max_age: Some(Duration::from_secs(600)),
        allow_credentials: true,
        ignore_unmatched_preflights: true,
    });
    let proxy = Proxy::start(cfg, http_chain("test")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let pre = weft_testkit::client::request(
        "OPTIONS",
        "svc",
        "/",
        &[
            ("origin", "https://a.trusted.example"),
            ("access-control-request-method", "POST"),
        ],
        Bytes::new(),
        false,
    );
    let resp = client.send(pre).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://a.trusted.example")
    );
    assert_eq!(
        resp.header("access-control-allow-methods"),
        Some("GET,POST")
    );
    assert_eq!(resp.header("access-control-allow-headers"), Some("x-user"));
    assert_eq!(resp.header("access-control-max-age"), Some("600"));
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(echo.requests(), 0, "preflights are answered by the proxy");
    let bad = weft_testkit::client::request(
        "OPTIONS",
        "svc",
        "/",
        &[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        Bytes::new(),
        false,
    );
    let resp = client.send(bad).await.unwrap();
    assert!(resp.header("access-control-allow-origin").is_none());
    let resp = client
        .get("svc", "/", &[("origin", "https://shop.example")])
        .await
        .unwrap();
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(
        resp.header("access-control-expose-headers"),
        Some("x-echo-instance")
    );
}

#[tokio::test]
async fn consistent_hash_on_a_header_and_a_generated_cookie() {
    let servers = [
        EchoServer::start("a").await.unwrap(),
        EchoServer::start("b").await.unwrap(),
        EchoServer::start("c").await.unwrap(),
    ];
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let mut c = cluster("svc", &addrs);
    c.lb = LbPolicy::RingHash {
        key: HashKey::Header("x-user".into()),
        minimum_ring_size: 1024,
    };
    let proxy = Proxy::start(simple_with(c.clone()), http_chain("test")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let mut instances = std::collections::BTreeSet::new();
    for user in 0..30 {
        let u = format!("user-{user}");
        let first = client
            .get("svc", "/", &[("x-user", &u)])
            .await
            .unwrap()
            .header("x-echo-instance")
            .unwrap()
            .to_string();
        for _ in 0..3 {
            assert_eq!(
                client
                    .get("svc", "/", &[("x-user", &u)])
                    .await
                    .unwrap()
                    .header("x-echo-instance")
                    .unwrap(),
                first
            );
        }
        instances.insert(first);
    }
    assert!(instances.len() > 1, "different keys spread over endpoints");

    c.lb = LbPolicy::Maglev {
        key: HashKey::Cookie {
            name: "session".into(),
            path: Some("/".into()),
            ttl: Some(Duration::from_secs(3600)),
        },
        table_size: 65537,
    };
    proxy.reload(simple_with(c));
    let resp = client.get("svc", "/", &[]).await.unwrap();
    let set = resp
        .header("set-cookie")
        .expect("cookie generated")
        .to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let first = resp.header("x-echo-instance").unwrap().to_string();
    for _ in 0..5 {
        let r = client
            .get("svc", "/", &[("cookie", &cookie)])
            .await
            .unwrap();
        assert_eq!(r.header("x-echo-instance").unwrap(), first);
        assert!(r.header("set-cookie").is_none());
    }
}

#[tokio::test]
async fn reload_keeps_pooled_connections_and_breaker_state() {
    let echo = EchoServer::start("a").await.unwrap();
    let proxy = Proxy::start(simple(&[echo.addr]), http_chain("test")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    for _ in 0..3 {
        assert_eq!(client.get("svc", "/", &[]).await.unwrap().status, 200);
    }
    let mut cfg = simple(&[echo.addr]);
    cfg.version = "v2".into();
    cfg.route_tables[0].virtual_hosts[0].routes[0]
        .response_headers
        .set
        .push(("x-version".into(), "2".into()));
    proxy.reload(cfg);
    for _ in 0..3 {
        let resp = client.get("svc", "/", &[]).await.unwrap();
        assert_eq!(resp.header("x-version"), Some("2"));
    }
    assert_eq!(
        echo.connections(),
        1,
        "the pooled upstream connection survived the reload"
    );
}
