//! `destinationrule.CaCertificateAnalyzer`: DestinationRules originating TLS (SIMPLE or
//! MUTUAL) without a CA to verify the server's certificate, at the top level or in a
//! subset (IST0128) or per port (IST0129). A `credentialName` supplies the CA only on
//! gateways or for rules with a `workloadSelector`.

use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::istio::{ClientTLSMode, ClientTLSSettings, PolicyRef};
use crate::kinds::{Body, Kind};

pub struct CaCertificateAnalyzer;

fn mode_name(m: ClientTLSMode) -> &'static str {
    match m {
        ClientTLSMode::Simple => "SIMPLE",
        ClientTLSMode::Mutual => "MUTUAL",
        ClientTLSMode::IstioMutual => "ISTIO_MUTUAL",
        ClientTLSMode::Disable => "DISABLE",
    }
}

/// Whether `tls` originates TLS without any way to verify the server.
fn unverified(tls: &ClientTLSSettings, has_selector: bool) -> bool {
    let mode = tls.mode();
    if !matches!(mode, ClientTLSMode::Simple | ClientTLSMode::Mutual) {
        return false;
    }
    if !tls.ca_certificates.is_empty() || tls.insecure_skip_verify == Some(true) {
        return false;
    }
    // A credentialName supplies the CA only for rules with a workloadSelector.
    !has_selector || tls.credential_name.is_empty()
}

impl Analyzer for CaCertificateAnalyzer {
    fn name(&self) -> &'static str {
        "destinationrule.CaCertificateAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        for obj in ctx.of(Kind::DestinationRule) {
            let Body::DestinationRule(dr) = &obj.body else {
                continue;
            };
            let has_selector = dr
                .workload_selector
                .as_ref()
                .is_some_and(|s| !s.match_labels.is_empty());
            for (path, policy) in dr.all_policies() {
                let Some(tls) = policy.tls() else { continue };
                if !unverified(tls, has_selector) {
                    continue;
                }
                let mode = mode_name(tls.mode());
                let hint = if !tls.credential_name.is_empty() {
                    format!(
                        "`credentialName: {}` only provides certificates on gateways or with a `workloadSelector`; add `caCertificates` (a CA bundle path), or a `workloadSelector`",
                        tls.credential_name
                    )
                } else {
                    "set `caCertificates` to the CA bundle that signed the server's certificate (or `credentialName` with a `workloadSelector`)".to_string()
                };
                let tls_path = path.key("tls");
                let d = match policy {
                    PolicyRef::Port(p) => {
                        let port = p
                            .port
                            .as_ref()
                            .and_then(|s| s.number)
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "?".into());
                        finding(
                            obj,
                            "IST0129",
                            Severity::Warning,
                            tls_path,
                            format!(
                                "TLS mode {mode} for port {port} of host `{}` has no CA certificate: the server's certificate is not verified, so connections are open to impersonation",
                                dr.host
                            ),
                        )
                    }
                    PolicyRef::Top(_) => finding(
                        obj,
                        "IST0128",
                        Severity::Warning,
                        tls_path,
                        format!(
                            "TLS mode {mode} for host `{}` has no CA certificate: the server's certificate is not verified, so connections are open to impersonation",
                            dr.host
                        ),
                    ),
                };
                out.push(d.with_hint(hint));
            }
        }
    }
}

#[cfg(test)]
mod tests {

    fn run(yaml: &str) -> Vec<crate::Diagnostic> {
        crate::testing::run_named("destinationrule.CaCertificateAnalyzer", yaml)
    }

    const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db, namespace: default}\nspec:\n  host: db.example.com\n  trafficPolicy:\n    tls: {mode: SIMPLE}\n    portLevelSettings:\n    - port: {number: 443}\n      tls: {mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}\n";

    #[test]
    fn missing_ca_is_reported_per_level() {
        let got = run(DR);
        let mut codes: Vec<&str> = got.iter().map(|d| d.code).collect();
        codes.sort();
        assert_eq!(codes, ["IST0128", "IST0129"], "{got:?}");
        let port = got.iter().find(|d| d.code == "IST0129").unwrap();
        assert!(port.message.contains("port 443") && port.message.contains("MUTUAL"));
    }

    #[test]
    fn ca_or_skip_verify_silences() {
        let yaml = DR
            .replace(
                "tls: {mode: SIMPLE}",
                "tls: {mode: SIMPLE, insecureSkipVerify: true}",
            )
            .replace(
                "privateKey: /k.pem",
                "privateKey: /k.pem, caCertificates: /ca.pem",
            );
        assert!(run(&yaml).is_empty());
    }
}
