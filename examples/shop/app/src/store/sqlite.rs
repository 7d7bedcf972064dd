//! The SQLite store: one file per service, blocking calls moved off the async workers.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use super::{OrderRow, Store, StoreError, StoreFuture, assemble_orders};
use crate::model::{NewOrder, NewUser, Order, OrderLine, User};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    email TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id);
CREATE TABLE IF NOT EXISTS order_lines (
    order_id INTEGER NOT NULL REFERENCES orders (id),
    line_no INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
";

pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Open (or create) the database file and its schema; creates the directory too.
    pub async fn open(path: PathBuf) -> Result<Self, StoreError> {
        let opened = path.clone();
        let conn = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            let sqlite = |source| StoreError::Sqlite {
                path: path.clone(),
                source,
            };
            let conn = Connection::open(&path).map_err(sqlite)?;
            conn.execute_batch(SCHEMA).map_err(sqlite)?;
            Ok(conn)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))??;
        Ok(SqliteStore {
            path: opened,
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection on the blocking pool.
    fn run<T, F>(&self, f: F) -> StoreFuture<'_, T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        let path = self.path.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                // A poisoned lock means a panic mid-call; SQLite rolled back whatever
                // transaction it had, so the connection is still consistent.
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut conn)
            })
            .await
            .map_err(|e| StoreError::Worker(e.to_string()))?
            .map_err(|source| StoreError::Sqlite { path, source })
        })
    }
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn is_open(&self) -> bool {
        true
    }

    fn create_user(&self, user: NewUser) -> StoreFuture<'_, User> {
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO users (name, email) VALUES (?1, ?2)",
                params![user.name, user.email],
            )?;
            Ok(User {
                id: conn.last_insert_rowid(),
                name: user.name,
                email: user.email,
            })
        })
    }

    fn get_user(&self, id: i64) -> StoreFuture<'_, Option<User>> {
        self.run(move |conn| {
            conn.query_row(
                "SELECT id, name, email FROM users WHERE id = ?1",
                [id],
                |row| {
                    Ok(User {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        email: row.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    fn create_order(&self, order: NewOrder) -> StoreFuture<'_, Order> {
        self.run(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO orders (user_id, total_cents, created_at) VALUES (?1, ?2, ?3)",
                params![order.user_id, order.total_cents, order.created_at],
            )?;
            let id = tx.last_insert_rowid();
            {
                let mut insert = tx.prepare(
                    "INSERT INTO order_lines (order_id, line_no, product_id, name, price_cents, quantity)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for (line_no, line) in order.lines.iter().enumerate() {
                    insert.execute(params![
                        id,
                        line_no as i64,
                        line.product_id,
                        line.name,
                        line.price_cents,
                        line.quantity
                    ])?;
                }
            }
            tx.commit()?;
            Ok(Order::from_new(id, order))
        })
    }

    fn list_orders(&self, user_id: i64) -> StoreFuture<'_, Vec<Order>> {
        self.run(move |conn| {
            let mut query = conn.prepare(
                "SELECT o.id, o.user_id, o.total_cents, o.created_at,
                        l.product_id, l.name, l.price_cents, l.quantity
                 FROM orders o JOIN order_lines l ON l.order_id = o.id
                 WHERE o.user_id = ?1
                 ORDER BY o.id, l.line_no",
            )?;
            let rows = query
                .query_map([user_id], |row| {
                    Ok(OrderRow {
                        id: row.get(0)?,
                        user_id: row.get(1)?,
                        total_cents: row.get(2)?,
                        created_at: row.get(3)?,
                        line: OrderLine {
                            product_id: row.get(4)?,
                            name: row.get(5)?,
                            price_cents: row.get(6)?,
                            quantity: row.get(7)?,
                        },
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(assemble_orders(rows))
        })
    }
}
