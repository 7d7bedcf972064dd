//! VirtualService validation tests: Istio has no YAML corpus for these rules.

use crate::validate::networking::http_parts::check_header_value;
use crate::validate::networking::test_util::*;

fn vs(body: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: v, namespace: ns}}\nspec:\n{body}"
    )
}

/// A VS with `hosts: [reviews]` and the given http rules.
fn http(rules: &str) -> String {
    vs(&format!("  hosts: [reviews]\n  http:\n{rules}"))
}

#[test]
fn bookinfo_style_rules_are_clean() {
    assert_clean(&http(
        "  - match:\n    - headers:\n        end-user: {exact: jason}\n      uri: {prefix: /api}\n    route:\n    - destination: {host: reviews, subset: v2}\n  - route:\n    - destination: {host: reviews, subset: v1, port: {number: 9080}}\n      weight: 80\n    - destination: {host: reviews, subset: v3}\n      weight: 20\n    timeout: 10s\n    retries: {attempts: 3, perTryTimeout: 2s, retryOn: \"gateway-error,connect-failure,503,unavailable\"}\n    fault:\n      delay: {fixedDelay: 7s, percentage: {value: 100}}\n    mirror: {host: reviews-shadow}\n    mirrorPercentage: {value: 50}\n    headers:\n      request:\n        set: {x-who: \"%HOSTNAME%\", host: example.com}\n        remove: [x-debug]\n      response:\n        add: {x-pct: \"100%%\"}\n    corsPolicy:\n      allowOrigins: [{exact: \"https://a.com\"}]\n      allowMethods: [GET, POST]\n      maxAge: 24h\n",
    ));
}

#[test]
fn hosts() {
    assert_error(
        &vs("  hosts: [\"*\"]\n  http: [{route: [{destination: {host: a}}]}]\n"),
        "spec.hosts[0]",
        "not allowed for virtual services bound to the mesh",
    );
    assert_clean(&vs(
        "  hosts: [\"*\"]\n  gateways: [gw]\n  http: [{route: [{destination: {host: a}}]}]\n",
    ));
    assert_error(
        &vs("  hosts: [\"a.*.com\"]\n  http: [{route: [{destination: {host: a}}]}]\n"),
        "spec.hosts[0]",
        "invalid host",
    );
    assert_error(
        &vs("  hosts: [\"*.foo.com\", a.foo.com]\n  http: [{route: [{destination: {host: a}}]}]\n"),
        "spec.hosts[1]",
        "duplicate hosts",
    );
    assert_error(
        &vs("  hosts: [a]\n"),
        "spec",
        "http, tcp or tls must be provided",
    );
}

#[test]
fn gateways() {
    assert_error(
        &vs(
            "  hosts: [a]\n  gateways: [\"Bad/gw\"]\n  http: [{route: [{destination: {host: a}}]}]\n",
        ),
        "spec.gateways[0]",
        "invalid namespace",
    );
    assert_error(
        &vs(
            "  hosts: [a]\n  gateways: [\"my_gw\"]\n  http: [{route: [{destination: {host: a}}]}]\n",
        ),
        "spec.gateways[0]",
        "invalid gateway name",
    );
    assert_clean(&vs(
        "  hosts: [a]\n  gateways: [istio-system/gw, mesh, gw.istio-system.svc.cluster.local]\n  http: [{route: [{destination: {host: a}}]}]\n",
    ));
}

#[test]
fn delegate_rules() {
    assert_error(
        &vs("  gateways: [gw]\n  http: [{route: [{destination: {host: a}}]}]\n"),
        "spec.gateways",
        "delegate",
    );
    assert_error(
        &vs("  http: [{delegate: {name: other}}]\n"),
        "spec.http[0].delegate",
        "one level",
    );
    assert_clean(&http(
        "  - match: [{uri: {prefix: /a}}]\n    delegate: {name: reviews-a, namespace: team-a}\n",
    ));
    assert_error(
        &http("  - delegate: {name: x}\n    route: [{destination: {host: a}}]\n"),
        "spec.http[0].delegate",
        "both `route` and `delegate`",
    );
}

