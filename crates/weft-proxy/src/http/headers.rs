//! Header handling on the proxy path: hop-by-hop removal, configured header operations,
//! forwarding headers and control-header stripping.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use weft_api::HeaderOps;

/// Headers that describe one connection and never cross the proxy (RFC 9110 §7.6.1).
/// As `HeaderName`s: removing by `&str` parses the name again on every request.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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
    for name in &HOP_BY_HOP {
        if keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE) {
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

/// A random version-4 UUID for `x-request-id`, written without `format!` (it is made for
/// most requests).
pub fn new_request_id() -> HeaderValue {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    let mut out = [b'-'; 36];
    put_hex(&mut out[0..8], a >> 32);
    put_hex(&mut out[9..13], (a >> 16) & 0xffff);
    put_hex(&mut out[14..18], 0x4000 | (a & 0xfff));
    put_hex(&mut out[19..23], 0x8000 | ((b >> 48) & 0x3fff));
    put_hex(&mut out[24..36], b & 0xffff_ffff_ffff);
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Writes the low `out.len()` hex digits of `value` into `out`.
fn put_hex(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        *digit = b"0123456789abcdef"[(value & 0xf) as usize];
        value >>= 4;
    }
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
        let dashes: Vec<usize> = s.match_indices('-').map(|(i, _)| i).collect();
        assert_eq!(dashes, [8, 13, 18, 23]);
        assert!(s.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }
}
