//! Protocol detection on a real listener: HTTP/1 and the HTTP/2 preface go to the HTTP
//! chain, a TLS ClientHello and other client-first bytes to the TCP chain (replayed), and
//! a client that sends nothing (server-first protocols) to TCP after the timeout.

mod edge_common;

use std::net::SocketAddr;

use edge_common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weft_proxy::app::Running;
use weft_proxy::listener::detect::client_hello_fixture;
use weft_proxy::source::StaticSource;

/// A server-first upstream: greets as an SMTP server does, then echoes.
async fn greeter() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if s.write_all(b"220 mail ready\r\n").await.is_ok() {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    addr
}

async fn detecting_proxy(tcp_upstream: SocketAddr) -> Running {
    start(StaticSource::new(config(json!({
        "version": "v1",
        "listeners": [listener("sniff", json!([{
            "name": "detect",
            "protocol": {"detect": {
                "http": {"route_table": "rt"},
                "tcp": {"clusters": weighted(&[("opaque", 1)])},
                // Short, so the server-first case does not make the test slow.
                "timeout": "150ms",
            }},
        }]), json!({"blackhole": {"reason": "none"}}))],
        "route_tables": [route_table("rt", json!([direct_route("/", 200, "from the http chain")]))],
        "clusters": [cluster("opaque", "tcp", &[tcp_upstream])],
    }))))
    .await
}

#[tokio::test]
async fn http1_request_goes_to_the_http_chain() {
    let proxy = detecting_proxy(echo_server().await).await;
    let addr = proxy.listener_addr("sniff").unwrap();
    let resp = http_get(addr, "anything", "/x").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "from the http chain");
}

#[tokio::test]
async fn h2_preface_goes_to_the_http_chain() {
    let proxy = detecting_proxy(echo_server().await).await;
    let addr = proxy.listener_addr("sniff").unwrap();
    let resp = h2_get(addr, "anything", "/x").await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, "from the http chain");
}

#[tokio::test]
async fn tls_and_binary_protocols_go_to_the_tcp_chain_with_their_first_bytes() {
    let proxy = detecting_proxy(echo_server().await).await;
    let addr = proxy.listener_addr("sniff").unwrap();
    let hello = client_hello_fixture(Some("db.example.com"));
    let redis = b"*1\r\n$4\r\nPING\r\n".to_vec();
    // Text that starts like HTTP but is not (no HTTP version on the line).
    let text = b"GET mykey\r\n".to_vec();
    for first in [hello, redis, text] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&first).await.unwrap();
        let mut back = vec![0u8; first.len()];
        within("echo", s.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, first);
    }
    assert_eq!(
        stat(proxy.admin_addr(), "weft_protocol_detection_timeouts_total").await,
        0
    );
}

#[tokio::test]
async fn silent_client_goes_to_tcp_after_the_timeout() {
    let proxy = detecting_proxy(greeter().await).await;
    let addr = proxy.listener_addr("sniff").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    // The client waits for the server to speak first, as MySQL and SMTP clients do.
    let mut greeting = [0u8; 16];
    within("greeting", s.read_exact(&mut greeting))
        .await
        .unwrap();
    assert_eq!(&greeting, b"220 mail ready\r\n");
    s.write_all(b"EHLO me\r\n").await.unwrap();
    let mut back = [0u8; 9];
    within("echo", s.read_exact(&mut back)).await.unwrap();
    assert_eq!(&back, b"EHLO me\r\n");
    assert_eq!(
        stat(proxy.admin_addr(), "weft_protocol_detection_timeouts_total").await,
        1
    );
}
