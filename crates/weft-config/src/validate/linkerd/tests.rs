use super::Cidr;
use crate::Bundle;
use crate::diag::Severity;

use crate::testing::{
    assert_one_error as assert_error, validate_one as diags, validation_errors as errors,
};

const SP: &str = "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: books.booksapp.svc.cluster.local, namespace: booksapp}\nspec:\n";

#[test]
fn valid_service_profile() {
    let y = format!(
        "{SP}  routes:\n  - name: GET /books\n    condition: {{method: GET, pathRegex: '/books/\\d+'}}\n    responseClasses: [{{condition: {{status: {{min: 500, max: 599}}}}, isFailure: true}}]\n    timeout: 300ms\n  retryBudget: {{retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}}\n  dstOverrides: [{{authority: a.b.svc.cluster.local:80, weight: 500m}}]\n"
    );
    assert!(diags(&y).is_empty(), "{:?}", diags(&y));
}

#[test]
fn service_profile_short_name() {
    let y = "apiVersion: linkerd.io/v1alpha2\nkind: ServiceProfile\nmetadata: {name: books, namespace: booksapp}\nspec: {}\n";
    let e = errors(y);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "metadata.name");
}

#[test]
fn empty_condition_and_bad_status_range() {
    let y = format!(
        "{SP}  routes:\n  - name: r\n    condition: {{}}\n    responseClasses: [{{condition: {{status: {{min: 599, max: 500}}}}}}]\n"
    );
    let e = errors(&y);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[0].0, "spec.routes[0].condition");
    assert_eq!(e[1].0, "spec.routes[0].responseClasses[0].condition.status");
    assert!(e[1].1.contains("min is greater than max"));
}

#[test]
fn status_out_of_range() {
    let y = format!(
        "{SP}  routes:\n  - name: r\n    condition: {{method: GET}}\n    responseClasses: [{{condition: {{status: {{min: 50}}}}}}]\n"
    );
    assert_error(
        &y,
        "spec.routes[0].responseClasses[0].condition.status.min",
        "not an HTTP status",
    );
}

#[test]
fn nested_condition_regex() {
    let y = format!(
        "{SP}  routes:\n  - name: r\n    condition: {{all: [{{method: GET}}, {{not: {{pathRegex: '('}}}}]}}\n"
    );
    assert_error(
        &y,
        "spec.routes[0].condition.all[1].not.pathRegex",
        "invalid regex",
    );
}

#[test]
fn retry_budget_fields_required() {
    let y = format!("{SP}  retryBudget: {{retryRatio: 0.2}}\n");
    let e = errors(&y);
    assert_eq!(
        e.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        [
            "spec.retryBudget.minRetriesPerSecond",
            "spec.retryBudget.ttl"
        ]
    );
}

const SERVER: &str =
    "apiVersion: policy.linkerd.io/v1beta3\nkind: Server\nmetadata: {name: s}\nspec:\n";

#[test]
fn server_selector_exclusive() {
    let y = format!(
        "{SERVER}  podSelector: {{matchLabels: {{app: a}}}}\n  externalWorkloadSelector: {{matchLabels: {{app: a}}}}\n  port: http\n"
    );
    assert_error(&y, "spec.externalWorkloadSelector", "not both");
    let y = format!("{SERVER}  port: 8080\n");
    assert_error(&y, "spec", "podSelector");
}

#[test]
fn server_port_and_protocol() {
    let y = format!(
        "{SERVER}  podSelector: {{}}\n  port: 8080\n  proxyProtocol: HTTP/2\n  accessPolicy: audit\n"
    );
    assert!(diags(&y).is_empty());
    let y = format!("{SERVER}  podSelector: {{}}\n  port: 70000\n");
    assert_error(&y, "spec.port", "out of range");
    let y = format!("{SERVER}  podSelector: {{}}\n  port: http\n  accessPolicy: denied\n");
    let d = diags(&y);
    assert_eq!(d.len(), 1);
    assert!(
        d[0].hint
            .as_deref()
            .unwrap()
            .contains("did you mean `deny`"),
        "{d:?}"
    );
    let b = Bundle::load_str(
        "t.yaml",
        &format!("{SERVER}  podSelector: {{}}\n  port: http\n  proxyProtocol: HTTP1\n"),
    );
    assert!(b.diagnostics.iter().any(|d| d.severity == Severity::Error
        && d.field.as_ref().unwrap().to_string() == "spec.proxyProtocol"));
}

