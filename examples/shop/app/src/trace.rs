//! Trace context propagation. The mesh creates the spans, but it can only join an inbound
//! request to the outbound calls it caused if the application copies the trace headers
//! across, which is exactly what Istio asks of applications.

use http::HeaderMap;

/// The headers copied from an inbound request to every outbound call it causes: W3C trace
/// context, B3 (multi- and single-header) and Envoy's request id. Nothing else is forwarded.
pub const TRACE_HEADERS: &[&str] = &[
    "traceparent",
    "tracestate",
    "x-request-id",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// The trace headers of one inbound request.
#[derive(Debug, Clone, Default)]
pub struct TraceContext(HeaderMap);

impl TraceContext {
    pub fn from_headers(inbound: &HeaderMap) -> Self {
        let mut headers = HeaderMap::new();
        for &name in TRACE_HEADERS {
            for value in inbound.get_all(name) {
                headers.append(name, value.clone());
            }
        }
        TraceContext(headers)
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.0
    }

    /// The request id, for log lines.
    pub fn request_id(&self) -> Option<&str> {
        self.0.get("x-request-id").and_then(|v| v.to_str().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_only_trace_headers() {
        let mut inbound = HeaderMap::new();
        inbound.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        inbound.insert("X-B3-Sampled", "1".parse().unwrap());
        inbound.insert("x-request-id", "r-1".parse().unwrap());
        inbound.insert("authorization", "Bearer secret".parse().unwrap());
        inbound.insert("content-length", "12".parse().unwrap());

        let trace = TraceContext::from_headers(&inbound);
        assert_eq!(trace.headers().len(), 3);
        assert_eq!(trace.headers()["x-b3-sampled"], "1");
        assert_eq!(trace.request_id(), Some("r-1"));
        assert!(trace.headers().get("authorization").is_none());
    }
}
