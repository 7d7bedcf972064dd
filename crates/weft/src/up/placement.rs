//! Where each replica runs: its address, how its proxy captures traffic, and the
//! environment its application gets. [`Placement`] is the seam between capture modes:
//! [`Explicit`] (the default, no root) puts every replica on its own loopback IP;
//! [`super::netns::Transparent`] (`--netns`) gives each replica a network namespace.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use weft_compile::{InboundPort, ProxySettings, TcpUpstream, WorkloadInstance};

use super::netns_net::NetworkRecord;
use super::plan::{GatewayDef, TcpService, Topology, WorkloadDef};

/// The outbound HTTP proxy port applications are pointed at (Istio's outbound port).
pub const OUTBOUND_PORT: u16 = 15001;
/// The mesh tunnel (mTLS) port, Istio's HBONE port.
pub const TUNNEL_PORT: u16 = weft_compile::DEFAULT_TUNNEL_PORT;
/// Each proxy's admin endpoint, on the replica's own address.
pub const ADMIN_PORT: u16 = 15000;
/// The application listens this far above the port the mesh reaches it on.
pub const APP_PORT_OFFSET: u16 = 10000;

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "no loopback address left in {net}.0/24 for {replica} (at most 254 replicas and gateways; use --loopback-net)"
    )]
    Exhausted { net: String, replica: String },
    #[error(
        "workload {workload}: port {port} leaves no room for the application port {port}+{APP_PORT_OFFSET} (use a port below {})",
        u16::MAX - APP_PORT_OFFSET
    )]
    PortTooHigh { workload: String, port: u16 },
    #[error("{0}")]
    Network(String),
    #[error(transparent)]
    Net(#[from] super::netns_net::NetError),
}

/// One placed replica (or gateway): its registry entry and how to start its processes.
#[derive(Debug, Clone)]
pub struct Placed {
    pub instance: WorkloadInstance,
    /// The proxy's admin endpoint (readiness: `GET /ready`).
    pub admin: SocketAddr,
    /// Environment for the application (none for gateways).
    pub app_env: BTreeMap<String, String>,
    /// Where the application must listen (readiness: it accepts connections).
    pub app_addrs: Vec<SocketAddr>,
    /// For gateways: the server port and the URL users reach it on.
    pub urls: Vec<(u16, String)>,
    /// The network namespace its proxy and application run in (`--netns`); none: the
    /// host's.
    pub netns: Option<String>,
}

