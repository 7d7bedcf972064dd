//! The proxy's control-plane client: a [`ConfigSource`] fed by the `weft.v1.Discovery`
//! stream (see `weft-api/proto/weft/v1/discovery.proto`).
//!
//! It holds the resources it runs, applies each push (a delta, possibly sent as several
//! parts: it applies once the last part is in, never half a push) on top of them,
//! publishes the whole `ProxyConfig` and answers with an ACK carrying the push's nonce and a
//! NACK reason for each refused resource (does not decode, does not build into a runtime,
//! or the proxy's apply fails on it, e.g. a listener that cannot bind); the rest of the
//! push applies and counts as accepted without being listed. When the
//! control plane is gone the last good config stays in force; the client reconnects with
//! jittered exponential backoff and resumes by announcing the versions it holds.

mod held;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{info, warn};
use weft_api::pb::{self, DeltaResponse, ProxyMessage, discovery_client::DiscoveryClient};

use crate::app::Status;
use crate::source::{ChannelSource, ConfigPublisher};
use held::{Held, Refusal};

/// The largest response the proxy accepts. The control plane sends a push in parts of
/// about 7 KiB, a larger resource alone: this bounds one resource (a route table of a
/// gateway with thousands of hosts), not a whole config. tonic keeps a receive buffer as
/// large as the largest message received, for the life of the stream.
const MAX_PART_BYTES: usize = 16 << 20;

/// How long the proxy's apply of one config may take before it counts as failed.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Who the proxy is and where its control plane is.
#[derive(Debug, Clone)]
pub struct XdsOptions {
    /// `http://host:port` of the control plane's gRPC port.
    pub address: String,
    /// `name.namespace`, as in the control plane's registry.
    pub proxy_id: String,
    pub token: String,
    /// Announced in the hello; empty values leave the registry's.
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub workload_address: String,
    /// The admin listener's `ip:port`, announced so the control plane's dashboard can
    /// collect `/stats/prometheus` (empty: none).
    pub admin_address: String,
    pub backoff: Backoff,
}

/// Jittered exponential backoff: each delay is drawn from [d/2, d], d doubling from
/// `initial` up to `max`; it starts over after a stream that delivered a response.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: initial,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = d / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(200), Duration::from_secs(15))
    }
}

/// What the client did, for tests and the admin endpoint.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct XdsStats {
    pub connected: bool,
    pub attempts: u64,
    pub connects: u64,
    pub disconnects: BTreeMap<String, u64>,
    /// Pushes applied (each answered with one ACK).
    pub responses: u64,
    /// Responses received (a push may come in several parts).
    pub parts: u64,
    /// Resources refused, with the reason, by `type/name`.
    pub rejected: BTreeMap<String, String>,
    /// The version of the config last published.
    pub config_version: String,
}

pub struct XdsClient {
    options: XdsOptions,
    publisher: ConfigPublisher,
    held: Held,
    /// The config last published (what `held` reads its resources from).
    published: Option<Arc<weft_api::ProxyConfig>>,
    stats: Arc<Mutex<XdsStats>>,
}

impl XdsClient {
    /// The admin address to announce in the hello of every stream from now on.
    pub fn announce_admin_address(&mut self, addr: std::net::SocketAddr) {
        self.options.admin_address = addr.to_string();
    }

    /// A client and the source to build the proxy with (`app::build(options, source)`).
    pub fn new(options: XdsOptions) -> (XdsClient, ChannelSource) {
        let (source, publisher) = ChannelSource::new();
        let client = XdsClient {
            options,
            publisher,
            held: Held::default(),
            published: None,
            stats: Arc::default(),
        };
        (client, source)
    }

    pub fn stats(&self) -> Arc<Mutex<XdsStats>> {
        self.stats.clone()
    }

