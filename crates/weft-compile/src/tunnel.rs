//! The mesh tunnel listener (`inbound-tunnel`, Istio's HBONE port 15008): mTLS from other
//! proxies, whose HTTP/2 streams are handed to the inbound listener serving their target
//! port. Which endpoints are reached through a tunnel is decided on the client side
//! (`Endpoint.tunnel`, in `destination.rs`).

use std::net::SocketAddr;

use weft_api::{
    Capture, ChainMatch, ChainProtocol, Direction, Fallback, FilterChain, Listener, ProxyConfig,
    TunnelChain, TunnelTarget,
};

use crate::input::InboundPort;
use crate::listeners::{INBOUND_LISTENER, explicit_inbound_listener};

pub const TUNNEL_LISTENER: &str = "inbound-tunnel";

/// Transparent capture: every stream goes to the `inbound` listener, whose chains match the
/// target port as they match an original destination.
pub fn transparent(proxy_id: &str, bind: SocketAddr, cfg: &mut ProxyConfig) {
    let targets = vec![TunnelTarget {
        port: None,
        listener: INBOUND_LISTENER.into(),
    }];
    cfg.listeners.push(listener(
        bind,
        targets,
        format!("mesh tunnel of {proxy_id}: no inbound listener for the target port"),
    ));
}

/// Explicit mode: the inbound listeners bind ports of their own, so each target port names
/// its listener; a stream to any other port is refused, naming the ports served.
pub fn explicit(proxy_id: &str, bind: SocketAddr, inbound: &[InboundPort], cfg: &mut ProxyConfig) {
    let mut targets: Vec<TunnelTarget> = Vec::new();
    for ib in inbound {
        // Two entries for one port: the first one's listener serves it, as the first
        // matching chain would.
        if targets.iter().all(|t| t.port != Some(ib.port)) {
            targets.push(TunnelTarget {
                port: Some(ib.port),
                listener: explicit_inbound_listener(ib.port),
            });
        }
    }
    let ports: Vec<String> = targets
        .iter()
        .filter_map(|t| t.port.map(|p| p.to_string()))
        .collect();
    let served = if ports.is_empty() {
        "it declares no inbound ports".to_string()
    } else {
        format!("it serves {}", ports.join(", "))
    };
    let reason = format!(
        "mesh tunnel of {proxy_id}: the target port is not one of its inbound ports ({served})"
    );
    cfg.listeners.push(listener(bind, targets, reason));
}

fn listener(bind: SocketAddr, targets: Vec<TunnelTarget>, reason: String) -> Listener {
    Listener {
        name: TUNNEL_LISTENER.into(),
        address: bind,
        direction: Direction::Inbound,
        capture: Capture::Explicit,
        chains: vec![FilterChain {
            name: TUNNEL_LISTENER.into(),
            r#match: ChainMatch::default(),
            protocol: ChainProtocol::Tunnel(TunnelChain {
                inbound_listeners: targets,
            }),
            // The tunnel is mTLS by construction; each stream meets the mode of the chain
            // it is dispatched to.
            mtls: None,
        }],
        fallback: Fallback::Blackhole { reason },
    }
}
