//! What the compiler takes besides configuration objects: the workload instances that
//! exist (the registry) and how each proxy captures traffic.
//!
//! In local mode `weft up` produces the registry; `weft proxy --registry FILE` reads it from
//! YAML:
//!
//! ```yaml
//! instances:
//! - name: cart-0
//!   namespace: shop
//!   workload: cart
//!   labels: {app: cart, version: v1}
//!   serviceAccount: cart
//!   address: 127.0.0.3
//!   ports: {http: 3002}
//!   proxy:
//!     capture: explicit
//!     outboundHttpProxy: 127.0.0.3:15001
//!     inbound:
//!     - {port: 3002, bind: 127.0.0.3:3002, app: 127.0.0.3:13002}
//!     tunnel: 127.0.0.3:15008
//! - name: web-0
//!   namespace: shop
//!   address: 10.0.0.7
//!   proxy: {capture: transparent}
//! ```
//!
//! `tunnel` is where the proxy accepts mesh mTLS (one TLS 1.3 HTTP/2 connection per peer
//! proxy, as Istio's HBONE on 15008). Transparent proxies always accept it, by default on
//! `0.0.0.0:15008` (`tunnel: 0.0.0.0:15008` to move it); explicit proxies only when
//! `tunnel` is given (an unspecified IP such as `0.0.0.0:15008` is reached on the
//! instance's `address`). Gateways accept no tunnel: they only originate mTLS.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

/// Every workload instance (pod, replica, VM) the mesh knows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Registry {
    pub instances: Vec<WorkloadInstance>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadInstance {
    /// Unique within the namespace (`cart-0`).
    pub name: String,
    pub namespace: String,
    /// The workload it is an instance of (Deployment / weft Workload name).
    #[serde(default)]
    pub workload: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "default_service_account")]
    pub service_account: String,
    /// The address other workloads reach it on.
    pub address: IpAddr,
    /// Named ports the application listens on (to resolve a Service's named `targetPort`).
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
    /// The instance's proxy, if it runs one.
    #[serde(default)]
    pub proxy: Option<ProxySettings>,
}

fn default_service_account() -> String {
    "default".to_string()
}

impl WorkloadInstance {
    /// The proxy id used by `--id` and in `weft proxy-status`: `name.namespace`.
    pub fn proxy_id(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// How an instance's proxy captures traffic and where it binds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(tag = "capture", rename_all = "camelCase", deny_unknown_fields)]
pub enum ProxySettings {
    /// iptables REDIRECT into two ports, as on Kubernetes (Istio's 15001 / 15006).
    #[serde(rename_all = "camelCase")]
    Transparent {
        #[serde(default = "default_outbound")]
        outbound: SocketAddr,
        #[serde(default = "default_inbound")]
        inbound: SocketAddr,
        /// The mesh tunnel (mTLS from other proxies).
        #[serde(default = "default_tunnel")]
        tunnel: SocketAddr,
    },
    /// No redirection: applications use the proxy as HTTP proxy (and local TCP ports), and
    /// the proxy listens on the service ports in front of the application.
    #[serde(rename_all = "camelCase")]
    Explicit {
        /// Where applications send `HTTP_PROXY` traffic.
        outbound_http_proxy: SocketAddr,
        /// Local ports standing for one TCP service port each.
        #[serde(default)]
        tcp_upstreams: Vec<TcpUpstream>,
        #[serde(default)]
        inbound: Vec<InboundPort>,
        /// Where this proxy accepts mesh mTLS; none = it takes no mesh mTLS, peers reach
        /// its inbound ports in plaintext.
        #[serde(default)]
        tunnel: Option<SocketAddr>,
    },
    /// A gateway proxy: serves the Gateway servers that select this instance; `ports` maps
    /// a server port to the local address it binds (e.g. 80 -> 127.0.0.1:8080).
    #[serde(rename_all = "camelCase")]
    Gateway {
        #[serde(default, deserialize_with = "port_map")]
        ports: BTreeMap<u16, SocketAddr>,
    },
}

/// YAML map keys arrive as strings (`{80: 127.0.0.1:8080}`): parse them as port numbers.
fn port_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<u16, SocketAddr>, D::Error> {
    let raw = BTreeMap::<String, SocketAddr>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            k.trim().parse::<u16>().map(|p| (p, v)).map_err(|_| {
                serde::de::Error::custom(format!(
                    "gateway port `{k}` is not a port number (1-65535)"
                ))
            })
        })
        .collect()
}

