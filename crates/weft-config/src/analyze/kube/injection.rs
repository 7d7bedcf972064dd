//! Sidecar injection: which namespaces are injected (`injection.Analyzer`), whether running
//! proxies match the injector's image (`injection.ImageAnalyzer`), and `image: auto`
//! placeholders that no webhook will fill in (`injection.ImageAutoAnalyzer`).

use std::collections::{BTreeMap, BTreeSet};

use super::index::{
    self, DATAPLANE_MODE_LABEL, INJECTION_LABEL, ISTIO_SYSTEM, REVISION_LABEL,
    injector_configmap_name, namespace_labels, proxy_container,
};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::common::LabelSelector;
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

/// `injection.Analyzer`: IST0102 (namespace not injected), IST0148 (injected by default),
/// IST0123 (conflicting injection labels) and IST0103 (pod missing its proxy).
pub struct InjectionAnalyzer;

impl Analyzer for InjectionAnalyzer {
    fn name(&self) -> &'static str {
        "injection.Analyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let injectors = index::injector_values(ctx);
        let by_default = |rev: &str| {
            let name = injector_configmap_name(rev);
            injectors
                .iter()
                .find(|(o, _)| o.name() == name)
                .is_some_and(|(_, v)| index::injector_enables_namespaces_by_default(v))
        };
        let mut injected = BTreeSet::new();
        for ns in ctx.of(Kind::Namespace) {
            let name = ns.name();
            if name == ISTIO_SYSTEM || index::is_system_namespace(name) {
                continue;
            }
            let labels = &ns.meta.labels;
            let inj = labels.get(INJECTION_LABEL).map(String::as_str);
            let rev = labels.get(REVISION_LABEL).map(String::as_str);
            let ambient = labels
                .get(DATAPLANE_MODE_LABEL)
                .is_some_and(|v| v == "ambient");
            let labels_path = FieldPath::parse("metadata.labels");
            if inj == Some("disabled") {
                continue;
            }
            let conflict = match (inj, rev, ambient) {
                (Some(_), Some(r), _) => Some(format!(
                    "both \"{INJECTION_LABEL}\" and \"{REVISION_LABEL}={r}\""
                )),
                (Some("enabled"), None, true) => Some(format!(
                    "\"{INJECTION_LABEL}=enabled\" and \"{DATAPLANE_MODE_LABEL}=ambient\""
                )),
                (None, Some(r), true) => Some(format!(
                    "\"{REVISION_LABEL}={r}\" and \"{DATAPLANE_MODE_LABEL}=ambient\""
                )),
                _ => None,
            };
            if let Some(what) = conflict {
                out.push(
                    finding(ns, "IST0123", Severity::Warning, labels_path, format!("Namespace {name} has {what}: the injection behaviour is ambiguous."))
                        .with_hint(format!(
                            "keep one: \"{INJECTION_LABEL}=enabled\" for the default control plane, \"{REVISION_LABEL}=<revision>\" for a revision, or \"{DATAPLANE_MODE_LABEL}=ambient\" for ambient mode"
                        )),
                );
                continue;
            }
            match (inj, rev) {
                (None, None) => {
                    if ambient {
                        continue;
                    }
                    if by_default("") {
                        out.push(
                            finding(ns, "IST0148", Severity::Info, FieldPath::parse("metadata.name"), format!("Namespace {name} has no injection label, but the injector enables every namespace by default: its pods get sidecars."))
                                .with_hint(format!("label it \"{INJECTION_LABEL}=disabled\" if its pods should not be injected")),
                        );
                    } else {
                        out.push(
                            finding(ns, "IST0102", Severity::Info, FieldPath::parse("metadata.name"), format!("Namespace {name} is not enabled for Istio sidecar injection: its pods join the mesh only if they opt in."))
                                .with_hint(format!("run `kubectl label namespace {name} {INJECTION_LABEL}=enabled` (or set \"{REVISION_LABEL}\" for a revision) and restart its pods")),
                        );
                    }
                }
                (Some("enabled"), _) | (None, Some(_)) => {
                    injected.insert(name);
                }
                _ => {}
            }
        }
        for pod in ctx.of(Kind::Pod) {
            let Body::Pod(spec) = &pod.body else { continue };
            if !injected.contains(pod.namespace()) || spec.host_network {
                continue;
            }
            if index::pod_inject_choice(&pod.meta.labels, &pod.meta.annotations)
                .is_some_and(|v| v.eq_ignore_ascii_case("false"))
            {
                continue;
            }
            if proxy_container(spec).is_none() {
                out.push(
                    finding(pod, "IST0103", Severity::Warning, FieldPath::parse("spec.containers"), format!("Pod {}/{} is missing the Istio proxy although its namespace is injected.", pod.namespace(), pod.name()))
                        .with_hint("this can often be resolved by restarting or redeploying the workload; set the label \"sidecar.istio.io/inject=false\" if it must stay outside the mesh"),
                );
            }
        }
    }
}

