//! Istio's standard labels and the rules that fill them from a finished exchange
//! (`istio/proxy: istio_stats.cc`; shared/reference/istio-semantics.md §2).
//!
//! Values are borrowed from the record wherever they can be: a request that lands in an
//! existing series allocates nothing here.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use crate::telemetry::peer::UNKNOWN;
use crate::telemetry::{HttpRecord, PeerMeta, TcpRecord, UpstreamInfo};

/// The 25 labels of the HTTP metrics, in the order Istio's filter writes them.
pub const HTTP_LABELS: [&str; 25] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
];

/// The TCP metrics carry the same labels without `response_code` and
/// `grpc_response_status`.
pub const TCP_LABELS: [&str; 23] = [
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_flags",
    "connection_security_policy",
];

/// Cluster names that are their own `destination_service_name` (no service behind them).
const SPECIAL_CLUSTERS: [&str; 4] = [
    "PassthroughCluster",
    "BlackHoleCluster",
    "InboundPassthroughClusterIpv4",
    "InboundPassthroughClusterIpv6",
];

/// A workload as the labels see it: each field borrowed, empty when not known.
#[derive(Debug, Clone, Copy, Default)]
struct Workload<'a> {
    workload: &'a str,
    namespace: &'a str,
    app: &'a str,
    version: &'a str,
    canonical_service: &'a str,
    canonical_revision: &'a str,
    cluster: &'a str,
}

impl<'a> Workload<'a> {
    fn of(meta: &'a PeerMeta) -> Workload<'a> {
        Workload {
            workload: &meta.workload,
            namespace: &meta.namespace,
            app: &meta.app,
            version: &meta.version,
            canonical_service: &meta.canonical_service,
            canonical_revision: &meta.canonical_revision,
            cluster: &meta.cluster,
        }
    }

    /// What an endpoint's labels say when its proxy sent no metadata (the rules of
    /// [`PeerMeta::from_labels`], without copying).
    fn of_labels(labels: &'a BTreeMap<String, String>) -> Workload<'a> {
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.get(*k))
                .map_or("", String::as_str)
        };
        let app = get(&["app", "app.kubernetes.io/name"]);
        let version = get(&["version", "app.kubernetes.io/version"]);
        let canonical_service = match get(&["service.istio.io/canonical-name"]) {
            "" => app,
            c => c,
        };
        let canonical_revision = match get(&["service.istio.io/canonical-revision"]) {
            "" => version,
            r => r,
        };
        Workload {
            app,
            version,
            canonical_service,
            canonical_revision,
            ..Workload::default()
        }
    }
}

fn known(value: &str) -> &str {
    if value.is_empty() { UNKNOWN } else { value }
}

/// The side-independent facts both HTTP and TCP labels are made of.
struct Ends<'a> {
    client_side: bool,
    source: Workload<'a>,
    destination: Workload<'a>,
    source_principal: &'a str,
    destination_principal: &'a str,
    security: &'static str,
    service: Option<&'a str>,
    cluster: &'a str,
}

impl<'a> Ends<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        client_side: bool,
        local: &'a PeerMeta,
        downstream_peer: Option<&'a PeerMeta>,
        upstream: Option<&'a UpstreamInfo>,
        peer_identity: Option<&'a str>,
        local_identity: Option<&'a str>,
        authority: &'a str,
    ) -> Ends<'a> {
        let upstream_workload = || match upstream {
            Some(UpstreamInfo {
                peer: Some(peer), ..
            }) => Workload::of(peer),
            Some(UpstreamInfo {
                labels: Some(labels),
                ..
            }) => Workload::of_labels(labels),
            _ => Workload::default(),
        };
        let (source, destination, source_principal, destination_principal, security) =
            if client_side {
                // Istio's client side reports the policy as unknown: it cannot tell what
                // the server enforced.
                (
                    Workload::of(local),
                    upstream_workload(),
                    local_identity.unwrap_or(""),
                    upstream.and_then(|u| u.identity.as_deref()).unwrap_or(""),
                    "unknown",
                )
            } else {
                let mutual = peer_identity.is_some() && local_identity.is_some();
                (
                    downstream_peer.map(Workload::of).unwrap_or_default(),
                    Workload::of(local),
                    peer_identity.unwrap_or(""),
                    local_identity.unwrap_or(""),
                    if mutual { "mutual_tls" } else { "none" },
                )
            };
        let host = authority_host(authority);
        let service = upstream
            .and_then(|u| u.service.as_deref())
            .filter(|s| !s.is_empty())
            .or((!host.is_empty()).then_some(host));
        Ends {
            client_side,
            source,
            destination,
            source_principal,
            destination_principal,
            security,
            service,
            cluster: upstream.map_or("", |u| &u.cluster),
        }
    }

    /// Writes the 20 peer labels (`reporter` .. `destination_cluster`) into `out`.
    fn write(&self, out: &mut [Cow<'a, str>]) {
        let (s, d) = (&self.source, &self.destination);
        let fields = [
            if self.client_side {
                "source"
            } else {
                "destination"
            },
            known(s.workload),
            known(s.canonical_service),
            revision(s.canonical_revision),
            known(s.namespace),
            known(self.source_principal),
            known(s.app),
            known(s.version),
            known(s.cluster),
            known(d.workload),
            known(d.namespace),
            known(self.destination_principal),
            known(d.app),
            known(d.version),
            known(self.service.unwrap_or("")),
            known(d.canonical_service),
            revision(d.canonical_revision),
            known(self.service_name()),
            known(self.service_namespace()),
            known(d.cluster),
        ];
        for (slot, value) in out.iter_mut().zip(fields) {
            *slot = Cow::Borrowed(value);
        }
    }

    /// The short name: the first label of the service host, or the special cluster's
    /// name for traffic that has no service.
    fn service_name(&self) -> &'a str {
        if let Some(special) = SPECIAL_CLUSTERS.iter().find(|c| **c == self.cluster) {
            return special;
        }
        self.service
            .map_or("", |s| s.split('.').next().unwrap_or(s))
    }

    /// `<name>.<ns>.svc...` gives `<ns>`; anything else the destination workload's
    /// namespace.
    fn service_namespace(&self) -> &'a str {
        if let Some(service) = self.service {
            let mut parts = service.split('.');
            if let (Some(_), Some(ns), Some("svc")) = (parts.next(), parts.next(), parts.next()) {
                return ns;
            }
        }
        self.destination.namespace
    }
}

