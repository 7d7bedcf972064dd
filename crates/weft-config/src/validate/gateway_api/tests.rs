use crate::Bundle;
use crate::diag::Severity;

use crate::testing::{
    assert_one_error as assert_error, validate_one as diags, validation_errors as errors,
};

fn route(rules: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: ns}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n{rules}"
    )
}

#[test]
fn valid_http_route_is_clean() {
    let y = route(
        "  - matches:\n    - path: {type: PathPrefix, value: /v2}\n      headers: [{name: version, value: two}]\n      queryParams: [{type: RegularExpression, name: q, value: '^a.*'}]\n      method: GET\n    filters:\n    - type: URLRewrite\n      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}\n    backendRefs: [{name: svc, port: 8080, weight: 10}]\n    timeouts: {request: 10s, backendRequest: 2s}\n",
    );
    assert!(diags(&y).is_empty(), "{:?}", diags(&y));
}

#[test]
fn path_must_be_absolute() {
    let y = route(
        "  - matches: [{path: {type: Exact, value: foo}}]\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    assert_error(
        &y,
        "spec.rules[0].matches[0].path.value",
        "must be an absolute path",
    );
}

#[test]
fn path_regex_must_compile() {
    let y = route(
        "  - matches: [{path: {type: RegularExpression, value: '/a('}}]\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    assert_error(&y, "spec.rules[0].matches[0].path.value", "invalid regex");
}

#[test]
fn bad_header_name() {
    let y = route(
        "  - matches: [{headers: [{name: 'bad header', value: x}]}]\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    assert_error(
        &y,
        "spec.rules[0].matches[0].headers[0].name",
        "invalid header name",
    );
}

#[test]
fn bad_path_type_gets_did_you_mean() {
    let b = Bundle::load_str(
        "t.yaml",
        &route("  - matches: [{path: {type: Prefix, value: /}}]\n"),
    );
    let d = b
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .expect("schema error");
    assert_eq!(
        d.field.as_ref().unwrap().to_string(),
        "spec.rules[0].matches[0].path.type"
    );
    assert!(
        d.hint.as_deref().unwrap_or("").contains("PathPrefix"),
        "{d:?}"
    );
}

#[test]
fn weight_out_of_range() {
    let y = route("  - backendRefs: [{name: svc, port: 80, weight: 1000001}]\n");
    assert_error(&y, "spec.rules[0].backendRefs[0].weight", "out of range");
}

#[test]
fn service_backend_needs_port() {
    let y = route("  - backendRefs: [{name: svc}]\n");
    assert_error(&y, "spec.rules[0].backendRefs[0]", "has no port");
}

#[test]
fn non_service_backend_is_a_warning_only() {
    let y = route("  - backendRefs: [{name: bucket, kind: GcsBucket, group: example.com}]\n");
    let d = diags(&y);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].severity, Severity::Warning);
    assert!(d[0].message.contains("GcsBucket"));
}

#[test]
fn redirect_status_code() {
    let y = route(
        "  - filters:\n    - type: RequestRedirect\n      requestRedirect: {statusCode: 304}\n",
    );
    assert_error(
        &y,
        "spec.rules[0].filters[0].requestRedirect.statusCode",
        "304",
    );
    let ok = route(
        "  - filters:\n    - type: RequestRedirect\n      requestRedirect: {statusCode: 308, scheme: https}\n",
    );
    assert!(errors(&ok).is_empty());
}

#[test]
fn redirect_with_backends_is_rejected() {
    let y = route(
        "  - filters:\n    - type: RequestRedirect\n      requestRedirect: {statusCode: 301}\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    assert_error(
        &y,
        "spec.rules[0].filters[0]",
        "cannot be combined with backendRefs",
    );
}

#[test]
fn filter_field_must_match_type() {
    let y = route(
        "  - filters:\n    - type: RequestHeaderModifier\n      responseHeaderModifier: {set: [{name: a, value: b}]}\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    let e = errors(&y);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, "spec.rules[0].filters[0].requestHeaderModifier");
    assert_eq!(e[1].0, "spec.rules[0].filters[0].responseHeaderModifier");
}

#[test]
fn filter_cannot_repeat() {
    let y = route(
        "  - filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: a, value: b}]}\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {add: [{name: c, value: d}]}\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    assert_error(&y, "spec.rules[0].filters[1]", "repeated");
}

#[test]
fn replace_prefix_match_needs_single_path_prefix_match() {
    let y = route(
        "  - matches: [{path: {type: Exact, value: /a}}]\n    filters:\n    - type: URLRewrite\n      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    assert_error(
        &y,
        "spec.rules[0].filters[0].urlRewrite.path",
        "exactly one match, of type PathPrefix",
    );
}

#[test]
fn path_modifier_type_and_field_agree() {
    let y = route(
        "  - filters:\n    - type: URLRewrite\n      urlRewrite: {path: {type: ReplaceFullPath, replacePrefixMatch: /b}}\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    let e = errors(&y);
    assert!(
        e.iter()
            .any(|(f, _)| f == "spec.rules[0].filters[0].urlRewrite.path.replaceFullPath"),
        "{e:?}"
    );
}

#[test]
fn too_many_rules_and_matches() {
    let rule = "  - backendRefs: [{name: svc, port: 80}]\n";
    let y = route(&rule.repeat(17));
    assert_error(&y, "spec.rules", "17 rules");
    let many: String = (0..65)
        .map(|i| format!("    - path: {{value: /p{i}}}\n"))
        .collect();
    let y = route(&format!(
        "  - matches:\n{many}    backendRefs: [{{name: svc, port: 80}}]\n"
    ));
    assert_error(&y, "spec.rules[0].matches", "65 matches");
}

#[test]
fn mirror_percent_and_fraction() {
    let y = route(
        "  - filters:\n    - type: RequestMirror\n      requestMirror: {backendRef: {name: m, port: 80}, fraction: {numerator: 5, denominator: 2}}\n    backendRefs: [{name: svc, port: 80}]\n",
    );
    assert_error(
        &y,
        "spec.rules[0].filters[0].requestMirror.fraction",
        "larger than denominator",
    );
}

#[test]
fn backend_timeout_longer_than_request() {
    let y = route(
        "  - backendRefs: [{name: svc, port: 80}]\n    timeouts: {request: 1s, backendRequest: 2s}\n",
    );
    assert_error(
        &y,
        "spec.rules[0].timeouts.backendRequest",
        "longer than the request timeout",
    );
}

#[test]
fn duplicate_parent_refs_need_section_names() {
    let y = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: gw}, {name: gw}]\n";
    let e = errors(y);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].1.contains("sectionName"));
}