#[test]
fn actions_are_exclusive() {
    assert_error(
        &http("  - route: [{destination: {host: a}}]\n    redirect: {uri: /x}\n"),
        "spec.http[0].redirect",
        "both `route` and `redirect`",
    );
    assert_error(
        &http("  - redirect: {uri: /x}\n    directResponse: {status: 200}\n"),
        "spec.http[0].directResponse",
        "both `redirect` and `directResponse`",
    );
    assert_error(
        &http("  - redirect: {uri: /x}\n    fault: {abort: {httpStatus: 500}}\n"),
        "spec.http[0].fault",
        "fault",
    );
    assert_error(
        &http("  - directResponse: {status: 404}\n    rewrite: {uri: /}\n"),
        "spec.http[0].rewrite",
        "rewrite",
    );
    assert_error(&http("  - timeout: 1s\n"), "spec.http[0]", "is required");
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    mirror: {host: b}\n    mirrors: [{destination: {host: c}}]\n",
        ),
        "spec.http[0].mirrors",
        "both `mirror` and `mirrors`",
    );
}

#[test]
fn weights() {
    assert_error(
        &http("  - route:\n    - destination: {host: a}\n    - destination: {host: b}\n"),
        "spec.http[0].route",
        "total destination weight = 0",
    );
    assert_error(
        &http(
            "  - route:\n    - destination: {host: a}\n      weight: -1\n    - destination: {host: b}\n      weight: 10\n",
        ),
        "spec.http[0].route[0].weight",
        "negative",
    );
    assert_clean(&http(
        "  - route:\n    - destination: {host: a}\n      weight: 0\n",
    ));
    assert_error(
        &http("  - route:\n    - weight: 10\n"),
        "spec.http[0].route[0].destination",
        "required",
    );
    assert_error(
        &http("  - route:\n    - destination: {host: \"*\"}\n"),
        "spec.http[0].route[0].destination.host",
        "cannot be `*`",
    );
    assert_error(
        &http("  - route:\n    - destination: {host: a, subset: V1}\n"),
        "spec.http[0].route[0].destination.subset",
        "invalid subset",
    );
    assert_error(
        &http("  - route:\n    - destination: {host: a, port: {number: 0}}\n"),
        "spec.http[0].route[0].destination.port.number",
        "1-65535",
    );
}

#[test]
fn matches() {
    assert_error(
        &http(
            "  - match: [{uri: {exact: /a, prefix: /b}}]\n    route: [{destination: {host: a}}]\n",
        ),
        "spec.http[0].match[0].uri",
        "only one of exact, prefix or regex",
    );
    assert_error(
        &http("  - match: [{uri: {regex: \"(\"}}]\n    route: [{destination: {host: a}}]\n"),
        "spec.http[0].match[0].uri.regex",
        "invalid regex",
    );
    assert_error(
        &http("  - match: [{uri: {prefix: \"\"}}]\n    route: [{destination: {host: a}}]\n"),
        "spec.http[0].match[0].uri.prefix",
        "should not be empty",
    );
    assert_error(
        &http(
            "  - match: [{headers: {\"bad header\": {exact: x}}}]\n    route: [{destination: {host: a}}]\n",
        ),
        "spec.http[0].match[0].headers.bad header",
        "not a valid header name",
    );
    let upper = http(
        "  - match: [{headers: {End-User: {exact: x}}}]\n    route: [{destination: {host: a}}]\n",
    );
    assert_clean(&upper);
    assert!(
        warnings(&upper).iter().any(|w| w.contains("lowercase")),
        "{:?}",
        warnings(&upper)
    );
    assert_clean(&http(
        "  - match: [{headers: {x-present: {}}, queryParams: {q: {regex: \"*\"}}}]\n    route: [{destination: {host: a}}]\n",
    ));
    assert_error(
        &http(
            "  - match: [{headers: {\"@request.auth.claims.group\": {exact: admin}}}]\n    route: [{destination: {host: a}}]\n",
        ),
        "spec.http[0].match[0].headers[\"@request.auth.claims.group\"]",
        "only supported for gateways",
    );
    assert_clean(&vs(
        "  hosts: [a.com]\n  gateways: [gw]\n  http:\n  - match: [{headers: {\"@request.auth.claims.group\": {exact: admin}}}]\n    route: [{destination: {host: a}}]\n",
    ));
    assert_error(
        &http(
            "  - match: [{port: 70000, sourceNamespace: Bad_NS}]\n    route: [{destination: {host: a}}]\n",
        ),
        "spec.http[0].match[0].port",
        "1-65535",
    );
}

