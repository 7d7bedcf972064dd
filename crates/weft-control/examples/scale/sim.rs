//! Simulated proxies: tonic clients speaking the real push protocol that accept every
//! resource they receive (an ACK naming no rejection) and report when each response
//! arrived. Many proxies share a few HTTP/2 connections (one stream each).

use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use weft_api::pb::{self, ProxyMessage, discovery_client::DiscoveryClient};

/// One response received by proxy `proxy` (its index in the bench's list).
pub struct Received {
    pub proxy: usize,
    pub at: Instant,
    pub resources: usize,
    /// Encoded resource bytes in the response.
    pub bytes: usize,
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
    let mut resources = 0;
    let mut bytes = 0;
    while let Some(response) = inbound.message().await? {
        bytes += response
            .resources
            .iter()
            .map(|r| r.body.len())
            .sum::<usize>();
        resources += response.resources.len();
        if response.more {
            continue;
        }
        let at = Instant::now();
        let resources = std::mem::take(&mut resources);
        let ack = ProxyMessage {
            kind: Some(pb::proxy_message::Kind::Ack(pb::Ack {
                nonce: response.nonce.clone(),
                accepted: Vec::new(),
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
            bytes: std::mem::take(&mut bytes),
        });
    }
    Ok(())
}
