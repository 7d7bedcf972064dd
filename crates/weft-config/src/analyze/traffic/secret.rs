//! `gateway.SecretAnalyzer`: a Gateway's `credentialName` must name a Secret in the
//! namespace of the gateway workload (IST0101), holding a certificate and key under the
//! expected keys, with a certificate that parses and is valid now (IST0161).

use std::collections::HashMap;

use super::gateway::{gateways, no_workload};
use super::tls;
use super::workloads::GatewayWorkloads;
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::k8s::SecretBody;
use crate::kinds::{Body, Kind};
use crate::path::FieldPath;

pub struct SecretAnalyzer;

/// Why a TLS secret cannot serve as a gateway credential, or `None` when it can.
fn secret_problem(s: &SecretBody, now: i64) -> Option<String> {
    // Values in `data` are base64; in `stringData`, plain.
    let value = |k: &str| -> Option<Vec<u8>> {
        match s.data.get(k) {
            Some(v) => Some(tls::base64_decode(v).unwrap_or_default()),
            None => s.string_data.get(k).map(|v| v.as_bytes().to_vec()),
        }
    };
    let non_empty = |k: &str| value(k).filter(|v| !v.is_empty());
    let cert = match (
        non_empty("cert"),
        non_empty("key"),
        non_empty("tls.crt"),
        non_empty("tls.key"),
    ) {
        (Some(c), Some(_), _, _) => c,
        (_, _, Some(c), Some(_)) => c,
        _ => {
            let mut found: Vec<&str> = s
                .data
                .keys()
                .chain(s.string_data.keys())
                .map(String::as_str)
                .collect();
            found.sort_unstable();
            found.dedup();
            let found = if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            };
            return Some(format!(
                "it does not have non-empty `tls.crt` and `tls.key` (or `cert` and `key`); keys found: {found}"
            ));
        }
    };
    let text = String::from_utf8_lossy(&cert);
    let Some(der) = tls::pem_certificate(&text) else {
        return Some("its certificate is not PEM-encoded (no `BEGIN CERTIFICATE` block)".into());
    };
    let Some((not_before, not_after)) = tls::certificate_validity(&der) else {
        return Some("its certificate cannot be parsed as X.509".into());
    };
    if now > not_after {
        return Some("its certificate has expired".into());
    }
    if now < not_before {
        return Some("its certificate is not valid yet".into());
    }
    None
}

impl Analyzer for SecretAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.SecretAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let gws = gateways(ctx);
        if gws.is_empty() {
            return;
        }
        let w = GatewayWorkloads::new(ctx);
        let secrets: HashMap<(&str, &str), &SecretBody> = ctx
            .of(Kind::Secret)
            .filter_map(|o| match &o.body {
                Body::Secret(s) => Some(((o.namespace(), o.name()), s)),
                _ => None,
            })
            .collect();
        let now = tls::now_unix();
        let mut ns_cache: HashMap<
            &std::collections::BTreeMap<String, String>,
            Option<(&str, bool)>,
        > = HashMap::new();
        for (obj, gw) in gws {
            let found = *ns_cache.entry(&gw.selector).or_insert_with(|| {
                w.select(&gw.selector)
                    .first()
                    .map(|&i| (w.pods[i].namespace, w.pods[i].assumed))
            });
            let Some((ns, assumed)) = found else {
                out.push(no_workload(obj, gw));
                continue;
            };
            for (i, server) in gw.servers.iter().enumerate() {
                let Some(t) = &server.tls else { continue };
                let server_tls = FieldPath::root()
                    .key("spec")
                    .key("servers")
                    .index(i)
                    .key("tls");
                let names =
                    std::iter::once((server_tls.key("credentialName"), t.credential_name.as_str()))
                        .chain(t.credential_names.iter().enumerate().map(|(j, n)| {
                            (server_tls.key("credentialNames").index(j), n.as_str())
                        }));
                for (path, cn) in names {
                    if cn.is_empty() {
                        continue;
                    }
                    let reference = cn.strip_prefix("kubernetes://").unwrap_or(cn);
                    let (sns, sname) = reference.split_once('/').unwrap_or((ns, reference));
                    match secrets.get(&(sns, sname)) {
                        None => out.push(
                            finding(
                                obj,
                                "IST0101",
                                Severity::Error,
                                path,
                                format!(
                                    "Gateway {}/{}: credentialName `{cn}` refers to Secret {sns}/{sname}, which does not exist (credentials are read from the namespace of the gateway workload, {ns}{})",
                                    obj.namespace(),
                                    obj.name(),
                                    if assumed { ", where the default ingress gateway runs" } else { "" }
                                ),
                            )
                            .with_hint(format!(
                                "create the TLS Secret `{sname}` in namespace `{sns}` (kubectl create -n {sns} secret tls {sname} --cert=... --key=...), or fix the name"
                            )),
                        ),
                        Some(secret) => {
                            if let Some(problem) = secret_problem(secret, now) {
                                out.push(
                                    finding(
                                        obj,
                                        "IST0161",
                                        Severity::Error,
                                        path,
                                        format!(
                                            "Gateway {}/{}: credential Secret {sns}/{sname} is invalid: {problem}; the server's TLS will not work",
                                            obj.namespace(),
                                            obj.name()
                                        ),
                                    )
                                    .with_hint("store a current PEM certificate and its key under `tls.crt`/`tls.key` (kubectl create secret tls)"),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::traffic::test_util::{codes, run};

    fn gw(name: &str, cred: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [\"a.com\"]\n    tls: {{mode: SIMPLE, credentialName: {cred}}}\n---\n"
        )
    }

    const BAD: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: bad, namespace: istio-system}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: aHVzaCBodXNoIGh1c2gK\n  tls.key: c2VjcmV0IHNlY3JldAo=\n---\n";

    #[test]
    fn fires_for_missing_and_malformed_secrets() {
        let y = format!("{BAD}{}{}", gw("missing", "nope"), gw("malformed", "bad"));
        let d = run(&SecretAnalyzer, &y);
        assert_eq!(codes(&d), ["IST0101 missing", "IST0161 malformed"]);
        assert!(d.iter().any(|d| d.message.contains("istio-system/nope")));
        assert!(d.iter().any(|d| d.message.contains("not PEM")));
    }

    #[test]
    fn silent_without_credentials() {
        let y = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: plain}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"a.com\"]\n";
        assert!(run(&SecretAnalyzer, y).is_empty());
    }

    #[test]
    fn key_problems_are_named() {
        let s = SecretBody {
            data: [("tls.cert".to_string(), "aGk=".to_string())].into(),
            ..Default::default()
        };
        assert!(
            secret_problem(&s, 0)
                .unwrap()
                .contains("keys found: tls.cert")
        );
    }
}
