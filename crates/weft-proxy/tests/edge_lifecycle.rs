//! The proxy's life: readiness, config swaps that drop nothing, rejected configs, drain,
//! and the admin endpoints.

mod edge_common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use weft_proxy::admin::LogControl;
use weft_proxy::app::{self, ProxyOptions};
use weft_proxy::source::{ChannelSource, StaticSource};

const BLACKHOLE: &str = r#"{"blackhole": {"reason": "test"}}"#;

fn blackhole() -> Value {
    serde_json::from_str(BLACKHOLE).unwrap()
}

#[tokio::test]
async fn ready_only_after_the_first_config() {
    let (source, publisher) = ChannelSource::new();
    let proxy = app::build(options(), source).await.unwrap();
    let admin_addr = proxy.admin_addr();
    assert!(!proxy.ready());
    let (code, body) = admin(admin_addr, "GET", "/ready").await;
    assert_eq!(code, 503);
    assert!(body.contains("no config applied yet"), "{body}");
    assert_eq!(admin(admin_addr, "GET", "/live").await.0, 200);

    publisher.publish(config(json!({"version": "v1"})));
    eventually("ready", || async {
        admin(admin_addr, "GET", "/ready").await.0 == 200
    })
    .await;
    assert!(proxy.ready());
}

#[tokio::test]
async fn config_swap_keeps_connections_and_reconciles_listeners() {
    let a = tagged_echo_server("a").await;
    let b = tagged_echo_server("b").await;
    let clusters = json!([cluster("a", "tcp", &[a]), cluster("b", "tcp", &[b])]);
    let (source, publisher) = ChannelSource::new();
    publisher.publish(config(json!({
        "version": "v1",
        "listeners": [
            listener("kept", json!([tcp_chain("t", &[("a", 1)])]), blackhole()),
            listener("removed", json!([tcp_chain("t", &[("a", 1)])]), blackhole()),
        ],
        "clusters": clusters,
    })));
    let proxy = start(source).await;
    let kept = proxy.listener_addr("kept").unwrap();
    let removed = proxy.listener_addr("removed").unwrap();
    let mut open = TcpStream::connect(kept).await.unwrap();
    assert_eq!(read_tag(&mut open).await, "a");
    let mut open_on_removed = TcpStream::connect(removed).await.unwrap();
    assert_eq!(read_tag(&mut open_on_removed).await, "a");

    publisher.publish(config(json!({
        "version": "v2",
        "listeners": [
            listener("kept", json!([tcp_chain("t", &[("b", 1)])]), blackhole()),
            listener("added", json!([tcp_chain("t", &[("b", 1)])]), blackhole()),
        ],
        "clusters": clusters,
    })));
    applied(&proxy, "v2").await;

    // Open connections still work, on both the kept and the removed listener.
    for s in [&mut open, &mut open_on_removed] {
        s.write_all(b"still here").await.unwrap();
        let mut back = [0u8; 10];
        within("echo", s.read_exact(&mut back)).await.unwrap();
        assert_eq!(&back, b"still here");
    }
    // The kept listener stayed bound at its address and new connections use the new config.
    assert_eq!(proxy.listener_addr("kept"), Some(kept));
    let mut fresh = TcpStream::connect(kept).await.unwrap();
    assert_eq!(read_tag(&mut fresh).await, "b");
    // The new listener accepts; the removed one does not.
    let added = proxy.listener_addr("added").expect("added listener bound");
    let mut s = TcpStream::connect(added).await.unwrap();
    assert_eq!(read_tag(&mut s).await, "b");
    assert_eq!(proxy.listener_addr("removed"), None);
    assert!(
        TcpStream::connect(removed).await.is_err(),
        "removed listener still accepts"
    );
}

