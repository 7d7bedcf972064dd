//! Transparent placement (`weft up --netns`, root): every replica gets a network namespace
//! of its own with an address on a bridge, the iptables capture a Kubernetes pod gets
//! ([`weft_proxy::redirect`]) and a hosts file naming every Service, so applications use
//! plain `http://cart:3002` with no proxy settings, exactly as on Kubernetes.
//!
//! - Replicas: `10.X.0.2`, `10.X.0.3`, ... on the bridge `10.X.0.1/16` (X avoids the
//!   host's routes); namespace `weft-<hash>-<namespace>-<replica>`.
//! - Services: the `clusterIP` written in their manifest, or a virtual address
//!   `10.X.255.N`, listed in each namespace's `/etc/netns/<ns>/hosts` with the names a pod
//!   resolves (`cart` in its own namespace, `cart.shop`, `cart.shop.svc`, the FQDN). The
//!   address is on-link for the replica, so a connection to it is captured by the
//!   sidecar's OUTPUT rule before any packet leaves; the compiled config gets the same
//!   address as the Service's cluster IP ([`ServiceVips::assign`]).
//! - The proxy runs inside the namespace in group 1337, which the capture rules exclude;
//!   the application listens on the service port itself (`HOST=0.0.0.0`).
//! - Gateways run in the host's namespace (ports published on the host, e.g.
//!   127.0.0.1:8080) on an extra bridge address, and reach replicas over the bridge.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use weft_compile::{ProxySettings, WorkloadInstance};
use weft_proxy::redirect::{self, RedirectConfig};

use super::netns_net::{self as net, NetworkRecord};
use super::placement::{ADMIN_PORT, OUTBOUND_PORT, Placed, Placement, PlacementError, TUNNEL_PORT};
use super::plan::{GatewayDef, ServiceDef, TcpService, Topology, WorkloadDef};

/// The transparent inbound port (Istio's 15006).
pub const INBOUND_PORT: u16 = 15006;
/// The group the proxies run in; the capture leaves its sockets alone (Istio's 1337).
pub const PROXY_GID: u32 = redirect::DEFAULT_PROXY_ID;
/// Replicas and gateways take host numbers below this (10.X.0.2 .. 10.X.127.254).
const MAX_HOSTS: u32 = 254 * 128;
/// Service addresses count down from 10.X.255.1 to 10.X.128.254.
const MAX_SERVICES: u32 = 254 * 128;

/// Why `--netns` cannot run here, before anything is created.
pub fn check_requirements() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is this process's effective user.
    let euid = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    if euid != 0 {
        return Err(
            "weft up --netns needs root (it creates network namespaces, a bridge and iptables rules); run it with sudo, or drop --netns for the explicit mode"
                .into(),
        );
    }
    if net::find_tool("ip").is_none() {
        return Err(
            "weft up --netns needs the `ip` tool (package iproute2); it is not in PATH, /usr/sbin or /sbin"
                .into(),
        );
    }
    redirect::find_iptables().map_err(|e| format!("weft up --netns: {e}"))?;
    Ok(())
}

/// A short, stable name part for a run: 6 hex digits of a hash of `run_id`.
pub fn run_hash(run_id: &str) -> String {
    let mut h = DefaultHasher::new();
    run_id.hash(&mut h);
    format!("{:06x}", h.finish() & 0xff_ffff)
}

/// Service addresses: the manifest's `clusterIP` wins, the others get `10.X.255.N`, the
/// same for a Service's whole run. Shared by the hosts files and the config the control
/// plane compiles, so a name resolves to the address its chains match.
#[derive(Debug)]
pub struct ServiceVips {
    subnet: u8,
    by_service: BTreeMap<String, Ipv4Addr>,
}

impl ServiceVips {
    pub fn new(subnet: u8) -> ServiceVips {
        ServiceVips {
            subnet,
            by_service: BTreeMap::new(),
        }
    }