/// Places replicas and gateways.
pub trait Placement: Send {
    /// The capture mode, for the summary (`explicit`).
    fn mode(&self) -> &'static str;
    fn place(
        &mut self,
        replica: &str,
        workload: &WorkloadDef,
        tcp: &[TcpService],
    ) -> Result<Placed, PlacementError>;
    fn place_gateway(&mut self, gateway: &GatewayDef) -> Result<Placed, PlacementError>;
    /// Forget `namespace/replica`, which no longer exists (its address may be reused).
    fn release(&mut self, key: &str);
    /// Follow the objects of a (new) topology before its replicas are placed: the
    /// transparent mode rewrites the namespaces' hosts files when Services change.
    fn prepare(&mut self, _topology: &Topology) -> Result<(), PlacementError> {
        Ok(())
    }
    /// What this placement created on the host, for the state file (cleanup after a
    /// crash); none when it creates nothing.
    fn network(&self) -> Option<NetworkRecord> {
        None
    }
    /// Remove what the placement created (after every process stopped). Returns what
    /// could not be removed.
    fn teardown(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// Explicit capture: each replica gets `<net>.N` on loopback (Linux routes all of 127/8
/// to `lo`), like a pod IP. Its proxy takes the service ports there and forwards to the
/// application on port + 10000; the application's outbound traffic goes through the
/// proxy as `HTTP_PROXY`, so `http://cart:3002` needs no DNS.
pub struct Explicit {
    net: [u8; 3],
    /// Stable across restarts and live edits: a replica keeps its address.
    assigned: BTreeMap<String, u8>,
    /// Gateways bind their server ports here (127.0.0.1: `http://localhost:8080`).
    gateway_ip: IpAddr,
    /// Ports below 1024 need privileges; without them they move up by 8000 (80 -> 8080).
    privileged: bool,
    /// Whether proxies accept mesh mTLS (the tunnel): off sends plaintext between proxies.
    mtls: bool,
}

impl Explicit {
    pub fn new(net: [u8; 3], gateway_ip: IpAddr, privileged: bool, mtls: bool) -> Explicit {
        Explicit {
            net,
            assigned: BTreeMap::new(),
            gateway_ip,
            privileged,
            mtls,
        }
    }

    fn net_text(&self) -> String {
        format!("{}.{}.{}", self.net[0], self.net[1], self.net[2])
    }

    fn address(&mut self, name: &str) -> Result<Ipv4Addr, PlacementError> {
        let n = match self.assigned.get(name) {
            Some(n) => *n,
            None => {
                let used: Vec<u8> = self.assigned.values().copied().collect();
                let n = (1..=254u8).find(|n| !used.contains(n)).ok_or_else(|| {
                    PlacementError::Exhausted {
                        net: self.net_text(),
                        replica: name.to_string(),
                    }
                })?;
                self.assigned.insert(name.to_string(), n);
                n
            }
        };
        Ok(Ipv4Addr::new(self.net[0], self.net[1], self.net[2], n))
    }

    /// The local port a gateway serves server port `port` on.
    pub fn gateway_port(&self, port: u16) -> u16 {
        if port < 1024 && !self.privileged {
            port + 8000
        } else {
            port
        }
    }
}

impl Placement for Explicit {
    fn mode(&self) -> &'static str {
        "explicit"
    }

    fn place(
        &mut self,
        replica: &str,
        w: &WorkloadDef,
        tcp: &[TcpService],
    ) -> Result<Placed, PlacementError> {
        let ip = IpAddr::V4(self.address(&format!("{}/{replica}", w.namespace))?);
        let mut inbound = Vec::new();
        let mut app_addrs = Vec::new();
        for &port in &w.ports {
            let app_port =
                port.checked_add(APP_PORT_OFFSET)
                    .ok_or_else(|| PlacementError::PortTooHigh {
                        workload: w.key(),
                        port,
                    })?;
            let app = SocketAddr::new(ip, app_port);
            inbound.push(InboundPort {
                port,
                bind: SocketAddr::new(ip, port),
                app,
            });
            app_addrs.push(app);
        }
        // A TCP service is a local port on the replica's address; a port the replica
        // serves itself (or a second service on the same port) is left out.
        let mut tcp_upstreams: Vec<TcpUpstream> = Vec::new();
        for s in tcp {
            let taken = w.ports.contains(&s.port) || tcp_upstreams.iter().any(|u| u.port == s.port);
            if s.selects.contains(&w.key()) || taken {
                continue;
            }
            tcp_upstreams.push(TcpUpstream {
                host: s.host.clone(),
                port: s.port,
                bind: SocketAddr::new(ip, s.port),
            });
        }
        let proxy_url = format!("http://{}", SocketAddr::new(ip, OUTBOUND_PORT));
        let mut env = w.spec.env.clone();
        env.insert("HOST".into(), ip.to_string());
        if let Some(first) = app_addrs.first() {
            env.insert("PORT".into(), first.port().to_string());
        }
        env.insert("HTTP_PROXY".into(), proxy_url.clone());
        env.insert("http_proxy".into(), proxy_url);
        // Loopback and the replica itself are not reached through the proxy.
        env.insert("NO_PROXY".into(), format!("localhost,127.0.0.1,{ip}"));
        env.insert("no_proxy".into(), format!("localhost,127.0.0.1,{ip}"));
        env.insert("WEFT_REPLICA".into(), replica.to_string());
        env.insert("WEFT_NAMESPACE".into(), w.namespace.clone());
        if let Some(v) = w.labels.get("version") {
            env.entry("VERSION".into()).or_insert_with(|| v.clone());
        }
        let instance = WorkloadInstance {
            name: replica.to_string(),
            namespace: w.namespace.clone(),
            workload: w.name.clone(),
            labels: w.labels.clone(),
            service_account: w.spec.service_account.clone(),
            address: ip,
            ports: w.ports.iter().map(|p| (format!("port-{p}"), *p)).collect(),
            proxy: Some(ProxySettings::Explicit {
                outbound_http_proxy: SocketAddr::new(ip, OUTBOUND_PORT),
                tcp_upstreams,
                inbound,
                tunnel: self.mtls.then(|| SocketAddr::new(ip, TUNNEL_PORT)),
            }),
        };
        Ok(Placed {
            instance,
            admin: SocketAddr::new(ip, ADMIN_PORT),
            app_env: env,
            app_addrs,
            urls: Vec::new(),
            netns: None,
        })
    }

    fn release(&mut self, key: &str) {
        self.assigned.remove(key);
    }

    fn place_gateway(&mut self, g: &GatewayDef) -> Result<Placed, PlacementError> {
        let replica = format!("{}-0", g.name);
        let ip = IpAddr::V4(self.address(&format!("{}/{replica}", g.namespace))?);
        let mut ports = BTreeMap::new();
        let mut urls = Vec::new();
        for &p in &g.ports {
            let local = SocketAddr::new(self.gateway_ip, self.gateway_port(p));
            ports.insert(p, local);
            urls.push((p, format!("http://{local}")));
        }
        Ok(Placed {
            instance: WorkloadInstance {
                name: replica,
                namespace: g.namespace.clone(),
                workload: g.name.clone(),
                labels: g.labels.clone(),
                service_account: g.name.clone(),
                address: ip,
                ports: BTreeMap::new(),
                proxy: Some(ProxySettings::Gateway { ports }),
            },
            admin: SocketAddr::new(ip, ADMIN_PORT),
            app_env: BTreeMap::new(),
            app_addrs: Vec::new(),
            urls,
            netns: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::up::plan::topology;
    use weft_config::Bundle;

    const DIR: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{name: http, port: 3002}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: weft.dev/v1alpha1
kind: Workload
metadata: {name: cart, namespace: shop, labels: {app: cart, version: v1}}
spec:
  command: shop-cart
  env: {PORT: "3002", PRODUCT_URL: "http://product:3001"}
  replicas: 2
  serviceAccount: cart
"#;

    fn placed(mtls: bool) -> (Explicit, Vec<Placed>) {
        let t = topology(&Bundle::load_str("d/a.yaml", DIR).objects);
        let w = &t.workloads["shop/cart"];
        let mut p = Explicit::new([127, 0, 1], IpAddr::from([127, 0, 0, 1]), false, mtls);
        let out = w
            .replica_names()
            .iter()
            .map(|r| p.place(r, w, &t.tcp_services).unwrap())
            .collect();
        (p, out)
    }

    #[test]
    fn each_replica_gets_its_own_loopback_ip_with_the_proxy_in_front_of_the_app() {
        let (_, placed) = placed(true);
        let p = &placed[1];
        assert_eq!(p.instance.address.to_string(), "127.0.1.2");
        let Some(ProxySettings::Explicit {
            outbound_http_proxy,
            inbound,
            tunnel,
            tcp_upstreams,
        }) = &p.instance.proxy
        else {
            panic!("explicit proxy expected");
        };
        assert_eq!(outbound_http_proxy.to_string(), "127.0.1.2:15001");
        assert_eq!(inbound[0].bind.to_string(), "127.0.1.2:3002");
        assert_eq!(inbound[0].app.to_string(), "127.0.1.2:13002");
        assert_eq!(
            tunnel.map(|t| t.to_string()).as_deref(),
            Some("127.0.1.2:15008")
        );
        assert_eq!(tcp_upstreams[0].bind.to_string(), "127.0.1.2:5432");
        assert_eq!(p.app_env["PORT"], "13002");
        assert_eq!(p.app_env["HOST"], "127.0.1.2");
        assert_eq!(p.app_env["HTTP_PROXY"], "http://127.0.1.2:15001");
        assert_eq!(p.app_env["PRODUCT_URL"], "http://product:3001");
        assert_eq!(p.app_env["VERSION"], "v1");
        assert_eq!(p.admin.to_string(), "127.0.1.2:15000");
        assert_eq!(p.instance.service_account, "cart");
    }

    #[test]
    fn addresses_are_stable_and_released_ones_are_reused() {
        let (mut p, placed) = placed(false);
        assert!(matches!(
            placed[0].instance.proxy,
            Some(ProxySettings::Explicit { tunnel: None, .. })
        ));
        assert_eq!(p.address("shop/cart-0").unwrap().to_string(), "127.0.1.1");
        p.release("shop/cart-0");
        assert_eq!(p.address("shop/other-0").unwrap().to_string(), "127.0.1.1");
    }

    #[test]
    fn unprivileged_gateways_move_low_ports_up_by_8000() {
        let p = Explicit::new([127, 0, 1], IpAddr::from([127, 0, 0, 1]), false, true);
        assert_eq!(p.gateway_port(80), 8080);
        assert_eq!(p.gateway_port(8443), 8443);
        let root = Explicit::new([127, 0, 1], IpAddr::from([127, 0, 0, 1]), true, true);
        assert_eq!(root.gateway_port(80), 80);
    }
}
