//! Persistence for users and orders: SQLite by default, PostgreSQL when `DATABASE_URL` is set.
//!
//! - `DATABASE_URL` (e.g. `postgres://shop@127.0.0.1:5432/shop`): use PostgreSQL (no TLS).
//! - `DATA_DIR` (default `./data`): otherwise, where the SQLite file `<service>.db` lives.
//!
//! The schema is created on open and is idempotent, so a restart or a second service
//! sharing one PostgreSQL database finds what it left.

mod postgres;
mod sqlite;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tracing::Instrument;

use crate::config::{ConfigError, Env};
use crate::model::{NewOrder, NewUser, Order, OrderLine, User};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// What the user and order services persist. Each service uses its own part.
pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`, for logs.
    fn backend(&self) -> &'static str;
    /// False once the connection is gone (PostgreSQL); `/ready` reports it.
    fn is_open(&self) -> bool;
    fn create_user(&self, user: NewUser) -> StoreFuture<'_, User>;
    fn get_user(&self, id: i64) -> StoreFuture<'_, Option<User>>;
    /// Store an order with its lines, atomically. `order.lines` must not be empty.
    fn create_order(&self, order: NewOrder) -> StoreFuture<'_, Order>;
    /// A user's orders, oldest first.
    fn list_orders(&self, user_id: i64) -> StoreFuture<'_, Vec<Order>>;
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is not open yet (see the service's log for why)")]
    NotOpen,
    #[error("creating the data directory {path}: {source} (set DATA_DIR to a writable directory)")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sqlite {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("postgres: {0}")]
    Postgres(String),
    #[error("store worker failed: {0}")]
    Worker(String),
}

/// Which store to open, decided from the environment.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    Sqlite { path: PathBuf },
    Postgres { config: Box<tokio_postgres::Config> },
}

impl StoreConfig {
    pub fn from_env(env: &Env, service: &str) -> Result<Self, ConfigError> {
        if let Some(url) = env.get("DATABASE_URL") {
            // The URL may carry a password: never echo it.
            let config = url
                .parse::<tokio_postgres::Config>()
                .map_err(|e| ConfigError::invalid_secret("DATABASE_URL", e))?;
            return Ok(StoreConfig::Postgres {
                config: Box::new(config),
            });
        }
        let dir = PathBuf::from(env.get("DATA_DIR").unwrap_or("./data"));
        Ok(StoreConfig::Sqlite {
            path: dir.join(format!("{service}.db")),
        })
    }

    /// Open the store and create the schema.
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            StoreConfig::Sqlite { path } => Arc::new(SqliteStore::open(path.clone()).await?),
            StoreConfig::Postgres { config } => Arc::new(PostgresStore::connect(config).await?),
        })
    }
}

/// A store being opened in the background. The service listens at once (so `/health`
/// answers) and becomes ready when the store is open; a database that starts after the
/// service (as under `weft up`, which starts everything together) is retried with backoff.
#[derive(Clone)]
pub struct StoreCell(Arc<OnceLock<Arc<dyn Store>>>);

impl StoreCell {
    pub fn open_in_background(config: StoreConfig) -> Self {
        let cell = Arc::new(OnceLock::new());
        // In the caller's span, so its log lines name the service.
        tokio::spawn(open_with_retry(config, Arc::downgrade(&cell)).in_current_span());
        StoreCell(cell)
    }

    /// A cell holding an already open store.
    pub fn ready(store: Arc<dyn Store>) -> Self {
        StoreCell(Arc::new(OnceLock::from(store)))
    }

    pub fn get(&self) -> Result<&Arc<dyn Store>, StoreError> {
        self.0.get().ok_or(StoreError::NotOpen)
    }

    pub fn is_ready(&self) -> bool {
        self.0.get().is_some_and(|store| store.is_open())
    }
}

async fn open_with_retry(config: StoreConfig, cell: Weak<OnceLock<Arc<dyn Store>>>) {
    let mut attempt = 0;
    loop {
        match config.open().await {
            Ok(store) => {
                tracing::info!(backend = store.backend(), "store open");
                if let Some(cell) = cell.upgrade() {
                    let _ = cell.set(store);
                }
                return;
            }
            Err(error) => {
                let delay = retry_delay(attempt);
                tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "cannot open the store");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
        // The service was stopped while we were waiting: nobody needs the store any more.
        if cell.strong_count() == 0 {
            return;
        }
    }
}

/// Exponential backoff for opening the store: 100 ms, 200 ms, ... capped at 5 s.
pub fn retry_delay(attempt: u32) -> Duration {
    let millis = 100u64.saturating_mul(1 << attempt.min(16));
    Duration::from_millis(millis.min(5_000))
}

/// One row of the orders ⋈ order_lines join, ordered by order id then line number.
struct OrderRow {
    id: i64,
    user_id: i64,
    total_cents: i64,
    created_at: i64,
    line: OrderLine,
}

/// Fold joined rows into orders, keeping their order.
fn assemble_orders(rows: impl IntoIterator<Item = OrderRow>) -> Vec<Order> {
    let mut orders: Vec<Order> = Vec::new();
    for row in rows {
        match orders.last_mut() {
            Some(order) if order.id == row.id => order.lines.push(row.line),
            _ => orders.push(Order {
                id: row.id,
                user_id: row.user_id,
                lines: vec![row.line],
                total_cents: row.total_cents,
                created_at: row.created_at,
            }),
        }
    }
    orders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let delays: Vec<u64> = (0..8).map(|a| retry_delay(a).as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn database_url_selects_postgres_and_is_not_echoed() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://shop:hunter2@db:5432/shop")]);
        assert!(matches!(
            StoreConfig::from_env(&env, "user").unwrap(),
            StoreConfig::Postgres { .. }
        ));

        let env = Env::from_pairs([("DATABASE_URL", "postgres://shop:hunter2@db:notaport/x")]);
        let err = StoreConfig::from_env(&env, "user").unwrap_err().to_string();
        assert!(err.contains("DATABASE_URL=<redacted>"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn sqlite_file_is_named_after_the_service() {
        let env = Env::from_pairs([("DATA_DIR", "/var/lib/shop")]);
        match StoreConfig::from_env(&env, "order").unwrap() {
            StoreConfig::Sqlite { path } => {
                assert_eq!(path, PathBuf::from("/var/lib/shop/order.db"))
            }
            other => panic!("expected sqlite, got {other:?}"),
        }
    }
}
