//! The JSON shapes the services exchange (camelCase on the wire).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
    /// True in the v2 catalogue, which marks every item "SALE".
    pub sale: bool,
}

/// `POST /cart/:userId` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddToCart {
    pub product_id: i64,
    #[serde(default = "one")]
    pub quantity: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CartItem {
    pub product_id: i64,
    pub quantity: i64,
    pub name: String,
    pub price_cents: i64,
    pub sale: bool,
    pub line_total_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    pub user_id: String,
    pub items: Vec<CartItem>,
    pub total_cents: i64,
}

/// `POST /users` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
}

/// `POST /orders` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    pub user_id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub product_id: i64,
    pub name: String,
    pub price_cents: i64,
    pub quantity: i64,
}

/// An order before the store gives it an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub user_id: i64,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub lines: Vec<OrderLine>,
    pub total_cents: i64,
    pub created_at: i64,
}

impl Order {
    pub fn from_new(id: i64, new: NewOrder) -> Self {
        Order {
            id,
            user_id: new.user_id,
            lines: new.lines,
            total_cents: new.total_cents,
            created_at: new.created_at,
        }
    }
}