#[test]
fn durations_and_percentages() {
    assert_error(
        &http("  - route: [{destination: {host: a}}]\n    timeout: 0s\n"),
        "spec.http[0].timeout",
        "at least 1ms",
    );
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    fault: {delay: {fixedDelay: 0.5ms, percentage: {value: 10}}}\n",
        ),
        "spec.http[0].fault.delay.fixedDelay",
        "at least 1ms",
    );
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    fault: {abort: {httpStatus: 700, percentage: {value: 101}}}\n",
        ),
        "spec.http[0].fault.abort.percentage.value",
        "out of range",
    );
    assert_error(
        &http("  - route: [{destination: {host: a}}]\n    fault: {abort: {httpStatus: 700}}\n"),
        "spec.http[0].fault.abort.httpStatus",
        "invalid abort http status",
    );
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    fault: {abort: {grpcStatus: UNAVAILABL}}\n",
        ),
        "spec.http[0].fault.abort.grpcStatus",
        "not a gRPC status",
    );
    assert_error(
        &http("  - route: [{destination: {host: a}}]\n    fault: {}\n"),
        "spec.http[0].fault",
        "abort and/or a delay",
    );
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    mirror: {host: b}\n    mirrorPercentage: {value: 150}\n",
        ),
        "spec.http[0].mirrorPercentage.value",
        "out of range",
    );
    let deprecated = http(
        "  - route: [{destination: {host: a}}]\n    mirror: {host: b}\n    mirrorPercent: 50\n",
    );
    assert_clean(&deprecated);
    assert!(
        warnings(&deprecated)
            .iter()
            .any(|w| w.contains("deprecated"))
    );
}

#[test]
fn retries() {
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    retries: {attempts: 2, retryOn: \"5xx,gateway-eror\"}\n",
        ),
        "spec.http[0].retries.retryOn",
        "`gateway-eror` is not a valid retryOn policy",
    );
    assert_error(
        &http("  - route: [{destination: {host: a}}]\n    retries: {attempts: -1}\n"),
        "spec.http[0].retries.attempts",
        "negative",
    );
    assert_clean(&http(
        "  - route: [{destination: {host: a}}]\n    retries: {attempts: 2, retryOn: \"503, retriable-4xx ,cancelled\"}\n",
    ));
}

#[test]
fn redirects_rewrites_direct_responses() {
    assert_error(
        &http("  - redirect: {redirectCode: 200, uri: /x}\n"),
        "spec.http[0].redirect.redirectCode",
        "must be 3xx",
    );
    assert_error(
        &http("  - redirect: {}\n"),
        "spec.http[0].redirect",
        "must specify URI",
    );
    assert_clean(&http(
        "  - redirect: {scheme: https, redirectCode: 308, derivePort: FROM_PROTOCOL_DEFAULT}\n",
    ));
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    rewrite: {uri: /, uriRegexRewrite: {match: a, rewrite: b}}\n",
        ),
        "spec.http[0].rewrite.uriRegexRewrite",
        "only contain one of",
    );
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    rewrite: {uriRegexRewrite: {match: \"(\", rewrite: b}}\n",
        ),
        "spec.http[0].rewrite.uriRegexRewrite.match",
        "invalid regex",
    );
    assert_error(
        &http("  - directResponse: {status: 99}\n"),
        "spec.http[0].directResponse.status",
        "out of range",
    );
    assert_error(
        &http("  - directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n"),
        "spec.http[0].directResponse.body",
        "only one of string and bytes",
    );
}