    /// The address of Service `namespace/name` whose manifest sets `cluster_ip` (or not).
    /// None for headless Services (`clusterIP: None`) and when the range is used up.
    pub fn assign(
        &mut self,
        namespace: &str,
        name: &str,
        cluster_ip: Option<&str>,
    ) -> Option<IpAddr> {
        match cluster_ip.map(str::trim) {
            Some(ip) if ip.eq_ignore_ascii_case("none") => return None,
            Some(ip) if !ip.is_empty() => return ip.parse().ok(),
            _ => {}
        }
        let key = format!("{namespace}/{name}");
        if let Some(ip) = self.by_service.get(&key) {
            return Some(IpAddr::V4(*ip));
        }
        let n = u32::try_from(self.by_service.len()).ok()?;
        if n >= MAX_SERVICES {
            return None;
        }
        let ip = Ipv4Addr::new(10, self.subnet, (255 - n / 254) as u8, (n % 254 + 1) as u8);
        self.by_service.insert(key, ip);
        Some(IpAddr::V4(ip))
    }
}

struct Created {
    netns: String,
    ip: Ipv4Addr,
}

pub struct Transparent {
    prefix: String,
    subnet: u8,
    bridge: String,
    bridge_ip: Ipv4Addr,
    /// Where gateways publish their server ports (127.0.0.1).
    publish_ip: IpAddr,
    /// Host numbers are never reused within a run: a removed replica's veth may linger
    /// while the kernel tears its namespace down.
    next_host: u32,
    /// By `namespace/replica` (gateways: `namespace/<gateway>-0`).
    created: BTreeMap<String, Created>,
    services: Vec<ServiceDef>,
    vips: Arc<Mutex<ServiceVips>>,
    record: NetworkRecord,
}

impl Transparent {
    /// Choose the network and create the bridge. `run_id` names everything (the run
    /// directory: one `weft up` per directory). Leftovers of an earlier run with the same
    /// id are removed first.
    pub fn create(run_id: &str, publish_ip: IpAddr) -> Result<Transparent, PlacementError> {
        let hash = run_hash(run_id);
        let prefix = format!("weft-{hash}");
        let bridge = prefix.clone();
        let stale = NetworkRecord {
            bridge: bridge.clone(),
            prefix: format!("{prefix}-"),
            ..Default::default()
        };
        let problems = net::teardown(&stale);
        if !problems.is_empty() {
            return Err(PlacementError::Network(format!(
                "cannot remove what an earlier weft up left: {}",
                problems.join("; ")
            )));
        }
        let preferred = u8::from_str_radix(&hash[..2], 16).unwrap_or(0);
        let subnet = net::choose_subnet(preferred)?;
        let bridge_ip = Ipv4Addr::new(10, subnet, 0, 1);
        let record = NetworkRecord {
            bridge: bridge.clone(),
            subnet: format!("10.{subnet}.0.0/{}", net::PREFIX_LEN),
            gateway: bridge_ip.to_string(),
            namespaces: Vec::new(),
            prefix: format!("{prefix}-"),
        };
        if let Err(e) = net::create_bridge(&bridge, bridge_ip) {
            net::teardown(&record);
            return Err(e.into());
        }
        Ok(Transparent {
            prefix,
            subnet,
            bridge,
            bridge_ip,
            publish_ip,
            next_host: 1,
            created: BTreeMap::new(),
            services: Vec::new(),
            vips: Arc::new(Mutex::new(ServiceVips::new(subnet))),
            record,
        })
    }

    /// The bridge's address: the control plane listens here for the proxies.
    pub fn bridge_ip(&self) -> Ipv4Addr {
        self.bridge_ip
    }

    pub fn vips(&self) -> Arc<Mutex<ServiceVips>> {
        self.vips.clone()
    }

    fn new_host(&mut self, key: &str) -> Result<Ipv4Addr, PlacementError> {
        let n = self.next_host;
        if n >= MAX_HOSTS {
            return Err(PlacementError::Network(format!(
                "no address left in 10.{}.0.0/17 for {key}",
                self.subnet
            )));
        }
        self.next_host += 1;
        Ok(Ipv4Addr::new(
            10,
            self.subnet,
            (n / 254) as u8,
            (n % 254 + 1) as u8,
        ))
    }

