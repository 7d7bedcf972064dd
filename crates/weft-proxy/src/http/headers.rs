//! Header handling on the proxy path: hop-by-hop removal, configured header operations,
//! forwarding headers and control-header stripping.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use weft_api::HeaderOps;

/// Headers that describe one connection and never cross the proxy (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Removes hop-by-hop headers and the headers `Connection` names. `keep_upgrade` keeps
/// `Connection: upgrade` and `Upgrade` for a protocol upgrade (WebSocket). `te: trailers`
/// survives: gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !(keep_upgrade && n == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(&name);
    }
    for name in HOP_BY_HOP {
        if keep_upgrade && (name == "connection" || name == "upgrade") {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
        });
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// A request that asks to switch protocols (`Connection: upgrade` + `Upgrade`).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Applies remove, then set, then add. Names or values that are not valid HTTP are skipped
/// (the compiler validates them; a bad one must not break the request).
pub fn apply_ops(headers: &mut HeaderMap, ops: &HeaderOps) {
    for name in &ops.remove {
        headers.remove(name.as_str());
    }
    for (name, value) in &ops.set {
        if let Some((n, v)) = parse(name, value) {
            headers.insert(n, v);
        }
    }
    for (name, value) in &ops.add {
        if let Some((n, v)) = parse(name, value) {
            headers.append(n, v);
        }
    }
}

pub fn parse(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    let n = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok()?;
    let v = HeaderValue::from_str(value).ok()?;
    Some((n, v))
}

/// Drops `x-weft-*` and `x-envoy-*` request headers: they steer the proxy and must not be
/// set from outside on inbound and gateway chains.
pub fn strip_control_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("x-weft-") || n.as_str().starts_with("x-envoy-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// A random version-4 UUID for `x-request-id`.
pub fn new_request_id() -> HeaderValue {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let text = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("te", "trailers, deflate".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn upgrade_headers_survive_for_upgrades() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn ops_apply_remove_set_add() {
        let mut h = HeaderMap::new();
        h.insert("a", "1".parse().unwrap());
        h.insert("b", "1".parse().unwrap());
        apply_ops(
            &mut h,
            &HeaderOps {
                set: vec![("A".into(), "2".into())],
                add: vec![("c".into(), "3".into()), ("c".into(), "4".into())],
                remove: vec!["b".into()],
            },
        );
        assert_eq!(h["a"], "2");
        assert!(!h.contains_key("b"));
        assert_eq!(h.get_all("c").iter().count(), 2);
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = new_request_id();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
    }
}
