//! The PostgreSQL store (`DATABASE_URL`), without TLS: inside the mesh the sidecar encrypts.

use std::time::Duration;

use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, NoTls, Row};

use super::{OrderRow, Store, StoreError, StoreFuture, assemble_orders};
use crate::model::{NewOrder, NewUser, Order, OrderLine, User};

/// Serialises schema creation across services sharing a database: concurrent
/// `CREATE TABLE IF NOT EXISTS` of one table can otherwise fail on a catalog unique index.
const SCHEMA_LOCK: i64 = 0x5e0f_0005;

const SCHEMA: &str = "
BEGIN;
SELECT pg_advisory_xact_lock(SCHEMA_LOCK);
CREATE TABLE IF NOT EXISTS users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    total_cents BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id BIGINT NOT NULL REFERENCES orders (id),
    line_no INT NOT NULL,
    product_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    price_cents BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
COMMIT;
";

/// Used when `DATABASE_URL` sets no `connect_timeout`, so an unreachable host is retried
/// instead of hanging the first attempt for the kernel's SYN timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct PostgresStore {
    client: Client,
}

fn pg(error: tokio_postgres::Error) -> StoreError {
    StoreError::Postgres(error.to_string())
}

impl PostgresStore {
    pub async fn connect(config: &tokio_postgres::Config) -> Result<Self, StoreError> {
        let mut config = config.clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let (client, connection) = config.connect(NoTls).await.map_err(pg)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::error!(%error, "postgres connection lost; /ready now fails");
            }
        });
        let schema = SCHEMA.replace("SCHEMA_LOCK", &SCHEMA_LOCK.to_string());
        client.batch_execute(&schema).await.map_err(pg)?;
        Ok(PostgresStore { client })
    }
}

/// Column `index` of `row`, as an error rather than a panic if the schema does not match.
fn col<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> Result<T, StoreError> {
    row.try_get(index).map_err(pg)
}

fn user_from(row: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: col(row, 0)?,
        name: col(row, 1)?,
        email: col(row, 2)?,
    })
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn is_open(&self) -> bool {
        !self.client.is_closed()
    }

    fn create_user(&self, user: NewUser) -> StoreFuture<'_, User> {
        Box::pin(async move {
            let row = self
                .client
                .query_one(
                    "INSERT INTO users (name, email) VALUES ($1, $2) RETURNING id, name, email",
                    &[&user.name, &user.email],
                )
                .await
                .map_err(pg)?;
            user_from(&row)
        })
    }

    fn get_user(&self, id: i64) -> StoreFuture<'_, Option<User>> {
        Box::pin(async move {
            let row = self
                .client
                .query_opt("SELECT id, name, email FROM users WHERE id = $1", &[&id])
                .await
                .map_err(pg)?;
            row.as_ref().map(user_from).transpose()
        })
    }

    fn create_order(&self, order: NewOrder) -> StoreFuture<'_, Order> {
        Box::pin(async move {
            // One statement, so the order and its lines land atomically without holding a
            // transaction (which would need exclusive use of the shared client).
            let line_nos: Vec<i32> = (0..order.lines.len() as i32).collect();
            let product_ids: Vec<i64> = order.lines.iter().map(|l| l.product_id).collect();
            let names: Vec<&str> = order.lines.iter().map(|l| l.name.as_str()).collect();
            let prices: Vec<i64> = order.lines.iter().map(|l| l.price_cents).collect();
            let quantities: Vec<i64> = order.lines.iter().map(|l| l.quantity).collect();
            let row = self
                .client
                .query_one(
                    "WITH new_order AS (
                         INSERT INTO orders (user_id, total_cents, created_at)
                         VALUES ($1, $2, $3) RETURNING id
                     ), new_lines AS (
                         INSERT INTO order_lines
                             (order_id, line_no, product_id, name, price_cents, quantity)
                         SELECT new_order.id, l.line_no, l.product_id, l.name, l.price_cents, l.quantity
                         FROM new_order,
                              unnest($4::int[], $5::bigint[], $6::text[], $7::bigint[], $8::bigint[])
                                  AS l (line_no, product_id, name, price_cents, quantity)
                     )
                     SELECT id FROM new_order",
                    &[
                        &order.user_id,
                        &order.total_cents,
                        &order.created_at,
                        &line_nos,
                        &product_ids,
                        &names,
                        &prices,
                        &quantities,
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(Order::from_new(col(&row, 0)?, order))
        })
    }

    fn list_orders(&self, user_id: i64) -> StoreFuture<'_, Vec<Order>> {
        Box::pin(async move {
            let rows = self
                .client
                .query(
                    "SELECT o.id, o.user_id, o.total_cents, o.created_at,
                            l.product_id, l.name, l.price_cents, l.quantity
                     FROM orders o JOIN order_lines l ON l.order_id = o.id
                     WHERE o.user_id = $1
                     ORDER BY o.id, l.line_no",
                    &[&user_id],
                )
                .await
                .map_err(pg)?;
            let rows = rows
                .iter()
                .map(|row| {
                    Ok(OrderRow {
                        id: col(row, 0)?,
                        user_id: col(row, 1)?,
                        total_cents: col(row, 2)?,
                        created_at: col(row, 3)?,
                        line: OrderLine {
                            product_id: col(row, 4)?,
                            name: col(row, 5)?,
                            price_cents: col(row, 6)?,
                            quantity: col(row, 7)?,
                        },
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(assemble_orders(rows))
        })
    }
}