#[tokio::test]
async fn config_swap_keeps_an_in_flight_http_request() {
    let release = Arc::new(Notify::new());
    let (upstream, mut arrived) = http_server("v1-upstream", release.clone()).await;
    let web = |version: &str, routes: Value, extra: bool| {
        let mut listeners = vec![listener(
            "web",
            json!([{"name": "http", "protocol": {"http": {"route_table": "rt"}}}]),
            blackhole(),
        )];
        if extra {
            listeners.push(listener(
                "extra",
                json!([tcp_chain("t", &[("up", 1)])]),
                blackhole(),
            ));
        }
        config(json!({
            "version": version,
            "listeners": listeners,
            "route_tables": [route_table("rt", routes)],
            "clusters": [cluster("up", "http1", &[upstream])],
        }))
    };
    let (source, publisher) = ChannelSource::new();
    publisher.publish(web("v1", json!([forward_route("/", "up")]), false));
    let proxy = start(source).await;
    let addr = proxy.listener_addr("web").unwrap();

    let slow = tokio::spawn(async move { http_get(addr, "web", "/slow").await });
    assert_eq!(
        within("request reaches upstream", arrived.recv())
            .await
            .unwrap(),
        "/slow"
    );

    publisher.publish(web(
        "v2",
        json!([direct_route("/", 200, "v2 direct")]),
        true,
    ));
    applied(&proxy, "v2").await;
    assert!(proxy.listener_addr("extra").is_some());
    let resp = http_get(addr, "web", "/other").await;
    assert_eq!(resp.body, "v2 direct");

    release.notify_one();
    let resp = within("slow response", slow).await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "v1-upstream /slow");
}

#[tokio::test]
async fn rejected_config_keeps_the_previous_one() {
    let up = tagged_echo_server("up").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let (source, publisher) = ChannelSource::new();
    publisher.publish(config(json!({
        "version": "v1",
        "listeners": [listener("l", json!([tcp_chain("t", &[("up", 1)])]), blackhole())],
        "clusters": [cluster("up", "tcp", &[up])],
    })));
    let proxy = start(source).await;
    let addr = proxy.listener_addr("l").unwrap();

    let mut busy = listener("busy", json!([]), blackhole());
    busy["address"] = json!(taken_addr.to_string());
    publisher.publish(config(json!({
        "version": "v2",
        "listeners": [listener("l", json!([]), blackhole()), busy],
    })));
    let mut status = proxy.status();
    within("rejection", status.wait_for(|s| s.rejected.is_some()))
        .await
        .unwrap();

    let (_, dump) = admin(proxy.admin_addr(), "GET", "/config_dump").await;
    let dump: Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["version"], "v1");
    assert_eq!(dump["last_rejected"]["version"], "v2");
    let error = dump["last_rejected"]["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("cannot bind listener busy on {taken_addr}")),
        "{error}"
    );
    assert_eq!(dump["configs_rejected"], 1);
    // v1 still runs: its listener forwards to its cluster.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_tag(&mut s).await, "up");
    assert_eq!(
        stat(proxy.admin_addr(), "weft_config_rejected_total").await,
        1
    );
}

#[tokio::test]
async fn drain_finishes_in_flight_requests_and_refuses_new_connections() {
    let release = Arc::new(Notify::new());
    let (upstream, mut arrived) = http_server("up", release.clone()).await;
    let proxy = start(StaticSource::new(config(json!({
        "version": "v1",
        "listeners": [listener("web", json!([{"name": "http", "protocol": {"http": {"route_table": "rt"}}}]), blackhole())],
        "route_tables": [route_table("rt", json!([forward_route("/", "up")]))],
        "clusters": [cluster("up", "http1", &[upstream])],
    }))))
    .await;
    let addr = proxy.listener_addr("web").unwrap();

    // An idle keep-alive connection, and a request in flight on another.
    let mut idle = http1_client(addr).await.unwrap();
    assert_eq!(idle.get("web", "/fast").await.unwrap().status, 200);
    let mut busy = http1_client(addr).await.unwrap();
    let in_flight = tokio::spawn(async move { busy.get("web", "/slow").await });
    while within("slow request arrives", arrived.recv())
        .await
        .unwrap()
        != "/slow"
    {}

    let proxy = Arc::new(proxy);
    let draining = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.drain(Duration::from_secs(30)).await })
    };
    eventually("listener closed", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert_eq!(admin(proxy.admin_addr(), "GET", "/ready").await.0, 503);
    // The idle keep-alive connection is closed by the proxy.
    within("idle connection closed", &mut idle.closed)
        .await
        .unwrap();
    assert!(
        !draining.is_finished(),
        "drain must wait for the in-flight request"
    );

    release.notify_one();
    let resp = within("in-flight response", in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "up /slow");
    assert_eq!(resp.headers["connection"], "close");
    within("drain completes", draining).await.unwrap();
    within("wait returns", proxy.wait()).await;
    assert_eq!(proxy.active_connections(), 0);
}