    fn stat(&self, f: impl FnOnce(&mut XdsStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Connect, apply, reconnect: forever. `status` is the running proxy's
    /// ([`crate::app::Running::status`]), read to learn whether an apply succeeded.
    pub async fn run(mut self, mut status: watch::Receiver<Status>) {
        let mut backoff = self.options.backoff.clone();
        loop {
            self.stat(|s| s.attempts += 1);
            let (reason, delivered) = self.session(&mut status).await;
            warn!(%reason, control = %self.options.address, "control plane stream ended; the last config stays in force");
            self.stat(|s| {
                s.connected = false;
                *s.disconnects.entry(reason).or_default() += 1;
            });
            if delivered {
                backoff.reset();
            }
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// One stream; returns why it ended and whether it delivered any response.
    async fn session(&mut self, status: &mut watch::Receiver<Status>) -> (String, bool) {
        let channel = match tonic::transport::Endpoint::from_shared(self.options.address.clone()) {
            Ok(e) => e.connect_timeout(Duration::from_secs(5)),
            Err(e) => return (format!("bad control plane address: {e}"), false),
        };
        let channel = match channel.connect().await {
            Ok(c) => c,
            Err(_) => return ("connect failed".into(), false),
        };
        let (tx, rx) = mpsc::channel(16);
        let hello = pb::Hello {
            proxy_id: self.options.proxy_id.clone(),
            namespace: self
                .options
                .proxy_id
                .split_once('.')
                .map(|(_, ns)| ns.to_string())
                .unwrap_or_default(),
            labels: self.options.labels.clone().into_iter().collect(),
            service_account: self.options.service_account.clone(),
            address: self.options.workload_address.clone(),
            token: self.options.token.clone(),
            held: self.held.versions(),
            workload: String::new(),
            admin_address: self.options.admin_address.clone(),
        };
        let _ = tx
            .send(ProxyMessage {
                kind: Some(pb::proxy_message::Kind::Hello(hello)),
            })
            .await;
        let mut client = DiscoveryClient::new(channel).max_decoding_message_size(MAX_PART_BYTES);
        let mut inbound = match client.stream(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return (format!("refused: {:?}: {}", s.code(), s.message()), false),
        };
        self.stat(|s| {
            s.connected = true;
            s.connects += 1;
        });
        info!(control = %self.options.address, held = self.held.entries.len(), "connected to the control plane");
        let mut delivered = false;
        let mut parts = Parts::default();
        loop {
            match inbound.message().await {
                Ok(Some(part)) => {
                    delivered = true;
                    self.stat(|s| s.parts += 1);
                    let delta = match parts.add(part) {
                        Ok(Some(delta)) => delta,
                        Ok(None) => continue,
                        // What the control plane believes was sent no longer holds; a new
                        // stream resumes from the versions held.
                        Err(e) => return (e, delivered),
                    };
                    let ack = self.apply(delta, status).await;
                    if tx.send(ack).await.is_err() {
                        return ("stream closed while sending".into(), delivered);
                    }
                }
                Ok(None) => return ("closed by the control plane".into(), delivered),
                Err(s) => return (format!("stream error: {:?}", s.code()), delivered),
            }
        }
    }

    /// Apply one delta and build the answer.
    async fn apply(
        &mut self,
        mut delta: DeltaResponse,
        status: &mut watch::Receiver<Status>,
    ) -> ProxyMessage {
        self.stat(|s| s.responses += 1);
        let mut base = self.held.with(&[], &delta.removed);
        if let Ok(node) = serde_json::from_slice(&delta.node) {
            base.node = node;
        }
        // The encoded resources go as soon as they are decoded: a proxy's first delta holds
        // its whole config, and the allocator keeps what the peak of an apply took.
        let (decoded, mut refused) = held::decode(&std::mem::take(&mut delta.resources));
        let checked = tokio::task::spawn_blocking(move || held::check(decoded)).await;
        let (mut accepted, more) = match checked {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "checking a delta failed");
                (Vec::new(), Vec::new())
            }
        };
        refused.extend(more);
        // Apply; if the proxy refuses, take out what its error blames and try once more.
        let mut next = base.with(&accepted, &[]);
        if let Err(error) = self.publish(&mut next, status).await {
            let blamed = held::blamed(&accepted, &error);
            for i in blamed.into_iter().rev() {
                let e = accepted.remove(i);
                refused.push(Refusal {
                    key: e.key,
                    version: e.version,
                    reason: error.clone(),
                });
            }
            next = base.with(&accepted, &[]);
            if let Err(error) = self.publish(&mut next, status).await {
                refused.extend(accepted.drain(..).map(|e| Refusal {
                    key: e.key,
                    version: e.version,
                    reason: error.clone(),
                }));
                // Nothing new applies; the removals do not either.
                next = self.held.clone();
            }
        }
        self.held = next;
        self.stat(|s| {
            for k in &delta.removed {
                s.rejected.remove(&k.display());
            }
            for e in &accepted {
                s.rejected.remove(&e.key.display());
            }
            for r in &refused {
                s.rejected.insert(r.key.display(), r.reason.clone());
            }
        });
        for r in &refused {
            warn!(resource = %r.key.display(), reason = %r.reason, "resource rejected");
        }
        answer(delta.nonce, refused)
    }

    /// Publish `held`'s config and wait for the proxy to apply or reject it. `held` reads
    /// its resources from the published config from then on (one copy, shared with the
    /// runtime).
    async fn publish(
        &mut self,
        held: &mut Held,
        status: &mut watch::Receiver<Status>,
    ) -> Result<(), String> {
        let version = held.version();
        let (applied_before, rejected_before, current) = {
            let s = status.borrow_and_update();
            (
                s.applied_total,
                s.rejected_total,
                s.applied.as_ref().map(|a| a.version.clone()),
            )
        };
        if current.as_deref() == Some(version.as_str()) {
            // Equal versions are equal holdings: read them from the config in force.
            if let Some(config) = self.published.as_ref().filter(|c| c.version == version) {
                held.adopt(config);
            }
            return Ok(());
        }
        let config = Arc::new(held.config());
        held.adopt(&config);
        self.publisher.publish_shared(config.clone());
        let outcome = tokio::time::timeout(
            APPLY_TIMEOUT,
            status.wait_for(|s| {
                (s.applied_total > applied_before
                    && s.applied.as_ref().is_some_and(|a| a.version == version))
                    || (s.rejected_total > rejected_before
                        && s.rejected.as_ref().is_some_and(|r| r.version == version))
            }),
        )
        .await;
        let result = match outcome {
            Err(_) => Err(format!("applying config {version} timed out")),
            Ok(Err(_)) => Err("the proxy stopped".to_string()),
            Ok(Ok(s)) => match &s.applied {
                Some(a) if a.version == version => Ok(()),
                _ => Err(s
                    .rejected
                    .as_ref()
                    .map(|r| r.error.clone())
                    .unwrap_or_else(|| "rejected".into())),
            },
        };
        if result.is_ok() {
            self.published = Some(config);
            self.stat(|s| s.config_version = version);
        }
        result
    }
}

/// The ACK of push `nonce`: what was refused, with reasons; everything else the push
/// carried is accepted without being listed (see `Ack` in discovery.proto).
fn answer(nonce: String, refused: Vec<Refusal>) -> ProxyMessage {
    ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Ack(pb::Ack {
            nonce,
            accepted: Vec::new(),
            rejected: refused
                .into_iter()
                .map(|r| pb::Rejection {
                    key: Some(r.key),
                    version: r.version,
                    reason: r.reason,
                })
                .collect(),
        })),
    }
}

