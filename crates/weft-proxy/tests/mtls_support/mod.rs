//! Shared setup of the mesh mTLS tests: a test CA, a client sidecar and a server sidecar
//! (in-process proxies on 127.0.0.1 with hand-written configs), echo apps, and metrics.
//!
//! Server sidecar (workload `server`): explicit inbound listeners `inbound|3002` (HTTP to
//! the echo app) and `inbound|5432` (TCP to the TCP echo app), and the tunnel listener
//! `tunnel` dispatching target port 3002 and 5432 to them. Client sidecar (workload
//! `client`): `outbound` (HTTP, host `svc` → port 3002 of the server) and `outbound-tcp`
//! (TCP → port 5432), both through the server's tunnel.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use weft_api::ProxyConfig;
use weft_proxy::app::{self, ProxyOptions, Running};
use weft_proxy::identity::{Identity, IdentitySource, IdentityStats};
use weft_proxy::source::StaticSource;
use weft_testkit::ca::FakeCa;
use weft_testkit::client::TestClient;

pub const DEADLINE: Duration = Duration::from_secs(10);
/// The endpoint addresses the client's clusters name: only their ports matter (the server
/// sidecar maps a tunnel target's port to its inbound listener).
pub const HTTP_TARGET: &str = "127.0.0.1:3002";
pub const TCP_TARGET: &str = "127.0.0.1:5432";

pub struct TestMesh {
    pub ca: FakeCa,
}

impl TestMesh {
    pub fn new() -> TestMesh {
        TestMesh {
            ca: FakeCa::new("cluster.local"),
        }
    }

    pub fn id(&self, sa: &str) -> String {
        self.ca.spiffe_id("default", sa)
    }

    /// A fresh workload certificate for service account `sa`.
    pub fn identity(&self, sa: &str) -> Arc<Identity> {
        let issued = self
            .ca
            .issue_spiffe(&self.id(sa), Duration::from_secs(3600));
        Arc::new(
            Identity::from_reply(
                &[issued.cert_pem],
                &[self.ca.root_pem().to_string()],
                issued.key_pkcs8,
                &issued.public_key,
            )
            .expect("test identity"),
        )
    }
}

/// A running proxy and the sender of its certificate watch (publish to rotate).
pub struct Sidecar {
    pub running: Running,
    pub identity: watch::Sender<Option<Arc<Identity>>>,
}

impl Sidecar {
    pub async fn start(config: ProxyConfig, identity: Arc<Identity>) -> Sidecar {
        let (tx, rx) = watch::channel(Some(identity));
        let options = ProxyOptions {
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            identity: Some(IdentitySource {
                rx,
                stats: IdentityStats::default(),
            }),
            ..ProxyOptions::default()
        };
        let running = app::build(options, StaticSource::new(config))
            .await
            .expect("proxy starts");
        let mut status = running.status();
        tokio::time::timeout(DEADLINE, status.wait_for(|s| s.ready))
            .await
            .expect("ready in time")
            .expect("status open");
        Sidecar {
            running,
            identity: tx,
        }
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.running
            .listener_addr(listener)
            .unwrap_or_else(|| panic!("listener {listener} bound"))
    }

    /// `/stats/prometheus`.
    pub async fn stats(&self) -> String {
        let mut client = TestClient::h1(self.running.admin_addr())
            .await
            .expect("admin reachable");
        client
            .get("admin", "/stats/prometheus", &[])
            .await
            .expect("stats")
            .text()
    }

    /// One metric's value (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.stats().await;
        text.lines()
            .find_map(|l| {
                let (n, v) = l.split_once(' ')?;
                (n == name).then(|| v.trim().parse().ok()).flatten()
            })
            .unwrap_or(0.0)
    }
}

pub fn config(v: Value) -> ProxyConfig {
    serde_json::from_value(v).expect("fixture is a valid ProxyConfig")
}

fn limits() -> Value {
    json!({"max_connections": 1000, "max_pending_requests": 1000, "max_requests": 1000, "max_retries": 3})
}

pub fn cluster(name: &str, protocol: &str, endpoints: Value, tls: Value) -> Value {
    json!({
        "name": name,
        "discovery": "static",
        "endpoints": endpoints,
        "lb": "round_robin",
        "connect_timeout": "2s",
        "limits": limits(),
        "protocol": protocol,
        "tls": tls,
    })
}

pub fn listener(name: &str, direction: &str, chains: Value) -> Value {
    json!({
        "name": name,
        "address": "127.0.0.1:0",
        "direction": direction,
        "capture": "explicit",
        "chains": chains,
        "fallback": {"blackhole": {"reason": format!("no chain on {name}")}},
    })
}

pub fn route_table(name: &str, cluster: &str) -> Value {
    json!({
        "name": name,
        "virtual_hosts": [{"name": "any", "domains": ["*"], "routes": [{
            "name": "all",
            "matches": [],
            "action": {"forward": {"clusters": [{"cluster": cluster, "weight": 1}]}},
        }]}],
    })
}

/// `mode`: the PeerAuthentication of port 3002 (`STRICT`, `PERMISSIVE`, `DISABLE`) or none.
pub fn server_config(app: SocketAddr, tcp_app: SocketAddr, mode: Option<&str>) -> ProxyConfig {
    let mut http_chain = json!({
        "name": "inbound|3002",
        "protocol": {"http": {"route_table": "inbound|3002"}},
    });
    if let Some(mode) = mode {
        http_chain["mtls"] = json!({"mode": mode});
    }
    config(json!({
        "version": "server-1",
        "listeners": [
            listener("inbound|3002", "inbound", json!([http_chain])),
            listener("inbound|5432", "inbound", json!([{
                "name": "inbound|5432",
                "protocol": {"tcp": {"clusters": [{"cluster": "inbound|5432||", "weight": 1}]}},
            }])),
            listener("tunnel", "inbound", json!([{
                "name": "tunnel",
                "protocol": {"tunnel": {"inbound_listeners": [
                    {"port": 3002, "listener": "inbound|3002"},
                    {"port": 5432, "listener": "inbound|5432"},
                ]}},
            }])),
        ],
        "route_tables": [route_table("inbound|3002", "inbound|3002||")],
        "clusters": [
            cluster("inbound|3002||", "http1", json!([{"address": app.to_string()}]), json!("disabled")),
            cluster("inbound|5432||", "tcp", json!([{"address": tcp_app.to_string()}]), json!("disabled")),
        ],
    }))
}

/// The client sidecar sending to `tunnel` and expecting `server_identity`; `tls` is the
/// clusters' upstream TLS (`"istio_mutual"`, `"istio_mutual_auto"`, ...).
pub fn client_config(tunnel: SocketAddr, server_identity: &str, tls: Value) -> ProxyConfig {
    let endpoint = |address: &str| {
        json!([{
            "address": address,
            "tunnel": tunnel.to_string(),
            "identity": server_identity,
        }])
    };
    config(json!({
        "version": "client-1",
        "listeners": [
            listener("outbound", "outbound", json!([{
                "name": "outbound-http",
                "protocol": {"http": {"route_table": "out"}},
            }])),
            listener("outbound-tcp", "outbound", json!([{
                "name": "outbound-tcp",
                "protocol": {"tcp": {"clusters": [{"cluster": "outbound|5432||db", "weight": 1}]}},
            }])),
        ],
        "route_tables": [route_table("out", "outbound|3002||svc")],
        "clusters": [
            cluster("outbound|3002||svc", "http1", endpoint(HTTP_TARGET), tls.clone()),
            cluster("outbound|5432||db", "tcp", endpoint(TCP_TARGET), tls),
        ],
    }))
}
