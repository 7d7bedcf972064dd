//! Records for the metrics tests: an exchange between `sleep` (client, namespace `shop`)
//! and `cart-v1` (server), with everything a test may change owned here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Version};
use weft_api::Direction;

use crate::ConnInfo;
use crate::telemetry::{HttpRecord, PeerMeta, TcpEvent, TcpRecord, UpstreamInfo};

pub const SLEEP_ID: &str = "spiffe://cluster.local/ns/shop/sa/sleep";
pub const CART_ID: &str = "spiffe://cluster.local/ns/shop/sa/cart";

pub fn meta(workload: &str, app: &str, version: &str) -> PeerMeta {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), app.to_string());
    labels.insert("version".to_string(), version.to_string());
    let mut m = PeerMeta::from_labels(workload, "shop", &labels);
    m.cluster = "Kubernetes".into();
    m
}

pub struct Fixture {
    pub conn: ConnInfo,
    pub local: PeerMeta,
    pub downstream_peer: Option<PeerMeta>,
    pub upstream: Option<UpstreamInfo>,
    pub method: Method,
    pub headers: HeaderMap,
    pub authority: String,
    pub path: String,
    pub flags: String,
}

impl Fixture {
    /// `sleep`'s sidecar sending to `cart` through the mesh tunnel (mTLS, metadata
    /// exchanged).
    pub fn client() -> Fixture {
        Fixture {
            conn: conn(Direction::Outbound, None, None),
            local: meta("sleep", "sleep", "v1"),
            downstream_peer: None,
            upstream: Some(UpstreamInfo {
                cluster: "outbound|3002||cart.shop.svc.cluster.local".into(),
                service: Some("cart.shop.svc.cluster.local".into()),
                identity: Some(CART_ID.into()),
                peer: Some(Arc::new(meta("cart-v1", "cart", "v1"))),
                attempts: 1,
                ..UpstreamInfo::default()
            }),
            method: Method::GET,
            headers: HeaderMap::new(),
            authority: "cart.shop:3002".into(),
            path: "/items".into(),
            flags: String::new(),
        }
    }

    /// `cart`'s sidecar receiving from `sleep` over mTLS.
    pub fn server() -> Fixture {
        Fixture {
            conn: conn(Direction::Inbound, Some(SLEEP_ID), Some(CART_ID)),
            local: meta("cart-v1", "cart", "v1"),
            downstream_peer: Some(meta("sleep", "sleep", "v1")),
            upstream: Some(UpstreamInfo {
                cluster: "inbound|3002||".into(),
                service: Some("cart.shop.svc.cluster.local".into()),
                attempts: 1,
                ..UpstreamInfo::default()
            }),
            ..Fixture::client()
        }
    }

    pub fn http(&self, client_side: bool, code: u16) -> HttpRecord<'_> {
        HttpRecord {
            client_side,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: self.downstream_peer.as_ref(),
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(7),
            response_start: Some(Duration::from_millis(6)),
            version: Version::HTTP_11,
            method: &self.method,
            path: &self.path,
            authority: &self.authority,
            scheme: "http",
            grpc: false,
            request_headers: &self.headers,
            response_code: code,
            response_headers: None,
            response_trailers: None,
            grpc_status: None,
            flags: &self.flags,
            error_code: None,
            code_details: "via_upstream",
            request_bytes: 120,
            response_bytes: 3000,
            request_messages: 0,
            response_messages: 0,
            route_name: None,
            upstream: self.upstream.as_ref(),
            request_id: None,
            span: None,
        }
    }

    pub fn tcp(&self, client_side: bool, event: TcpEvent) -> TcpRecord<'_> {
        TcpRecord {
            event,
            client_side,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: self.downstream_peer.as_ref(),
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(1),
            received_bytes: if event == TcpEvent::Opened { 0 } else { 100 },
            sent_bytes: if event == TcpEvent::Opened { 0 } else { 250 },
            total_received: 100,
            total_sent: 250,
            flags: &self.flags,
            error_code: None,
            termination: None,
            route_name: None,
            upstream: self.upstream.as_ref(),
        }
    }
}

fn conn(direction: Direction, peer: Option<&str>, local: Option<&str>) -> ConnInfo {
    let addr: SocketAddr = "127.0.0.1:40000".parse().expect("valid address");
    ConnInfo {
        listener: "l".into(),
        direction,
        peer: addr,
        original_dst: addr,
        local: addr,
        sni: None,
        peer_identity: peer.map(Arc::from),
        local_identity: local.map(Arc::from),
    }
}