/// `injection.ImageAnalyzer`: IST0158 when pods in an injected namespace run a proxy image
/// other than the one the injector (the `istio-sidecar-injector[-rev]` ConfigMap) injects.
pub struct ImageAnalyzer;

impl Analyzer for ImageAnalyzer {
    fn name(&self) -> &'static str {
        "injection.ImageAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let images: BTreeMap<&str, String> = index::injector_values(ctx)
            .iter()
            .map(|(o, v)| (o.name(), index::injector_proxy_image(v)))
            .collect();
        if images.is_empty() {
            return;
        }
        let mut injected: BTreeMap<&str, (&Object, String)> = BTreeMap::new();
        for ns in ctx.of(Kind::Namespace) {
            let labels = &ns.meta.labels;
            if let Some(rev) = labels.get(REVISION_LABEL) {
                injected.insert(ns.name(), (ns, rev.clone()));
            } else if labels.get(INJECTION_LABEL).is_some_and(|v| v == "enabled") {
                injected.insert(ns.name(), (ns, "default".to_string()));
            }
        }
        let mut mismatched: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for pod in ctx.of(Kind::Pod) {
            let Body::Pod(spec) = &pod.body else { continue };
            let Some((_, rev)) = injected.get(pod.namespace()) else {
                continue;
            };
            if pod
                .annotation("sidecar.istio.io/proxyImage")
                .is_some_and(|v| !v.is_empty())
            {
                continue;
            }
            let Some(expected) = images.get(injector_configmap_name(rev).as_str()) else {
                continue;
            };
            let variant = image_type(ctx, pod);
            for c in spec
                .containers
                .iter()
                .chain(&spec.init_containers)
                .filter(|c| c.name == index::PROXY_CONTAINER)
            {
                let image = c.image.as_deref().unwrap_or("");
                if image != expected && image != format!("{expected}-{variant}") {
                    mismatched
                        .entry(pod.namespace())
                        .or_default()
                        .push(format!("{} ({image})", pod.name()));
                }
            }
        }
        for (ns, pods) in mismatched {
            let (ns_obj, rev) = &injected[ns];
            let expected = &images[injector_configmap_name(rev).as_str()];
            out.push(
                finding(
                    ns_obj,
                    "IST0158",
                    Severity::Warning,
                    FieldPath::parse("metadata.name"),
                    format!(
                        "Pods in namespace {ns} run a proxy image that differs from the injected image {expected}: {}.",
                        pods.join(", ")
                    ),
                )
                .with_hint(format!(
                    "restart the pods (e.g. `kubectl rollout restart deployment -n {ns}`) so they are re-injected with the current proxy"
                )),
            );
        }
    }
}

