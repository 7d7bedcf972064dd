//! The object envelope shared by every kind: apiVersion, kind, metadata, and a typed body.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::diag::ResourceRef;
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;
use crate::source::Span;
use crate::yaml::Node;

/// Kubernetes object metadata. The fields weft uses are typed; the rest of what the API
/// server adds (uid, managedFields, ...) is accepted and ignored so that `kubectl get -o yaml`
/// output loads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ObjectMeta {
    pub name: String,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub generation: Option<i64>,
    pub resource_version: Option<String>,
    pub uid: Option<String>,
    pub creation_timestamp: Option<IgnoredAny>,
    pub deletion_timestamp: Option<IgnoredAny>,
    pub deletion_grace_period_seconds: Option<IgnoredAny>,
    pub owner_references: Option<IgnoredAny>,
    pub finalizers: Option<IgnoredAny>,
    pub managed_fields: Option<IgnoredAny>,
    pub self_link: Option<IgnoredAny>,
}

/// A loaded, typed configuration object and where it came from.
#[derive(Debug, Clone)]
pub struct Object {
    pub api_version: String,
    pub kind: Kind,
    pub meta: ObjectMeta,
    pub body: Body,
    /// The document as parsed, kept to turn field paths into positions.
    pub node: Arc<Node>,
}

/// The namespace objects without one are placed in, as `kubectl apply` and
/// `istioctl analyze` do.
pub const DEFAULT_NAMESPACE: &str = "default";

impl Object {
    pub fn name(&self) -> &str {
        &self.meta.name
    }

    /// The object's namespace; `default` when unset. Cluster-scoped kinds return "".
    pub fn namespace(&self) -> &str {
        if !self.kind.namespaced() {
            return "";
        }
        match self.meta.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => DEFAULT_NAMESPACE,
        }
    }

    pub fn resource_ref(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind.name().to_string(),
            name: self.meta.name.clone(),
            namespace: self.kind.namespaced().then(|| self.namespace().to_string()),
        }
    }

    /// The position of a field, or of its closest existing parent when the field is absent.
    pub fn span_of(&self, path: &FieldPath) -> Span {
        self.node.lookup_key(path).0.span.clone()
    }

    /// The position of a field's value (rather than its key).
    pub fn value_span_of(&self, path: &FieldPath) -> Span {
        self.node.lookup(path).0.span.clone()
    }

    /// Where the object is named (`metadata.name`), the place diagnostics about the whole
    /// object point at.
    pub fn span(&self) -> Span {
        let (node, _) = self
            .node
            .lookup(&FieldPath::root().key("metadata").key("name"));
        node.span.clone()
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.meta.labels.get(key).map(String::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.meta.annotations.get(key).map(String::as_str)
    }
}
