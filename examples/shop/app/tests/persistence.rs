//! SQLite persistence across restarts (in-process and as real processes), graceful exit on
//! SIGTERM, and configuration errors from the binaries.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;

use common::{PATIENCE, must, start};
use http::{Method, StatusCode};
use serde_json::json;
use weft_shop::config::Env;
use weft_shop::services::{cart, order, product, user};

#[tokio::test]
async fn users_and_orders_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let data_env = || Env::from_pairs([("DATA_DIR", data.path().to_str().unwrap())]);
    let product = start(product::app, Env::default()).await;
    let cart = start(cart::app, Env::from_pairs([("PRODUCT_URL", product.url())])).await;
    let users = start(user::app, data_env()).await;
    let order_env = data_env()
        .with("USER_URL", users.url())
        .with("CART_URL", cart.url());
    let orders = start(order::app, order_env.clone()).await;

    let (status, erin) = must(
        Method::POST,
        &format!("{}/users", users.url()),
        Some(json!({"name": "Erin", "email": "erin@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let id = erin["id"].as_i64().unwrap();
    must(
        Method::POST,
        &format!("{}/cart/{id}", cart.url()),
        Some(json!({"productId": 4})),
    )
    .await;
    let (status, placed) = must(
        Method::POST,
        &format!("{}/orders", orders.url()),
        Some(json!({"userId": id})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");

    orders.stop().await.unwrap();
    users.stop().await.unwrap();
    assert!(data.path().join("user.db").is_file());
    assert!(data.path().join("order.db").is_file());

    let users = start(user::app, data_env()).await;
    let (status, found) = must(Method::GET, &format!("{}/users/{id}", users.url()), None).await;
    assert_eq!((status, found), (StatusCode::OK, erin));
    let orders = start(order::app, order_env).await;
    let (_, listed) = must(Method::GET, &format!("{}/orders/{id}", orders.url()), None).await;
    assert_eq!(listed, json!([placed]));
}

/// A service binary running as a child process, its log lines collected by a thread.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Process {
    fn spawn(binary: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary)
            .envs(env.iter().copied())
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let (tx, lines) = mpsc::channel();
        for output in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Process {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The address from the `listening addr=...` log line.
    async fn listening_addr(&mut self) -> SocketAddr {
        let mut addr = None;
        let found = weft_testkit::wait::until(PATIENCE, || {
            while let Ok(line) = self.lines.try_recv() {
                if line.contains("listening") {
                    addr = line
                        .split_whitespace()
                        .find_map(|field| field.strip_prefix("addr="))
                        .and_then(|a| a.parse().ok());
                }
                self.log.push(line);
            }
            std::future::ready(addr.is_some())
        })
        .await;
        assert!(
            found,
            "no `listening addr=` line; log so far:\n{}",
            self.log.join("\n")
        );
        addr.unwrap()
    }

    /// Wait for the process to exit on its own, then return its status and full log.
    async fn exit(mut self) -> (ExitStatus, String) {
        let mut status = None;
        let exited = weft_testkit::wait::until(PATIENCE, || {
            status = self.child.try_wait().expect("waitpid");
            std::future::ready(status.is_some())
        })
        .await;
        if !exited {
            let _ = self.child.kill();
        }
        // The reader threads end at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
            self.log.push(line);
        }
        assert!(
            exited,
            "process did not exit; log:\n{}",
            self.log.join("\n")
        );
        (status.unwrap(), self.log.join("\n"))
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
    }
}

#[tokio::test]
async fn user_binary_drains_on_sigterm_and_keeps_its_data() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let env = [("HOST", "127.0.0.1"), ("PORT", "0"), ("DATA_DIR", data_dir)];
    let binary = env!("CARGO_BIN_EXE_shop-user");

    let mut first = Process::spawn(binary, &env);
    let base = format!("http://{}", first.listening_addr().await);
    wait_ready(&base).await;
    let (status, frank) = must(
        Method::POST,
        &format!("{base}/users"),
        Some(json!({"name": "Frank", "email": "frank@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{frank}");
    first.terminate();
    let (status, log) = first.exit().await;
    assert!(status.success(), "exit {status} after SIGTERM; log:\n{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        log.contains("method=POST path=/users"),
        "a line per request: {log}"
    );

    let mut second = Process::spawn(binary, &env);
    let base = format!("http://{}", second.listening_addr().await);
    wait_ready(&base).await;
    let url = format!("{base}/users/{}", frank["id"]);
    let (status, found) = must(Method::GET, &url, None).await;
    assert_eq!((status, found), (StatusCode::OK, frank));
    second.terminate();
    assert!(second.exit().await.0.success());
}

async fn wait_ready(base: &str) {
    let url = format!("{base}/ready");
    weft_testkit::wait::eventually("ready", PATIENCE, || {
        let url = url.clone();
        async move {
            matches!(
                common::call(Method::GET, &url, None).await,
                Ok((StatusCode::OK, ..))
            )
        }
    })
    .await;
}

/// A binary, its environment, and what its error must say.
type BadConfig = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test]
async fn binaries_name_the_bad_variable_and_exit_2() {
    let cases: [BadConfig; 3] = [
        (
            env!("CARGO_BIN_EXE_shop-cart"),
            &[],
            "PRODUCT_URL is required",
        ),
        (
            env!("CARGO_BIN_EXE_shop-order"),
            &[("USER_URL", "http://user:3004"), ("CART_URL", "cart:3002")],
            "CART_URL=\"cart:3002\" is invalid",
        ),
        (
            env!("CARGO_BIN_EXE_shop-product"),
            &[("FAIL_RATE", "lots")],
            "FAIL_RATE=\"lots\"",
        ),
    ];
    for (binary, env, expected) in cases {
        let (status, log) = Process::spawn(binary, env).exit().await;
        assert_eq!(status.code(), Some(2), "{binary}: {log}");
        assert!(
            log.contains(expected),
            "{binary}: expected {expected:?} in:\n{log}"
        );
    }
}
