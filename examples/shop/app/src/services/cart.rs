//! cart: per-user carts, in memory (a cart is ephemeral). Calls product.
//!
//! - `GET /cart/:userId`: the items with their product details (an unknown user has an
//!   empty cart).
//! - `POST /cart/:userId` `{"productId": 2, "quantity": 1}`: add (quantities add up);
//!   201 with the cart line. A product that product answers 404 for is a 400 here; product
//!   unreachable or failing is a 502 naming it.
//! - `DELETE /cart/:userId/:itemId`: remove the line for product `itemId`; 204, or 404.
//!
//! Env: `PORT` (3002), `PRODUCT_URL` (required, e.g. `http://product:3001`), and the
//! proxy variables `HTTP_PROXY`/`NO_PROXY`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::client::{Upstream, UpstreamError};
use crate::config::{Common, ConfigError, Env};
use crate::error::{ApiError, parse_id, parse_json};
use crate::model::{AddToCart, Cart, CartItem, Product};
use crate::server::App;
use crate::trace::TraceContext;

pub const DEFAULT_PORT: u16 = 3002;
/// A bound on one line's quantity, so totals cannot overflow.
const MAX_QUANTITY: i64 = 1000;

struct Carts {
    product: Upstream,
    /// user id → (product id, quantity), in the order items were first added.
    carts: Mutex<HashMap<String, Vec<(i64, i64)>>>,
}

impl Carts {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<(i64, i64)>>> {
        // Every update is a single push or retain: a panic cannot leave one half-done.
        self.carts.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn product(&self, id: i64, trace: &TraceContext) -> Result<Product, UpstreamError> {
        self.product.get(&format!("/products/{id}"), trace).await
    }
}

pub fn app(env: &Env) -> Result<App, ConfigError> {
    let common = Common::from_env(env, DEFAULT_PORT)?;
    let product = Upstream::new("product", env.service_url("PRODUCT_URL")?, env.proxy()?);
    let state = Arc::new(Carts {
        product,
        carts: Mutex::default(),
    });
    let api = Router::new()
        .route("/cart/{user_id}", get(show).post(add))
        .route("/cart/{user_id}/{item_id}", delete(remove))
        .with_state(state);
    Ok(App {
        name: "cart",
        common,
        api,
        ready: Arc::new(|| true),
    })
}

fn item(product: Product, quantity: i64) -> CartItem {
    CartItem {
        product_id: product.id,
        quantity,
        line_total_cents: product.price_cents * quantity,
        name: product.name,
        price_cents: product.price_cents,
        sale: product.sale,
    }
}

async fn show(
    State(state): State<Arc<Carts>>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Cart>, ApiError> {
    let trace = TraceContext::from_headers(&headers);
    let lines = state.lock().get(&user_id).cloned().unwrap_or_default();
    let mut items = Vec::with_capacity(lines.len());
    for (product_id, quantity) in lines {
        let product = state
            .product(product_id, &trace)
            .await
            .map_err(|e| ApiError::bad_gateway(&e))?;
        items.push(item(product, quantity));
    }
    let total_cents = items.iter().map(|i| i.line_total_cents).sum();
    Ok(Json(Cart {
        user_id,
        items,
        total_cents,
    }))
}

async fn add(
    State(state): State<Arc<Carts>>,
    Path(user_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<CartItem>), ApiError> {
    let request: AddToCart = parse_json(&body)?;
    if !(1..=MAX_QUANTITY).contains(&request.quantity) {
        return Err(ApiError::bad_request(format!(
            "quantity must be between 1 and {MAX_QUANTITY}, got {}",
            request.quantity
        )));
    }
    let trace = TraceContext::from_headers(&headers);
    let product = match state.product(request.product_id, &trace).await {
        Ok(product) => product,
        Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
            return Err(ApiError::bad_request(format!(
                "product {} does not exist",
                request.product_id
            )));
        }
        Err(e) => return Err(ApiError::bad_gateway(&e)),
    };
    let quantity = {
        let mut carts = state.lock();
        let lines = carts.entry(user_id.clone()).or_default();
        match lines.iter_mut().find(|(id, _)| *id == product.id) {
            Some((_, quantity)) => {
                *quantity = (*quantity + request.quantity).min(MAX_QUANTITY);
                *quantity
            }
            None => {
                lines.push((product.id, request.quantity));
                request.quantity
            }
        }
    };
    tracing::info!(user_id, product_id = product.id, quantity, "added to cart");
    Ok((StatusCode::CREATED, Json(item(product, quantity))))
}

async fn remove(
    State(state): State<Arc<Carts>>,
    Path((user_id, item_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let product_id = parse_id("item id", &item_id)?;
    let mut carts = state.lock();
    let lines = carts.get_mut(&user_id);
    let removed = lines.is_some_and(|lines| {
        let before = lines.len();
        lines.retain(|(id, _)| *id != product_id);
        lines.len() < before
    });
    if carts.get(&user_id).is_some_and(Vec::is_empty) {
        carts.remove(&user_id);
    }
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "product {product_id} is not in the cart of user {user_id}"
        )))
    }
}
