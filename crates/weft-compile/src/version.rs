//! The config version: FNV-1a (64 bit) of the config's JSON with an empty `version`.
//!
//! [`version_of`] hashes a typed config; [`version_from_encoded`] gives the same version
//! from the node and the resources already encoded one by one (the control plane encodes
//! every resource anyway, and shares the encodings between proxies): serde_json writes a
//! nested value exactly as it writes it alone, so the config's JSON is those encodings
//! joined by the config's own punctuation.

use weft_api::{Node, ProxyConfig};

/// The version of `cfg`, ignoring its current `version`.
pub fn version_of(cfg: &ProxyConfig) -> String {
    let mut hash = Fnv::new();
    // Hashed as it is written: no copy of the config, no JSON text held.
    if cfg.version.is_empty() {
        let _ = serde_json::to_writer(&mut hash, cfg);
    } else {
        let copy = ProxyConfig {
            version: String::new(),
            ..cfg.clone()
        };
        let _ = serde_json::to_writer(&mut hash, &copy);
    }
    hash.finish()
}

/// The version of the config with this node and these resources, each the JSON
/// encoding (`serde_json::to_vec`) of one listener, route table or cluster, in the
/// config's order. Equal to [`version_of`] of that config.
pub fn version_from_encoded<'b>(
    node: &Node,
    listeners: impl IntoIterator<Item = &'b [u8]>,
    route_tables: impl IntoIterator<Item = &'b [u8]>,
    clusters: impl IntoIterator<Item = &'b [u8]>,
) -> String {
    let mut hash = Fnv::new();
    hash.add(br#"{"version":"","node":"#);
    let _ = serde_json::to_writer(&mut hash, node);
    hash.list(br#","listeners":["#, listeners);
    hash.list(br#","route_tables":["#, route_tables);
    hash.list(br#","clusters":["#, clusters);
    hash.add(b"}");
    hash.finish()
}

/// An FNV-1a hasher that JSON can be written into.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// `open`, the items separated by commas, `]`.
    fn list<'b>(&mut self, open: &[u8], items: impl IntoIterator<Item = &'b [u8]>) {
        self.add(open);
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.add(b",");
            }
            self.add(item);
        }
        self.add(b"]");
    }

    fn finish(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl std::io::Write for Fnv {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.add(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_parts_hash_like_the_whole_config() {
        let text = serde_json::to_string(&ProxyConfig::default()).expect("encodes");
        assert!(text.starts_with(r#"{"version":"","node":"#), "{text}");
        let mut cfg = ProxyConfig::default();
        cfg.node.id = "a.b".into();
        cfg.clusters.push(cluster("c1"));
        cfg.clusters.push(cluster("c2"));
        let clusters: Vec<Vec<u8>> = cfg
            .clusters
            .iter()
            .map(|c| serde_json::to_vec(c).expect("encodes"))
            .collect();
        let plain = version_of(&cfg);
        let parts = version_from_encoded(&cfg.node, [], [], clusters.iter().map(Vec::as_slice));
        assert_eq!(plain, parts);
        // The version field itself is not hashed.
        cfg.version = "stale".into();
        assert_eq!(version_of(&cfg), plain);
        cfg.clusters.pop();
        assert_ne!(version_of(&cfg), plain);
    }

    fn cluster(name: &str) -> weft_api::Cluster {
        weft_api::Cluster {
            name: name.into(),
            service: None,
            policy_origin: None,
            discovery: weft_api::Discovery::Blackhole,
            endpoints: Vec::new(),
            lb: weft_api::LbPolicy::LeastRequest,
            connect_timeout: std::time::Duration::from_secs(1),
            limits: weft_api::ConnectionLimits::default(),
            max_requests_per_connection: 0,
            idle_timeout: None,
            tcp_keepalive: None,
            outlier_detection: None,
            protocol: weft_api::UpstreamProtocol::SameAsDownstream,
            tls: weft_api::UpstreamTls::Disabled,
        }
    }
}
