//! The demo shop of `examples/shop`: four small services as in a typical e-commerce
//! microservice demo, written to exercise a service mesh.
//!
//! | binary | port | routes | calls |
//! |---|---|---|---|
//! | `shop-product` | 3001 | `GET /products`, `GET /products/:id` | - |
//! | `shop-cart` | 3002 | `GET/POST /cart/:userId`, `DELETE /cart/:userId/:itemId` | product |
//! | `shop-order` | 3003 | `POST /orders`, `GET /orders/:userId` | user, cart |
//! | `shop-user` | 3004 | `GET /users/:id`, `POST /users` | - |
//!
//! Every service answers `/health` (alive) and `/ready` (store open), reads its settings
//! from the environment ([`config`]), logs one line per request, forwards trace headers on
//! every outbound call ([`trace`]), sends those calls through `HTTP_PROXY` when set
//! ([`client`]), can fail on purpose ([`fail`]) and drains on SIGTERM ([`server`]).
//! Users and orders persist in SQLite, or PostgreSQL when `DATABASE_URL` is set ([`store`]).

pub mod client;
pub mod config;
pub mod error;
pub mod fail;
pub mod logging;
pub mod model;
pub mod server;
pub mod services;
pub mod store;
pub mod trace;
