//! Istio's admission webhooks: overlapping injection webhooks and injectors pointing at
//! missing Services (`webhook.Analyzer`), and the URL-based webhooks of a cluster using an
//! external control plane (`externalcontrolplane.ExternalControlPlaneAnalyzer`).

use std::collections::{BTreeMap, BTreeSet};

use super::index::{INJECTION_LABEL, REVISION_LABEL, SIDECAR_INJECT};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::common::LabelSelector;
use crate::kinds::k8s::{Webhook, WebhookConfigurationBody};
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

fn webhook_configs<'a, 'c>(
    ctx: &'c Context<'a>,
    kind: Kind,
) -> impl Iterator<Item = (&'a Object, &'a WebhookConfigurationBody)> + 'c {
    ctx.of(kind).filter_map(|o| match &o.body {
        Body::MutatingWebhookConfiguration(w) | Body::ValidatingWebhookConfiguration(w) => {
            Some((o, w))
        }
        _ => None,
    })
}

fn selector_revisions(sel: Option<&LabelSelector>, out: &mut BTreeSet<String>) {
    let Some(sel) = sel else { return };
    if let Some(r) = sel.match_labels.get(REVISION_LABEL) {
        out.insert(r.clone());
    }
    for req in sel
        .match_expressions
        .iter()
        .filter(|r| r.key == REVISION_LABEL)
    {
        out.extend(req.values.iter().cloned());
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `webhook.Analyzer`: IST0139 when two Istio injection webhooks would both inject the same
/// pod, or when an injection webhook calls a Service that does not exist.
pub struct WebhookAnalyzer;

impl Analyzer for WebhookAnalyzer {
    fn name(&self) -> &'static str {
        "webhook.Analyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let mut hooks: Vec<(&Object, usize, &Webhook)> = Vec::new();
        let mut revisions = BTreeSet::new();
        for (obj, body) in webhook_configs(ctx, Kind::MutatingWebhookConfiguration) {
            let mut revs = BTreeSet::new();
            if let Some(r) = obj.label(REVISION_LABEL) {
                revs.insert(r.to_string());
            }
            for w in &body.webhooks {
                selector_revisions(w.namespace_selector.as_ref(), &mut revs);
                selector_revisions(w.object_selector.as_ref(), &mut revs);
            }
            if revs.is_empty() && !body.webhooks.iter().any(|w| w.name.ends_with("istio.io")) {
                continue;
            }
            hooks.extend(body.webhooks.iter().enumerate().map(|(i, w)| (obj, i, w)));
            revisions.extend(revs);
        }
        // Every combination of the labels that drive injection must select at most one webhook.
        let mut ns_sets = vec![
            labels(&[]),
            labels(&[(INJECTION_LABEL, "enabled")]),
            labels(&[(INJECTION_LABEL, "disabled")]),
        ];
        let mut obj_sets = vec![
            labels(&[]),
            labels(&[(SIDECAR_INJECT, "true")]),
            labels(&[(SIDECAR_INJECT, "false")]),
        ];
        for rev in &revisions {
            for base in ns_sets.clone().into_iter().take(3) {
                let mut l = base;
                l.insert(REVISION_LABEL.to_string(), rev.clone());
                ns_sets.push(l);
            }
            for base in obj_sets.clone().into_iter().take(3) {
                let mut l = base;
                l.insert(REVISION_LABEL.to_string(), rev.clone());
                obj_sets.push(l);
            }
        }
        let id = |o: &Object, w: &Webhook| format!("{}/{}", o.name(), w.name);
        let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
        for nl in &ns_sets {
            for ol in &obj_sets {
                let matches: Vec<&(&Object, usize, &Webhook)> = hooks
                    .iter()
                    .filter(|(_, _, w)| {
                        w.namespace_selector.as_ref().is_none_or(|s| s.matches(nl))
                            && w.object_selector.as_ref().is_none_or(|s| s.matches(ol))
                    })
                    .collect();
                if matches.len() < 2 {
                    continue;
                }
                for (obj, i, w) in &matches {
                    let others: Vec<String> = matches
                        .iter()
                        .filter(|(o, j, _)| !(o.name() == obj.name() && j == i))
                        .map(|(o, _, w)| id(o, w))
                        .collect();
                    let key = (id(obj, w), others.join(","));
                    if !reported.insert(key) {
                        continue;
                    }
                    out.push(
                        finding(obj, "IST0139", Severity::Error, FieldPath::root().key("webhooks").index(*i), format!(
                            "Injection webhook {} overlaps with {}: a pod matching both may be injected twice.",
                            id(obj, w), others.join(", ")
                        ))
                        .with_hint("make the namespace and object selectors of the webhooks mutually exclusive, or remove the stale webhook configuration"),
                    );
                }
            }
        }
        for (obj, i, w) in &hooks {
            let Some(svc) = &w.client_config.service else {
                continue;
            };
            if ctx.find(Kind::Service, &svc.namespace, &svc.name).is_none() {
                out.push(
                    finding(
                        obj,
                        "IST0139",
                        Severity::Error,
                        FieldPath::root().key("webhooks").index(*i).key("clientConfig").key("service"),
                        format!(
                            "Injection webhook {} refers to a control plane Service that does not exist: {}/{}.",
                            id(obj, w),
                            svc.namespace,
                            svc.name
                        ),
                    )
                    .with_hint("point clientConfig.service at the istiod Service of the revision, or delete the webhook configuration"),
                );
            }
        }
    }
}

/// `externalcontrolplane.ExternalControlPlaneAnalyzer`: in a cluster whose Istio webhooks
/// call an external control plane by URL, IST0163 when a webhook has no URL and IST0164
/// when the URL uses an IP address instead of a hostname.
pub struct ExternalControlPlaneAnalyzer;

fn is_istio_webhook_config(kind: Kind, name: &str) -> bool {
    match kind {
        Kind::ValidatingWebhookConfiguration => {
            name.starts_with("istio-validator") || name == "istiod-default-validator"
        }
        _ => name.starts_with("istio-sidecar-injector"),
    }
}

/// The host of a URL (`https://host:port/path`), without brackets for IPv6.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map(|(_, r)| r)?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

impl Analyzer for ExternalControlPlaneAnalyzer {
    fn name(&self) -> &'static str {
        "externalcontrolplane.ExternalControlPlaneAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for kind in [
            Kind::ValidatingWebhookConfiguration,
            Kind::MutatingWebhookConfiguration,
        ] {
            for (obj, body) in webhook_configs(ctx, kind) {
                if !is_istio_webhook_config(kind, obj.name()) {
                    continue;
                }
                // In-cluster control planes are called through a Service; an external one by URL.
                if body
                    .webhooks
                    .iter()
                    .all(|w| w.client_config.service.is_some())
                {
                    continue;
                }
                let mut missing = false;
                let mut ip = false;
                for (i, w) in body.webhooks.iter().enumerate() {
                    let path = FieldPath::root()
                        .key("webhooks")
                        .index(i)
                        .key("clientConfig");
                    match w
                        .client_config
                        .url
                        .as_deref()
                        .map(str::trim)
                        .filter(|u| !u.is_empty())
                    {
                        None if w.client_config.service.is_none() && !missing => {
                            missing = true;
                            out.push(
                                finding(
                                    obj,
                                    "IST0163",
                                    Severity::Warning,
                                    path,
                                    format!(
                                        "Webhook {} of {} {} has no URL, so the external control plane cannot be reached.",
                                        w.name,
                                        kind.name(),
                                        obj.name()
                                    ),
                                )
                                .with_hint(
                                    "set clientConfig.url to the external istiod address, e.g. https://istiod.example.com:15017/inject",
                                ),
                            );
                        }
                        Some(url) if !ip => match url_host(url) {
                            Some(host) if host.parse::<std::net::IpAddr>().is_ok() => {
                                ip = true;
                                out.push(
                                    finding(obj, "IST0164", Severity::Info, path.key("url"), format!(
                                        "Webhook {} of {} {} reaches the external control plane by IP address ({host}) rather than a hostname.",
                                        w.name, kind.name(), obj.name()
                                    ))
                                    .with_hint("use a stable DNS name so the control plane can move and its certificate can be verified"),
                                );
                            }
                            None => {
                                missing = true;
                                out.push(
                                    finding(
                                        obj,
                                        "IST0163",
                                        Severity::Warning,
                                        path.key("url"),
                                        format!(
                                            "Webhook {} of {} {} has a URL without a host: \"{url}\".",
                                            w.name,
                                            kind.name(),
                                            obj.name()
                                        ),
                                    )
                                    .with_hint("use a URL of the form https://<host>[:port]/<path>"),
                                );
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                }
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

    fn mwc(name: &str, svc: &str, rev: Option<&str>) -> String {
        let sel = match rev {
            Some(r) => {
                format!(
                    "{{matchLabels: {{istio.io/rev: {r}}}, matchExpressions: [{{key: istio-injection, operator: DoesNotExist}}]}}"
                )
            }
            None => "{matchLabels: {istio-injection: enabled}}".to_string(),
        };
        format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: {name}\nwebhooks:\n- name: sidecar-injector.istio.io\n  clientConfig: {{service: {{name: {svc}, namespace: istio-system}}}}\n  namespaceSelector: {sel}\n---\n"
        )
    }

    const ISTIOD: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: istiod\n  namespace: istio-system\n---\n";

    #[test]
    fn overlap_and_missing_service() {
        let d = run(
            &WebhookAnalyzer,
            &format!(
                "{ISTIOD}{}{}",
                mwc("a", "istiod", None),
                mwc("b", "gone", None)
            ),
        );
        let mut codes: Vec<_> = d
            .iter()
            .map(|d| (d.code, d.resource.as_ref().unwrap().name.clone()))
            .collect();
        codes.sort();
        assert_eq!(codes.len(), 3, "{d:#?}");
        assert!(d.iter().any(|d| d.message.contains("istio-system/gone")));
    }

    #[test]
    fn disjoint_revisions_are_silent() {
        let d = run(
            &WebhookAnalyzer,
            &format!(
                "{ISTIOD}{}{}",
                mwc("a", "istiod", None),
                mwc("b", "istiod", Some("canary"))
            ),
        );
        assert!(d.is_empty(), "{d:#?}");
    }

    #[test]
    fn external_control_plane_urls() {
        let cfg = |url: &str| {
            format!(
                "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata:\n  name: istio-sidecar-injector-external-istiod\nwebhooks:\n- name: a.sidecar-injector.istio.io\n  clientConfig:\n    url: {url}\n- name: b.sidecar-injector.istio.io\n  clientConfig:\n    url: https://istiod.example.com/inject\n"
            )
        };
        assert_eq!(
            run(&ExternalControlPlaneAnalyzer, &cfg(""))
                .iter()
                .map(|d| d.code)
                .collect::<Vec<_>>(),
            ["IST0163"]
        );
        assert_eq!(
            run(
                &ExternalControlPlaneAnalyzer,
                &cfg("https://10.0.0.1:15017/inject")
            )
            .iter()
            .map(|d| d.code)
            .collect::<Vec<_>>(),
            ["IST0164"]
        );
        assert!(
            run(
                &ExternalControlPlaneAnalyzer,
                &cfg("https://istiod.example.com:15017/inject")
            )
            .is_empty()
        );
        assert_eq!(url_host("https://[fd00::1]:443/x"), Some("fd00::1"));
    }
}
