//! ServiceEntry analyzers: TCP ports without addresses (IST0134) and ServiceEntries that
//! give the same host and port different protocols where both are visible (IST0177).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::analyze::{Analyzer, Context, finding};
use crate::diag::{Diagnostic, Severity};
use crate::kinds::istio::ServiceEntry;
use crate::kinds::{Body, Kind};
use crate::object::Object;
use crate::path::FieldPath;

fn service_entries<'a>(ctx: &Context<'a>) -> Vec<(&'a Object, &'a ServiceEntry)> {
    ctx.of(Kind::ServiceEntry)
        .filter_map(|o| match &o.body {
            Body::ServiceEntry(s) => Some((o, s)),
            _ => None,
        })
        .collect()
}

/// Whether proxies get automatic VIPs for ServiceEntries (DNS capture plus auto-allocation
/// in the mesh's default proxy metadata).
fn dns_auto_allocation(ctx: &Context<'_>) -> bool {
    let Some(md) = ctx.mesh.proxy_metadata() else {
        return false;
    };
    let on = |k: &str| md.get(k).is_some_and(|v| v == "true");
    on("ISTIO_META_DNS_CAPTURE")
        && (on("ISTIO_META_DNS_AUTO_ALLOCATE") || on("PILOT_ENABLE_IP_AUTOALLOCATE"))
}

/// Whether istiod already allocated addresses (`status.addresses`).
fn has_allocated_addresses(obj: &Object) -> bool {
    obj.node
        .get("status")
        .and_then(|s| s.get("addresses"))
        .is_some_and(|a| matches!(&a.value, crate::yaml::Value::Seq(items) if !items.is_empty()))
}

/// `serviceentry.ProtocolAddressesAnalyzer`: a TCP (or protocol-less) port of a
/// ServiceEntry without `addresses` makes the sidecar capture that port for every IP.
pub struct ProtocolAddressesAnalyzer;

impl Analyzer for ProtocolAddressesAnalyzer {
    fn name(&self) -> &'static str {
        "serviceentry.ProtocolAddressesAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        if dns_auto_allocation(ctx) {
            return;
        }
        for (obj, se) in service_entries(ctx) {
            if !se.addresses.is_empty() || has_allocated_addresses(obj) {
                continue;
            }
            for (i, p) in se.ports.iter().enumerate() {
                if !(p.protocol.is_empty() || p.protocol.eq_ignore_ascii_case("TCP")) {
                    continue;
                }
                let proto = if p.protocol.is_empty() {
                    "no protocol (so TCP)".to_string()
                } else {
                    format!("protocol {}", p.protocol)
                };
                out.push(
                    finding(
                        obj,
                        "IST0134",
                        Severity::Warning,
                        FieldPath::root().key("spec").key("ports").index(i),
                        format!(
                            "ServiceEntry {}/{}: port {} has {proto} and the entry has no `addresses`, so sidecars match port {} for every destination IP",
                            obj.namespace(),
                            obj.name(),
                            p.number,
                            p.number
                        ),
                    )
                    .with_hint("add the service's VIPs under `spec.addresses`, set an application protocol (e.g. HTTP, TLS) on the port, or enable DNS auto-allocation (proxyMetadata ISTIO_META_DNS_CAPTURE and ISTIO_META_DNS_AUTO_ALLOCATE)"),
                );
            }
        }
    }
}

/// The namespaces a ServiceEntry is visible in; `*` for all.
fn export_scopes<'a>(export_to: &'a [String], ns: &'a str) -> BTreeSet<&'a str> {
    if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
        return BTreeSet::from(["*"]);
    }
    export_to
        .iter()
        .map(|e| if e == "." { ns } else { e.as_str() })
        .collect()
}

/// (visibility scope, host, port).
type ScopedPort<'a> = (&'a str, &'a str, u32);

/// `serviceentry.ConflictingServiceEntryProtocolAnalyzer`: ServiceEntries visible in the
/// same namespace that define the same host and port with different protocols.
pub struct ConflictingServiceEntryProtocolAnalyzer;

