//! Istio Gateway analyzers: the selected workload and its Service ports (IST0101, IST0162),
//! Gateways that claim the same port and host on the same workload (IST0145), and a
//! certificate shared by several Gateways on the same workload (IST0138).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::workloads::GatewayWorkloads;
use super::{is_subset, selector_text};
use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::istio::Gateway;
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

/// The Gateways of the context, in load order.
pub(super) fn gateways<'a>(ctx: &Context<'a>) -> Vec<(&'a Object, &'a Gateway)> {
    ctx.of(Kind::Gateway)
        .filter_map(|o| match &o.body {
            Body::Gateway(g) => Some((o, g)),
            _ => None,
        })
        .collect()
}

/// IST0101 for a Gateway whose selector matches no workload.
pub(super) fn no_workload(obj: &Object, gw: &Gateway) -> Diagnostic {
    let sel = selector_text(&gw.selector);
    finding(
        obj,
        "IST0101",
        Severity::Error,
        FieldPath::root().key("spec").key("selector"),
        format!(
            "Gateway {}/{}: no workload matches selector `{sel}`; the Gateway configures no proxy",
            obj.namespace(),
            obj.name()
        ),
    )
    .with_hint("set `spec.selector` to the labels of the gateway deployment's pods (e.g. `istio: ingressgateway`), or deploy a gateway with these labels")
}

fn server_path(i: usize) -> FieldPath {
    FieldPath::root().key("spec").key("servers").index(i)
}

/// `gateway.IngressGatewayPortAnalyzer`: a Gateway must select at least one workload, and
/// every server port must be exposed (as port or target port) by a Service in front of it.
pub struct IngressGatewayPortAnalyzer;

impl Analyzer for IngressGatewayPortAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.IngressGatewayPortAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let gws = gateways(ctx);
        if gws.is_empty() {
            return;
        }
        let w = GatewayWorkloads::new(ctx);
        // Selector -> exposed ports of every pod it selects (None: selects nothing).
        let mut cache: HashMap<&BTreeMap<String, String>, Option<BTreeSet<u32>>> = HashMap::new();
        for (obj, gw) in gws {
            let ports = cache.entry(&gw.selector).or_insert_with(|| {
                let pods = w.select(&gw.selector);
                (!pods.is_empty())
                    .then(|| pods.into_iter().flat_map(|i| w.exposed_ports(i)).collect())
            });
            let Some(ports) = ports else {
                out.push(no_workload(obj, gw));
                continue;
            };
            for (i, server) in gw.servers.iter().enumerate() {
                let Some(port) = &server.port else { continue };
                if ports.contains(&port.number) {
                    continue;
                }
                let exposed = if ports.is_empty() {
                    "none".to_string()
                } else {
                    ports
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                out.push(
                    finding(
                        obj,
                        "IST0162",
                        Severity::Warning,
                        server_path(i).key("port").key("number"),
                        format!(
                            "Gateway {}/{} listens on port {}, but no Service selecting its workload (selector `{}`) exposes that port (exposed: {exposed}); clients going through the gateway Service cannot reach this server",
                            obj.namespace(),
                            obj.name(),
                            port.number,
                            selector_text(&gw.selector)
                        ),
                    )
                    .with_hint(format!(
                        "add port {} (as `port` or `targetPort`) to the gateway's Service, or use a port the Service already exposes",
                        port.number
                    )),
                );
            }
        }
    }
}

/// `gateway.ConflictingGatewayAnalyzer`: two Gateways on the same workload (same selector,
/// or selectors that match a common pod) must not both define the same host on the same
/// port and bind address.
pub struct ConflictingGatewayAnalyzer;

