//! user: accounts, persisted. `GET /users/:id`, `POST /users` `{"name", "email"}` → 201
//! `{"id", "name", "email"}`.
//!
//! Env: `PORT` (3004), `DATABASE_URL` or `DATA_DIR` (see [`crate::store`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;

use crate::config::{Common, ConfigError, Env};
use crate::error::{ApiError, parse_id, parse_json};
use crate::model::{NewUser, User};
use crate::server::App;
use crate::store::{StoreCell, StoreConfig};

pub const DEFAULT_PORT: u16 = 3004;

pub fn app(env: &Env) -> Result<App, ConfigError> {
    let common = Common::from_env(env, DEFAULT_PORT)?;
    let store = StoreCell::open_in_background(StoreConfig::from_env(env, "user")?);
    Ok(with_store(common, store))
}

/// The service over a given store (tests pass one already open).
pub fn with_store(common: Common, store: StoreCell) -> App {
    let ready = store.clone();
    let api = Router::new()
        .route("/users", post(create))
        .route("/users/{id}", get(show))
        .with_state(store);
    App {
        name: "user",
        common,
        api,
        ready: Arc::new(move || ready.is_ready()),
    }
}

async fn create(
    State(store): State<StoreCell>,
    body: Bytes,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user: NewUser = parse_json(&body)?;
    let user = NewUser {
        name: user.name.trim().to_string(),
        email: user.email.trim().to_string(),
    };
    if user.name.is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    if !user.email.contains('@') {
        return Err(ApiError::bad_request(format!(
            "email {:?} is not an email address",
            user.email
        )));
    }
    let user = store.get()?.create_user(user).await?;
    tracing::info!(user_id = user.id, "user created");
    Ok((StatusCode::CREATED, Json(user)))
}

async fn show(
    State(store): State<StoreCell>,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    let id = parse_id("user id", &id)?;
    store
        .get()?
        .get_user(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("user {id} does not exist")))
}
