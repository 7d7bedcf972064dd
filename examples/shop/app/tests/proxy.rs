//! Outbound calls in the mesh's explicit mode: through `HTTP_PROXY` in absolute form, with
//! the inbound request's trace headers (and nothing else) copied onto them.

mod common;

use std::collections::HashMap;

use common::{RecordingProxy, call_with, must, start};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use weft_shop::config::Env;
use weft_shop::services::{cart, product};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn calls_go_through_http_proxy_with_trace_headers() {
    let product = start(product::app, Env::default()).await;
    // `product` does not resolve here: only the proxy knows where it is, as in the mesh.
    let proxy =
        RecordingProxy::start(HashMap::from([("product".to_string(), product.addr())])).await;
    let cart = start(
        cart::app,
        Env::from_pairs([
            ("PRODUCT_URL", "http://product:3001".to_string()),
            ("HTTP_PROXY", proxy.url()),
        ]),
    )
    .await;

    let mut headers = HeaderMap::new();
    headers.insert("traceparent", TRACEPARENT.parse().unwrap());
    headers.insert("tracestate", "vendor=1".parse().unwrap());
    headers.insert("x-request-id", "req-7".parse().unwrap());
    headers.insert("x-b3-traceid", "4bf92f3577b34da6".parse().unwrap());
    headers.insert("x-b3-sampled", "1".parse().unwrap());
    headers.insert("authorization", "Bearer not-for-upstreams".parse().unwrap());
    headers.insert("x-custom", "private".parse().unwrap());
    let reply = call_with(
        Method::POST,
        &format!("{}/cart/carol", cart.url()),
        &headers,
        Some(json!({"productId": 3})),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
    assert_eq!(reply.json["name"], "Coffee grinder");

    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let call = &seen[0];
    assert_eq!(call.method, Method::GET);
    assert_eq!(
        call.uri.to_string(),
        "http://product:3001/products/3",
        "absolute form"
    );
    for name in [
        "traceparent",
        "tracestate",
        "x-request-id",
        "x-b3-traceid",
        "x-b3-sampled",
    ] {
        assert_eq!(
            call.headers.get(name),
            headers.get(name),
            "{name} forwarded"
        );
    }
    assert!(
        call.headers.get("authorization").is_none(),
        "only trace headers are forwarded"
    );
    assert!(call.headers.get("x-custom").is_none());

    // GET /cart calls product once per line, each through the proxy.
    let (status, basket) = must(Method::GET, &format!("{}/cart/carol", cart.url()), None).await;
    assert_eq!(status, StatusCode::OK, "{basket}");
    assert_eq!(proxy.seen().len(), 2);
}

#[tokio::test]
async fn no_proxy_hosts_are_called_directly() {
    let product = start(product::app, Env::default()).await;
    let proxy = RecordingProxy::start(HashMap::new()).await;
    let cart = start(
        cart::app,
        Env::from_pairs([
            ("PRODUCT_URL", product.url()),
            ("http_proxy", proxy.url()),
            ("no_proxy", "localhost,127.0.0.1".to_string()),
        ]),
    )
    .await;

    let (status, line) = must(
        Method::POST,
        &format!("{}/cart/dave", cart.url()),
        Some(json!({"productId": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{line}");
    assert!(
        proxy.seen().is_empty(),
        "NO_PROXY bypassed the proxy: {:?}",
        proxy.seen()
    );
}
