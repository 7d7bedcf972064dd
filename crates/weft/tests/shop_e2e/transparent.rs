//! The transparent capture mode of the shop suite (`weft up --netns`, root): every replica
//! in a network namespace of its own, and a client "inside the mesh" is a connection made
//! from inside a replica's namespace to `http://cart:3002`, exactly as its application
//! would: the name resolves through the namespace's hosts file, no proxy is configured, and
//! the iptables capture takes the connection into the replica's sidecar.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpStream;

use super::harness::Mode;
use super::http::{InsideClient, Reply, Req, send_over};

const TEST: &str = "shop_end_to_end_in_transparent_mode";

pub struct Transparent {
    /// Where the gateway publishes its ports: a loopback address of its own, so the
    /// explicit run (and other tests) can bind port 80 on theirs at the same time.
    gateway_address: String,
}

impl Transparent {
    /// The mode, or None (a visible skip) where namespaces cannot be made; under
    /// `CI=true` that is a failure, as for every namespace test.
    pub fn new() -> Option<Transparent> {
        drop(weft_testkit::netns::setup(TEST)?);
        if let Err(e) = weft_proxy::redirect::find_iptables() {
            weft_testkit::netns::skip_or_fail(TEST, &e.to_string());
            return None;
        }
        let pid = std::process::id();
        Some(Transparent {
            gateway_address: format!("127.{}.{}.250", 150 + pid % 50, (pid / 50) % 250 + 1),
        })
    }
}

impl Mode for Transparent {
    fn name(&self) -> &'static str {
        "transparent"
    }

    fn up_args(&self) -> Vec<String> {
        vec![
            "--netns".into(),
            "--gateway-address".into(),
            self.gateway_address.clone(),
            "--debug".into(),
            "127.0.0.1:0".into(),
        ]
    }

    fn inside_client(&self, state: &Value) -> Arc<dyn InsideClient> {
        // Namespaces are named `<prefix><namespace>-<replica>` (`weft up --netns`).
        let prefix = state["network"]["prefix"].as_str().unwrap_or_default();
        let made: Vec<&str> = state["network"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let namespaces: BTreeMap<String, String> = state["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["role"] == "app")
            .filter_map(|p| {
                let replica = p["replica"].as_str()?;
                let (ns, _) = p["workload"].as_str()?.split_once('/')?;
                let netns = format!("{prefix}{ns}-{replica}");
                made.contains(&netns.as_str())
                    .then(|| (replica.to_string(), netns))
            })
            .collect();
        assert!(
            !namespaces.is_empty(),
            "no replica namespaces in the state: {state}"
        );
        Arc::new(InNamespace { namespaces })
    }
}

/// Requests sent from inside a replica's network namespace, by service name, without a
/// proxy: what reaches the service is what the capture did with them.
pub struct InNamespace {
    /// Replica → its network namespace.
    namespaces: BTreeMap<String, String>,
}

impl InsideClient for InNamespace {
    fn send(&self, from_replica: &str, req: Req) -> Reply {
        let netns = self.namespaces.get(from_replica).cloned();
        let from = from_replica.to_string();
        Box::pin(async move {
            let netns = netns.ok_or_else(|| format!("no namespace for replica {from}"))?;
            let started = Instant::now();
            let addr = resolve_in(&netns, &req.authority)?;
            let stream = connect_in(&netns, addr).await?;
            let mut resp = send_over(stream, &req.authority, &req).await?;
            resp.elapsed = started.elapsed();
            Ok(resp)
        })
    }
}

/// `host:port` as an application in `netns` resolves it: through the hosts file
/// `ip netns exec` mounts over /etc/hosts there (weft up writes the Services into it).
fn resolve_in(netns: &str, authority: &str) -> Result<SocketAddr, String> {
    let (host, port) = authority
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("authority {authority} has no port"))?;
    let path = format!("/etc/netns/{netns}/hosts");
    let hosts = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .find_map(|l| {
            let mut words = l.split_whitespace();
            let ip: IpAddr = words.next()?.parse().ok()?;
            words.any(|w| w == host).then_some(ip)
        })
        .map(|ip| SocketAddr::new(ip, port))
        .ok_or_else(|| format!("{host} is not in {path}:\n{hosts}"))
}

/// A connection to `addr` made from inside `netns`: a short-lived thread joins the
/// namespace and connects (as `weft up`'s readiness probe does); the socket stays in the
/// namespace it was made in, so the exchange runs on the test's runtime afterwards.
async fn connect_in(netns: &str, addr: SocketAddr) -> Result<TcpStream, String> {
    use nix::sched::{CloneFlags, setns};
    let path = format!("/var/run/netns/{netns}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let netns = netns.to_string();
    std::thread::Builder::new()
        .name(format!("client in {netns}"))
        .spawn(move || {
            let connected = setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("cannot enter {netns}: {e}"))
                .and_then(|()| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                        .and_then(|s| s.set_nonblocking(true).map(|()| s))
                        .map_err(|e| format!("connect to {addr} from {netns}: {e}"))
                });
            let _ = tx.send(connected);
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    let stream = rx
        .await
        .map_err(|_| "the namespace thread ended without a result".to_string())??;
    TcpStream::from_std(stream).map_err(|e| format!("registering the connection: {e}"))
}
