//! Telemetry, WasmPlugin and IstioOperator (its `meshConfig`).

use std::collections::BTreeSet;

use super::Report;
use super::rules::{is_dns1123_label, is_port};
use super::security::policy_scope;
use super::telemetry_text;
use crate::kinds::istio::*;
use crate::path::FieldPath;

fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

fn providers(list: &[ProviderRef], at: FieldPath, r: &mut Report) {
    for (i, p) in list.iter().enumerate() {
        if p.name.is_empty() {
            r.error(
                at.index(i).key("name"),
                "provider name must be non-empty (at least 1 chars long)",
            )
            .hint("name a built-in provider (prometheus, envoy, stackdriver) or one of meshConfig.extensionProviders");
        }
    }
}

pub fn telemetry(t: &Telemetry, r: &mut Report) {
    policy_scope(
        r,
        t.selector.as_ref(),
        t.target_ref.as_ref(),
        &t.target_refs,
    );

    if t.tracing.len() > 1 {
        r.error(
            spec().key("tracing").index(1),
            "only one tracing entry is supported per Telemetry",
        )
        .hint("merge the entries into one");
    }
    for (i, tr) in t.tracing.iter().enumerate() {
        let at = spec().key("tracing").index(i);
        providers(&tr.providers, at.key("providers"), r);
        if tr.providers.len() > 1 {
            r.error(
                at.key("providers"),
                "multiple tracing providers are not currently supported",
            )
            .hint("keep one provider per Telemetry");
        }
        if let Some(p) = tr.random_sampling_percentage
            && (!(0.0..=100.0).contains(&p) || p.is_nan())
        {
            r.error(
                at.key("randomSamplingPercentage"),
                format!("randomSamplingPercentage must be between 0 and 100, found {p}"),
            )
            .hint("write a percentage, e.g. `randomSamplingPercentage: 10.0`");
        }
        for (name, tag) in &tr.custom_tags {
            let p = at.key("customTags").key(name.clone());
            let set = [
                tag.literal.is_some(),
                tag.environment.is_some(),
                tag.header.is_some(),
                tag.formatter.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if set != 1 {
                r.error(p.clone(), format!("custom tag `{name}` must set exactly one of literal, environment, header, formatter (found {set})"))
                    .hint("e.g. `literal: {value: v1}` or `header: {name: x-user}`");
            }
            if tag.environment.as_ref().is_some_and(|e| e.name.is_empty()) {
                r.error(
                    p.key("environment").key("name"),
                    "environment tag needs `name`",
                )
                .hint("name the environment variable");
            }
            if tag.header.as_ref().is_some_and(|h| h.name.is_empty()) {
                r.error(p.key("header").key("name"), "header tag needs `name`")
                    .hint("name the request header");
            }
        }
    }

    for (i, m) in t.metrics.iter().enumerate() {
        let at = spec().key("metrics").index(i);
        providers(&m.providers, at.key("providers"), r);
        if let Some(d) = m.reporting_interval
            && d.as_std() < std::time::Duration::from_millis(1)
        {
            r.error(
                at.key("reportingInterval"),
                format!("reportingInterval `{d}` must be a duration of at least 1ms"),
            )
            .hint("omit it for the 5s default");
        }
        for (j, o) in m.overrides.iter().enumerate() {
            let op = at.key("overrides").index(j);
            if let Some(sel) = &o.match_ {
                if sel.metric.is_some() && sel.custom_metric.is_some() {
                    r.error(
                        op.key("match"),
                        "set only one of `metric` and `customMetric`",
                    )
                    .hint("one override per metric");
                }
                if sel.custom_metric.as_deref() == Some("") {
                    r.error(
                        op.key("match").key("customMetric"),
                        "customMetric must be non-empty (at least 1 chars long)",
                    )
                    .hint("name the custom metric, or use `metric:` for a standard one");
                }
            }
            for (tag, ov) in &o.tag_overrides {
                let tp = op.key("tagOverrides").key(tag.clone());
                match (ov.operation, ov.value.as_deref()) {
                    (TagOperation::Upsert, None | Some("")) => {
                        r.error(
                            tp.key("value"),
                            format!("value must be set when operation is UPSERT (tag `{tag}`)"),
                        )
                        .hint("give a CEL expression, e.g. `value: request.host`");
                    }
                    (TagOperation::Upsert, Some(value)) => {
                        telemetry_text::expression(
                            r,
                            tp.key("value"),
                            value,
                            &format!("tagOverrides value for `{tag}`"),
                            true,
                        );
                    }
                    (TagOperation::Remove, Some(_)) => {
                        r.error(
                            tp.key("value"),
                            format!("value must not be set when operation is REMOVE (tag `{tag}`)"),
                        )
                        .hint("remove `value`, or use `operation: UPSERT`");
                    }
                    _ => {}
                }
            }
        }
    }

    for (i, a) in t.access_logging.iter().enumerate() {
        let at = spec().key("accessLogging").index(i);
        providers(&a.providers, at.key("providers"), r);
        if let Some(f) = &a.filter {
            if f.expression.trim().is_empty() {
                r.error(
                    at.key("filter").key("expression"),
                    "filter expression must not be empty",
                )
                .hint("write a CEL expression, e.g. `response.code >= 400`, or remove `filter`");
            } else {
                telemetry_text::expression(
                    r,
                    at.key("filter").key("expression"),
                    &f.expression,
                    "access log filter",
                    false,
                );
            }
        }
    }
}

/// A WasmPlugin `url`: `oci://`, `http(s)://` or `file://`, or no scheme (OCI).
fn check_wasm_url(url: &str) -> Result<(), String> {
    // Percent escapes must be well formed (as Go's url.Parse requires).
    let b = url.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok = b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
            if !ok {
                return Err(format!("url `{url}` has an invalid percent escape"));
            }
            i += 3;
        } else {
            if b[i].is_ascii_control() || b[i] == b' ' {
                return Err(format!(
                    "url `{url}` contains whitespace or control characters"
                ));
            }
            i += 1;
        }
    }
    if let Some((scheme, _)) = url.split_once("://") {
        if !matches!(
            scheme.to_ascii_lowercase().as_str(),
            "oci" | "http" | "https" | "file"
        ) {
            return Err(format!(
                "url must have schema one of [http, https, file, oci], found `{scheme}`"
            ));
        }
    } else if let Some((scheme, _)) = url.split_once(':') {
        // `host:port/path` is an OCI reference without scheme; `mailto:x` is not.
        let is_scheme = !scheme.is_empty()
            && scheme.as_bytes()[0].is_ascii_alphabetic()
            && scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
            && !scheme.contains('.');
        let after = &url[scheme.len() + 1..];
        if is_scheme
            && !after
                .split('/')
                .next()
                .unwrap_or("")
                .bytes()
                .all(|c| c.is_ascii_digit())
        {
            return Err(format!(
                "url must have schema one of [http, https, file, oci], found `{scheme}`"
            ));
        }
    }
    if url.starts_with('#') || url.starts_with('?') {
        return Err(format!(
            "url must have schema one of [http, https, file, oci]: `{url}` names no module"
        ));
    }
    Ok(())
}

