//! Simulated proxies: tonic clients speaking the real push protocol that ACK every
//! resource they receive and report when each response arrived. Many proxies share a few
//! HTTP/2 connections (one stream each).

use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use weft_api::pb::{self, ProxyMessage, ResourceVersion, discovery_client::DiscoveryClient};

/// One response received by proxy `proxy` (its index in the bench's list).
pub struct Received {
    pub proxy: usize,
    pub at: Instant,
    pub resources: usize,
}

/// Open proxy `proxy`'s stream and ACK everything until the stream ends.
pub async fn run(
    channel: Channel,
    proxy: usize,
    hello: pb::Hello,
    report: mpsc::UnboundedSender<Received>,
) -> Result<(), tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let first = ProxyMessage {
        kind: Some(pb::proxy_message::Kind::Hello(hello)),
    };
    tx.send(first)
        .await
        .map_err(|_| tonic::Status::cancelled("stream closed"))?;
    let mut client = DiscoveryClient::new(channel)
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let mut inbound = client.stream(ReceiverStream::new(rx)).await?.into_inner();
    // A push may come in several parts (`DeltaResponse.more`): one ACK after the last.
    let mut accepted = Vec::new();
    while let Some(response) = inbound.message().await? {
        accepted.extend(response.resources.iter().map(|r| ResourceVersion {
            key: r.key.clone(),
            version: r.version.clone(),
        }));
        if response.more {
            continue;
        }
        let at = Instant::now();
        let accepted = std::mem::take(&mut accepted);
        let resources = accepted.len();
        let ack = ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Ack(pb::Ack {
                nonce: response.nonce.clone(),
                accepted,
                rejected: Vec::new(),
            })),
        };
        if tx.send(ack).await.is_err() {
            break;
        }
        let _ = report.send(Received {
            proxy,
            at,
            resources,
        });
    }
    Ok(())
}