    /// The hosts file of a replica in Kubernetes namespace `namespace`.
    fn hosts_text(&self, namespace: &str, replica: &str, ip: Ipv4Addr) -> String {
        let mut out = String::from(
            "# written by weft up --netns: the mesh's Services, as cluster DNS would answer\n\
             127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        );
        out.push_str(&format!("{ip}\t{replica} {replica}.{namespace}\n"));
        let Ok(mut vips) = self.vips.lock() else {
            return out;
        };
        for s in &self.services {
            let Some(addr) = vips.assign(&s.namespace, &s.name, s.cluster_ip.as_deref()) else {
                continue;
            };
            let (n, ns) = (&s.name, &s.namespace);
            let short = if *ns == namespace {
                format!(" {n}")
            } else {
                String::new()
            };
            out.push_str(&format!(
                "{addr}\t{n}.{ns}.svc.cluster.local {n}.{ns}.svc {n}.{ns}{short}\n"
            ));
        }
        out
    }

    fn write_hosts(&self, key: &str) -> Result<(), PlacementError> {
        let Some(c) = self.created.get(key) else {
            return Ok(());
        };
        let (namespace, replica) = key.split_once('/').unwrap_or(("default", key));
        net::write_hosts(&c.netns, &self.hosts_text(namespace, replica, c.ip))?;
        Ok(())
    }

    /// The namespace of `namespace/replica`: created, joined to the bridge, captured.
    fn ensure_namespace(&mut self, key: &str) -> Result<(String, Ipv4Addr), PlacementError> {
        if let Some(c) = self.created.get(key) {
            return Ok((c.netns.clone(), c.ip));
        }
        let ip = self.new_host(key)?;
        let netns = format!("{}-{}", self.prefix, key.replace('/', "-"));
        // The host side of the pair: at most 15 bytes (`wv` + 6 hex + `-` + number).
        let veth = format!("wv{}-{}", &self.prefix["weft-".len()..], self.next_host - 1);
        // Recorded before it exists: cleanup must cover a half-made namespace too.
        self.record.namespaces.push(netns.clone());
        net::create_namespace(&netns, &veth, &self.bridge, ip, self.bridge_ip)?;
        let rules = RedirectConfig {
            outbound_port: OUTBOUND_PORT,
            inbound_port: INBOUND_PORT,
            admin_port: ADMIN_PORT,
            tunnel_port: TUNNEL_PORT,
            proxy_uid: None,
            proxy_gid: Some(PROXY_GID),
            ..RedirectConfig::default()
        };
        redirect::apply(Some(&netns), &rules)
            .map_err(|e| PlacementError::Network(format!("{netns}: {e}")))?;
        self.created.insert(
            key.to_string(),
            Created {
                netns: netns.clone(),
                ip,
            },
        );
        self.write_hosts(key)?;
        Ok((netns, ip))
    }
}

impl Placement for Transparent {
    fn mode(&self) -> &'static str {
        "transparent"
    }

    fn prepare(&mut self, topology: &Topology) -> Result<(), PlacementError> {
        if self.services == topology.services {
            return Ok(());
        }
        self.services = topology.services.clone();
        let keys: Vec<String> = self
            .created
            .iter()
            .filter(|(_, c)| !c.netns.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.write_hosts(&k)?;
        }
        Ok(())
    }

