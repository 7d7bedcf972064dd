//! A finished span in exporter-neutral form, and the tags Envoy and Istio put on the span
//! of one proxied HTTP request.
//!
//! Span name: `<destination host>:<port>/*`, Istio's route decorator for sidecars and
//! gateways. The host is the service the cluster reaches (`cart.shop.svc.cluster.local`),
//! else the request authority without its port; the port is the cluster's service port
//! (`outbound|3002|v1|...`), else the authority's, else the port the client dialled.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::SystemTime;

use http::{HeaderMap, HeaderName, Version};

use crate::telemetry::{HttpRecord, PeerMeta, SpanHandle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// The proxy calls out: outbound sidecar listeners and gateways (Envoy's egress
    /// tracing direction, which Istio also uses for gateways).
    Client,
    /// The proxy receives for its workload: inbound listeners.
    Server,
}

/// One span, ready for any exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub tags: Vec<(Cow<'static, str>, String)>,
    /// 5xx, no response, or a proxy-generated error.
    pub error: bool,
    /// The span status message on errors (the weft error code, else `HTTP <code>`).
    pub error_message: Option<String>,
    /// This proxy's address (Zipkin `localEndpoint`).
    pub local: Option<SocketAddr>,
    /// The other side: the upstream endpoint (client spans) or the caller (server spans).
    pub remote: Option<SocketAddr>,
}

impl FinishedSpan {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The span-building parts of a tracing config, resolved once when the config is applied.
#[derive(Debug, Clone, Default)]
pub struct SpanConfig {
    /// `node_id` tag.
    pub node_id: String,
    /// `istio.mesh_id` (Istio's default mesh id is the trust domain).
    pub mesh_id: String,
    /// This proxy's workload (`istio.canonical_service`, ...).
    pub local: PeerMeta,
    pub istio_tags: bool,
    /// Tag values are cut to this many bytes (at a character boundary).
    pub max_tag_length: usize,
    /// Literal and environment custom tags, their values already known.
    pub fixed_tags: Vec<(String, String)>,
    /// Request-header custom tags: tag name, header, default when absent.
    pub header_tags: Vec<(String, HeaderName, Option<String>)>,
}

const USER_AGENT_TAG: &str = "user_agent";

impl SpanConfig {
    /// The tags that must be read when the request starts (the headers the upstream sees
    /// may differ, and the request path keeps no copy of them by default): `user_agent`
    /// and request-header custom tags.
    pub fn request_tags(&self, headers: &HeaderMap) -> Vec<(String, String)> {
        let mut tags = Vec::with_capacity(1 + self.header_tags.len());
        let ua = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tags.push((USER_AGENT_TAG.to_string(), ua.to_string()));
        for (tag, header, default) in &self.header_tags {
            let value = headers
                .get(header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| default.clone());
            if let Some(value) = value {
                tags.push((tag.clone(), value));
            }
        }
        tags
    }

    /// The span for `handle`, finished with what `rec` says about the exchange.
    pub fn build(&self, handle: SpanHandle, rec: &HttpRecord<'_>) -> FinishedSpan {
        let kind = if rec.client_side {
            SpanKind::Client
        } else {
            SpanKind::Server
        };
        let error = rec.response_code == 0 || rec.response_code >= 500 || rec.error_code.is_some();
        let mut tags: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(32);
        let mut put = |k: &'static str, v: String| tags.push((Cow::Borrowed(k), v));
        put("component", "proxy".into());
        put("node_id", self.node_id.clone());
        if let Some(id) = rec.request_id {
            put("guid:x-request-id", id.to_string());
        }
        put(
            "http.url",
            format!("{}://{}{}", rec.scheme, rec.authority, rec.path),
        );
        put("http.method", rec.method.as_str().to_string());
        put("http.protocol", protocol(rec.version).into());
        put("downstream_cluster", "-".into());
        put("request_size", rec.request_bytes.to_string());
        put("response_size", rec.response_bytes.to_string());
        put("http.status_code", rec.response_code.to_string());
        put(
            "response_flags",
            if rec.flags.is_empty() { "-" } else { rec.flags }.to_string(),
        );
        if let Some(up) = rec.upstream {
            put("upstream_cluster", up.cluster.to_string());
            put("upstream_cluster.name", up.cluster.to_string());
            if let Some(host) = up.host {
                put("upstream_address", host.to_string());
            }
        }
        put("peer.address", rec.conn.peer.to_string());
        if let Some(status) = rec.grpc_status {
            put("grpc.status_code", status.to_string());
        }
        if error {
            put("error", "true".into());
        }
        if let Some(code) = rec.error_code {
            put("x-weft-error", code.to_string());
        }
        if self.istio_tags {
            put(
                "istio.canonical_service",
                self.local.canonical_service.clone(),
            );
            put(
                "istio.canonical_revision",
                self.local.canonical_revision.clone(),
            );
            put("istio.mesh_id", self.mesh_id.clone());
            put("istio.namespace", self.local.namespace.clone());
        }
        for (k, v) in self.fixed_tags.iter().chain(handle.request_tags.iter()) {
            tags.push((Cow::Owned(k.clone()), v.clone()));
        }
        for (_, v) in &mut tags {
            truncate(v, self.max_tag_length);
        }
        let error_message = error.then(|| match rec.error_code {
            Some(code) => code.to_string(),
            None => format!("HTTP {}", rec.response_code),
        });
        let remote = if rec.client_side {
            rec.upstream.and_then(|u| u.host)
        } else {
            Some(rec.conn.peer)
        };
        let end = (rec.start + rec.duration).max(handle.start);
        FinishedSpan {
            name: operation_name(rec),
            trace_id: handle.trace_id,
            span_id: handle.span_id,
            parent_span_id: handle.parent_span_id,
            trace_state: handle.trace_state,
            kind,
            start: handle.start,
            end,
            tags,
            error,
            error_message,
            local: Some(rec.conn.local),
            remote,
        }
    }
}

/// `<destination host>:<port>/*` (see the module comment).
pub fn operation_name(rec: &HttpRecord<'_>) -> String {
    let (auth_host, auth_port) = split_authority(rec.authority);
    let host = rec
        .upstream
        .and_then(|u| u.service.as_deref())
        .unwrap_or(auth_host);
    let port = rec
        .upstream
        .and_then(|u| cluster_port(&u.cluster))
        .or(auth_port)
        .unwrap_or(rec.conn.original_dst.port());
    format!("{host}:{port}/*")
}

/// The port field of an Istio cluster name (`outbound|3002|v1|cart...`, `inbound|3002||`).
fn cluster_port(cluster: &str) -> Option<u16> {
    let mut parts = cluster.split('|');
    let _direction = parts.next()?;
    parts.next()?.parse().ok().filter(|p| *p != 0)
}

/// `host[:port]`, `[v6][:port]`.
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = &authority[..end + 2];
            let port = rest[end + 1..]
                .strip_prefix(':')
                .and_then(|p| p.parse().ok());
            return (host, port);
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (authority, None),
        },
        None => (authority, None),
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// Cuts `value` to at most `max` bytes without splitting a character.
pub fn truncate(value: &mut String, max: usize) {
    if value.len() <= max {
        return;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value.truncate(end);
}
