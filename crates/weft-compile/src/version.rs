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
    let items: Vec<(List, &[u8])> = listeners
        .into_iter()
        .map(|b| (List::Listeners, b))
        .chain(route_tables.into_iter().map(|b| (List::RouteTables, b)))
        .chain(clusters.into_iter().map(|b| (List::Clusters, b)))
        .collect();
    version_with_trail(node, &items, None).0
}

/// The list of a config a resource is in, in the config's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum List {
    Listeners,
    RouteTables,
    Clusters,
}

impl List {
    const ALL: [List; 3] = [List::Listeners, List::RouteTables, List::Clusters];

    fn open(self) -> &'static [u8] {
        match self {
            List::Listeners => br#","listeners":["#,
            List::RouteTables => br#","route_tables":["#,
            List::Clusters => br#","clusters":["#,
        }
    }
}

/// The hash states after a config's node and after each of its resources: a config whose
/// node and first resources are those of one hashed before is hashed from there on (a
/// change to one cluster of 1,000 rehashes only what follows it, not megabytes of JSON).
#[derive(Debug, Clone, Default)]
pub struct VersionTrail(Vec<u64>);

/// [`version_from_encoded`] of `items` (each resource's list and encoding, in the config's
/// order), and its trail. With `resume: Some((trail, n))`, `trail` is the trail of a config
/// with the same node whose first `n` items were these, which are not hashed again.
pub fn version_with_trail(
    node: &Node,
    items: &[(List, &[u8])],
    resume: Option<(&VersionTrail, usize)>,
) -> (String, VersionTrail) {
    let mut states = Vec::with_capacity(items.len() + 1);
    let mut hash = Fnv::new();
    let mut start = 0;
    match resume {
        Some((trail, n)) if n <= items.len() && n < trail.0.len() => {
            states.extend_from_slice(&trail.0[..=n]);
            hash.0 = trail.0[n];
            start = n;
        }
        _ => {
            hash.add(br#"{"version":"","node":"#);
            let _ = serde_json::to_writer(&mut hash, node);
            states.push(hash.0);
        }
    }
    // The list open after item `start - 1` (none before the first item).
    let mut open: Option<List> = start.checked_sub(1).map(|i| items[i].0);
    for (list, body) in &items[start..] {
        if open == Some(*list) {
            hash.add(b",");
        } else {
            hash.open_lists(&mut open, Some(*list));
        }
        hash.add(body);
        states.push(hash.0);
    }
    hash.open_lists(&mut open, None);
    hash.add(b"}");
    (hash.finish(), VersionTrail(states))
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

    /// Close the list `open` and write the lists between it and `next` empty, then open
    /// `next` (None: close every list up to the last).
    fn open_lists(&mut self, open: &mut Option<List>, next: Option<List>) {
        if open.is_some() {
            self.add(b"]");
        }
        for l in List::ALL {
            if open.is_some_and(|o| l <= o) {
                continue;
            }
            if next.is_some_and(|n| l > n) {
                break;
            }
            self.add(l.open());
            if Some(l) != next {
                self.add(b"]");
            }
        }
        *open = next;
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

    /// A trail resumes exactly where hashing from the start would be, whichever lists the
    /// unchanged prefix and the changed rest fall in (empty lists included).
    #[test]
    fn resuming_from_a_trail_hashes_like_the_whole_config() {
        let mut cfg = ProxyConfig::default();
        cfg.node.id = "a.b".into();
        let encode = |cfg: &ProxyConfig| -> Vec<(List, Vec<u8>)> {
            let json = |v: &dyn erased_serde_like::Json| v.json();
            cfg.listeners
                .iter()
                .map(|l| (List::Listeners, json(l)))
                .chain(
                    cfg.route_tables
                        .iter()
                        .map(|t| (List::RouteTables, json(t))),
                )
                .chain(cfg.clusters.iter().map(|c| (List::Clusters, json(c))))
                .collect()
        };
        let hash = |cfg: &ProxyConfig, resume: Option<(&VersionTrail, usize)>| {
            let items = encode(cfg);
            let refs: Vec<(List, &[u8])> = items.iter().map(|(l, b)| (*l, b.as_slice())).collect();
            version_with_trail(&cfg.node, &refs, resume)
        };
        // Empty, then clusters only, then every list.
        let (v, trail) = hash(&cfg, None);
        assert_eq!(v, version_of(&cfg));
        cfg.clusters = vec![cluster("c1"), cluster("c2"), cluster("c3")];
        let (v, mut trail) = {
            let resumed = hash(&cfg, Some((&trail, 0)));
            assert_eq!(resumed.0, version_of(&cfg));
            resumed
        };
        assert_eq!(v, version_of(&cfg));
        cfg.route_tables.push(weft_api::RouteTable {
            name: "outbound|80".into(),
            ..Default::default()
        });
        // The new route table comes before every cluster: nothing but the node is reused.
        let (v, t) = hash(&cfg, Some((&trail, 0)));
        assert_eq!(v, version_of(&cfg));
        trail = t;
        // The last cluster changes: the first three items are reused.
        cfg.clusters[2] = cluster("c3-moved");
        let (v, t) = hash(&cfg, Some((&trail, 3)));
        assert_eq!(v, version_of(&cfg));
        // The middle one: one item reused after the route table.
        cfg.clusters[1] = cluster("c2-moved");
        let (v, t) = hash(&cfg, Some((&t, 2)));
        assert_eq!(v, version_of(&cfg));
        // Dropping the last cluster: every remaining item is unchanged.
        cfg.clusters.pop();
        let (v, _) = hash(&cfg, Some((&t, 3)));
        assert_eq!(v, version_of(&cfg));
    }

    mod erased_serde_like {
        pub trait Json {
            fn json(&self) -> Vec<u8>;
        }

        impl<T: serde::Serialize> Json for T {
            fn json(&self) -> Vec<u8> {
                serde_json::to_vec(self).expect("encodes")
            }
        }
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
