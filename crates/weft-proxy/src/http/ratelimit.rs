//! Local rate limiting: Envoy's token bucket per HTTP chain, virtual host or route.
//!
//! Tokens are refilled in whole `fill_interval` steps measured on tokio's clock, computed
//! when a request asks for a token: the same result as a refill timer, without a task per
//! bucket, and it runs under tokio's paused clock in tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use weft_api::{ChainProtocol, ProxyConfig, TokenBucket};

#[derive(Debug)]
pub struct Bucket {
    pub spec: TokenBucket,
    state: Mutex<(u32, Instant)>,
}

impl Bucket {
    fn new(spec: TokenBucket) -> Bucket {
        Bucket {
            state: Mutex::new((spec.max_tokens, Instant::now())),
            spec,
        }
    }

    /// Takes a token; false when the bucket is empty (answer 429).
    pub fn try_take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *state;
        let interval = self
            .spec
            .fill_interval
            .max(std::time::Duration::from_millis(1));
        let fills = (Instant::now().saturating_duration_since(*last).as_nanos()
            / interval.as_nanos()) as u64;
        if fills > 0 {
            let added = fills.saturating_mul(u64::from(self.spec.tokens_per_fill));
            *tokens = (u64::from(*tokens) + added).min(u64::from(self.spec.max_tokens)) as u32;
            *last += interval * fills.min(u64::from(u32::MAX)) as u32;
        }
        if *tokens > 0 {
            *tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// Every bucket of a runtime, by scope key.
#[derive(Debug, Default)]
pub struct Limiters {
    by_key: HashMap<String, Arc<Bucket>>,
}

pub fn chain_key(listener: &str, route_table: &str) -> String {
    format!("chain|{listener}|{route_table}")
}

pub fn vhost_key(table: &str, vhost: &str) -> String {
    format!("vhost|{table}|{vhost}")
}

pub fn route_key(table: &str, vhost: &str, route_index: usize) -> String {
    format!("route|{table}|{vhost}|{route_index}")
}

impl Limiters {
    /// Buckets for every limit in `config`; a bucket whose scope and spec did not change
    /// keeps its tokens across the reload.
    pub fn build(config: &ProxyConfig, previous: Option<&Limiters>) -> Limiters {
        let mut wanted: Vec<(String, &TokenBucket)> = Vec::new();
        for l in &config.listeners {
            for c in &l.chains {
                let http = match &c.protocol {
                    ChainProtocol::Http(h) => h,
                    ChainProtocol::Detect { http, .. } => http,
                    _ => continue,
                };
                if let Some(tb) = &http.rate_limit {
                    wanted.push((chain_key(&l.name, &http.route_table), tb));
                }
            }
        }
        for t in &config.route_tables {
            for vh in &t.virtual_hosts {
                if let Some(tb) = &vh.rate_limit {
                    wanted.push((vhost_key(&t.name, &vh.name), tb));
                }
                for (i, r) in vh.routes.iter().enumerate() {
                    if let Some(tb) = &r.rate_limit {
                        wanted.push((route_key(&t.name, &vh.name, i), tb));
                    }
                }
            }
        }
        let by_key = wanted
            .into_iter()
            .map(|(key, spec)| {
                let bucket = previous
                    .and_then(|p| p.by_key.get(&key))
                    .filter(|b| b.spec == *spec)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Bucket::new(spec.clone())));
                (key, bucket)
            })
            .collect();
        Limiters { by_key }
    }

    pub fn get(&self, key: &str) -> Option<&Arc<Bucket>> {
        self.by_key.get(key)
    }

    /// No limit configured: requests skip building scope keys altogether.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn bucket_refills_per_interval_up_to_max() {
        let b = Bucket::new(TokenBucket {
            max_tokens: 3,
            tokens_per_fill: 2,
            fill_interval: Duration::from_secs(1),
            response_headers: vec![],
            origin: None,
        });
        assert!(b.try_take() && b.try_take() && b.try_take());
        assert!(!b.try_take());
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!b.try_take());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(b.try_take() && b.try_take());
        assert!(!b.try_take());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(b.try_take() && b.try_take() && b.try_take());
        assert!(!b.try_take(), "capped at max_tokens");
    }
}
