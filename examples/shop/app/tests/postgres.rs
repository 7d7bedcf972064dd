//! The stores against real databases: SQLite in a temp dir, and PostgreSQL in a temporary
//! cluster started for the test (initdb + pg_ctl, on a free loopback port). PostgreSQL
//! missing is a failure, not a skip: CI installs it (.ci/run), and a developer is told how.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{must, start};
use http::{Method, StatusCode};
use serde_json::json;
use weft_shop::config::Env;
use weft_shop::model::{NewOrder, NewUser, OrderLine};
use weft_shop::services::{cart, order, product, user};
use weft_shop::store::{Store, StoreConfig};

/// What a store must do, whichever the backend.
async fn store_contract(store: Arc<dyn Store>) {
    assert!(store.is_open());
    let gina = store
        .create_user(NewUser {
            name: "Gina".into(),
            email: "gina@example.com".into(),
        })
        .await
        .unwrap();
    assert_eq!(store.get_user(gina.id).await.unwrap(), Some(gina.clone()));
    assert_eq!(store.get_user(gina.id + 1000).await.unwrap(), None);

    let line = |product_id, quantity| OrderLine {
        product_id,
        name: format!("item {product_id}"),
        price_cents: 100 * product_id,
        quantity,
    };
    let first = store
        .create_order(NewOrder {
            user_id: gina.id,
            lines: vec![line(3, 1), line(1, 2)],
            total_cents: 500,
            created_at: 1_700_000_000,
        })
        .await
        .unwrap();
    let second = store
        .create_order(NewOrder {
            user_id: gina.id,
            lines: vec![line(2, 1)],
            total_cents: 200,
            created_at: 1_700_000_100,
        })
        .await
        .unwrap();
    assert!(second.id > first.id);
    assert_eq!(
        store.list_orders(gina.id).await.unwrap(),
        vec![first, second]
    );
    assert_eq!(store.list_orders(gina.id + 1000).await.unwrap(), vec![]);
}

#[tokio::test]
async fn sqlite_store_keeps_its_contract() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Sqlite {
        path: dir.path().join("nested/shop.db"),
    };
    store_contract(config.open().await.unwrap()).await;
    // Reopening finds the schema and the data.
    let again = config.open().await.unwrap();
    assert_eq!(again.list_orders(1).await.unwrap().len(), 2);
}

#[tokio::test]
async fn postgres_store_and_services() {
    let cluster = Cluster::start().unwrap_or_else(|reason| {
        panic!(
            "PostgreSQL is needed for this test and could not be started: {reason}\n\
             Install it (Debian/Ubuntu: apt-get install -y postgresql; .ci/run does this in CI)."
        )
    });
    let url = cluster.url();
    let env = Env::from_pairs([("DATABASE_URL", url.as_str())]);
    let config = StoreConfig::from_env(&env, "user").unwrap();

    // Two services creating the schema at once (user and order share a database).
    let (a, b) = tokio::join!(config.open(), config.open());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.backend(), "postgres");
    store_contract(a).await;
    assert_eq!(
        b.list_orders(1).await.unwrap().len(),
        2,
        "a second connection sees the data"
    );

    // The services on PostgreSQL: nothing lands in DATA_DIR.
    let data = tempfile::tempdir().unwrap();
    let data_env = env.with("DATA_DIR", data.path().to_str().unwrap());
    let product = start(product::app, Env::default()).await;
    let cart = start(cart::app, Env::from_pairs([("PRODUCT_URL", product.url())])).await;
    let users = start(user::app, data_env.clone()).await;
    let orders = start(
        order::app,
        data_env
            .clone()
            .with("USER_URL", users.url())
            .with("CART_URL", cart.url()),
    )
    .await;
    let (status, hank) = must(
        Method::POST,
        &format!("{}/users", users.url()),
        Some(json!({"name": "Hank", "email": "hank@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = hank["id"].as_i64().unwrap();
    must(
        Method::POST,
        &format!("{}/cart/{id}", cart.url()),
        Some(json!({"productId": 6})),
    )
    .await;
    let (status, placed) = must(
        Method::POST,
        &format!("{}/orders", orders.url()),
        Some(json!({"userId": id})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["totalCents"], 2200);
    assert_eq!(
        std::fs::read_dir(data.path()).unwrap().count(),
        0,
        "no SQLite files"
    );

    // A new instance (a restart) reads the order back from PostgreSQL.
    orders.stop().await.unwrap();
    let orders = start(
        order::app,
        data_env
            .with("USER_URL", users.url())
            .with("CART_URL", cart.url()),
    )
    .await;
    let (_, listed) = must(Method::GET, &format!("{}/orders/{id}", orders.url()), None).await;
    assert_eq!(listed, json!([placed]));
}

/// A throwaway PostgreSQL cluster in a temp dir, stopped on drop. PostgreSQL refuses to run
/// as root, so as root it runs as the `postgres` user the Debian package creates.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<&'static str>,
    port: u16,
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        let bin = postgres_bin_dir()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let run_as = is_root().then_some("postgres");
        if let Some(owner) = run_as {
            run(Command::new("chown").arg(owner).arg(dir.path()))?;
        }
        let port = free_port()?;
        let cluster = Cluster {
            dir,
            bin,
            run_as,
            port,
        };
        let data = cluster.data();
        cluster.pg(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "weft",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("server.log").display().to_string();
        let started = cluster.pg(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start",
            ],
        );
        if let Err(error) = started {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(format!("{error}\nserver log:\n{log}"));
        }
        Ok(cluster)
    }

    fn url(&self) -> String {
        format!("postgres://weft@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Run one of PostgreSQL's programs, as the cluster's owner.
    fn pg(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut command = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        run(command.args(args).current_dir(self.dir.path()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        if let Err(error) = self.pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]) {
            eprintln!("stopping the test PostgreSQL cluster: {error}");
        }
    }
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("running {command:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// `pg_ctl`'s directory: on PATH, else Debian's `/usr/lib/postgresql/<version>/bin`
/// (the newest version installed).
fn postgres_bin_dir() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .find(|dir| dir.join("pg_ctl").is_file() && dir.join("initdb").is_file());
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| format!("no pg_ctl on PATH and cannot read {}: {e}", root.display()))?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| format!("no pg_ctl on PATH nor in {}/*/bin", root.display()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