/// The proxy image variant (`distroless`, …) a pod gets: its `proxy.istio.io/config`
/// annotation, else a ProxyConfig selecting it, else its namespace's ProxyConfig, else the
/// root namespace's, else the mesh default.
fn image_type(ctx: &Context<'_>, pod: &Object) -> String {
    if let Some(t) = pod
        .annotation("proxy.istio.io/config")
        .and_then(image_type_in_yaml)
    {
        return t;
    }
    let of = |obj: &Object| -> Option<String> {
        obj.node
            .get("spec")?
            .get("image")?
            .get("imageType")?
            .as_str()
            .map(str::to_string)
    };
    let selector = |obj: &Object| -> Option<BTreeMap<String, String>> {
        let ml = obj.node.get("spec")?.get("selector")?.get("matchLabels")?;
        let crate::yaml::Value::Map(entries) = &ml.value else {
            return None;
        };
        Some(
            entries
                .iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect(),
        )
    };
    let configs: Vec<&Object> = ctx.of(Kind::ProxyConfig).collect();
    let ns = pod.namespace();
    let workload = configs.iter().find(|c| {
        c.namespace() == ns
            && selector(c).is_some_and(|s| {
                !s.is_empty() && crate::kinds::common::labels_match(&s, &pod.meta.labels)
            })
    });
    let namespace = configs
        .iter()
        .find(|c| c.namespace() == ns && selector(c).is_none_or(|s| s.is_empty()));
    let root = configs
        .iter()
        .find(|c| c.namespace() == ISTIO_SYSTEM && selector(c).is_none_or(|s| s.is_empty()));
    for c in [workload, namespace, root].into_iter().flatten() {
        if let Some(t) = of(c) {
            return t;
        }
    }
    super::mesh_image_type(ctx).unwrap_or_default()
}

fn image_type_in_yaml(text: &str) -> Option<String> {
    let file = std::sync::Arc::new(crate::source::SourceFile {
        name: "proxy.istio.io/config".to_string(),
        text: text.to_string(),
    });
    let docs = crate::yaml::parse_documents(&file).ok()?;
    docs.first()?
        .get("image")?
        .get("imageType")?
        .as_str()
        .map(str::to_string)
}

/// `injection.ImageAutoAnalyzer`: `image: auto` on an `istio-proxy` container is a
/// placeholder the injector replaces. IST0147 on a Pod (it was not injected), IST0146 on a
/// Deployment that no Istio injection webhook selects.
pub struct ImageAutoAnalyzer;