impl Analyzer for ConflictingServiceEntryProtocolAnalyzer {
    fn name(&self) -> &'static str {
        "serviceentry.ConflictingServiceEntryProtocolAnalyzer"
    }

    fn analyze(&self, ctx: &Context<'_>, out: &mut Vec<Diagnostic>) {
        let ses = service_entries(ctx);
        // (scope, host, port) -> (protocol, service entry)
        let mut index: BTreeMap<ScopedPort<'_>, Vec<(String, usize)>> = BTreeMap::new();
        for (si, (obj, se)) in ses.iter().enumerate() {
            for scope in export_scopes(&se.export_to, obj.namespace()) {
                for h in &se.hosts {
                    for p in se.ports.iter().filter(|p| !p.protocol.is_empty()) {
                        index
                            .entry((scope, h.as_str(), p.number))
                            .or_default()
                            .push((p.protocol.to_ascii_uppercase(), si));
                    }
                }
            }
        }
        let mut reported = HashSet::new();
        for (&(scope, host, port), entries) in &index {
            let star = if scope == "*" {
                None
            } else {
                index.get(&("*", host, port))
            };
            let all: Vec<&(String, usize)> =
                entries.iter().chain(star.into_iter().flatten()).collect();
            let protocols: BTreeSet<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
            if protocols.len() < 2 {
                continue;
            }
            let members: BTreeSet<usize> = all.iter().map(|(_, si)| *si).collect();
            let names: BTreeSet<String> = members
                .iter()
                .map(|&si| format!("{}/{}", ses[si].0.namespace(), ses[si].0.name()))
                .collect();
            let names = names.into_iter().collect::<Vec<_>>().join(", ");
            let protocols = protocols.into_iter().collect::<Vec<_>>().join(", ");
            for si in members {
                if !reported.insert(si) {
                    continue;
                }
                let obj = ses[si].0;
                out.push(
                    finding(
                        obj,
                        "IST0177",
                        Severity::Warning,
                        FieldPath::root().key("metadata").key("name"),
                        format!(
                            "ServiceEntries {names} define host {host} port {port} with conflicting protocols ({protocols}); proxies pick one of them arbitrarily"
                        ),
                    )
                    .with_hint("use one protocol for this host and port in every ServiceEntry, or limit their visibility with non-overlapping `exportTo`"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::traffic::test_util::{codes, run};

    fn se(name: &str, ns: &str, proto: &str, extra: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [ext.example.com]\n  ports: [{{number: 9000, name: p, protocol: {proto}}}]\n  resolution: DNS\n{extra}---\n"
        )
    }

    #[test]
    fn addresses_fires_for_tcp_without_addresses() {
        let d = run(&ProtocolAddressesAnalyzer, &se("tcp", "default", "TCP", ""));
        assert_eq!(codes(&d), ["IST0134 tcp"]);
        assert!(d[0].message.contains("port 9000"));
    }

    #[test]
    fn addresses_silent_with_addresses_or_http() {
        let y = format!(
            "{}{}",
            se("a", "default", "TCP", "  addresses: [10.0.0.1]\n"),
            se("h", "default", "HTTP", "")
        );
        assert!(run(&ProtocolAddressesAnalyzer, &y).is_empty());
    }

    #[test]
    fn conflicting_protocol_fires_when_visible_together() {
        let y = format!(
            "{}{}",
            se("a", "ns1", "HTTP", ""),
            se("b", "ns2", "TLS", "  exportTo: [\".\"]\n")
        );
        let d = run(&ConflictingServiceEntryProtocolAnalyzer, &y);
        assert_eq!(codes(&d), ["IST0177 a", "IST0177 b"]);
        assert!(d[0].message.contains("HTTP, TLS"));
    }

    #[test]
    fn conflicting_protocol_silent_for_same_protocol_or_disjoint_scopes() {
        let y = format!(
            "{}{}{}",
            se("a", "ns1", "HTTP", "  exportTo: [\".\"]\n"),
            se("b", "ns2", "TLS", "  exportTo: [\".\"]\n"),
            se("c", "ns1", "http", "  exportTo: [ns1]\n")
        );
        assert!(run(&ConflictingServiceEntryProtocolAnalyzer, &y).is_empty());
    }
}