    fn place(
        &mut self,
        replica: &str,
        w: &WorkloadDef,
        _tcp: &[TcpService],
    ) -> Result<Placed, PlacementError> {
        let key = format!("{}/{replica}", w.namespace);
        let (netns, ip) = self.ensure_namespace(&key)?;
        let mut env = w.spec.env.clone();
        // The application serves the service port itself, on every address of its pod.
        env.insert("HOST".into(), "0.0.0.0".into());
        if let Some(first) = w.ports.first() {
            env.insert("PORT".into(), first.to_string());
        }
        env.insert("WEFT_REPLICA".into(), replica.to_string());
        env.insert("WEFT_NAMESPACE".into(), w.namespace.clone());
        if let Some(v) = w.labels.get("version") {
            env.entry("VERSION".into()).or_insert_with(|| v.clone());
        }
        let any = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let instance = WorkloadInstance {
            name: replica.to_string(),
            namespace: w.namespace.clone(),
            workload: w.name.clone(),
            labels: w.labels.clone(),
            service_account: w.spec.service_account.clone(),
            address: IpAddr::V4(ip),
            ports: w.ports.iter().map(|p| (format!("port-{p}"), *p)).collect(),
            proxy: Some(ProxySettings::Transparent {
                outbound: any(OUTBOUND_PORT),
                inbound: any(INBOUND_PORT),
                tunnel: any(TUNNEL_PORT),
            }),
        };
        Ok(Placed {
            instance,
            admin: SocketAddr::new(IpAddr::V4(ip), ADMIN_PORT),
            app_env: env,
            // Probed from inside the namespace: from outside, the capture would answer.
            app_addrs: w
                .ports
                .iter()
                .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), *p))
                .collect(),
            urls: Vec::new(),
            netns: Some(netns),
        })
    }

    fn place_gateway(&mut self, g: &GatewayDef) -> Result<Placed, PlacementError> {
        let replica = format!("{}-0", g.name);
        let key = format!("{}/{replica}", g.namespace);
        let ip = match self.created.get(&key) {
            Some(c) => c.ip,
            None => {
                let ip = self.new_host(&key)?;
                net::add_bridge_address(&self.bridge, ip)?;
                // No namespace: the gateway runs in the host's, on this bridge address.
                self.created.insert(
                    key.clone(),
                    Created {
                        netns: String::new(),
                        ip,
                    },
                );
                ip
            }
        };
        let mut ports = BTreeMap::new();
        let mut urls = Vec::new();
        for &p in &g.ports {
            let local = SocketAddr::new(self.publish_ip, p);
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
                address: IpAddr::V4(ip),
                ports: BTreeMap::new(),
                proxy: Some(ProxySettings::Gateway { ports }),
            },
            admin: SocketAddr::new(IpAddr::V4(ip), ADMIN_PORT),
            app_env: BTreeMap::new(),
            app_addrs: Vec::new(),
            urls,
            netns: None,
        })
    }

    fn release(&mut self, key: &str) {
        let Some(c) = self.created.remove(key) else {
            return;
        };
        if c.netns.is_empty() {
            let cidr = format!("{}/32", c.ip);
            let _ = net::ip(&["addr", "del", &cidr, "dev", &self.bridge]);
            return;
        }
        // Its processes are being stopped: the namespace itself lives until they are gone.
        for problem in net::remove_namespace(&c.netns) {
            eprintln!("warning: {problem}");
        }
        self.record.namespaces.retain(|n| *n != c.netns);
    }

    fn network(&self) -> Option<NetworkRecord> {
        Some(self.record.clone())
    }

    fn teardown(&mut self) -> Vec<String> {
        self.created.clear();
        net::teardown(&self.record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_addresses_are_stable_and_manifest_ips_win() {
        let mut v = ServiceVips::new(57);
        let cart = v.assign("shop", "cart", None).unwrap();
        assert_eq!(cart.to_string(), "10.57.255.1");
        assert_eq!(
            v.assign("shop", "db", Some("")).unwrap().to_string(),
            "10.57.255.2"
        );
        assert_eq!(v.assign("shop", "cart", None), Some(cart));
        assert_eq!(
            v.assign("shop", "x", Some("10.96.0.10"))
                .unwrap()
                .to_string(),
            "10.96.0.10"
        );
        assert_eq!(v.assign("shop", "headless", Some("None")), None);
    }

    #[test]
    fn run_hashes_are_short_and_stable() {
        let a = run_hash("/run/weft/shop-1234");
        assert_eq!(a.len(), 6);
        assert_eq!(a, run_hash("/run/weft/shop-1234"));
        assert_ne!(a, run_hash("/run/weft/shop-1235"));
    }
}
