//! The four services in-process on loopback, wired as in examples/shop
//! (product ← cart ← order → user), through the whole order flow and its error paths.

mod common;

use common::{call, must, start};
use http::{Method, StatusCode};
use serde_json::json;
use weft_shop::config::Env;
use weft_shop::services::{cart, order, product, user};

#[tokio::test]
async fn place_an_order_end_to_end() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let product = start(product::app, Env::default()).await;
    let cart = start(cart::app, Env::from_pairs([("PRODUCT_URL", product.url())])).await;
    let user = start(user::app, Env::from_pairs([("DATA_DIR", data_dir)])).await;
    let order = start(
        order::app,
        Env::from_pairs([
            ("USER_URL", user.url()),
            ("CART_URL", cart.url()),
            ("DATA_DIR", data_dir.to_string()),
        ]),
    )
    .await;

    let (status, alice) = must(
        Method::POST,
        &format!("{}/users", user.url()),
        Some(json!({"name": "Alice", "email": "alice@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{alice}");
    let id = alice["id"].as_i64().expect("user id");

    let cart_url = format!("{}/cart/{id}", cart.url());
    for (product_id, quantity) in [(2, 1), (3, 2), (2, 1)] {
        let body = json!({"productId": product_id, "quantity": quantity});
        let (status, line) = must(Method::POST, &cart_url, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{line}");
    }
    let (status, basket) = must(Method::GET, &cart_url, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(basket["items"][0]["name"], "Moka pot");
    assert_eq!(
        basket["items"][0]["quantity"], 2,
        "quantities add up: {basket}"
    );
    assert_eq!(basket["totalCents"], 2 * 3500 + 2 * 8900);

    let orders_url = format!("{}/orders", order.url());
    let (status, placed) = must(Method::POST, &orders_url, Some(json!({"userId": id}))).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["totalCents"], 2 * 3500 + 2 * 8900);
    assert_eq!(placed["lines"].as_array().map(Vec::len), Some(2));

    let (_, basket) = must(Method::GET, &cart_url, None).await;
    assert_eq!(basket["items"], json!([]), "the order cleared the cart");

    let (status, listed) = must(Method::GET, &format!("{orders_url}/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!([placed]));

    // An empty cart and an unknown user are the caller's mistakes: 400 with a reason.
    let (status, err) = must(Method::POST, &orders_url, Some(json!({"userId": id}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"].as_str().unwrap().contains("empty"), "{err}");
    let (status, err) = must(Method::POST, &orders_url, Some(json!({"userId": 999}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"], "user 999 does not exist");
    let (status, err) = must(Method::POST, &orders_url, Some(json!({"user": 1}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON body"),
        "{err}"
    );

    // A dependency that is down is a 502 naming it.
    user.stop().await.unwrap();
    let (status, err) = must(Method::POST, &orders_url, Some(json!({"userId": id}))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    assert_eq!(err["upstream"], "user");
}

#[tokio::test]
async fn cart_maps_product_answers() {
    let product = start(product::app, Env::default()).await;
    let cart = start(cart::app, Env::from_pairs([("PRODUCT_URL", product.url())])).await;
    let cart_url = format!("{}/cart/bob", cart.url());

    let (status, err) = must(Method::POST, &cart_url, Some(json!({"productId": 42}))).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "product's 404 is the caller's mistake"
    );
    assert_eq!(err["error"], "product 42 does not exist");

    let (status, _) = must(
        Method::POST,
        &cart_url,
        Some(json!({"productId": 1, "quantity": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, line) = must(Method::POST, &cart_url, Some(json!({"productId": 1}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(line["quantity"], 1, "quantity defaults to 1");

    let (status, err) = must(Method::DELETE, &format!("{cart_url}/5"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
    let (status, _) = must(Method::DELETE, &format!("{cart_url}/1"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    product.stop().await.unwrap();
    let (status, err) = must(Method::POST, &cart_url, Some(json!({"productId": 1}))).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    assert_eq!(err["upstream"], "product");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("product unreachable"),
        "{err}"
    );
}

#[tokio::test]
async fn product_versions_are_visible() {
    let v1 = start(product::app, Env::default()).await;
    let v2 = start(product::app, Env::from_pairs([("VERSION", "v2")])).await;

    let (status, headers, one) = call(Method::GET, &format!("{}/products/1", v1.url()), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-shop-version"], "v1");
    assert_eq!(
        one,
        json!({"id": 1, "name": "Espresso cup", "priceCents": 1200, "sale": false})
    );

    let (_, headers, all) = call(Method::GET, &format!("{}/products", v2.url()), None)
        .await
        .unwrap();
    assert_eq!(headers["x-shop-version"], "v2");
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.iter().all(|p| p["sale"] == true), "{all:?}");
    assert_eq!(all[0]["name"], "Espresso cup SALE");

    let (status, headers, err) = call(Method::GET, &format!("{}/products/9", v2.url()), None)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["x-shop-version"], "v2");
    assert_eq!(err, json!({"error": "product 9 does not exist"}));

    let (status, err) = must(Method::GET, &format!("{}/nowhere", v1.url()), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "no route for GET /nowhere");

    for path in ["/health", "/ready"] {
        let (status, _) = must(Method::GET, &format!("{}{path}", v1.url()), None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn first_requests_fail_on_purpose() {
    let product = start(product::app, Env::from_pairs([("FAIL_FIRST", "2")])).await;
    // `start` polled /ready: probes are neither failed nor counted.
    let url = format!("{}/products", product.url());
    for n in 1..=2 {
        let (status, headers, err) = call(Method::GET, &url, None).await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "request {n}");
        assert_eq!(headers["x-shop-injected-failure"], "true");
        assert!(
            err["error"].as_str().unwrap().contains("FAIL_FIRST"),
            "{err}"
        );
    }
    let (status, _) = must(Method::GET, &url, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = must(Method::GET, &format!("{}/health", product.url()), None).await;
    assert_eq!(status, StatusCode::OK);
}
