//! Small lookups shared by the Kubernetes-side analyzers: namespace labels, injection
//! state, the sidecar injector ConfigMap, and Istio's naming conventions for system and
//! control-plane objects.

use std::collections::BTreeMap;

use crate::analyze::Context;
use crate::kinds::k8s::{Container, PodSpec};
use crate::kinds::{Body, Kind};
use crate::object::Object;

/// The namespace label that turns sidecar injection on (`enabled`) or off (`disabled`).
pub const INJECTION_LABEL: &str = "istio-injection";
/// The namespace/pod label that selects a control-plane revision (and enables injection).
pub const REVISION_LABEL: &str = "istio.io/rev";
/// The namespace label that enrols a namespace in ambient mode.
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
/// The pod label (or, deprecated, annotation) that opts a pod in or out of injection.
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";
/// The name of the injected proxy container.
pub const PROXY_CONTAINER: &str = "istio-proxy";
/// The namespace Istio's control plane runs in by default.
pub const ISTIO_SYSTEM: &str = "istio-system";

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

/// Kubernetes' own namespaces, which Istio never injects or checks.
pub fn is_system_namespace(ns: &str) -> bool {
    matches!(
        ns,
        "kube-system" | "kube-public" | "kube-node-lease" | "local-path-storage"
    )
}

/// Whether an object belongs to the Istio control plane (`istio` label, or `release: istio`).
pub fn is_control_plane(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key("istio") || labels.get("release").is_some_and(|v| v == "istio")
}

/// The labels of a declared Namespace (empty when it is not declared).
pub fn namespace_labels<'a>(ctx: &Context<'a>, ns: &str) -> &'a BTreeMap<String, String> {
    ctx.find(Kind::Namespace, "", ns)
        .or_else(|| ctx.of(Kind::Namespace).find(|o| o.name() == ns))
        .map(|o| &o.meta.labels)
        .unwrap_or(&EMPTY)
}

/// The proxy container of a pod: a regular container or a native sidecar (init container).
pub fn proxy_container(spec: &PodSpec) -> Option<(&'static str, usize, &Container)> {
    spec.containers
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == PROXY_CONTAINER)
        .map(|(i, c)| ("containers", i, c))
        .or_else(|| {
            spec.init_containers
                .iter()
                .enumerate()
                .find(|(_, c)| c.name == PROXY_CONTAINER)
                .map(|(i, c)| ("initContainers", i, c))
        })
}

/// The pod's own injection choice: the `sidecar.istio.io/inject` label, else the (deprecated)
/// annotation of the same name.
pub fn pod_inject_choice<'a>(
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
) -> Option<&'a str> {
    labels
        .get(SIDECAR_INJECT)
        .or_else(|| annotations.get(SIDECAR_INJECT))
        .map(String::as_str)
}

/// Whether a namespace's labels turn injection on: `istio-injection=enabled`, or a revision
/// label without `istio-injection` (Istio's revision webhooks require its absence).
pub fn namespace_injected(labels: &BTreeMap<String, String>) -> bool {
    match labels.get(INJECTION_LABEL).map(String::as_str) {
        Some("enabled") => true,
        Some(_) => false,
        None => labels.contains_key(REVISION_LABEL),
    }
}

/// Whether a pod template ends up with a sidecar: it already has one, the pod opts in or out
/// explicitly, or its namespace is injected.
pub fn in_mesh(
    ctx: &Context<'_>,
    ns: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    spec: &PodSpec,
) -> bool {
    if proxy_container(spec).is_some() {
        return true;
    }
    if let Some(v) = pod_inject_choice(labels, annotations) {
        return v.eq_ignore_ascii_case("true");
    }
    namespace_injected(namespace_labels(ctx, ns))
}

/// The injector ConfigMap of a revision: `istio-sidecar-injector` for the default revision,
/// `istio-sidecar-injector-<rev>` otherwise.
pub fn injector_configmap_name(revision: &str) -> String {
    if revision.is_empty() || revision == "default" {
        "istio-sidecar-injector".to_string()
    } else {
        format!("istio-sidecar-injector-{revision}")
    }
}

/// The injector ConfigMaps, by name, with their parsed `values` (Helm values as JSON).
pub fn injector_values<'a>(ctx: &Context<'a>) -> Vec<(&'a Object, serde_json::Value)> {
    ctx.of(Kind::ConfigMap)
        .filter(|o| o.name().starts_with("istio-sidecar-injector"))
        .filter_map(|o| match &o.body {
            Body::ConfigMap(cm) => {
                let values = cm
                    .data
                    .get("values")
                    .and_then(|v| serde_json::from_str(v).ok())
                    .unwrap_or(serde_json::Value::Null);
                Some((o, values))
            }
            _ => None,
        })
        .collect()
}

/// The proxy image an injector ConfigMap's values inject: `global.proxy.image` when it is a
/// full reference (contains `/`), else `<global.hub>/<global.proxy.image>:<global.tag>`.
pub fn injector_proxy_image(values: &serde_json::Value) -> String {
    let global = &values["global"];
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let image = s(&global["proxy"]["image"]);
    if image.contains('/') {
        image
    } else {
        format!("{}/{}:{}", s(&global["hub"]), image, s(&global["tag"]))
    }
}

/// `sidecarInjectorWebhook.enableNamespacesByDefault` from an injector ConfigMap's values.
pub fn injector_enables_namespaces_by_default(values: &serde_json::Value) -> bool {
    values["sidecarInjectorWebhook"]["enableNamespacesByDefault"]
        .as_bool()
        .unwrap_or(false)
}

/// A pod template as the analyzers see it, whatever object declares it.
pub struct PodView<'a> {
    pub obj: &'a Object,
    pub labels: &'a BTreeMap<String, String>,
    pub spec: &'a PodSpec,
    /// Where the pod spec sits (`spec` or `spec.template.spec`).
    pub spec_path: &'static str,
}

/// Pods and the pod templates of workload controllers.
pub fn pod_views<'a>(ctx: &Context<'a>) -> Vec<PodView<'a>> {
    ctx.objects
        .iter()
        .filter_map(|o| match &o.body {
            Body::Pod(spec) => Some(PodView {
                obj: o,
                labels: &o.meta.labels,
                spec,
                spec_path: "spec",
            }),
            Body::Deployment(w)
            | Body::StatefulSet(w)
            | Body::DaemonSet(w)
            | Body::ReplicaSet(w) => Some(PodView {
                obj: o,
                labels: &w.template.metadata.labels,
                spec: &w.template.spec,
                spec_path: "spec.template.spec",
            }),
            _ => None,
        })
        .collect()
}
