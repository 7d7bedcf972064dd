//! Where the proxy's config comes from: a stream of whole `ProxyConfig` snapshots.
//!
//! The proxy only ever needs the latest snapshot, so a source publishes on a `watch`
//! channel: a slow apply skips intermediate versions instead of queueing them. Today's
//! sources are [`StaticSource`] (tests, fixed configs) and [`ChannelSource`] (the CLI's
//! directory watcher pushes compiled configs into it); the control-plane gRPC client is a
//! third implementation that publishes what it receives and reads the outcome of each
//! apply from [`crate::app::Running::status`] to ACK or NACK it.

use std::sync::Arc;

use tokio::sync::watch;
use weft_api::ProxyConfig;

/// The latest config, `None` until the source has one.
pub type ConfigReceiver = watch::Receiver<Option<Arc<ProxyConfig>>>;

/// A producer of config snapshots.
pub trait ConfigSource: Send + Sync + 'static {
    /// A receiver that sees the current snapshot and every later one. The proxy calls this
    /// once at start.
    fn subscribe(&self) -> ConfigReceiver;
}

/// One config, given up front.
pub struct StaticSource {
    tx: watch::Sender<Option<Arc<ProxyConfig>>>,
}

impl StaticSource {
    pub fn new(config: ProxyConfig) -> StaticSource {
        StaticSource {
            tx: watch::Sender::new(Some(Arc::new(config))),
        }
    }
}

impl ConfigSource for StaticSource {
    fn subscribe(&self) -> ConfigReceiver {
        self.tx.subscribe()
    }
}

/// A source fed by a [`ConfigPublisher`], starting empty.
pub struct ChannelSource {
    tx: watch::Sender<Option<Arc<ProxyConfig>>>,
}

/// The sending half of a [`ChannelSource`]; cheap to clone.
#[derive(Clone)]
pub struct ConfigPublisher {
    tx: watch::Sender<Option<Arc<ProxyConfig>>>,
}

impl ChannelSource {
    pub fn new() -> (ChannelSource, ConfigPublisher) {
        let tx = watch::Sender::new(None);
        (ChannelSource { tx: tx.clone() }, ConfigPublisher { tx })
    }
}

impl ConfigSource for ChannelSource {
    fn subscribe(&self) -> ConfigReceiver {
        self.tx.subscribe()
    }
}

impl ConfigPublisher {
    /// Publish a new snapshot; it replaces any snapshot not yet applied.
    pub fn publish(&self, config: ProxyConfig) {
        self.publish_shared(Arc::new(config));
    }

    /// [`ConfigPublisher::publish`] for a config the caller keeps reading too (the
    /// runtime shares it rather than copying it).
    pub fn publish_shared(&self, config: Arc<ProxyConfig>) {
        self.tx.send_replace(Some(config));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn channel_source_delivers_latest() {
        let (source, publisher) = ChannelSource::new();
        let mut rx = source.subscribe();
        assert!(rx.borrow_and_update().is_none());
        for v in ["v1", "v2"] {
            publisher.publish(ProxyConfig {
                version: v.into(),
                ..Default::default()
            });
        }
        rx.changed().await.unwrap();
        let latest = rx.borrow_and_update().clone().unwrap();
        assert_eq!(latest.version, "v2");
    }

    #[test]
    fn static_source_is_ready_at_once() {
        let source = StaticSource::new(ProxyConfig {
            version: "s".into(),
            ..Default::default()
        });
        let rx = source.subscribe();
        assert_eq!(
            rx.borrow().as_ref().map(|c| c.version.clone()),
            Some("s".into())
        );
    }
}
