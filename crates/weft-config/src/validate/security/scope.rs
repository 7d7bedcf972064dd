//! Scope checks shared by the security, telemetry and extension kinds: the workload
//! selector and `targetRef`/`targetRefs`.

use crate::kinds::common::{PolicyTargetReference, WorkloadSelector};
use crate::path::FieldPath;
use crate::validate::Report;
use crate::validate::rules::{is_label_key, is_label_value};

use super::spec;

/// `selector`, `targetRef` and `targetRefs` are mutually exclusive; each must be well formed.
pub(crate) fn policy_scope(
    r: &mut Report,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
) {
    let set = [
        selector.is_some(),
        target_ref.is_some(),
        !target_refs.is_empty(),
    ];
    if set.iter().filter(|s| **s).count() > 1 {
        let field = if target_ref.is_some() {
            "targetRef"
        } else {
            "targetRefs"
        };
        r.error(
            spec().key(field),
            "only one of targetRefs or selector can be set: this policy sets more than one of `selector`, `targetRef` and `targetRefs`",
        )
        .hint("keep `targetRefs` to attach to a Gateway/Service, or `selector` to pick workloads by label, not both");
    }
    if let Some(sel) = selector {
        workload_selector(r, sel, spec().key("selector"));
    }
    if let Some(t) = target_ref {
        target_reference(r, t, spec().key("targetRef"));
    }
    for (i, t) in target_refs.iter().enumerate() {
        target_reference(r, t, spec().key("targetRefs").index(i));
    }
}

/// `selector.matchLabels`: no empty keys, no wildcards, valid label syntax.
pub(crate) fn workload_selector(r: &mut Report, sel: &WorkloadSelector, at: FieldPath) {
    let labels = at.key("matchLabels");
    if sel.match_labels.is_empty() {
        r.warning(
            at,
            "workload selector specified without labels: the policy applies to every workload in the namespace",
        )
        .hint("add `matchLabels`, or remove `selector` to make the namespace-wide intent explicit");
        return;
    }
    for (k, v) in &sel.match_labels {
        let p = labels.key(k.clone());
        if k.is_empty() {
            r.error(p, "empty key is not supported in selector")
                .hint("give the label a name, e.g. `app: reviews`");
        } else if k.contains('*') {
            r.error(p, format!("wildcard not allowed in label key match: `{k}`"))
                .hint("selectors match labels exactly; write the full label key");
        } else if v.contains('*') {
            r.error(
                p,
                format!("wildcard not allowed in label value match: `{k}: {v}`"),
            )
            .hint("selectors match labels exactly; write the full label value");
        } else if !is_label_key(k) {
            r.error(p, format!("invalid label key `{k}` in selector"))
                .hint("label keys are an optional DNS prefix and '/', then up to 63 alphanumerics, '-', '_' or '.'");
        } else if !is_label_value(v) {
            r.error(p, format!("invalid label value `{v}` for `{k}` in selector"))
                .hint("label values are up to 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric");
        }
    }
}

const TARGET_KINDS: &[(&str, &str)] = &[
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

fn is_group_name(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }))
}

fn is_kind_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.ends_with('-')
}

pub(crate) fn target_reference(r: &mut Report, t: &PolicyTargetReference, at: FieldPath) {
    let own_ns = r.object().namespace().to_string();
    if t.name.is_empty() {
        r.error(at.key("name"), "targetRef name is required")
            .hint("name the Gateway, Service or ServiceEntry this policy attaches to");
    }
    if let Some(ns) = t
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty() && *ns != own_ns)
    {
        r.error(
            at.key("namespace"),
            format!("cross namespace referencing is not currently supported: targetRef points at namespace `{ns}` from `{own_ns}`"),
        )
        .hint("create the policy in the target's namespace and drop `namespace`");
    }
    if !is_group_name(&t.group) {
        r.error(at.key("group"), format!("targetRef group `{}` is not a valid API group", t.group))
            .hint("use \"\" for a Service, `gateway.networking.k8s.io` for a Gateway, `networking.istio.io` for a ServiceEntry");
        return;
    }
    if !is_kind_name(&t.kind) {
        r.error(
            at.key("kind"),
            format!("targetRef kind `{}` is not a valid kind name", t.kind),
        )
        .hint("use Service, ServiceEntry, Gateway or GatewayClass");
        return;
    }
    let group = if t.group.is_empty() {
        "core"
    } else {
        t.group.as_str()
    };
    if !TARGET_KINDS
        .iter()
        .any(|(g, k)| *g == group && *k == t.kind)
    {
        let hint = match TARGET_KINDS.iter().find(|(_, k)| *k == t.kind) {
            Some((g, k)) => format!("{k} is in group `{}`", if *g == "core" { "" } else { g }),
            None => "targetRef must be a Service (group \"\"), ServiceEntry (networking.istio.io), Gateway or GatewayClass (gateway.networking.k8s.io)".to_string(),
        };
        r.error(
            at.key("kind"),
            format!("targetRef to `{}/{}` is not supported", t.group, t.kind),
        )
        .hint(hint);
    }
}

/// A header name as Envoy accepts it for generated headers: letters, digits, '-' and '_'.
pub(crate) fn is_strict_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An HTTP header name token (RFC 7230 tchar), as accepted for token locations.
pub(crate) fn is_header_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