#[test]
fn header_operations() {
    assert_error(
        &http("  - route: [{destination: {host: a}}]\n    headers: {response: {set: {host: x}}}\n"),
        "spec.http[0].headers.response.set.host",
        "cannot be modified here",
    );
    assert_error(
        &http(
            "  - route: [{destination: {host: a}}]\n    headers: {request: {remove: [\":path\"]}}\n",
        ),
        "spec.http[0].headers.request.remove[0]",
        "pseudo-header",
    );
    assert_error(
        &http(
            "  - route:\n    - destination: {host: a}\n      headers: {request: {add: {x-a: \"50%\"}}}\n",
        ),
        "spec.http[0].route[0].headers.request.add.x-a",
        "unterminated",
    );
    assert!(check_header_value("%REQ(x-a)%-%%-%START_TIME(%s)%").is_ok());
    assert!(check_header_value("%bad%").is_err());
}

#[test]
fn cors() {
    assert_error(
        &http("  - route: [{destination: {host: a}}]\n    corsPolicy: {allowMethods: [get]}\n"),
        "spec.http[0].corsPolicy.allowMethods[0]",
        "not a supported HTTP method",
    );
    assert_error(
        &http("  - route: [{destination: {host: a}}]\n    corsPolicy: {maxAge: 1.5s}\n"),
        "spec.http[0].corsPolicy.maxAge",
        "whole seconds",
    );
}

#[test]
fn tcp_and_tls_routes() {
    assert_clean(&vs(
        "  hosts: [\"*.bookinfo.com\"]\n  gateways: [gw]\n  tls:\n  - match: [{port: 443, sniHosts: [login.bookinfo.com]}]\n    route: [{destination: {host: login.prod.svc.cluster.local}}]\n  tcp:\n  - match: [{port: 27017, destinationSubnets: [10.0.0.0/8]}]\n    route: [{destination: {host: mongo, port: {number: 5555}}}]\n",
    ));
    assert_error(
        &vs(
            "  hosts: [a.com]\n  tls:\n  - match: [{sniHosts: [b.com]}]\n    route: [{destination: {host: b}}]\n",
        ),
        "spec.tls[0].match[0].sniHosts[0]",
        "not a compatible subset",
    );
    assert_error(
        &vs("  hosts: [a.com]\n  tls:\n  - route: [{destination: {host: b}}]\n"),
        "spec.tls[0].match",
        "at least one match",
    );
    assert_error(
        &vs("  hosts: [a.com]\n  tcp:\n  - match: [{port: 1}]\n"),
        "spec.tcp[0].route",
        "TCP route is required",
    );
    assert_error(
        &vs(
            "  hosts: [a.com]\n  tcp:\n  - match: [{destinationSubnets: [10.0.0.0/99]}]\n    route: [{destination: {host: b}}]\n",
        ),
        "spec.tcp[0].match[0].destinationSubnets[0]",
        "not an IP address or CIDR",
    );
}

#[test]
fn schema_errors_carry_paths() {
    let errs = errors(&http("  - route: [{destination: {host: a, subnet: v1}}]\n"));
    assert!(
        errs.iter().any(
            |e| e.starts_with("spec.http[0].route[0].destination.subnet")
                && e.contains("unknown field")
        ),
        "{errs:?}"
    );
}

#[test]
fn all_destinations_accessor() {
    let b = crate::Bundle::load_str(
        "t.yaml",
        &vs(
            "  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}, {destination: {host: b}, weight: 1}]\n    mirrors: [{destination: {host: m}}]\n  tcp:\n  - route: [{destination: {host: t}}]\n",
        ),
    );
    let crate::Body::VirtualService(v) = &b.objects[0].body else {
        panic!("not a VS")
    };
    let got: Vec<(String, String)> = v
        .all_destinations()
        .into_iter()
        .map(|(p, d)| (p.to_string(), d.host.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "spec.http[0].route[0].destination".to_string(),
                "a".to_string()
            ),
            (
                "spec.http[0].route[1].destination".to_string(),
                "b".to_string()
            ),
            (
                "spec.http[0].mirrors[0].destination".to_string(),
                "m".to_string()
            ),
            (
                "spec.tcp[0].route[0].destination".to_string(),
                "t".to_string()
            ),
        ]
    );
    assert_eq!(v.route_destinations().len(), 3);
}