/// A missing canonical revision is `latest` (Istio's default), also for unknown peers.
fn revision(value: &str) -> &str {
    if value.is_empty() { "latest" } else { value }
}

/// `host` of `host:port`, `[v6]:port`; lower-case is left to the client (Istio keeps
/// the Host header as sent).
fn authority_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// `0` ..= `999` as static strings (HTTP status codes and gRPC codes), so the common
/// values need no allocation.
static NUMBERS: LazyLock<Vec<String>> =
    LazyLock::new(|| (0..1000).map(|n| n.to_string()).collect());

fn number(n: u32) -> Cow<'static, str> {
    match NUMBERS.get(n as usize) {
        Some(s) => Cow::Borrowed(s.as_str()),
        None => Cow::Owned(n.to_string()),
    }
}

/// Envoy's HTTP status → gRPC status mapping (`Grpc::Utility::httpToGrpcStatus`), used
/// when a gRPC response carries no `grpc-status` (a proxy-generated error, a reset).
fn http_to_grpc(code: u16) -> u32 {
    match code {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    }
}

/// The identity this proxy presented: on the client side, the one of its mTLS connection
/// upstream (the downstream connection is the app's plaintext one); on the server side,
/// the one of the downstream connection.
fn local_identity<'a>(
    client_side: bool,
    upstream: Option<&'a crate::telemetry::UpstreamInfo>,
    conn: &'a crate::ConnInfo,
) -> Option<&'a str> {
    match upstream.and_then(|u| u.local_identity.as_deref()) {
        Some(id) if client_side => Some(id),
        _ => conn.local_identity.as_deref(),
    }
}

/// The standard label values of one HTTP exchange, in [`HTTP_LABELS`] order.
pub fn http_values<'a>(rec: &'a HttpRecord<'_>) -> [Cow<'a, str>; 25] {
    let mut out: [Cow<'a, str>; 25] = Default::default();
    let ends = Ends::new(
        rec.client_side,
        rec.local,
        rec.downstream_peer,
        rec.upstream,
        rec.conn.peer_identity.as_deref(),
        local_identity(rec.client_side, rec.upstream, rec.conn),
        rec.authority,
    );
    ends.write(&mut out[..20]);
    out[20] = Cow::Borrowed(if rec.grpc { "grpc" } else { "http" });
    out[21] = number(u32::from(rec.response_code));
    out[22] = match (rec.grpc, rec.grpc_status) {
        (false, _) => Cow::Borrowed(""),
        (true, Some(status)) => number(status),
        (true, None) if rec.response_code == 0 => Cow::Borrowed(""),
        (true, None) => number(http_to_grpc(rec.response_code)),
    };
    out[23] = Cow::Borrowed(flags(rec.flags));
    out[24] = Cow::Borrowed(ends.security);
    out
}

/// The standard label values of one TCP event, in [`TCP_LABELS`] order.
pub fn tcp_values<'a>(rec: &'a TcpRecord<'_>) -> [Cow<'a, str>; 23] {
    let mut out: [Cow<'a, str>; 23] = Default::default();
    let ends = Ends::new(
        rec.client_side,
        rec.local,
        rec.downstream_peer,
        rec.upstream,
        rec.conn.peer_identity.as_deref(),
        local_identity(rec.client_side, rec.upstream, rec.conn),
        "",
    );
    ends.write(&mut out[..20]);
    out[20] = Cow::Borrowed("tcp");
    out[21] = Cow::Borrowed(flags(rec.flags));
    out[22] = Cow::Borrowed(ends.security);
    out
}

fn flags(flags: &str) -> &str {
    if flags.is_empty() { "-" } else { flags }
}

#[cfg(test)]
#[path = "labels_tests.rs"]
mod tests;
