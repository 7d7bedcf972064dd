//! product: the catalogue. `GET /products`, `GET /products/:id`.
//!
//! Env: `PORT` (3001), `VERSION` (`v1` | `v2`, default `v1`). v2 puts every item on sale:
//! `"sale": true`, " SALE" after the name, 20% off. Every API response carries
//! `x-shop-version: v1|v2`, so a test can see which version answered.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use http::HeaderValue;

use crate::config::{Common, ConfigError, Env};
use crate::error::{ApiError, parse_id};
use crate::model::Product;
use crate::server::App;

pub const DEFAULT_PORT: u16 = 3001;
pub const VERSION_HEADER: &str = "x-shop-version";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

impl FromStr for Version {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" => Ok(Version::V1),
            "v2" => Ok(Version::V2),
            _ => Err("expected v1 or v2"),
        }
    }
}

/// The catalogue as `version` shows it.
pub fn catalogue(version: Version) -> Vec<Product> {
    const ITEMS: [(&str, i64); 6] = [
        ("Espresso cup", 1200),
        ("Moka pot", 3500),
        ("Coffee grinder", 8900),
        ("Milk jug", 1500),
        ("Tamper", 2500),
        ("Coffee beans 1 kg", 2200),
    ];
    ITEMS
        .iter()
        .zip(1..)
        .map(|(&(name, price_cents), id)| match version {
            Version::V1 => Product {
                id,
                name: name.to_string(),
                price_cents,
                sale: false,
            },
            Version::V2 => Product {
                id,
                name: format!("{name} SALE"),
                price_cents: price_cents * 80 / 100,
                sale: true,
            },
        })
        .collect()
}

pub fn app(env: &Env) -> Result<App, ConfigError> {
    let common = Common::from_env(env, DEFAULT_PORT)?;
    let version: Version = env.parse_or("VERSION", Version::V1)?;
    let products: Arc<[Product]> = catalogue(version).into();
    let header = HeaderValue::from_static(version.as_str());
    let api = Router::new()
        .route("/products", get(list))
        .route("/products/{id}", get(one))
        .with_state(products)
        .layer(axum::middleware::map_response(
            move |mut response: Response| {
                let header = header.clone();
                async move {
                    response.headers_mut().insert(VERSION_HEADER, header);
                    response
                }
            },
        ));
    Ok(App {
        name: "product",
        common,
        api,
        ready: Arc::new(|| true),
    })
}

async fn list(State(products): State<Arc<[Product]>>) -> Json<Vec<Product>> {
    Json(products.to_vec())
}

async fn one(
    State(products): State<Arc<[Product]>>,
    Path(id): Path<String>,
) -> Result<Json<Product>, ApiError> {
    let id = parse_id("product id", &id)?;
    products
        .iter()
        .find(|p| p.id == id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_marks_every_item_on_sale() {
        let v1 = catalogue(Version::V1);
        let v2 = catalogue(Version::V2);
        assert_eq!(v1.len(), 6);
        assert!(v1.iter().all(|p| !p.sale && !p.name.contains("SALE")));
        assert!(v2.iter().all(|p| p.sale && p.name.ends_with(" SALE")));
        assert_eq!(v2[0].price_cents, 960);
    }

    #[test]
    fn bad_version_names_the_variable() {
        let Err(err) = app(&Env::from_pairs([("VERSION", "3")])) else {
            panic!("VERSION=3 accepted");
        };
        assert!(err.to_string().contains("VERSION=\"3\""), "{err}");
    }
}
