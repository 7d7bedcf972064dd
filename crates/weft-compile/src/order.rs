//! Deterministic ordering of configuration objects: Istio resolves conflicts by creation
//! time, then by name; objects without a `creationTimestamp` (files) sort first, by
//! namespace and name.

use weft_config::Object;

/// `metadata.creationTimestamp` as written (RFC 3339 sorts as text), or "".
pub fn created(o: &Object) -> String {
    o.node
        .get("metadata")
        .and_then(|m| m.get("creationTimestamp"))
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string()
}

/// The sort key: creation time, namespace, name.
pub fn age_key(o: &Object) -> (String, String, String) {
    (created(o), o.namespace().to_string(), o.name().to_string())
}

/// Objects oldest first (the order of [`age_key`]; keys borrowed, not built per object:
/// this runs on every compile round).
pub fn by_age(objects: &[Object]) -> Vec<&Object> {
    let mut v: Vec<(&str, &str, &str, &Object)> = objects
        .iter()
        .map(|o| {
            let created = o
                .node
                .get("metadata")
                .and_then(|m| m.get("creationTimestamp"))
                .and_then(|t| t.as_str())
                .unwrap_or("");
            (created, o.namespace(), o.name(), o)
        })
        .collect();
    v.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    v.into_iter().map(|(_, _, _, o)| o).collect()
}
