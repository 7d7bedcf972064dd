//! Load balancing: which endpoint of a cluster gets the next request.
//!
//! Pure over indexes: the caller says which endpoints are usable (not ejected, not tried
//! before) and how loaded each is, so the policy is testable without sockets.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderMap;
use weft_api::{HashKey, LbPolicy};

/// Ring and table sizes are capped: a bigger table buys nothing measurable for the
/// endpoint counts a sidecar sees, and costs memory per cluster.
const MAX_TABLE: u64 = 1 << 17;

#[derive(Debug)]
pub enum Balancer {
    RoundRobin {
        /// Endpoint indexes repeated by weight.
        schedule: Vec<usize>,
        next: AtomicUsize,
    },
    LeastRequest,
    Random,
    Ring {
        /// Sorted by hash.
        ring: Vec<(u64, usize)>,
    },
    Maglev {
        table: Vec<usize>,
    },
}

impl Balancer {
    pub fn new(policy: &LbPolicy, weights: &[u32]) -> Balancer {
        match policy {
            LbPolicy::RoundRobin => {
                let mut schedule = Vec::new();
                // Interleave by weight so a heavy endpoint does not get bursts.
                let max = weights.iter().copied().max().unwrap_or(0).min(1000);
                for round in 0..max {
                    for (i, w) in weights.iter().enumerate() {
                        if (*w).min(1000) > round {
                            schedule.push(i);
                        }
                    }
                }
                Balancer::RoundRobin {
                    schedule,
                    next: AtomicUsize::new(fastrand::usize(..weights.len().max(1))),
                }
            }
            LbPolicy::LeastRequest => Balancer::LeastRequest,
            LbPolicy::Random => Balancer::Random,
            LbPolicy::RingHash {
                minimum_ring_size, ..
            } => Balancer::Ring {
                ring: build_ring(weights, (*minimum_ring_size).clamp(1024, MAX_TABLE)),
            },
            LbPolicy::Maglev { table_size, .. } => Balancer::Maglev {
                table: build_maglev(weights, next_prime((*table_size).clamp(251, MAX_TABLE))),
            },
        }
    }

    /// Picks an endpoint index among those `usable` says yes to; `load` is the number of
    /// active requests (least request). `hash` is the consistent-hash key, if any.
    pub fn pick(
        &self,
        count: usize,
        hash: Option<u64>,
        usable: impl Fn(usize) -> bool,
        load: impl Fn(usize) -> u32,
    ) -> Option<usize> {
        if count == 0 {
            return None;
        }
        match self {
            Balancer::RoundRobin { schedule, next } => {
                let len = schedule.len();
                if len == 0 {
                    return None;
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..len)
                    .map(|k| schedule[(start + k) % len])
                    .find(|i| usable(*i))
            }
            Balancer::LeastRequest => {
                let candidates: Vec<usize> = (0..count).filter(|i| usable(*i)).collect();
                match candidates.len() {
                    0 => None,
                    1 => Some(candidates[0]),
                    n => {
                        let a = candidates[fastrand::usize(..n)];
                        let b = candidates[fastrand::usize(..n)];
                        Some(if load(b) < load(a) { b } else { a })
                    }
                }
            }
            Balancer::Random => random_usable(count, &usable),
            Balancer::Ring { ring } => {
                let Some(h) = hash else {
                    return random_usable(count, &usable);
                };
                if ring.is_empty() {
                    return None;
                }
                let start = ring.partition_point(|(k, _)| *k < h);
                (0..ring.len())
                    .map(|k| ring[(start + k) % ring.len()].1)
                    .find(|i| usable(*i))
            }
            Balancer::Maglev { table } => {
                let Some(h) = hash else {
                    return random_usable(count, &usable);
                };
                if table.is_empty() {
                    return None;
                }
                let start = (h % table.len() as u64) as usize;
                (0..table.len())
                    .map(|k| table[(start + k) % table.len()])
                    .find(|i| usable(*i))
            }
        }
    }
}

