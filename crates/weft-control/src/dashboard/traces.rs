//! A Zipkin v2 collector and a bounded store of recent traces.
//!
//! Proxies POST spans as Zipkin v2 JSON (an array of spans) to `/api/v2/spans` on the
//! control plane's debug port, the path and body a Zipkin server takes, so any Zipkin
//! exporter can feed the dashboard. The store keeps the last [`MAX_TRACES`] traces (the
//! oldest is dropped first) and at most [`MAX_SPANS_PER_TRACE`] spans of each: enough to
//! look at what just happened, never a growing heap.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

pub const MAX_TRACES: usize = 200;
pub const MAX_SPANS_PER_TRACE: usize = 256;
/// The largest body accepted in one POST.
pub const MAX_BODY: usize = 4 << 20;

/// A Zipkin v2 span (the fields of the v2 JSON model; unknown fields are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    pub trace_id: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    #[serde(default)]
    pub name: String,
    /// `CLIENT`, `SERVER`, `PRODUCER`, `CONSUMER`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Start, in microseconds since the epoch.
    #[serde(default)]
    pub timestamp: u64,
    /// In microseconds.
    #[serde(default)]
    pub duration: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_endpoint: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Span {
    fn service(&self) -> &str {
        self.local_endpoint
            .as_ref()
            .and_then(|e| e.service_name.as_deref())
            .unwrap_or("unknown")
    }

    /// Tagged `error`, or answered with a 5xx.
    pub fn is_error(&self) -> bool {
        self.tags.contains_key("error")
            || self
                .tags
                .get("http.status_code")
                .and_then(|c| c.parse::<u16>().ok())
                .is_some_and(|c| c >= 500)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpanError {
    #[error("not a JSON array of Zipkin v2 spans: {0}")]
    Json(#[from] serde_json::Error),
    #[error("span {index}: {reason}")]
    Invalid { index: usize, reason: String },
}

/// The spans of a POST body, ids lower-cased; the whole body is refused when a span is
/// invalid (as Zipkin does), so a sender sees its mistake.
pub fn decode(body: &[u8]) -> Result<Vec<Span>, SpanError> {
    let mut spans: Vec<Span> = serde_json::from_slice(body)?;
    for (index, s) in spans.iter_mut().enumerate() {
        let invalid = |reason: String| SpanError::Invalid { index, reason };
        s.trace_id.make_ascii_lowercase();
        s.id.make_ascii_lowercase();
        if !is_hex_id(&s.trace_id, &[16, 32]) {
            return Err(invalid(format!(
                "traceId `{}` is not 16 or 32 hex digits",
                s.trace_id
            )));
        }
        if !is_hex_id(&s.id, &[16]) {
            return Err(invalid(format!("id `{}` is not 16 hex digits", s.id)));
        }
        if let Some(p) = &mut s.parent_id {
            p.make_ascii_lowercase();
            if !is_hex_id(p, &[16]) {
                return Err(invalid(format!("parentId `{p}` is not 16 hex digits")));
            }
        }
    }
    Ok(spans)
}

fn is_hex_id(s: &str, lengths: &[usize]) -> bool {
    lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One trace in the list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceSummary {
    pub trace_id: String,
    /// The root span's name (the earliest span without a parent in the trace).
    pub root: String,
    /// The root span's service.
    pub service: String,
    pub services: Vec<String>,
    pub start_us: u64,
    pub duration_us: u64,
    pub spans: usize,
    pub errors: usize,
}

/// A span with its place in the waterfall.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpanView {
    #[serde(flatten)]
    pub span: Span,
    /// Parents above it that are in the trace.
    pub depth: usize,
    /// Start relative to the trace's first span.
    pub offset_us: u64,
    pub service: String,
    pub error: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TraceView {
    #[serde(flatten)]
    pub summary: TraceSummary,
    /// In waterfall order: parents before children, siblings by start.
    pub span_list: Vec<SpanView>,
}

#[derive(Debug)]
pub struct TraceStore {
    max_traces: usize,
    max_spans: usize,
    /// Trace ids, oldest first.
    order: VecDeque<String>,
    traces: HashMap<String, Vec<Span>>,
    /// Spans not kept because their trace was full.
    pub dropped_spans: u64,
}

impl Default for TraceStore {
    fn default() -> Self {
        TraceStore::new(MAX_TRACES, MAX_SPANS_PER_TRACE)
    }
}

impl TraceStore {
    pub fn new(max_traces: usize, max_spans: usize) -> Self {
        TraceStore {
            max_traces,
            max_spans,
            order: VecDeque::new(),
            traces: HashMap::new(),
            dropped_spans: 0,
        }
    }

    pub fn insert(&mut self, spans: Vec<Span>) {
        for span in spans {
            if !self.traces.contains_key(&span.trace_id) {
                if self.order.len() >= self.max_traces
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.traces.remove(&oldest);
                }
                self.order.push_back(span.trace_id.clone());
            }
            let trace = self.traces.entry(span.trace_id.clone()).or_default();
            if trace.len() >= self.max_spans {
                self.dropped_spans += 1;
            } else {
                trace.push(span);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The newest `limit` traces, newest first.
    pub fn list(&self, limit: usize) -> Vec<TraceSummary> {
        self.order
            .iter()
            .rev()
            .take(limit)
            .filter_map(|id| Some(summary(id, self.traces.get(id)?)))
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<TraceView> {
        let id = id.to_ascii_lowercase();
        let spans = self.traces.get(&id)?;
        Some(TraceView {
            summary: summary(&id, spans),
            span_list: waterfall(spans),
        })
    }
}

fn summary(id: &str, spans: &[Span]) -> TraceSummary {
    let start = spans.iter().map(|s| s.timestamp).min().unwrap_or(0);
    let end = spans
        .iter()
        // Both come from the sender: a timestamp near u64::MAX must not overflow.
        .map(|s| s.timestamp.saturating_add(s.duration))
        .max()
        .unwrap_or(0);
    let root = roots(spans).into_iter().next();
    let mut services: Vec<String> = spans.iter().map(|s| s.service().to_owned()).collect();
    services.sort();
    services.dedup();
    TraceSummary {
        trace_id: id.to_owned(),
        root: root.map(|s| s.name.clone()).unwrap_or_default(),
        service: root.map(|s| s.service().to_owned()).unwrap_or_default(),
        services,
        start_us: start,
        duration_us: end.saturating_sub(start),
        spans: spans.len(),
        errors: spans.iter().filter(|s| s.is_error()).count(),
    }
}

/// Spans whose parent is not in the trace, by start.
fn roots(spans: &[Span]) -> Vec<&Span> {
    let mut out: Vec<&Span> = spans
        .iter()
        .filter(|s| {
            s.parent_id
                .as_ref()
                .is_none_or(|p| !spans.iter().any(|o| &o.id == p))
        })
        .collect();
    out.sort_by_key(|s| (s.timestamp, s.parent_id.is_some()));
    out
}

fn waterfall(spans: &[Span]) -> Vec<SpanView> {
    let start = spans.iter().map(|s| s.timestamp).min().unwrap_or(0);
    let mut out = Vec::with_capacity(spans.len());
    let mut visited = vec![false; spans.len()];
    // Depth-first from the roots; `visited` guards against a span listed as its own
    // ancestor (a malformed trace must not loop).
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let index_of = |s: &Span| spans.iter().position(|o| std::ptr::eq(o, s)).unwrap_or(0);
    for root in roots(spans).into_iter().rev() {
        stack.push((index_of(root), 0));
    }
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut visited[i], true) {
            continue;
        }
        let s = &spans[i];
        out.push(SpanView {
            span: s.clone(),
            depth,
            offset_us: s.timestamp.saturating_sub(start),
            service: s.service().to_owned(),
            error: s.is_error(),
        });
        let mut children: Vec<usize> = (0..spans.len())
            .filter(|&c| c != i && spans[c].parent_id.as_deref() == Some(s.id.as_str()))
            .collect();
        children.sort_by_key(|&c| std::cmp::Reverse(spans[c].timestamp));
        stack.extend(children.into_iter().map(|c| (c, depth + 1)));
    }
    // Spans only reachable through a cycle still show, at the top level.
    for (_, s) in spans.iter().enumerate().filter(|(i, _)| !visited[*i]) {
        out.push(SpanView {
            span: s.clone(),
            depth: 0,
            offset_us: s.timestamp.saturating_sub(start),
            service: s.service().to_owned(),
            error: s.is_error(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: &str, id: &str, parent: Option<&str>, ts: u64, dur: u64) -> String {
        let parent = parent
            .map(|p| format!("\"parentId\":\"{p}\","))
            .unwrap_or_default();
        format!(
            "{{\"traceId\":\"{trace}\",\"id\":\"{id}\",{parent}\"name\":\"GET /{id}\",\
             \"kind\":\"SERVER\",\"timestamp\":{ts},\"duration\":{dur},\
             \"localEndpoint\":{{\"serviceName\":\"svc-{id}\",\"ipv4\":\"10.0.0.1\",\"port\":80}},\
             \"tags\":{{\"http.status_code\":\"200\",\"extra\":\"x\"}},\"annotations\":[]}}"
        )
    }

    fn id(n: u64) -> String {
        format!("{n:016x}")
    }

    #[test]
    fn decodes_zipkin_v2_json() {
        let body = format!(
            "[{},{{\"traceId\":\"ABCDEF0123456789ABCDEF0123456789\",\"id\":\"00000000000000AA\",\
             \"parentId\":\"0000000000000001\",\"tags\":{{\"error\":\"boom\"}}}}]",
            span(&id(7), &id(1), None, 1_000, 50)
        );
        let spans = decode(body.as_bytes()).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].kind.as_deref(), Some("SERVER"));
        assert_eq!(spans[0].service(), format!("svc-{}", id(1)));
        assert_eq!(spans[0].local_endpoint.as_ref().unwrap().port, Some(80));
        assert_eq!(spans[1].trace_id, "abcdef0123456789abcdef0123456789");
        assert!(spans[1].is_error());
        assert!(!spans[0].is_error());
        assert!(decode(b"{}").is_err());
        let bad = decode(b"[{\"traceId\":\"xyz\",\"id\":\"0000000000000001\"}]").unwrap_err();
        assert!(bad.to_string().contains("traceId `xyz`"), "{bad}");
    }

    #[test]
    fn keeps_the_newest_traces_and_bounded_spans() {
        let mut store = TraceStore::new(3, 2);
        for t in 1..=5u64 {
            let spans = decode(format!("[{}]", span(&id(t), &id(1), None, t, 1)).as_bytes());
            store.insert(spans.unwrap());
        }
        assert_eq!(store.len(), 3);
        let listed: Vec<String> = store.list(10).into_iter().map(|s| s.trace_id).collect();
        assert_eq!(listed, [id(5), id(4), id(3)]);
        assert!(store.get(&id(1)).is_none());
        // A trace holds at most 2 spans; the rest are counted.
        let more = format!(
            "[{},{},{}]",
            span(&id(5), &id(2), Some(&id(1)), 6, 1),
            span(&id(5), &id(3), Some(&id(1)), 7, 1),
            span(&id(5), &id(4), Some(&id(1)), 8, 1)
        );
        store.insert(decode(more.as_bytes()).unwrap());
        assert_eq!(store.get(&id(5)).unwrap().summary.spans, 2);
        assert_eq!(store.dropped_spans, 2);
        assert_eq!(store.list(1).len(), 1);
    }

    /// Found while writing the `zipkin_spans` fuzz target (fuzz/regressions/zipkin_spans/):
    /// the trace's end overflowed with a sender's timestamp near u64::MAX.
    #[test]
    fn huge_timestamps_do_not_overflow() {
        let mut store = TraceStore::default();
        let t = id(11);
        let body = format!(
            "[{},{}]",
            span(&t, &id(1), None, u64::MAX - 20, 5),
            span(&t, &id(2), Some(&id(1)), u64::MAX - 10, 100)
        );
        store.insert(decode(body.as_bytes()).unwrap());
        let v = store.get(&t).unwrap();
        assert_eq!(v.summary.start_us, u64::MAX - 20);
        assert_eq!(v.summary.duration_us, 20);
        assert_eq!(v.span_list[1].offset_us, 10);
    }

    #[test]
    fn waterfall_orders_parents_before_children() {
        let mut store = TraceStore::default();
        let t = id(9);
        let body = format!(
            "[{},{},{},{}]",
            span(&t, &id(3), Some(&id(2)), 1_300, 100),
            span(&t, &id(2), Some(&id(1)), 1_100, 500),
            span(&t, &id(1), None, 1_000, 1_000),
            span(&t, &id(4), Some(&id(1)), 1_700, 200)
        );
        store.insert(decode(body.as_bytes()).unwrap());
        let v = store.get(&t).unwrap();
        let order: Vec<(String, usize, u64)> = v
            .span_list
            .iter()
            .map(|s| (s.span.id.clone(), s.depth, s.offset_us))
            .collect();
        assert_eq!(
            order,
            [
                (id(1), 0, 0),
                (id(2), 1, 100),
                (id(3), 2, 300),
                (id(4), 1, 700)
            ]
        );
        assert_eq!(v.summary.root, format!("GET /{}", id(1)));
        assert_eq!(v.summary.duration_us, 1_000);
        assert_eq!(v.summary.spans, 4);
        assert_eq!(v.summary.services.len(), 4);
    }
}