/// The parts of a push received so far (see `DeltaResponse.more` in discovery.proto).
#[derive(Debug, Default)]
struct Parts {
    push: Option<DeltaResponse>,
}

impl Parts {
    /// Adds `part`; the whole push once its last part is in.
    fn add(&mut self, part: DeltaResponse) -> Result<Option<DeltaResponse>, String> {
        let push = match self.push.take() {
            None => part,
            Some(mut push) if push.nonce == part.nonce => {
                push.resources.extend(part.resources);
                push.removed.extend(part.removed);
                if !part.node.is_empty() {
                    push.node = part.node;
                }
                push.config_version = part.config_version;
                push.more = part.more;
                push
            }
            Some(push) => {
                return Err(format!(
                    "push {} interrupted by push {} before its last part",
                    push.nonce, part.nonce
                ));
            }
        };
        if push.more {
            self.push = Some(push);
            Ok(None)
        } else {
            Ok(Some(push))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut ceiling = Duration::from_millis(100);
        for _ in 0..8 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} not in [{:?}, {ceiling:?}]",
                ceiling / 2
            );
            ceiling = (ceiling * 2).min(Duration::from_millis(1000));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    fn part(nonce: &str, names: &[&str], more: bool) -> DeltaResponse {
        DeltaResponse {
            nonce: nonce.into(),
            resources: names
                .iter()
                .map(|n| pb::Resource {
                    key: Some(pb::ResourceKey::new(pb::ResourceType::Cluster, *n)),
                    ..Default::default()
                })
                .collect(),
            more,
            ..Default::default()
        }
    }

