//! Workload metadata, ours and our peers': the `source_*` / `destination_*` telemetry
//! labels.
//!
//! Like Istio's metadata exchange, proxies tell each other who they are in-band: the
//! client proxy adds [`PEER_HEADER`] to every request (and CONNECT) it sends through a
//! mesh tunnel, and the server proxy adds its own to the response. Each side strips the
//! other's header before the application sees it. Only tunnel traffic carries it: both
//! ends are weft proxies of the same mesh, and nothing leaks to outside services.

use std::collections::BTreeMap;

use http::HeaderValue;
use weft_api::Node;

/// The header carrying the sender's [`PeerMeta`].
pub const PEER_HEADER: &str = "x-weft-peer-metadata";

/// Istio's value when a peer label is not known.
pub const UNKNOWN: &str = "unknown";

/// One workload as telemetry names it. Empty fields are not known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMeta {
    pub workload: String,
    pub namespace: String,
    /// `app` (or `app.kubernetes.io/name`) label.
    pub app: String,
    /// `version` (or `app.kubernetes.io/version`) label.
    pub version: String,
    /// `service.istio.io/canonical-name`, else the app, else the workload.
    pub canonical_service: String,
    /// `service.istio.io/canonical-revision`, else the version, else `latest`.
    pub canonical_revision: String,
    /// `source_cluster` / `destination_cluster`.
    pub cluster: String,
}

/// Istio's default cluster id.
const DEFAULT_CLUSTER: &str = "Kubernetes";

impl PeerMeta {
    /// This proxy's own metadata.
    pub fn of_node(node: &Node) -> PeerMeta {
        let mut meta = PeerMeta::from_labels(&node.workload, &node.namespace, &node.labels);
        meta.cluster = if node.cluster_id.is_empty() {
            DEFAULT_CLUSTER.to_string()
        } else {
            node.cluster_id.clone()
        };
        meta
    }

    /// Metadata derived from a workload's labels (also used for endpoints whose proxy sent
    /// nothing).
    pub fn from_labels(workload: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Self {
        let label = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.get(*k))
                .cloned()
                .unwrap_or_default()
        };
        let app = label(&["app", "app.kubernetes.io/name"]);
        let version = label(&["version", "app.kubernetes.io/version"]);
        let mut canonical_service = label(&["service.istio.io/canonical-name"]);
        if canonical_service.is_empty() {
            canonical_service = if app.is_empty() {
                workload.to_string()
            } else {
                app.clone()
            };
        }
        let mut canonical_revision = label(&["service.istio.io/canonical-revision"]);
        if canonical_revision.is_empty() {
            canonical_revision = if version.is_empty() {
                "latest".to_string()
            } else {
                version.clone()
            };
        }
        PeerMeta {
            workload: workload.to_string(),
            namespace: namespace.to_string(),
            app,
            version,
            canonical_service,
            canonical_revision,
            cluster: String::new(),
        }
    }

    /// The header value: `key=value` pairs joined by `;`, each value percent-encoded
    /// where it holds `;`, `=`, `%` or a non-visible byte.
    pub fn to_header(&self) -> HeaderValue {
        let mut out = String::with_capacity(96);
        for (key, value) in self.fields() {
            if value.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(';');
            }
            out.push_str(key);
            out.push('=');
            for b in value.bytes() {
                if b.is_ascii_graphic() && !matches!(b, b';' | b'=' | b'%') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        // Only visible ASCII is written above, which is always a valid header value.
        HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Parses a header written by [`PeerMeta::to_header`]; unknown keys are ignored (a newer
    /// peer may send more), malformed input gives `None`.
    pub fn from_header(value: &HeaderValue) -> Option<PeerMeta> {
        let text = value.to_str().ok()?;
        let mut meta = PeerMeta::default();
        for pair in text.split(';').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=')?;
            let value = percent_decode(raw)?;
            match key {
                "wl" => meta.workload = value,
                "ns" => meta.namespace = value,
                "app" => meta.app = value,
                "ver" => meta.version = value,
                "csvc" => meta.canonical_service = value,
                "crev" => meta.canonical_revision = value,
                "cl" => meta.cluster = value,
                _ => {}
            }
        }
        Some(meta)
    }

    fn fields(&self) -> [(&'static str, &str); 7] {
        [
            ("wl", &self.workload),
            ("ns", &self.namespace),
            ("app", &self.app),
            ("ver", &self.version),
            ("csvc", &self.canonical_service),
            ("crev", &self.canonical_revision),
            ("cl", &self.cluster),
        ]
    }
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `value`, or Istio's `unknown` when empty.
pub fn or_unknown(value: &str) -> &str {
    if value.is_empty() { UNKNOWN } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn header_round_trips_including_separators() {
        let meta = PeerMeta {
            workload: "cart-v1".into(),
            namespace: "shop".into(),
            app: "cart".into(),
            version: "v1;x=1%".into(),
            canonical_service: "cart".into(),
            canonical_revision: "v1".into(),
            cluster: "Kubernetes".into(),
        };
        let header = meta.to_header();
        assert!(header.to_str().unwrap().contains("ver=v1%3Bx%3D1%25"));
        assert_eq!(PeerMeta::from_header(&header), Some(meta));
    }

    #[test]
    fn malformed_header_is_rejected_and_unknown_keys_ignored() {
        let bad = HeaderValue::from_static("wl=a;ns");
        assert_eq!(PeerMeta::from_header(&bad), None);
        let bad_escape = HeaderValue::from_static("wl=a%4");
        assert_eq!(PeerMeta::from_header(&bad_escape), None);
        let newer = HeaderValue::from_static("wl=a;future=1;ns=b");
        let meta = PeerMeta::from_header(&newer).unwrap();
        assert_eq!(
            (meta.workload.as_str(), meta.namespace.as_str()),
            ("a", "b")
        );
    }

    #[test]
    fn canonical_names_fall_back_as_istio_does() {
        let m = PeerMeta::from_labels("product-v2", "shop", &labels(&[("app", "product")]));
        assert_eq!(m.canonical_service, "product");
        assert_eq!(m.canonical_revision, "latest");
        let m = PeerMeta::from_labels(
            "product-v2",
            "shop",
            &labels(&[
                ("app.kubernetes.io/name", "product"),
                ("app.kubernetes.io/version", "v2"),
                ("service.istio.io/canonical-name", "catalog"),
            ]),
        );
        assert_eq!(
            (
                m.app.as_str(),
                m.version.as_str(),
                m.canonical_service.as_str()
            ),
            ("product", "v2", "catalog")
        );
        assert_eq!(m.canonical_revision, "v2");
        let m = PeerMeta::from_labels("job", "ns", &BTreeMap::new());
        assert_eq!(m.canonical_service, "job");
    }
}