pub fn wasm_plugin(w: &WasmPlugin, r: &mut Report) {
    policy_scope(
        r,
        w.selector.as_ref(),
        w.target_ref.as_ref(),
        &w.target_refs,
    );
    if w.url.is_empty() {
        r.error(spec().key("url"), "spec.url is required (at least 1 chars long)")
            .hint("point at the module: `oci://registry/image:tag`, `https://…/plugin.wasm` or `file:///path`");
    } else if let Err(m) = check_wasm_url(&w.url) {
        r.error(spec().key("url"), m)
            .hint("use an oci://, https://, http:// or file:// URL");
    }
    if let Some(sha) = w.sha256.as_deref().filter(|s| !s.is_empty())
        && (sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    {
        r.error(
                spec().key("sha256"),
                format!("sha256 `{sha}` must be 64 lowercase hex characters (spec.sha256 in body should match)"),
            )
            .hint("use the module's SHA-256, e.g. from `sha256sum plugin.wasm`");
    }
    if w.image_pull_secret.as_deref() == Some("") {
        r.error(
            spec().key("imagePullSecret"),
            "spec.imagePullSecret must be non-empty (at least 1 chars long)",
        )
        .hint("name a Secret, or remove the field");
    }
    if w.plugin_name.as_deref() == Some("") {
        r.error(
            spec().key("pluginName"),
            "spec.pluginName must be non-empty (at least 1 chars long)",
        )
        .hint("name the plugin inside the module, or remove the field");
    }
    if let Some(vm) = &w.vm_config {
        let mut seen = BTreeSet::new();
        for (i, e) in vm.env.iter().enumerate() {
            let at = spec().key("vmConfig").key("env").index(i);
            if e.name.is_empty() {
                r.error(
                    at.key("name"),
                    "env name must be non-empty (at least 1 chars long)",
                )
                .hint("name the variable");
            } else if !seen.insert(e.name.as_str()) {
                r.error(
                    at.key("name"),
                    format!("Duplicate value: env `{}` is listed twice", e.name),
                )
                .hint("keep one entry per variable");
            }
            if e.value_from == EnvValueSource::Host && e.value.is_some() {
                r.error(
                    at.key("value"),
                    format!("value may only be set when valueFrom is INLINE (env `{}`)", e.name),
                )
                .hint("remove `value` to read the variable from the proxy's environment, or set `valueFrom: INLINE`");
            }
        }
    }
    for (i, m) in w.match_rules.iter().enumerate() {
        for (j, p) in m.ports.iter().enumerate() {
            let at = spec()
                .key("match")
                .index(i)
                .key("ports")
                .index(j)
                .key("number");
            match p.number {
                None => {
                    r.error(at, "spec.match[].ports[].number: Required value")
                        .hint("give the port number, e.g. `number: 8080`");
                }
                Some(n) if !is_port(n) => {
                    r.error(at, format!("port {n} must be between 1 and 65535"))
                        .hint("use a port in 1-65535");
                }
                _ => {}
            }
        }
    }
}

pub fn istio_operator(op: &IstioOperator, r: &mut Report) {
    if let Some(m) = &op.mesh_config {
        mesh_config(m, spec().key("meshConfig"), r);
    }
}

/// Rules for a MeshConfig found at `at` in the object being validated.
pub fn mesh_config(m: &MeshConfig, at: FieldPath, r: &mut Report) {
    if let Some(ns) = m.root_namespace.as_deref().filter(|s| !s.is_empty())
        && !is_dns1123_label(ns)
    {
        r.error(
            at.key("rootNamespace"),
            format!("rootNamespace `{ns}` is not a valid namespace name"),
        )
        .hint("use a lowercase DNS label, e.g. istio-system");
    }
    for (field, v) in [
        ("connectTimeout", m.connect_timeout),
        ("dnsRefreshRate", m.dns_refresh_rate),
    ] {
        if let Some(d) = v
            && d.as_std() < std::time::Duration::from_millis(1)
        {
            r.error(at.key(field), format!("{field} `{d}` must be at least 1ms"))
                .hint("omit it for Istio's default");
        }
    }
    for (field, v) in [
        ("proxyListenPort", m.proxy_listen_port),
        ("proxyInboundListenPort", m.proxy_inbound_listen_port),
        ("proxyHttpPort", m.proxy_http_port),
    ] {
        if let Some(p) = v.filter(|p| !is_port(*p)) {
            r.error(
                at.key(field),
                format!("{field} {p} must be between 1 and 65535"),
            )
            .hint("use a port in 1-65535");
        }
    }
    let mut names = BTreeSet::new();
    for (i, p) in m.extension_providers.iter().enumerate() {
        let pa = at.key("extensionProviders").index(i);
        if p.name.is_empty() {
            r.error(pa.key("name"), "extension provider needs a `name`")
                .hint("Telemetry and AuthorizationPolicy refer to providers by name");
        } else if !names.insert(p.name.as_str()) {
            r.error(
                pa.key("name"),
                format!("duplicate extension provider name `{}`", p.name),
            )
            .hint("give each provider a unique name");
        }
        let bodies = p.bodies();
        if bodies.len() != 1 {
            r.error(
                pa.clone(),
                format!(
                    "extension provider `{}` must set exactly one provider type, found {}",
                    p.name,
                    bodies.len()
                ),
            )
            .hint("e.g. `envoyExtAuthzHttp: {service: …, port: …}` or `opentelemetry: {service: …, port: …}`");
        }
        for (field, kind, body) in bodies {
            let needs_service = !matches!(
                kind,
                ProviderKind::Prometheus
                    | ProviderKind::Stackdriver
                    | ProviderKind::FileAccessLog
                    | ProviderKind::Sds
            );
            if needs_service
                && body
                    .get("service")
                    .and_then(|s| s.as_str())
                    .is_none_or(str::is_empty)
            {
                r.error(
                    pa.key(field).key("service"),
                    format!("extension provider `{}` needs `service`", p.name),
                )
                .hint(
                    "give the service host, e.g. `otel-collector.observability.svc.cluster.local`",
                );
            }
            if let Some(port) = body.get("port")
                && port.as_u64().is_none_or(|n| !(1..=65535).contains(&n))
            {
                r.error(
                    pa.key(field).key("port"),
                    format!(
                        "extension provider `{}` port must be between 1 and 65535",
                        p.name
                    ),
                )
                .hint("give the service port number");
            }
        }
    }
    access_log_settings(m, &at, r);
    if let Some(d) = &m.default_providers {
        let metrics = d.metrics.as_deref().unwrap_or_default();
        for (field, list) in [
            ("metrics", metrics),
            ("tracing", d.tracing.as_slice()),
            ("accessLogging", d.access_logging.as_slice()),
        ] {
            for (i, name) in list.iter().enumerate() {
                if !m.has_provider(name) {
                    r.error(
                        at.key("defaultProviders").key(field).index(i),
                        format!("default provider `{name}` is not defined in extensionProviders"),
                    )
                    .hint(
                        "add it to `extensionProviders`, or use a built-in provider (prometheus, envoy, stackdriver)",
                    );
                }
            }
        }
    }
}

/// `accessLogFormat` (a format, or a JSON object of formats under `accessLogEncoding:
/// JSON`) and the log formats of access-log providers.
fn access_log_settings(m: &MeshConfig, at: &FieldPath, r: &mut Report) {
    if let Some(f) = m.access_log_format.as_deref().filter(|f| !f.is_empty()) {
        if m.access_log_encoding() == AccessLogEncoding::Json {
            telemetry_text::json_format(r, at.key("accessLogFormat"), f, "accessLogFormat");
        } else {
            telemetry_text::format(r, at.key("accessLogFormat"), f, "accessLogFormat");
        }
    }
    for (i, p) in m.extension_providers.iter().enumerate() {
        for (field, kind, body) in p.bodies() {
            let allowed: &[&str] = match kind {
                ProviderKind::FileAccessLog => &["path", "logFormat"],
                ProviderKind::OtelAls => &["service", "port", "logName", "logFormat"],
                _ => continue,
            };
            let pa = at.key("extensionProviders").index(i).key(field);
            let Some(obj) = body.as_object() else {
                continue;
            };
            for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
                let d = r.error(
                    pa.key(key.clone()),
                    format!("unknown field `{key}` in {field}"),
                );
                d.hint = Some(match crate::telemetry_expr::suggest(key, allowed) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("{field} has {}", allowed.join(", ")),
                });
            }
            if let Some(format) = obj.get("logFormat") {
                telemetry_text::provider_log_format(r, pa.key("logFormat"), format);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Bundle;
    use crate::diag::Severity;

    fn errors(yaml: &str) -> Vec<String> {
        let b = Bundle::load_str("t.yaml", yaml);
        let mut out: Vec<String> = b.diagnostics.iter().map(|d| d.message.clone()).collect();
        for o in &b.objects {
            out.extend(
                crate::validate::validate(o)
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error)
                    .map(|d| {
                        format!(
                            "{} @{}",
                            d.message,
                            d.field.map(|f| f.to_string()).unwrap_or_default()
                        )
                    }),
            );
        }
        out
    }

    const TEL: &str = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t, namespace: ns}\nspec:\n";
    const WASM: &str = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: w, namespace: ns}\nspec:\n";

    #[test]
    fn telemetry_rules() {
        let e = errors(&format!(
            "{TEL}  tracing:\n  - providers: [{{name: a}}, {{name: b}}]\n    randomSamplingPercentage: 101\n"
        ));
        assert!(
            e.iter().any(|m| m.contains("multiple tracing providers")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.contains("between 0 and 100")), "{e:?}");
        let e = errors(&format!(
            "{TEL}  metrics:\n  - overrides:\n    - tagOverrides:\n        foo: {{operation: REMOVE, value: x}}\n"
        ));
        assert!(
            e.iter()
                .any(|m| m.contains("must not be set when operation is REMOVE")
                    && m.contains("tagOverrides.foo.value")),
            "{e:?}"
        );
        let e = errors(&format!(
            "{TEL}  metrics:\n  - overrides:\n    - match: {{metric: REQUEST_CNT}}\n"
        ));
        assert!(e.iter().any(|m| m.contains("REQUEST_CNT")), "{e:?}");
        let e = errors(&format!(
            "{TEL}  accessLogging:\n  - providers: [{{name: envoy}}]\n    filter: {{expression: \"response.code >= 400\"}}\n"
        ));
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn wasm_rules() {
        assert!(errors(&format!("{WASM}  url: oci://ghcr.io/x/y:1\n")).is_empty());
        assert!(errors(&format!("{WASM}  url: ghcr.io:443/x/y\n")).is_empty());
        let e = errors(&format!("{WASM}  url: \"fake://x\"\n"));
        assert!(e.iter().any(|m| m.contains("schema one of")), "{e:?}");
        let e = errors(&format!("{WASM}  url: \"#%blah$#@\"\n"));
        assert!(!e.is_empty());
        let e = errors(&format!(
            "{WASM}  url: oci://x\n  vmConfig:\n    env:\n    - name: a\n    - name: a\n      valueFrom: HOST\n      value: v\n"
        ));
        assert!(e.iter().any(|m| m.contains("Duplicate")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.contains("only be set when valueFrom is INLINE")),
            "{e:?}"
        );
        let e = errors(&format!(
            "{WASM}  url: oci://x\n  match: [{{ports: [{{}}]}}]\n"
        ));
        assert!(e.iter().any(|m| m.contains("Required value")), "{e:?}");
    }

    #[test]
    fn operator_mesh_config() {
        let e = errors(
            "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: io, namespace: istio-system}\nspec:\n  meshConfig:\n    extensionProviders:\n    - name: authz\n      envoyExtAuthzHttp: {port: 9000}\n    defaultProviders: {tracing: [missing]}\n",
        );
        assert!(e.iter().any(|m| m.contains("needs `service`")), "{e:?}");
        assert!(
            e.iter().any(|m| m.contains("`missing` is not defined")),
            "{e:?}"
        );
        let e = errors(
            "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: io}\nspec:\n  meshConfig:\n    outboundTraficPolicy: {mode: REGISTRY_ONLY}\n",
        );
        assert!(
            e.iter().any(|m| m.contains("outboundTraficPolicy")),
            "{e:?}"
        );
    }
}
