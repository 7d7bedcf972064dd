//! Timeouts, retries, circuit breakers, outlier detection, rate limits and faults.

mod http_support;

use std::time::Duration;

use bytes::Bytes;
use http_support::Proxy;
use weft_api::*;
use weft_testkit::client::{TestClient, request};
use weft_testkit::echo::EchoServer;
use weft_testkit::fixtures::*;

fn retry(attempts: u32, on: RetryOn) -> RetryPolicy {
    RetryPolicy {
        attempts,
        per_try_timeout: None,
        retry_on: on,
        backoff_base: Duration::from_millis(25),
        other_host: true,
        budget: None,
    }
}

fn one_route(fwd: Forward, clusters: Vec<Cluster>) -> ProxyConfig {
    config(
        vec![table(
            "t",
            vec![vhost(
                "v",
                &["*"],
                vec![route("r", vec![], RouteAction::Forward(fwd))],
            )],
        )],
        clusters,
    )
}

/// A port nothing listens on.
async fn closed_port() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(start_paused = true)]
async fn route_timeout_answers_504_ut() {
    let echo = EchoServer::start("a").await.unwrap();
    let fwd = Forward {
        timeout: Some(Duration::from_secs(1)),
        ..forward(vec![weighted("c", 1)])
    };
    let proxy = Proxy::start(
        one_route(fwd, vec![cluster("c", &[echo.addr])]),
        http_chain("t"),
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let resp = client
        .get("svc", "/", &[("x-echo-delay-ms", "10000")])
        .await
        .unwrap();
    assert_eq!(resp.status, 504);
    assert_eq!(
        resp.header("x-weft-error").unwrap(),
        "upstream_timeout; flag=UT; upstream request timeout after 1s on route r"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_on_5xx_then_succeeds_and_exhausted_returns_last_response() {
    let echo = EchoServer::start("a").await.unwrap();
    let on = RetryOn {
        five_xx: true,
        ..RetryOn::default()
    };
    let fwd = Forward {
        retry: Some(retry(2, on)),
        ..forward(vec![weighted("c", 1)])
    };
    let proxy = Proxy::start(
        one_route(fwd, vec![cluster("c", &[echo.addr])]),
        http_chain("t"),
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();

    echo.fail_next(2, 503);
    let resp = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 200, "third try succeeds");
    assert_eq!(echo.requests(), 3);

    echo.fail_next(5, 500);
    let resp = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 500, "exhausted: the last response is returned");
    assert_eq!(echo.requests(), 6, "1 + 2 attempts");
}

#[tokio::test(start_paused = true)]
async fn grpc_status_and_retriable_codes_are_retried() {
    let echo = EchoServer::start("a").await.unwrap();
    let on = RetryOn {
        status_codes: vec![418],
        grpc: vec!["unavailable".into()],
        ..RetryOn::default()
    };
    let fwd = Forward {
        retry: Some(retry(1, on)),
        ..forward(vec![weighted("c", 1)])
    };
    let proxy = Proxy::start(
        one_route(fwd, vec![cluster("c", &[echo.addr])]),
        http_chain("t"),
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    echo.fail_next(1, 418);
    assert_eq!(client.get("svc", "/", &[]).await.unwrap().status, 200);
    assert_eq!(echo.requests(), 2);
    // grpc-status 14 in the response headers (trailers-only response) is retried too.
    echo.fail_next_grpc(1, 14);
    let resp = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("grpc-status").is_none(),
        "the retry's answer is returned"
    );
    assert_eq!(echo.requests(), 4);
    // A gRPC code not in the list is final.
    echo.fail_next_grpc(1, 5);
    let resp = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(resp.header("grpc-status"), Some("5"));
    assert_eq!(echo.requests(), 5);
}

#[tokio::test]
async fn connect_failure_is_503_uf_and_retried_to_another_host() {
    let echo = EchoServer::start("a").await.unwrap();
    let dead = closed_port().await;
    let proxy = Proxy::start(
        one_route(forward(vec![weighted("c", 1)]), vec![cluster("c", &[dead])]),
        http_chain("t"),
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let resp = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 503);
    assert!(
        resp.header("x-weft-error")
            .unwrap()
            .starts_with("upstream_connect_failed; flag=UF;"),
        "{:?}",
        resp.header("x-weft-error")
    );

    let on = RetryOn {
        connect_failure: true,
        ..RetryOn::default()
    };
    let fwd = Forward {
        retry: Some(retry(3, on.clone())),
        ..forward(vec![weighted("c", 1)])
    };
    let mut c = cluster("c", &[dead, echo.addr]);
    c.lb = LbPolicy::RoundRobin;
    proxy.reload(one_route(fwd, vec![c]));
    for _ in 0..10 {
        assert_eq!(client.get("svc", "/", &[]).await.unwrap().status, 200);
    }
    let fwd = Forward {
        retry: Some(retry(2, on)),
        ..forward(vec![weighted("c", 1)])
    };
    proxy.reload(one_route(fwd, vec![cluster("c", &[dead])]));
    let resp = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 503);
    assert!(
        resp.header("x-weft-error")
            .unwrap()
            .starts_with("retries_exhausted; flag=URX; retries exhausted after 3 attempts"),
        "{:?}",
        resp.header("x-weft-error")
    );
}

#[tokio::test]
async fn a_body_streamed_past_the_buffer_is_never_retried() {
    let echo = EchoServer::start("a").await.unwrap();
    let on = RetryOn {
        five_xx: true,
        ..RetryOn::default()
    };
    let fwd = Forward {
        retry: Some(retry(3, on)),
        ..forward(vec![weighted("c", 1)])
    };
    let proxy = Proxy::start(
        one_route(fwd, vec![cluster("c", &[echo.addr])]),
        http_chain("t"),
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    echo.fail_next(1, 503);
    let small = request(
        "POST",
        "svc",
        "/",
        &[],
        Bytes::from(vec![b'a'; 1000]),
        false,
    );
    let resp = client.send(small).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.echoed().body.len(),
        1000,
        "the retry replays the whole body"
    );
    let before = echo.requests();
    echo.fail_next(1, 503);
    let big = request(
        "POST",
        "svc",
        "/",
        &[],
        Bytes::from(vec![b'b'; 200 * 1024]),
        false,
    );
    let resp = client.send(big).await.unwrap();
    assert_eq!(
        resp.status, 503,
        "not retried: the body outgrew the replay buffer"
    );
    assert_eq!(echo.requests(), before + 1);
}

#[tokio::test]
async fn a_stale_pooled_connection_is_replaced_without_a_retry_policy() {
    // An upstream that answers one request per connection and then closes silently
    // (no `Connection: close`), like a server whose keep-alive timeout fired.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = Vec::new();
                while !read.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    let proxy = Proxy::start(
        one_route(forward(vec![weighted("c", 1)]), vec![cluster("c", &[addr])]),
        http_chain("t"),
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    for _ in 0..5 {
        let resp = client.get("svc", "/", &[]).await.unwrap();
        assert_eq!(resp.status, 200, "{:?}", resp.header("x-weft-error"));
        assert_eq!(resp.body, Bytes::from("ok"));
    }
}

#[tokio::test]
async fn max_requests_overflow_is_503_uo_naming_the_destination_rule() {
    let echo = EchoServer::start("a").await.unwrap();
    let mut c = cluster("c", &[echo.addr]);
    c.limits.max_requests = 1;
    c.policy_origin = Some(Origin {
        kind: "DestinationRule".into(),
        namespace: "shop".into(),
        name: "cart".into(),
    });
    let proxy = Proxy::start(
        one_route(forward(vec![weighted("c", 1)]), vec![c]),
        http_chain("t"),
    )
    .await;
    let mut slow = TestClient::h1(proxy.addr).await.unwrap();
    let in_flight = tokio::spawn(async move {
        slow.get("svc", "/", &[("x-echo-delay-ms", "2000")])
            .await
            .unwrap()
            .status
    });
    // Wait (bounded) until the slow request reached the upstream.
    weft_testkit::wait::eventually(
        "the slow request reaching the upstream",
        Duration::from_secs(5),
        || async { echo.requests() > 0 },
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let resp = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 503);
    assert_eq!(
        resp.header("x-weft-error").unwrap(),
        "upstream_overflow; flag=UO; circuit open: http2MaxRequests=1 on DestinationRule shop/cart (cluster c)"
    );
    assert_eq!(in_flight.await.unwrap(), 200);
}

#[tokio::test]
async fn pending_requests_wait_for_a_connection_then_overflow() {
    let echo = EchoServer::start("a").await.unwrap();
    let mut c = cluster("c", &[echo.addr]);
    c.limits.max_connections = 1;
    c.limits.max_pending_requests = 1;
    let proxy = Proxy::start(
        one_route(forward(vec![weighted("c", 1)]), vec![c]),
        http_chain("t"),
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = TestClient::h1(addr).await.unwrap();
            let r = client
                .get("svc", "/", &[("x-echo-delay-ms", "300")])
                .await
                .unwrap();
            (
                r.status.as_u16(),
                r.header("x-weft-error").map(str::to_string),
            )
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let overflow: Vec<_> = statuses.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(ok, 2, "one on the connection, one pending: {statuses:?}");
    assert_eq!(overflow.len(), 1);
    assert!(
        overflow[0]
            .1
            .as_deref()
            .unwrap()
            .contains("http1MaxPendingRequests=1")
    );
    assert_eq!(echo.connections(), 1, "never more than maxConnections");
}

#[tokio::test(start_paused = true)]
async fn outlier_detection_ejects_and_brings_back() {
    let good = EchoServer::start("good").await.unwrap();
    let bad = EchoServer::start("bad").await.unwrap();
    let mut c = cluster("c", &[good.addr, bad.addr]);
    c.outlier_detection = Some(OutlierDetection {
        consecutive_5xx: 0,
        consecutive_gateway_errors: 2,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_percent: 100,
        min_health_percent: 0,
    });
    let proxy = Proxy::start(
        one_route(forward(vec![weighted("c", 1)]), vec![c]),
        http_chain("t"),
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    bad.fail_next(1000, 503);
    let mut bad_seen = 0;
    for _ in 0..20 {
        if client
            .get("svc", "/", &[])
            .await
            .unwrap()
            .header("x-echo-instance")
            == Some("bad")
        {
            bad_seen += 1;
        }
    }
    assert_eq!(bad_seen, 2, "ejected after two consecutive gateway errors");
    tokio::time::advance(Duration::from_secs(31)).await;
    let mut back = false;
    for _ in 0..4 {
        back |= client
            .get("svc", "/", &[])
            .await
            .unwrap()
            .header("x-echo-instance")
            == Some("bad");
    }
    assert!(
        back,
        "the bad endpoint returns after the ejection time and a sweep"
    );

    good.fail_next(1000, 503);
    for _ in 0..10 {
        client.get("svc", "/", &[]).await.unwrap();
    }
    let resp = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 503);
    assert!(
        resp.header("x-weft-error")
            .unwrap()
            .starts_with("no_healthy_upstream; flag=UH;"),
        "{:?}",
        resp.header("x-weft-error")
    );
}

#[tokio::test(start_paused = true)]
async fn local_rate_limit_429_and_refill() {
    let echo = EchoServer::start("a").await.unwrap();
    let mut cfg = one_route(
        forward(vec![weighted("c", 1)]),
        vec![cluster("c", &[echo.addr])],
    );
    cfg.route_tables[0].virtual_hosts[0].routes[0].rate_limit = Some(TokenBucket {
        max_tokens: 2,
        tokens_per_fill: 1,
        fill_interval: Duration::from_secs(60),
        response_headers: vec![("x-rate-limited-scope".into(), "route".into())],
        origin: Some(Origin {
            kind: "EnvoyFilter".into(),
            namespace: "shop".into(),
            name: "rl".into(),
        }),
    });
    let proxy = Proxy::start(cfg, http_chain("t")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    assert_eq!(client.get("svc", "/", &[]).await.unwrap().status, 200);
    assert_eq!(client.get("svc", "/", &[]).await.unwrap().status, 200);
    let limited = client.get("svc", "/", &[]).await.unwrap();
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.header("x-weft-error").unwrap(),
        "rate_limited; flag=RL; rate limited by route r on EnvoyFilter shop/rl"
    );
    assert_eq!(limited.header("x-rate-limited-scope"), Some("route"));
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(client.get("svc", "/", &[]).await.unwrap().status, 200);
    assert_eq!(client.get("svc", "/", &[]).await.unwrap().status, 429);
}

#[tokio::test]
async fn fault_abort_half_of_the_requests_within_five_points() {
    let echo = EchoServer::start("a").await.unwrap();
    let mut cfg = one_route(
        forward(vec![weighted("c", 1)]),
        vec![cluster("c", &[echo.addr])],
    );
    cfg.route_tables[0].virtual_hosts[0].routes[0].fault = Some(Fault {
        delay: None,
        abort: Some(FaultAbort {
            status: AbortStatus::Http(503),
            percent: 50.0,
        }),
    });
    let proxy = Proxy::start(cfg, http_chain("t")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let mut aborted = 0;
    for _ in 0..1000 {
        let resp = client.get("svc", "/", &[]).await.unwrap();
        if resp.status == 503 {
            assert!(resp.header("x-weft-error").unwrap().starts_with(
                "fault_abort; flag=FI; fault injected: abort with HTTP 503 by route r"
            ));
            aborted += 1;
        }
    }
    assert!(
        (450..=550).contains(&aborted),
        "50% abort gave {aborted}/1000"
    );
}

#[tokio::test(start_paused = true)]
async fn fault_delay_then_grpc_abort() {
    let echo = EchoServer::start("a").await.unwrap();
    let mut cfg = one_route(
        forward(vec![weighted("c", 1)]),
        vec![cluster("c", &[echo.addr])],
    );
    cfg.route_tables[0].virtual_hosts[0].routes[0].fault = Some(Fault {
        delay: Some(FaultDelay {
            delay: Duration::from_secs(5),
            percent: 100.0,
        }),
        abort: Some(FaultAbort {
            status: AbortStatus::Grpc(14),
            percent: 100.0,
        }),
    });
    let proxy = Proxy::start(cfg, http_chain("t")).await;
    let mut client = TestClient::h2(proxy.addr).await.unwrap();
    let start = tokio::time::Instant::now();
    let resp = client.get("svc", "/pkg.Svc/Call", &[]).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "the delay comes first"
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("grpc-status"), Some("14"));
    assert!(
        resp.header("x-weft-error")
            .unwrap()
            .starts_with("fault_abort; flag=FI;")
    );
    assert_eq!(echo.requests(), 0);
}