#[test]
fn server_authorization_client_rules() {
    let base = "apiVersion: policy.linkerd.io/v1beta1\nkind: ServerAuthorization\nmetadata: {name: a}\nspec:\n  server: {name: s}\n";
    let y = format!(
        "{base}  client: {{meshTLS: {{identities: ['*'], serviceAccounts: [{{name: web}}]}}}}\n"
    );
    assert_error(&y, "spec.client.meshTLS", "more than one");
    let y = format!("{base}  client: {{}}\n");
    assert_error(&y, "spec.client", "authorizes nobody");
    let y =
        format!("{base}  client: {{unauthenticated: true, networks: [{{cidr: 10.0.0.0/33}}]}}\n");
    assert_error(&y, "spec.client.networks[0].cidr", "prefix length");
    let y = format!(
        "{base}  client: {{unauthenticated: true, networks: [{{cidr: 0.0.0.0/0}}, {{cidr: '::/0'}}]}}\n"
    );
    assert!(diags(&y).is_empty());
}

#[test]
fn mesh_tls_identities_xor_refs() {
    let y = "apiVersion: policy.linkerd.io/v1alpha1\nkind: MeshTLSAuthentication\nmetadata: {name: m}\nspec:\n  identities: ['*']\n  identityRefs: [{kind: ServiceAccount, name: web}]\n";
    assert_error(y, "spec.identityRefs", "not both");
    let y = "apiVersion: policy.linkerd.io/v1alpha1\nkind: MeshTLSAuthentication\nmetadata: {name: m}\nspec: {}\n";
    assert_error(y, "spec", "no identities");
}

#[test]
fn network_authentication_cidrs() {
    let y = "apiVersion: policy.linkerd.io/v1alpha1\nkind: NetworkAuthentication\nmetadata: {name: n}\nspec:\n  networks: [{cidr: 10.0.0.0/8, except: [10.1.0.0/16, 192.168.0.0/16]}, {cidr: nope}]\n";
    let d = diags(y);
    let e: Vec<_> = d.iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(e.len(), 1, "{d:?}");
    assert_eq!(
        e[0].field.as_ref().unwrap().to_string(),
        "spec.networks[1].cidr"
    );
    let w: Vec<_> = d
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].field.as_ref().unwrap().to_string(),
        "spec.networks[0].except[1]"
    );
}

#[test]
fn authorization_policy_kinds() {
    let y = "apiVersion: policy.linkerd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  targetRef: {group: apps, kind: Deployment, name: web}\n  requiredAuthenticationRefs: [{kind: ServiceAccount, name: web}]\n";
    assert_error(y, "spec.targetRef.kind", "cannot target a Deployment");
    let y = "apiVersion: policy.linkerd.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  targetRef: {kind: Namespace, name: b}\n  requiredAuthenticationRefs: [{kind: Secret, name: x}]\n";
    let e = errors(y);
    assert_eq!(
        e.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
        [
            "spec.targetRef.name",
            "spec.requiredAuthenticationRefs[0].kind"
        ]
    );
}

#[test]
fn traffic_split_weights() {
    let y = "apiVersion: split.smi-spec.io/v1alpha1\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  service: web\n  backends: [{service: web-v1, weight: 500m}, {service: web-v2, weight: 1500m}]\n";
    let b = Bundle::load_str("t.yaml", y);
    let crate::Body::TrafficSplit(t) = &b.objects[0].body else {
        panic!()
    };
    assert_eq!(t.backends[0].weight.value(), 0.5);
    assert_eq!(t.backends[1].weight.value(), 1.5);
    assert!(diags(y).is_empty());
    let y = "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  service: web\n  backends: [{service: web-v1, weight: -1}]\n";
    assert_error(y, "spec.backends[0].weight", "negative");
    let y = "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  service: web\n  backends: []\n";
    assert_error(y, "spec.backends", "no backends");
    let b = Bundle::load_str(
        "t.yaml",
        "apiVersion: split.smi-spec.io/v1alpha2\nkind: TrafficSplit\nmetadata: {name: t}\nspec:\n  service: web\n  backends: [{service: a, weight: 5q}]\n",
    );
    let d = b
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .expect("bad quantity rejected");
    assert_eq!(
        d.field.as_ref().unwrap().to_string(),
        "spec.backends[0].weight"
    );
}

#[test]
fn cidr_containment() {
    let a = Cidr::parse("10.0.0.0/8").unwrap();
    assert!(a.contains(&Cidr::parse("10.1.2.0/24").unwrap()));
    assert!(!a.contains(&Cidr::parse("11.0.0.0/24").unwrap()));
    assert!(
        Cidr::parse("::/0")
            .unwrap()
            .contains(&Cidr::parse("fd00::1").unwrap())
    );
    assert!(
        Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(&Cidr::parse("1.2.3.4").unwrap())
    );
}