    #[test]
    fn parts_make_one_push_after_the_last() {
        let mut parts = Parts::default();
        assert!(parts.add(part("1", &["a", "b"], true)).unwrap().is_none());
        assert!(parts.add(part("1", &["c"], true)).unwrap().is_none());
        let mut last = part("1", &["d"], false);
        last.removed = vec![pb::ResourceKey::new(pb::ResourceType::Cluster, "old")];
        last.config_version = "v2".into();
        let push = parts.add(last).unwrap().expect("complete");
        let names: Vec<&str> = push
            .resources
            .iter()
            .map(|r| r.key.as_ref().unwrap().name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(push.removed.len(), 1);
        assert_eq!(push.config_version, "v2");
        // A single-part push is complete at once.
        assert!(parts.add(part("2", &["a"], false)).unwrap().is_some());
    }

    #[test]
    fn an_ack_names_its_nonce_and_rejections_only() {
        let key = pb::ResourceKey::new(pb::ResourceType::Listener, "inbound|9000");
        let msg = answer(
            "3-7".into(),
            vec![Refusal {
                key: key.clone(),
                version: "v1".into(),
                reason: "cannot bind".into(),
            }],
        );
        let Some(pb::proxy_message::Kind::Ack(ack)) = msg.kind else {
            panic!("not an ack: {msg:?}");
        };
        assert_eq!(ack.nonce, "3-7");
        assert!(ack.accepted.is_empty(), "{:?}", ack.accepted);
        assert_eq!(
            ack.rejected,
            [pb::Rejection {
                key: Some(key),
                version: "v1".into(),
                reason: "cannot bind".into(),
            }]
        );
    }

    #[test]
    fn a_push_interrupted_by_another_is_an_error() {
        let mut parts = Parts::default();
        assert!(parts.add(part("1", &["a"], true)).unwrap().is_none());
        let err = parts.add(part("2", &["b"], false)).unwrap_err();
        assert!(err.contains("interrupted"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn reconnects_with_backoff_and_counts_failures() {
        // A port nothing listens on: every attempt fails at once; the paused clock runs the
        // backoff sleeps without waiting.
        let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = unused.local_addr().unwrap();
        drop(unused);
        let (client, _source) = XdsClient::new(XdsOptions {
            address: format!("http://{addr}"),
            proxy_id: "a.ns".into(),
            token: String::new(),
            labels: BTreeMap::new(),
            service_account: String::new(),
            workload_address: String::new(),
            admin_address: String::new(),
            backoff: Backoff::default(),
        });
        let stats = client.stats();
        let (_tx, status) = watch::channel(Status::default());
        let task = tokio::spawn(client.run(status));
        weft_testkit::wait::eventually(
            "six connect attempts",
            Duration::from_secs(3600),
            || async { stats.lock().unwrap().attempts >= 6 },
        )
        .await;
        task.abort();
        let s = stats.lock().unwrap().clone();
        assert!(!s.connected);
        assert!(
            s.disconnects.get("connect failed").copied().unwrap_or(0) >= 5,
            "{s:?}"
        );
    }
}