impl Analyzer for ConflictingGatewayAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.ConflictingGatewayAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let gws = gateways(ctx);
        if gws.len() < 2 {
            return;
        }
        // Distinct selectors, and which pairs of them share a pod.
        let mut sel_id: HashMap<&BTreeMap<String, String>, usize> = HashMap::new();
        let gw_sel: Vec<usize> = gws
            .iter()
            .map(|(_, g)| {
                let n = sel_id.len();
                *sel_id.entry(&g.selector).or_insert(n)
            })
            .collect();
        let w = GatewayWorkloads::new(ctx);
        let mut pod_sels: HashMap<usize, Vec<usize>> = HashMap::new();
        for (sel, &id) in &sel_id {
            for p in w.select(sel) {
                pod_sels.entry(p).or_default().push(id);
            }
        }
        let mut overlaps: HashMap<usize, BTreeSet<usize>> = HashMap::new();
        for ids in pod_sels.values() {
            for &a in ids {
                for &b in ids {
                    if a != b {
                        overlaps.entry(a).or_default().insert(b);
                    }
                }
            }
        }
        // (selector, port, host, bind) -> gateways defining it.
        let mut index: HashMap<(usize, u32, &str, &str), Vec<usize>> = HashMap::new();
        for (gi, (_, g)) in gws.iter().enumerate() {
            for s in &g.servers {
                let Some(port) = &s.port else { continue };
                for h in &s.hosts {
                    let list = index
                        .entry((gw_sel[gi], port.number, h.as_str(), s.bind.as_str()))
                        .or_default();
                    if list.last() != Some(&gi) {
                        list.push(gi);
                    }
                }
            }
        }
        for (gi, (obj, g)) in gws.iter().enumerate() {
            let own = gw_sel[gi];
            let cands: Vec<usize> = std::iter::once(own)
                .chain(overlaps.get(&own).into_iter().flatten().copied())
                .collect();
            for (si, s) in g.servers.iter().enumerate() {
                let Some(port) = &s.port else { continue };
                let mut others = BTreeSet::new();
                for h in &s.hosts {
                    for &c in &cands {
                        for &o in index
                            .get(&(c, port.number, h.as_str(), s.bind.as_str()))
                            .into_iter()
                            .flatten()
                        {
                            if o != gi {
                                let (oo, _) = gws[o];
                                others.insert(format!("{}/{}", oo.namespace(), oo.name()));
                            }
                        }
                    }
                }
                if others.is_empty() {
                    continue;
                }
                let others = others.into_iter().collect::<Vec<_>>().join(", ");
                out.push(
                    finding(
                        obj,
                        "IST0145",
                        Severity::Error,
                        server_path(si),
                        format!(
                            "Gateway {}/{} conflicts with {others}: same workload (selector `{}`), port {} and hosts [{}]; only one of them takes effect",
                            obj.namespace(),
                            obj.name(),
                            selector_text(&g.selector),
                            port.number,
                            s.hosts.join(", ")
                        ),
                    )
                    .with_hint("merge the servers into one Gateway, or give them different hosts or ports"),
                );
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum CertKey<'a> {
    Credential(&'a str),
    Files(&'a str, &'a str),
}

fn cert_keys(g: &Gateway) -> Vec<CertKey<'_>> {
    let mut keys = Vec::new();
    for s in &g.servers {
        let Some(tls) = &s.tls else { continue };
        if !tls.credential_name.is_empty() {
            keys.push(CertKey::Credential(&tls.credential_name));
        } else if !tls.server_certificate.is_empty() && !tls.private_key.is_empty() {
            keys.push(CertKey::Files(&tls.server_certificate, &tls.private_key));
        }
    }
    keys
}

/// `gateway.CertificateAnalyzer`: the same certificate on Gateways that serve the same
/// workload lets HTTP/2 clients reuse a connection across hosts and get 404s. A Gateway is
/// reported when another one selects (at least) the pods it selects and uses one of its
/// certificates.
pub struct CertificateAnalyzer;

impl Analyzer for CertificateAnalyzer {
    fn name(&self) -> &'static str {
        "gateway.CertificateAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let gws = gateways(ctx);
        let keys: Vec<Vec<CertKey<'_>>> = gws.iter().map(|(_, g)| cert_keys(g)).collect();
        let mut by_cert: HashMap<CertKey<'_>, Vec<usize>> = HashMap::new();
        for (gi, ks) in keys.iter().enumerate() {
            for k in ks {
                let list = by_cert.entry(*k).or_default();
                if list.last() != Some(&gi) {
                    list.push(gi);
                }
            }
        }
        for (gi, (obj, g)) in gws.iter().enumerate() {
            let mut others = BTreeSet::new();
            let mut seen = HashSet::new();
            for k in &keys[gi] {
                for &o in &by_cert[k] {
                    if o != gi && seen.insert(o) && is_subset(&g.selector, &gws[o].1.selector) {
                        others.insert(format!("{}/{}", gws[o].0.namespace(), gws[o].0.name()));
                    }
                }
            }
            if others.is_empty() {
                continue;
            }
            let others = others.into_iter().collect::<Vec<_>>().join(", ");
            out.push(
                finding(
                    obj,
                    "IST0138",
                    Severity::Warning,
                    FieldPath::root().key("metadata").key("name"),
                    format!(
                        "Gateway {}/{} uses the same certificate as {others} on the same gateway workload: HTTP/2 clients may reuse a connection across their hosts and get 404s",
                        obj.namespace(),
                        obj.name()
                    ),
                )
                .with_hint("give each Gateway its own certificate, or merge the servers into one Gateway"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::traffic::test_util::{codes, run};

    fn gw(name: &str, selector: &str, port: u32, host: &str, tls: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n  selector: {selector}\n  servers:\n  - port: {{number: {port}, name: p{port}, protocol: HTTPS}}\n    hosts: [\"{host}\"]\n{tls}---\n"
        )
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: gw-1, namespace: gw, labels: {app: gw, tier: edge}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: gw, namespace: gw}\nspec:\n  selector: {app: gw}\n  ports: [{port: 443, targetPort: 8443}]\n---\n";

    #[test]
    fn port_analyzer_fires_for_unexposed_port_and_missing_workload() {
        let y = format!(
            "{POD}{}{}",
            gw("a", "{app: gw}", 9443, "a.com", ""),
            gw("b", "{app: nope}", 443, "b.com", "")
        );
        let d = run(&IngressGatewayPortAnalyzer, &y);
        assert_eq!(codes(&d), ["IST0101 b", "IST0162 a"]);
        assert!(
            d.iter()
                .any(|d| d.message.contains("port 9443") && d.message.contains("443, 8443"))
        );
    }

    #[test]
    fn port_analyzer_silent_for_port_or_target_port() {
        let y = format!(
            "{POD}{}{}",
            gw("a", "{app: gw}", 443, "a.com", ""),
            gw("b", "{tier: edge}", 8443, "b.com", "")
        );
        assert!(run(&IngressGatewayPortAnalyzer, &y).is_empty());
    }

    #[test]
    fn conflicting_fires_for_overlapping_selectors() {
        let y = format!(
            "{POD}{}{}",
            gw("a", "{app: gw}", 443, "x.com", ""),
            gw("b", "{tier: edge}", 443, "x.com", "")
        );
        let d = run(&ConflictingGatewayAnalyzer, &y);
        assert_eq!(codes(&d), ["IST0145 a", "IST0145 b"]);
        assert!(d[0].message.contains("gw/b") || d[0].message.contains("default/b"));
    }

    #[test]
    fn conflicting_silent_for_other_host_or_disjoint_workloads() {
        let y = format!(
            "{POD}{}{}{}",
            gw("a", "{app: gw}", 443, "x.com", ""),
            gw("b", "{app: gw}", 443, "y.com", ""),
            gw("c", "{app: other}", 443, "x.com", "")
        );
        assert!(run(&ConflictingGatewayAnalyzer, &y).is_empty());
    }

    #[test]
    fn certificate_fires_only_for_the_gateway_with_the_narrower_selector() {
        let tls = "    tls: {mode: SIMPLE, credentialName: shared}\n";
        let y = format!(
            "{}{}",
            gw("wide", "{app: gw}", 443, "a.com", tls),
            gw("narrow", "{app: gw, tier: edge}", 443, "b.com", tls)
        );
        let d = run(&CertificateAnalyzer, &y);
        assert_eq!(codes(&d), ["IST0138 wide"]);
        assert!(d[0].message.contains("default/narrow"));
    }

    #[test]
    fn certificate_silent_for_distinct_certificates() {
        let y = format!(
            "{}{}",
            gw(
                "a",
                "{app: gw}",
                443,
                "a.com",
                "    tls: {mode: SIMPLE, credentialName: one}\n"
            ),
            gw(
                "b",
                "{app: gw}",
                443,
                "b.com",
                "    tls: {mode: SIMPLE, credentialName: two}\n"
            )
        );
        assert!(run(&CertificateAnalyzer, &y).is_empty());
    }
}