impl Analyzer for ImageAutoAnalyzer {
    fn name(&self) -> &'static str {
        "injection.ImageAutoAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let webhooks: Vec<(Option<&LabelSelector>, Option<&LabelSelector>)> = ctx
            .of(Kind::MutatingWebhookConfiguration)
            .filter_map(|o| match &o.body {
                Body::MutatingWebhookConfiguration(w) => Some(w),
                _ => None,
            })
            .flat_map(|w| w.webhooks.iter())
            .filter(|w| w.name.ends_with("istio.io"))
            .map(|w| (w.namespace_selector.as_ref(), w.object_selector.as_ref()))
            .collect();
        for view in index::pod_views(ctx) {
            let Some(i) = view.spec.containers.iter().position(|c| {
                c.name == index::PROXY_CONTAINER && c.image.as_deref() == Some("auto")
            }) else {
                continue;
            };
            let path = FieldPath::parse(view.spec_path)
                .key("containers")
                .index(i)
                .key("image");
            let obj = view.obj;
            match obj.kind {
                Kind::Pod => out.push(
                    finding(obj, "IST0147", Severity::Error, path, format!("Pod {}/{} uses \"image: auto\" for its istio-proxy container but was not injected, so the image cannot be pulled.", obj.namespace(), obj.name()))
                        .with_hint("enable injection for the pod (namespace label \"istio-injection=enabled\" or pod label \"sidecar.istio.io/inject=true\") and recreate it"),
                ),
                Kind::Deployment => {
                    let ns_labels = namespace_labels(ctx, obj.namespace());
                    let matched = webhooks.iter().any(|(nsel, osel)| {
                        nsel.is_none_or(|s| s.matches(ns_labels)) && osel.is_none_or(|s| s.matches(view.labels))
                    });
                    if !matched {
                        out.push(
                            finding(obj, "IST0146", Severity::Warning, path, format!("Deployment {}/{} uses \"image: auto\" for its istio-proxy container, but no Istio injection webhook selects its pods.", obj.namespace(), obj.name()))
                                .with_hint(format!("label namespace {} \"istio-injection=enabled\" or the pod template \"sidecar.istio.io/inject=true\"", obj.namespace())),
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &dyn Analyzer, yaml: &str) -> Vec<Diagnostic> {
        crate::testing::run_analyzer(a, yaml)
    }

    const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n  labels:\n    istio-injection: enabled\n---\n";

    #[test]
    fn pod_missing_proxy() {
        let d = run(
            &InjectionAnalyzer,
            &format!(
                "{NS}apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: app\nspec:\n  containers: [{{name: a}}]\n"
            ),
        );
        assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["IST0103"]);
    }

    #[test]
    fn injected_pod_and_opt_out_are_silent() {
        let d = run(
            &InjectionAnalyzer,
            &format!(
                "{NS}apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: app\nspec:\n  containers: [{{name: a}}, {{name: istio-proxy}}]\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: q\n  namespace: app\n  labels:\n    sidecar.istio.io/inject: \"false\"\nspec:\n  containers: [{{name: a}}]\n"
            ),
        );
        assert!(d.is_empty(), "{d:#?}");
    }

    #[test]
    fn namespace_labels() {
        let d = run(
            &InjectionAnalyzer,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: plain\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: both\n  labels:\n    istio-injection: enabled\n    istio.io/rev: canary\n",
        );
        assert_eq!(
            d.iter().map(|d| d.code).collect::<Vec<_>>(),
            ["IST0102", "IST0123"]
        );
    }

    const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio-sidecar-injector\n  namespace: istio-system\ndata:\n  values: '{\"global\":{\"hub\":\"docker.io/istio\",\"tag\":\"1.2.3\",\"proxy\":{\"image\":\"proxyv2\"}}}'\n---\n";

    #[test]
    fn image_mismatch() {
        let pod = |name: &str, tag: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: app\nspec:\n  containers: [{{name: istio-proxy, image: \"docker.io/istio/proxyv2:{tag}\"}}]\n---\n"
            )
        };
        let d = run(
            &ImageAnalyzer,
            &format!("{CM}{NS}{}{}", pod("old", "1.2.0"), pod("new", "1.2.3")),
        );
        assert_eq!(d.len(), 1);
        assert!(
            d[0].message.contains("old (docker.io/istio/proxyv2:1.2.0)"),
            "{}",
            d[0].message
        );
        let silent = run(&ImageAnalyzer, &format!("{CM}{NS}{}", pod("new", "1.2.3")));
        assert!(silent.is_empty());
    }

    #[test]
    fn image_auto() {
        let d = run(
            &ImageAutoAnalyzer,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers: [{name: istio-proxy, image: auto}]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gw\nspec:\n  template:\n    spec:\n      containers: [{name: istio-proxy, image: auto}]\n",
        );
        assert_eq!(
            d.iter().map(|d| d.code).collect::<Vec<_>>(),
            ["IST0147", "IST0146"]
        );
        let silent = run(
            &ImageAutoAnalyzer,
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: inj\nwebhooks:\n- name: sidecar-injector.istio.io\n  clientConfig: {service: {name: istiod, namespace: istio-system}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gw\nspec:\n  template:\n    spec:\n      containers: [{name: istio-proxy, image: auto}]\n",
        );
        assert!(silent.is_empty(), "{silent:#?}");
    }
}