fn default_outbound() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 15001))
}

pub(crate) fn default_inbound() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 15006))
}

/// Istio's HBONE port.
pub const DEFAULT_TUNNEL_PORT: u16 = 15008;

pub(crate) fn default_tunnel() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], DEFAULT_TUNNEL_PORT))
}

impl ProxySettings {
    /// The address this proxy binds for the mesh tunnel, if it accepts one.
    pub fn tunnel_bind(&self) -> Option<SocketAddr> {
        match self {
            ProxySettings::Transparent { tunnel, .. } => Some(*tunnel),
            ProxySettings::Explicit { tunnel, .. } => *tunnel,
            ProxySettings::Gateway { .. } => None,
        }
    }
}

impl WorkloadInstance {
    /// The address peers dial for this instance's mesh tunnel: its own address with the
    /// tunnel port under transparent capture (the tunnel binds every interface of the
    /// pod), the configured address in explicit mode (its IP, or the instance address
    /// when that IP is unspecified).
    pub fn tunnel_address(&self) -> Option<SocketAddr> {
        let bind = self.proxy.as_ref()?.tunnel_bind()?;
        let ip = match self.proxy {
            Some(ProxySettings::Explicit { .. }) if !bind.ip().is_unspecified() => bind.ip(),
            _ => self.address,
        };
        Some(SocketAddr::new(ip, bind.port()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpUpstream {
    /// Service host as written in config (`db` or `db.shop.svc.cluster.local`).
    pub host: String,
    pub port: u16,
    pub bind: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundPort {
    /// The port clients address (the Service's targetPort on this instance).
    pub port: u16,
    /// Where the proxy listens for it.
    pub bind: SocketAddr,
    /// Where the application really listens.
    pub app: SocketAddr,
}

#[cfg(test)]
mod tests {
    fn tunnels(yaml: &str) -> Vec<Option<String>> {
        crate::parse_registry("r.yaml", yaml)
            .unwrap()
            .instances
            .iter()
            .map(|i| i.tunnel_address().map(|a| a.to_string()))
            .collect()
    }

    #[test]
    fn tunnel_addresses_by_capture_mode() {
        let got = tunnels(
            "instances:
- {name: t, namespace: n, address: 10.0.0.1, proxy: {capture: transparent}}
- {name: t2, namespace: n, address: 10.0.0.2, proxy: {capture: transparent, tunnel: '127.0.0.1:15009'}}
- {name: e, namespace: n, address: 10.0.0.3, proxy: {capture: explicit, outboundHttpProxy: '127.0.0.1:15001', tunnel: '0.0.0.0:15100'}}
- {name: e2, namespace: n, address: 10.0.0.4, proxy: {capture: explicit, outboundHttpProxy: '127.0.0.1:15001', tunnel: '127.0.0.4:15100'}}
- {name: e3, namespace: n, address: 10.0.0.5, proxy: {capture: explicit, outboundHttpProxy: '127.0.0.1:15001'}}
- {name: g, namespace: n, address: 10.0.0.6, proxy: {capture: gateway}}
- {name: none, namespace: n, address: 10.0.0.7}
",
        );
        let want = [
            Some("10.0.0.1:15008"),
            // Transparent: peers dial the pod address; the bind IP is local to the pod.
            Some("10.0.0.2:15009"),
            Some("10.0.0.3:15100"),
            Some("127.0.0.4:15100"),
            None,
            None,
            None,
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|w| w.map(str::to_string))
                .collect::<Vec<_>>()
        );
        // Gateways take no tunnel setting at all.
        let e = crate::parse_registry(
            "r.yaml",
            "instances:\n- {name: g, namespace: n, address: 10.0.0.6, proxy: {capture: gateway, tunnel: '0.0.0.0:15008'}}\n",
        )
        .unwrap_err();
        assert!(
            e.message.contains("unknown field `tunnel`"),
            "{}",
            e.message
        );
    }
}
