//! Trace headers arrive from the network on every request: whatever they hold, reading and
//! rewriting them must not panic, and what goes on to the next hop must be a well-formed
//! context that joins the incoming trace when there was a valid one.
//!
//! Input: lines of `name:value`; lines whose name or value is not a valid header are
//! skipped (hyper would have refused them). A name may repeat (`tracestate` is a list).
#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use weft_api::{CustomTag, Node, TagValue, TraceProtocol};
use weft_proxy::telemetry::Tracer;
use weft_proxy::telemetry::trace::context::{self, B3, B3_SPAN_ID, B3_TRACE_ID, TRACEPARENT};
use weft_proxy::telemetry::trace::export::TraceHub;
use weft_proxy::telemetry::trace::{ProxyTracer, collector_config};

/// Samples everything and has an exporter (never started: no runtime), so the reporting
/// path (request tags) runs too. The hub lives as long as the tracer, as in the proxy.
static TRACER: LazyLock<(TraceHub, ProxyTracer)> = LazyLock::new(|| {
    let mut cfg = collector_config(
        TraceProtocol::ZipkinJson,
        "127.0.0.1:9411".parse().unwrap(),
        "fuzz",
    );
    cfg.custom_tags.push(CustomTag {
        name: "user".to_string(),
        value: TagValue::Header {
            name: "X-User".to_string(),
            default: Some("anonymous".to_string()),
        },
    });
    let hub = TraceHub::default();
    let tracer = ProxyTracer::from_config(&cfg, &Node::default(), &hub);
    (hub, tracer)
});

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let incoming = context::read(&headers);
    for client_side in [true, false] {
        let mut h = headers.clone();
        let span = TRACER.1.start(&mut h, client_side);
        check(&h, &incoming, span.as_ref());
    }
});

fn check(
    out: &HeaderMap,
    incoming: &context::Incoming,
    span: Option<&weft_proxy::telemetry::SpanHandle>,
) {
    assert!(out.contains_key("x-request-id"), "no x-request-id");
    let parents: Vec<&HeaderValue> = out.get_all(&TRACEPARENT).iter().collect();
    assert_eq!(parents.len(), 1, "one traceparent goes on");
    let tp = parents[0].to_str().expect("traceparent is ASCII");
    assert!(well_formed_traceparent(tp), "malformed traceparent `{tp}`");
    let (ids, sampled) = context::parse_traceparent(parents[0]).expect("ours parses");
    if let Some(inc) = incoming.ids {
        assert_eq!(ids.trace_id, inc.trace_id, "incoming trace not joined");
    }
    if let Some(decision) = incoming.sampled {
        assert_eq!(sampled, decision, "caller's decision not kept");
    }
    // Everything samples here unless the caller said no.
    assert_eq!(span.is_some(), sampled, "span iff sampled");
    if let Some(span) = span {
        assert_eq!(span.trace_id, ids.trace_id);
        assert_eq!(span.span_id, ids.span_id, "next hop's parent is our span");
        assert_eq!(span.parent_span_id, incoming.ids.map(|i| i.span_id));
    }
    // Read back, the rewritten headers are this hop's context, whatever else came in.
    let again = context::read(out);
    assert_eq!(again.ids, Some(ids));
    assert_eq!(again.sampled, Some(sampled));
    assert!(
        incoming.w3c || !out.contains_key("tracestate"),
        "tracestate kept without a valid traceparent"
    );
    if incoming.b3_single || incoming.b3_multi || !(incoming.w3c) {
        let multi = context::parse_b3_multi(out).expect("x-b3-* written and valid");
        assert_eq!(multi.ids, Some(ids));
        assert_eq!(multi.sampled, Some(sampled));
        assert_eq!(out.get(&B3_TRACE_ID).map(|v| v.len()), Some(32));
        assert_eq!(out.get(&B3_SPAN_ID).map(|v| v.len()), Some(16));
    }
    if incoming.b3_single {
        let b3 = out.get(&B3).and_then(context::parse_b3_single);
        assert_eq!(b3.and_then(|c| c.ids), Some(ids), "b3 written and valid");
    }
}

/// `00-{32 lower hex}-{16 lower hex}-{2 lower hex}`, neither id all zeros.
fn well_formed_traceparent(s: &str) -> bool {
    let hex = |p: &str, n: usize| {
        p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let parts: Vec<&str> = s.split('-').collect();
    matches!(parts.as_slice(), [v, t, sp, f]
        if *v == "00" && hex(t, 32) && hex(sp, 16) && hex(f, 2)
            && t.bytes().any(|b| b != b'0') && sp.bytes().any(|b| b != b'0'))
}
