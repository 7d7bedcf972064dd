//! `x-forwarded-client-cert` on inbound requests, as Istio's sidecars set it (Envoy's
//! `APPEND_FORWARD` with the URI of the client certificate): over mesh mTLS the element
//! `By=<our SPIFFE ID>;URI=<client SPIFFE ID>` is appended to what the client sent; on a
//! plaintext connection the header is removed, so an application never trusts a value a
//! client made up.

use http::HeaderMap;
use http::header::HeaderValue;
use weft_api::Direction;

use crate::ConnInfo;

pub const XFCC: &str = "x-forwarded-client-cert";

/// Sets or sanitizes the header of a request arriving on `conn` (inbound only).
pub fn apply(headers: &mut HeaderMap, conn: &ConnInfo) {
    if conn.direction != Direction::Inbound {
        return;
    }
    let Some(peer) = &conn.peer_identity else {
        headers.remove(XFCC);
        return;
    };
    let mut element = String::new();
    if let Some(own) = &conn.local_identity {
        element.push_str("By=");
        element.push_str(own);
        element.push(';');
    }
    element.push_str("URI=");
    element.push_str(peer);
    let value = match headers.get(XFCC).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev},{element}"),
        _ => element,
    };
    match HeaderValue::from_str(&value) {
        Ok(v) => {
            headers.insert(XFCC, v);
        }
        // Only a client-sent part can be malformed: drop it, keep ours.
        Err(_) => {
            headers.remove(XFCC);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn conn(peer: Option<&str>) -> ConnInfo {
        let a = "127.0.0.1:1".parse().unwrap();
        ConnInfo {
            listener: Arc::from("inbound"),
            direction: Direction::Inbound,
            peer: a,
            original_dst: a,
            local: a,
            sni: None,
            peer_identity: peer.map(Arc::from),
            local_identity: Some(Arc::from("spiffe://td/ns/b/sa/server")),
        }
    }

    #[test]
    fn mtls_appends_and_plaintext_sanitizes() {
        let mut h = HeaderMap::new();
        h.insert(
            XFCC,
            HeaderValue::from_static("URI=spiffe://td/ns/x/sa/edge"),
        );
        apply(&mut h, &conn(Some("spiffe://td/ns/a/sa/client")));
        assert_eq!(
            h[XFCC],
            "URI=spiffe://td/ns/x/sa/edge,By=spiffe://td/ns/b/sa/server;URI=spiffe://td/ns/a/sa/client"
        );
        let mut h = HeaderMap::new();
        h.insert(XFCC, HeaderValue::from_static("URI=spiffe://forged"));
        apply(&mut h, &conn(None));
        assert!(h.get(XFCC).is_none());
    }
}