fn random_usable(count: usize, usable: &impl Fn(usize) -> bool) -> Option<usize> {
    let start = fastrand::usize(..count);
    (0..count).map(|k| (start + k) % count).find(|i| usable(*i))
}

/// A stable 64-bit hash (SipHash with fixed keys): the same key picks the same endpoint in
/// every proxy process.
pub fn stable_hash(value: impl Hash) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    value.hash(&mut h);
    h.finish()
}

fn build_ring(weights: &[u32], size: u64) -> Vec<(u64, usize)> {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut ring = Vec::with_capacity(size as usize);
    for (i, w) in weights.iter().enumerate() {
        let replicas = (size * u64::from(*w)).div_ceil(total);
        for r in 0..replicas {
            ring.push((stable_hash((i, r)), i));
        }
    }
    ring.sort_unstable();
    ring
}

fn next_prime(n: u64) -> u64 {
    let is_prime = |k: u64| {
        k >= 2
            && (2..)
                .take_while(|d| d * d <= k)
                .all(|d| !k.is_multiple_of(d))
    };
    (n..).find(|k| is_prime(*k)).unwrap_or(65537)
}

/// Maglev lookup table (Eisenbud et al.): each endpoint fills slots in its own permutation
/// order, weighted by how many turns it gets.
fn build_maglev(weights: &[u32], size: u64) -> Vec<usize> {
    let n = weights.len();
    let max_w = weights.iter().copied().max().unwrap_or(0);
    if max_w == 0 {
        return Vec::new();
    }
    let perms: Vec<(u64, u64)> = (0..n)
        .map(|i| {
            let offset = stable_hash(("offset", i)) % size;
            let skip = stable_hash(("skip", i)) % (size - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; n];
    let mut table = vec![usize::MAX; size as usize];
    let mut filled = 0u64;
    let mut round = 0u64;
    while filled < size {
        round += 1;
        for i in 0..n {
            // Weighted: endpoint i takes a turn in `weight / max_w` of the rounds.
            let w = u64::from(weights[i]);
            let max = u64::from(max_w);
            if round * w / max == (round - 1) * w / max {
                continue;
            }
            loop {
                let (offset, skip) = perms[i];
                let slot = ((offset + next[i] * skip) % size) as usize;
                next[i] += 1;
                if table[slot] == usize::MAX {
                    table[slot] = i;
                    filled += 1;
                    break;
                }
            }
            if filled == size {
                break;
            }
        }
    }
    table
}

/// The consistent-hash input of one request.
#[derive(Debug, Default)]
pub struct HashInput {
    pub hash: Option<u64>,
    /// `Set-Cookie` to add to the response: the cookie was generated for this request.
    pub set_cookie: Option<String>,
}

/// Computes the hash key `policy` asks for from the request; none when the policy does not
/// hash or the request lacks the key (then the pick is random).
pub fn request_hash(
    policy: &LbPolicy,
    headers: &HeaderMap,
    query: Option<&str>,
    peer: IpAddr,
) -> HashInput {
    let key = match policy {
        LbPolicy::RingHash { key, .. } | LbPolicy::Maglev { key, .. } => key,
        _ => return HashInput::default(),
    };
    match key {
        HashKey::Header(name) => HashInput {
            hash: headers
                .get(name.as_str())
                .map(|v| stable_hash(v.as_bytes())),
            set_cookie: None,
        },
        HashKey::SourceIp => HashInput {
            hash: Some(stable_hash(peer)),
            set_cookie: None,
        },
        HashKey::QueryParameter(name) => HashInput {
            hash: query.and_then(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| stable_hash(v))
            }),
            set_cookie: None,
        },
        HashKey::Cookie { name, path, ttl } => {
            if let Some(v) = cookie(headers, name) {
                return HashInput {
                    hash: Some(stable_hash(v)),
                    set_cookie: None,
                };
            }
            let Some(ttl) = ttl else {
                return HashInput::default();
            };
            let value = format!("{:016x}", fastrand::u64(..));
            let mut set = format!("{name}=\"{value}\"; Max-Age={}", ttl.as_secs());
            if let Some(p) = path {
                set.push_str("; Path=");
                set.push_str(p);
            }
            set.push_str("; HttpOnly");
            HashInput {
                hash: Some(stable_hash(value.as_str())),
                set_cookie: Some(set),
            }
        }
    }
}

