//! Tests of PeerAuthentication, RequestAuthentication and AuthorizationPolicy validation.

use crate::Bundle;
use crate::diag::Severity;

fn check(yaml: &str) -> (Vec<String>, Vec<String>) {
    let b = Bundle::load_str("t.yaml", yaml);
    let mut errors: Vec<String> = b.diagnostics.iter().map(|d| d.message.clone()).collect();
    let mut warnings = Vec::new();
    for o in &b.objects {
        for d in crate::validate::validate(o) {
            let s = format!(
                "{} @{}",
                d.message,
                d.field.map(|f| f.to_string()).unwrap_or_default()
            );
            if d.severity == Severity::Error {
                errors.push(s)
            } else {
                warnings.push(s)
            }
        }
    }
    (errors, warnings)
}

const AP: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: ns}\nspec:\n";
const PA: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: ns}\nspec:\n";
const RA: &str = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: p, namespace: ns}\nspec:\n";

#[test]
fn peer_port_level_needs_selector_and_valid_ports() {
    let (e, _) = check(&format!(
        "{PA}  portLevelMtls:\n    \"80\": {{mode: STRICT}}\n"
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("portLevelMtls requires selector")),
        "{e:?}"
    );
    let (e, _) = check(&format!(
        "{PA}  selector: {{matchLabels: {{a: b}}}}\n  portLevelMtls:\n    \"0\": {{mode: STRICT}}\n    x: {{mode: STRICT}}\n"
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("between 1-65535") && m.ends_with("spec.portLevelMtls.0")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("type conversion")), "{e:?}");
    let (e, _) = check(&format!("{PA}  mtls: {{mode: STRCT}}\n"));
    assert!(e.iter().any(|m| m.contains("STRCT")), "{e:?}");
    let (e, _) = check(&format!(
        "{PA}  selector: {{matchLabels: {{a: b}}}}\n  mtls: {{mode: STRICT}}\n  portLevelMtls:\n    \"8080\": {{mode: DISABLE}}\n"
    ));
    assert!(e.is_empty(), "{e:?}");
}

#[test]
fn authz_rules() {
    let (e, _) = check(&format!("{AP}  action: CUSTOM\n  rules: [{{}}]\n"));
    assert!(e.iter().any(|m| m.contains("provider.name")), "{e:?}");
    let (e, _) = check(&format!("{AP}  action: DENY\n"));
    assert!(
        e.iter().any(|m| m.contains("DENY action without `rules`")),
        "{e:?}"
    );
    let (e, _) = check(&format!("{AP}  provider: {{name: x}}\n  rules: [{{}}]\n"));
    assert!(
        e.iter().any(|m| m.contains("only allowed with CUSTOM")),
        "{e:?}"
    );
    let (e, _) = check(&format!(
        "{AP}  rules:\n  - when:\n    - key: request.header[x]\n      values: [a]\n"
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("unknown attribute") && m.ends_with("spec.rules[0].when[0].key")),
        "{e:?}"
    );
    let (e, _) = check(&format!(
        "{AP}  rules:\n  - from:\n    - source: {{ipBlocks: [\"10.0.0.0/33\"]}}\n    to:\n    - operation: {{ports: [\"http\"]}}\n"
    ));
    assert_eq!(e.len(), 2, "{e:?}");
    let (e, w) = check(&format!(
        "{AP}  action: DENY\n  rules:\n  - to:\n    - operation: {{methods: [POST], paths: [\"/a*b\"]}}\n"
    ));
    assert!(e.is_empty(), "{e:?}");
    assert!(
        w.iter().any(|m| m.contains("deny all traffic to TCP")),
        "{w:?}"
    );
    assert!(w.iter().any(|m| m.contains("matched literally")), "{w:?}");
    let (_, w) = check(&format!(
        "{AP}  action: DENY\n  rules:\n  - to:\n    - operation: {{methods: [POST], ports: [\"80\"]}}\n"
    ));
    assert!(w.is_empty(), "{w:?}");
    let (e, _) = check(&format!(
        "{AP}  selector: {{matchLabels: {{a: b}}}}\n  targetRefs: [{{kind: Service, group: \"\", name: s}}]\n"
    ));
    assert!(e.iter().any(|m| m.contains("only one of")), "{e:?}");
}

#[test]
fn request_authentication_rules() {
    let (e, _) = check(&format!(
        "{RA}  jwtRules:\n  - jwksUri: ftp://x/jwks\n  - audiences: [\"\"]\n  - issuer: a\n    outputClaimToHeaders: [{{claim: c, header: \":path\"}}]\n    timeout: 0s\n"
    ));
    assert!(
        e.iter().any(|m| m.contains("scheme http or https")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("issuer or jwksUri")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("should match")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("greater than 1ms")), "{e:?}");
    let (e, _) = check(&format!(
        "{RA}  targetRef: {{kind: Service, group: \"\", name: s, namespace: other}}\n"
    ));
    assert!(e.iter().any(|m| m.contains("cross namespace")), "{e:?}");
    let (e, _) = check(&format!(
        "{RA}  targetRef: {{kind: Deployment, group: apps, name: s}}\n"
    ));
    assert!(e.iter().any(|m| m.contains("not supported")), "{e:?}");
    let (e, _) = check(&format!(
        "{RA}  jwtRules:\n  - issuer: https://example.com\n    jwksUri: https://example.com/jwks.json\n    fromHeaders: [{{name: x-jwt, prefix: \"Bearer \"}}]\n"
    ));
    assert!(e.is_empty(), "{e:?}");
}
