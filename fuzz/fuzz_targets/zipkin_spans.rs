//! Anything may POST to the control plane's Zipkin endpoint: a body must be refused or
//! stored without panicking, and the store must keep its bounds (traces, spans per trace)
//! and show every span it keeps exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_control::dashboard::traces::{TraceStore, decode};

const MAX_TRACES: usize = 3;
const MAX_SPANS: usize = 4;

fuzz_target!(|data: &[u8]| {
    let Ok(spans) = decode(data) else {
        return;
    };
    for s in &spans {
        assert!(matches!(s.trace_id.len(), 16 | 32), "{}", s.trace_id);
        assert_eq!(s.id.len(), 16);
        assert!(
            s.trace_id
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
    }
    // Small bounds so that eviction and the per-trace limit both happen; the body is
    // posted twice (a retrying exporter) into the same store.
    let mut store = TraceStore::new(MAX_TRACES, MAX_SPANS);
    let mut received = 0u64;
    for _ in 0..2 {
        received += spans.len() as u64;
        store.insert(spans.clone());
        assert!(store.len() <= MAX_TRACES, "{} traces kept", store.len());
        let listed = store.list(usize::MAX);
        assert_eq!(listed.len(), store.len(), "listed traces are stored");
        let mut kept = 0;
        for summary in &listed {
            assert!(summary.spans >= 1 && summary.spans <= MAX_SPANS);
            let view = store.get(&summary.trace_id).expect("listed trace is there");
            assert_eq!(view.summary, *summary);
            assert_eq!(view.span_list.len(), summary.spans, "every span shown once");
            kept += summary.spans as u64;
        }
        assert!(kept + store.dropped_spans <= received);
    }
    // The real store's bounds, with the whole body.
    let mut full = TraceStore::default();
    full.insert(spans);
    for summary in full.list(usize::MAX) {
        let _ = full.get(&summary.trace_id);
    }
});