/// The value of cookie `name` (quotes removed), from any `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_follows_weights_and_skips_unusable() {
        let b = Balancer::new(&LbPolicy::RoundRobin, &[2, 1]);
        let mut counts = [0; 2];
        for _ in 0..300 {
            counts[b.pick(2, None, |_| true, |_| 0).unwrap()] += 1;
        }
        assert_eq!(counts, [200, 100]);
        for _ in 0..10 {
            assert_eq!(b.pick(2, None, |i| i == 1, |_| 0), Some(1));
        }
        assert_eq!(b.pick(2, None, |_| false, |_| 0), None);
    }

    #[test]
    fn least_request_prefers_the_idle_endpoint() {
        let b = Balancer::new(&LbPolicy::LeastRequest, &[1, 1]);
        let mut idle = 0;
        for _ in 0..1000 {
            if b.pick(2, None, |_| true, |i| if i == 0 { 10 } else { 0 }) == Some(1) {
                idle += 1;
            }
        }
        // The busy endpoint only wins when both choices land on it (1/4 of the time).
        assert!(
            (700..=800).contains(&idle),
            "idle endpoint picked {idle}/1000"
        );
    }

    #[test]
    fn consistent_hashes_are_sticky_and_spread() {
        for policy in [
            LbPolicy::RingHash {
                key: HashKey::SourceIp,
                minimum_ring_size: 1024,
            },
            LbPolicy::Maglev {
                key: HashKey::SourceIp,
                table_size: 65537,
            },
        ] {
            let b = Balancer::new(&policy, &[1, 1, 1]);
            let mut seen = [0; 3];
            for k in 0..300u64 {
                let h = stable_hash(k);
                let first = b.pick(3, Some(h), |_| true, |_| 0).unwrap();
                assert_eq!(b.pick(3, Some(h), |_| true, |_| 0), Some(first));
                seen[first] += 1;
                // An unusable endpoint moves only its own keys.
                let moved = b.pick(3, Some(h), |i| i != 2, |_| 0).unwrap();
                if first != 2 {
                    assert_eq!(moved, first);
                }
            }
            assert!(seen.iter().all(|n| *n > 50), "{policy:?}: {seen:?}");
        }
    }

    #[test]
    fn cookie_hash_generates_a_cookie_when_ttl_is_set() {
        let policy = LbPolicy::RingHash {
            key: HashKey::Cookie {
                name: "user".into(),
                path: Some("/".into()),
                ttl: Some(std::time::Duration::from_secs(60)),
            },
            minimum_ring_size: 1024,
        };
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let generated = request_hash(&policy, &HeaderMap::new(), None, peer);
        let set = generated.set_cookie.unwrap();
        assert!(set.starts_with("user=\"") && set.contains("Max-Age=60; Path=/"));
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "a=1; user=\"abc\"".parse().unwrap());
        let with = request_hash(&policy, &headers, None, peer);
        assert_eq!(with.hash, Some(stable_hash("abc")));
        assert!(with.set_cookie.is_none());
    }

    #[test]
    fn query_parameter_hash() {
        let policy = LbPolicy::Maglev {
            key: HashKey::QueryParameter("u".into()),
            table_size: 251,
        };
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let h = request_hash(&policy, &HeaderMap::new(), Some("a=1&u=bob"), peer);
        assert_eq!(h.hash, Some(stable_hash("bob")));
        assert!(
            request_hash(&policy, &HeaderMap::new(), Some("a=1"), peer)
                .hash
                .is_none()
        );
    }
}
