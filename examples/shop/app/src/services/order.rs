//! order: places and lists orders, persisted. Calls user and cart.
//!
//! - `POST /orders` `{"userId": 1}`: reads the user (unknown → 400) and the cart (empty →
//!   400), stores the order with its lines and total, clears the cart, 201 with the order.
//!   An upstream that is unreachable or fails is a 502 naming it.
//! - `GET /orders/:userId`: the user's orders, oldest first.
//!
//! Env: `PORT` (3003), `USER_URL`, `CART_URL` (required), `DATABASE_URL` or `DATA_DIR`
//! (see [`crate::store`]), `HTTP_PROXY`/`NO_PROXY`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::client::Upstream;
use crate::config::{Common, ConfigError, Env};
use crate::error::{ApiError, parse_id, parse_json};
use crate::model::{Cart, NewOrder, Order, OrderLine, PlaceOrder, User};
use crate::server::App;
use crate::store::{StoreCell, StoreConfig};
use crate::trace::TraceContext;

pub const DEFAULT_PORT: u16 = 3003;

#[derive(Clone)]
struct Orders {
    store: StoreCell,
    user: Upstream,
    cart: Upstream,
}

pub fn app(env: &Env) -> Result<App, ConfigError> {
    let common = Common::from_env(env, DEFAULT_PORT)?;
    let proxy = env.proxy()?;
    let user = Upstream::new("user", env.service_url("USER_URL")?, proxy.clone());
    let cart = Upstream::new("cart", env.service_url("CART_URL")?, proxy);
    let store = StoreCell::open_in_background(StoreConfig::from_env(env, "order")?);
    let ready = store.clone();
    let api = Router::new()
        .route("/orders", post(place))
        .route("/orders/{user_id}", get(list))
        .with_state(Orders { store, user, cart });
    Ok(App {
        name: "order",
        common,
        api,
        ready: Arc::new(move || ready.is_ready()),
    })
}

async fn place(
    State(orders): State<Orders>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Order>), ApiError> {
    let PlaceOrder { user_id } = parse_json(&body)?;
    let store = orders.store.get()?;
    let trace = TraceContext::from_headers(&headers);

    let user: User = match orders.user.get(&format!("/users/{user_id}"), &trace).await {
        Ok(user) => user,
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
            return Err(ApiError::bad_request(format!(
                "user {user_id} does not exist"
            )));
        }
        Err(e) => return Err(ApiError::bad_gateway(&e)),
    };
    let cart: Cart = orders
        .cart
        .get(&format!("/cart/{}", user.id), &trace)
        .await
        .map_err(|e| ApiError::bad_gateway(&e))?;
    if cart.items.is_empty() {
        return Err(ApiError::bad_request(format!(
            "the cart of user {user_id} is empty"
        )));
    }

    let lines: Vec<OrderLine> = cart
        .items
        .iter()
        .map(|item| OrderLine {
            product_id: item.product_id,
            name: item.name.clone(),
            price_cents: item.price_cents,
            quantity: item.quantity,
        })
        .collect();
    let total_cents = lines.iter().map(|l| l.price_cents * l.quantity).sum();
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let order = store
        .create_order(NewOrder {
            user_id: user.id,
            lines,
            total_cents,
            created_at,
        })
        .await?;
    tracing::info!(order_id = order.id, user_id, total_cents, "order placed");

    // The order stands once stored; a line left in the cart is visible to the user and
    // harmless, so a failed clear is logged rather than failing the order.
    for line in &order.lines {
        let path = format!("/cart/{}/{}", user.id, line.product_id);
        if let Err(error) = orders.cart.delete(&path, &trace).await {
            tracing::warn!(%error, order_id = order.id, "could not clear the cart line");
        }
    }
    Ok((StatusCode::CREATED, Json(order)))
}

async fn list(
    State(orders): State<Orders>,
    Path(user_id): Path<String>,
) -> Result<Json<Vec<Order>>, ApiError> {
    let user_id = parse_id("user id", &user_id)?;
    Ok(Json(orders.store.get()?.list_orders(user_id).await?))
}