fn gateway(listeners: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: g}}\nspec:\n  gatewayClassName: istio\n  listeners:\n{listeners}"
    )
}

#[test]
fn valid_gateway_is_clean() {
    let y = gateway(
        "  - {name: http, port: 80, protocol: HTTP, hostname: '*.example.com', allowedRoutes: {namespaces: {from: All}}}\n  - name: https\n    port: 443\n    protocol: HTTPS\n    tls: {certificateRefs: [{name: cert}]}\n  - {name: tls, port: 8443, protocol: TLS, tls: {mode: Passthrough}}\n",
    );
    assert!(diags(&y).is_empty(), "{:?}", diags(&y));
}

#[test]
fn listener_names_unique() {
    let y = gateway(
        "  - {name: http, port: 80, protocol: HTTP}\n  - {name: http, port: 81, protocol: HTTP}\n",
    );
    assert_error(&y, "spec.listeners[1].name", "used twice");
}

#[test]
fn listener_port_range() {
    let y = gateway("  - {name: http, port: 70000, protocol: HTTP}\n");
    assert_error(&y, "spec.listeners[0].port", "out of range");
}

#[test]
fn tls_not_allowed_on_http_and_hostname_not_on_tcp() {
    let y = gateway(
        "  - {name: http, port: 80, protocol: HTTP, tls: {certificateRefs: [{name: c}]}}\n",
    );
    assert_error(
        &y,
        "spec.listeners[0].tls",
        "must not be set for protocol HTTP",
    );
    let y = gateway("  - {name: tcp, port: 9000, protocol: TCP, hostname: a.example.com}\n");
    assert_error(
        &y,
        "spec.listeners[0].hostname",
        "must not be set for protocol TCP",
    );
}

#[test]
fn https_passthrough_and_missing_certificate() {
    let y = gateway("  - {name: https, port: 443, protocol: HTTPS, tls: {mode: Passthrough}}\n");
    assert_error(&y, "spec.listeners[0].tls.mode", "must be Terminate");
    let y = gateway("  - {name: https, port: 443, protocol: HTTPS, tls: {mode: Terminate}}\n");
    assert_error(&y, "spec.listeners[0].tls", "needs a certificate");
}

#[test]
fn duplicate_port_protocol_hostname() {
    let y = gateway(
        "  - {name: a, port: 80, protocol: HTTP}\n  - {name: b, port: 80, protocol: HTTP}\n",
    );
    assert_error(&y, "spec.listeners[1]", "port 80");
}

#[test]
fn bad_listener_hostname() {
    let y = gateway("  - {name: a, port: 80, protocol: HTTP, hostname: 'Foo.Example.com'}\n");
    assert_error(&y, "spec.listeners[0].hostname", "lower case");
}

#[test]
fn gateway_class_controller_name() {
    let y = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: c}\nspec: {controllerName: istio}\n";
    assert_error(y, "spec.controllerName", "invalid controllerName");
}

#[test]
fn grpc_method_match() {
    let y = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g}\nspec:\n  rules:\n  - matches: [{method: {type: Exact}}]\n    backendRefs: [{name: svc, port: 80}]\n  - matches: [{method: {service: /bad.Svc, method: Say}}]\n    backendRefs: [{name: svc, port: 80}]\n";
    let e = errors(y);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, "spec.rules[0].matches[0].method");
    assert_eq!(e[1].0, "spec.rules[1].matches[0].method.service");
}

#[test]
fn reference_grant_requires_namespace() {
    let y = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute}]\n  to: [{group: '', kind: Service}]\n";
    assert_error(y, "spec.from[0].namespace", "required");
}

#[test]
fn tcp_route_needs_backends() {
    let y = "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t}\nspec:\n  parentRefs: [{name: gw}]\n  rules: [{}]\n";
    assert_error(y, "spec.rules[0].backendRefs", "at least one backendRef");
}

#[test]
fn linkerd_http_route_uses_the_same_rules() {
    let y = "apiVersion: policy.linkerd.io/v1beta3\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  parentRefs: [{name: srv, kind: Server, group: policy.linkerd.io}]\n  rules:\n  - matches: [{path: {value: nope}}]\n";
    assert_error(y, "spec.rules[0].matches[0].path.value", "absolute path");
}