#[tokio::test]
async fn drain_grace_closes_what_does_not_finish() {
    let up = echo_server().await;
    let proxy = start(StaticSource::new(config(json!({
        "version": "v1",
        "listeners": [listener("l", json!([tcp_chain("t", &[("up", 1)])]), blackhole())],
        "clusters": [cluster("up", "tcp", &[up])],
    }))))
    .await;
    let mut s = TcpStream::connect(proxy.listener_addr("l").unwrap())
        .await
        .unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    within("echo", s.read_exact(&mut b)).await.unwrap();
    // A TCP stream never finishes by itself: the grace period ends it.
    within("drain", proxy.drain(Duration::from_millis(100))).await;
    assert_eq!(within("closed", s.read(&mut b)).await.unwrap_or(0), 0);
}

struct FakeLog(Mutex<String>);

impl LogControl for FakeLog {
    fn current(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn set(&self, filter: &str) -> Result<(), String> {
        if filter.contains('!') {
            return Err("bad directive".into());
        }
        *self.0.lock().unwrap() = filter.to_string();
        Ok(())
    }
}

#[tokio::test]
async fn admin_endpoints() {
    let log = Arc::new(FakeLog(Mutex::new("info".into())));
    let options = ProxyOptions {
        log_control: Some(log.clone()),
        drain_grace: Duration::from_secs(1),
        ..options()
    };
    let proxy = app::build(
        options,
        StaticSource::new(config(json!({
            "version": "v7",
            "listeners": [listener("l", json!([]), blackhole())],
        }))),
    )
    .await
    .unwrap();
    let a: SocketAddr = proxy.admin_addr();
    eventually("ready", || async {
        admin(a, "GET", "/ready").await.0 == 200
    })
    .await;

    let (code, dump) = admin(a, "GET", "/config_dump").await;
    assert_eq!(code, 200);
    let dump: Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(dump["version"], "v7");
    assert_eq!(dump["config"]["listeners"][0]["name"], "l");
    assert_eq!(
        dump["listeners"]["l"],
        proxy.listener_addr("l").unwrap().to_string()
    );
    assert!(dump["applied_at"].as_str().unwrap().ends_with('Z'));
    assert!(dump["last_rejected"].is_null());

    assert_eq!(stat(a, "weft_config_applied_total").await, 1);

    assert_eq!(
        admin(a, "GET", "/logging").await,
        (http::StatusCode::OK, "info\n".into())
    );
    let (code, body) = admin(a, "POST", "/logging?level=info%2Cweft_proxy%3Ddebug").await;
    assert_eq!(
        (code, body.as_str()),
        (http::StatusCode::OK, "info,weft_proxy=debug\n")
    );
    assert_eq!(log.current(), "info,weft_proxy=debug");
    assert_eq!(admin(a, "POST", "/logging?level=x!").await.0, 400);
    assert_eq!(admin(a, "POST", "/logging").await.0, 400);

    assert_eq!(admin(a, "GET", "/nope").await.0, 404);
    assert_eq!(admin(a, "GET", "/quitquitquit").await.0, 405);
    assert_eq!(admin(a, "POST", "/quitquitquit").await.0, 200);
    within("proxy stops", proxy.wait()).await;
    assert!(!proxy.ready());
}

#[tokio::test]
async fn logging_without_control_is_not_available() {
    let proxy = start(StaticSource::new(config(json!({"version": "v1"})))).await;
    assert_eq!(admin(proxy.admin_addr(), "GET", "/logging").await.0, 501);
}
