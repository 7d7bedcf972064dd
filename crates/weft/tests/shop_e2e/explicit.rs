//! Explicit capture for tests that run `weft up` on the shop (shared by the shop suite and
//! the observability suite).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;

use super::harness::Mode;
use super::http::{InsideClient, ViaHttpProxy};

/// Explicit capture (the default, no root): each replica on its own loopback address,
/// applications reach services through their proxy as `HTTP_PROXY`.
pub struct Explicit {
    /// A loopback /24 of its own, so other tests running at once do not meet this one.
    net: String,
}

impl Explicit {
    pub fn new() -> Explicit {
        let pid = std::process::id();
        Explicit {
            net: format!("127.{}.{}", 200 + pid % 50, (pid / 50) % 250 + 1),
        }
    }
}

impl Mode for Explicit {
    fn name(&self) -> &'static str {
        "explicit"
    }

    fn up_args(&self) -> Vec<String> {
        vec![
            "--loopback-net".into(),
            self.net.clone(),
            "--gateway-address".into(),
            format!("{}.250", self.net),
            "--debug".into(),
            "127.0.0.1:0".into(),
        ]
    }

    fn inside_client(&self, state: &Value) -> Arc<dyn InsideClient> {
        // Each application's HTTP_PROXY: its proxy's outbound port on the replica's address.
        let proxies: BTreeMap<String, SocketAddr> = state["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["role"] == "app")
            .filter_map(|p| {
                let addr = format!("{}:15001", p["address"].as_str()?).parse().ok()?;
                Some((p["replica"].as_str()?.to_string(), addr))
            })
            .collect();
        Arc::new(ViaHttpProxy { proxies })
    }
}
