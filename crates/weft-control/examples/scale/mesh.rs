//! The generated mesh: Kubernetes Services spread over namespaces, a VirtualService and
//! DestinationRule (canary split over subsets) for one service in ten, and a registry of
//! workload instances with transparent-capture sidecars.
//!
//! With `scoped`, every namespace also gets a Sidecar importing its own namespace and the
//! next two, so a proxy sees 3 namespaces' services instead of all of them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;

/// The shape of the generated mesh.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub services: usize,
    pub namespaces: usize,
    pub endpoints: usize,
    /// Instances per service (of `endpoints`) that run a connected proxy.
    pub proxies_per_service: usize,
    pub scoped: bool,
}

/// How many namespaces a Sidecar imports (its own and the next ones).
pub const SCOPE_WIDTH: usize = 3;

impl Shape {
    pub fn namespace_of(&self, service: usize) -> usize {
        service % self.namespaces
    }

    pub fn proxy_count(&self) -> usize {
        self.services * self.proxies_per_service
    }

    /// The proxy ids that connect: instances `0..proxies_per_service` of every service.
    pub fn proxy_ids(&self) -> Vec<(String, usize)> {
        let mut out = Vec::with_capacity(self.proxy_count());
        for s in 0..self.services {
            for k in 0..self.proxies_per_service {
                out.push((
                    format!(
                        "{}.{}",
                        instance_name(s, k),
                        namespace(self.namespace_of(s))
                    ),
                    s,
                ));
            }
        }
        out
    }

    /// Whether a proxy of service `client` sees service `target`.
    pub fn sees(&self, client: usize, target: usize) -> bool {
        if !self.scoped {
            return true;
        }
        let from = self.namespace_of(client);
        let to = self.namespace_of(target);
        (0..SCOPE_WIDTH).any(|d| (from + d) % self.namespaces == to)
    }

    /// Config objects generated (for the control plane to report ready).
    pub fn object_count(&self) -> usize {
        let routed = (0..self.services).filter(|s| routed(*s)).count();
        self.services + 2 * routed + if self.scoped { self.namespaces } else { 0 }
    }
}

pub fn namespace(n: usize) -> String {
    format!("team{n}")
}

pub fn instance_name(service: usize, k: usize) -> String {
    format!("svc{service}-{k}")
}

/// One service in ten has a VirtualService and a DestinationRule.
fn routed(service: usize) -> bool {
    service.is_multiple_of(10)
}

/// Instance addresses: 10.1.0.0 upwards, four per service.
pub fn instance_address(service: usize, k: usize) -> Ipv4Addr {
    let n = u32::from(Ipv4Addr::new(10, 1, 0, 0)) + (service * 8 + k) as u32;
    Ipv4Addr::from(n)
}

/// A second address for instance `k` (what an endpoint moves to).
pub fn moved_address(service: usize, k: usize, round: usize) -> Ipv4Addr {
    let n = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + ((service * 8 + k) * 64 + round % 64) as u32;
    Ipv4Addr::from(n)
}

fn cluster_ip(service: usize) -> Ipv4Addr {
    let n = u32::from(Ipv4Addr::new(10, 96, 0, 0)) + service as u32 + 1;
    Ipv4Addr::from(n)
}

fn service_docs(shape: &Shape, s: usize, out: &mut Vec<String>) {
    let ns = namespace(shape.namespace_of(s));
    out.push(format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc{s}, namespace: {ns}}}\nspec:\n  \
         selector: {{app: svc{s}}}\n  clusterIP: {}\n  ports:\n  - {{name: http, port: 8080, targetPort: 8080}}\n",
        cluster_ip(s)
    ));
    if !routed(s) {
        return;
    }
    out.push(format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc{s}, namespace: {ns}}}\n\
         spec:\n  hosts: [svc{s}]\n  http:\n  - match: [{{headers: {{x-canary: {{exact: \"1\"}}}}}}]\n    \
         route: [{{destination: {{host: svc{s}, subset: v2}}}}]\n  - route:\n    \
         - {{destination: {{host: svc{s}, subset: v1}}, weight: 90}}\n    \
         - {{destination: {{host: svc{s}, subset: v2}}, weight: 10}}\n    \
         timeout: 5s\n    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: \"5xx,reset\"}}\n"
    ));
    out.push(format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: svc{s}, namespace: {ns}}}\n\
         spec:\n  host: svc{s}\n  trafficPolicy:\n    connectionPool: {{tcp: {{maxConnections: 100}}}}\n    \
         outlierDetection: {{consecutive5xxErrors: 5, interval: 10s}}\n  subsets:\n  \
         - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n"
    ));
}

fn sidecar_doc(shape: &Shape, n: usize) -> String {
    let hosts: Vec<String> = (0..SCOPE_WIDTH)
        .map(|d| format!("\"{}/*\"", namespace((n + d) % shape.namespaces)))
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: {}}}\n\
         spec:\n  egress:\n  - hosts: [{}]\n",
        namespace(n),
        hosts.join(", ")
    )
}

/// The config directory's files (100 services per file) as (file name, YAML).
pub fn config_files(shape: &Shape) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (f, chunk) in (0..shape.services)
        .collect::<Vec<_>>()
        .chunks(100)
        .enumerate()
    {
        let mut docs = Vec::new();
        for s in chunk {
            service_docs(shape, *s, &mut docs);
        }
        files.push((format!("mesh-{f:03}.yaml"), docs.join("---\n")));
    }
    if shape.scoped {
        let docs: Vec<String> = (0..shape.namespaces)
            .map(|n| sidecar_doc(shape, n))
            .collect();
        files.push(("sidecars.yaml".into(), docs.join("---\n")));
    }
    files
}

/// The registry YAML; `moved` gives one instance (service, k) a different address.
pub fn registry_yaml(shape: &Shape, moved: Option<(usize, usize, usize)>) -> String {
    let mut out = String::from("instances:\n");
    for s in 0..shape.services {
        let ns = namespace(shape.namespace_of(s));
        for k in 0..shape.endpoints {
            let version = if k + 1 == shape.endpoints && shape.endpoints > 1 {
                "v2"
            } else {
                "v1"
            };
            let address = match moved {
                Some((ms, mk, round)) if ms == s && mk == k => moved_address(s, k, round),
                _ => instance_address(s, k),
            };
            let _ = writeln!(
                out,
                "- {{name: {}, namespace: {ns}, workload: svc{s}, labels: {{app: svc{s}, version: {version}}}, \
                 serviceAccount: svc{s}, address: {address}, ports: {{http: 8080}}, proxy: {{capture: transparent}}}}",
                instance_name(s, k)
            );
        }
    }
    out
}

/// Write the config directory and the registry file under `dir`.
pub fn write(shape: &Shape, dir: &Path) -> std::io::Result<()> {
    let config = dir.join("config");
    std::fs::create_dir_all(&config)?;
    for (name, text) in config_files(shape) {
        std::fs::write(config.join(name), text)?;
    }
    std::fs::write(dir.join("registry.yaml"), registry_yaml(shape, None))
}
