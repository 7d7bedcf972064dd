//! Trace context: every W3C and B3 header form on input (valid, invalid, mixed), what is
//! written on, sampling decisions (honoured upstream, drawn with a seeded generator),
//! `x-request-id`, and the span tags built from a record.

mod trace_support;

use http::{HeaderMap, HeaderValue};
use weft_api::{CustomTag, Node, ReporterMode, TagValue, TraceProtocol, TracingConfig};
use weft_proxy::telemetry::Tracer;
use weft_proxy::telemetry::trace::context::{self, Ids, Incoming};
use weft_proxy::telemetry::trace::sampler::Sampler;
use weft_proxy::telemetry::trace::span::SpanKind;
use weft_proxy::telemetry::trace::{ProxyTracer, collector_config};

use trace_support::Exchange;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn ids(trace: &str, span: &str) -> Option<Ids> {
    Some(Ids {
        trace_id: context::parse_trace_id(trace).unwrap(),
        span_id: context::parse_span_id(span).unwrap(),
    })
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

// ------------------------------------------------------------------ reading: W3C

#[test]
fn traceparent_valid_sampled_and_not() {
    let inc = context::read(&headers(&[(
        "traceparent",
        &format!("00-{TRACE}-{SPAN}-01"),
    )]));
    assert_eq!(inc.ids, ids(TRACE, SPAN));
    assert_eq!(inc.sampled, Some(true));
    assert!(inc.w3c && !inc.b3_multi && !inc.b3_single);

    let inc = context::read(&headers(&[(
        "traceparent",
        &format!("00-{TRACE}-{SPAN}-00"),
    )]));
    assert_eq!(inc.sampled, Some(false));
    // Other flag bits do not change the sampled bit.
    let inc = context::read(&headers(&[(
        "traceparent",
        &format!("00-{TRACE}-{SPAN}-03"),
    )]));
    assert_eq!(inc.sampled, Some(true));
}

#[test]
fn traceparent_malformed_is_absent() {
    let upper = TRACE.to_uppercase();
    let bad = [
        format!("01-{TRACE}-{SPAN}-01"),             // unknown version
        format!("ff-{TRACE}-{SPAN}-01"),             // forbidden version
        format!("00-{upper}-{SPAN}-01"),             // upper-case hex
        format!("00-{}-{SPAN}-01", "0".repeat(32)),  // all-zero trace id
        format!("00-{TRACE}-{}-01", "0".repeat(16)), // all-zero span id
        format!("00-{}-{SPAN}-01", &TRACE[..31]),    // short trace id
        format!("00-{TRACE}-{}-01", &SPAN[..15]),    // short span id
        format!("00-{TRACE}-{SPAN}-1"),              // short flags
        format!("00-{TRACE}-{SPAN}-0x"),             // non-hex flags
        format!("00-{TRACE}-{SPAN}-01-extra"),       // trailing field
        format!("00-{}g-{SPAN}-01", &TRACE[..31]),   // non-hex digit
        "garbage".to_string(),
        String::new(),
    ];
    for value in bad {
        let inc = context::read(&headers(&[
            ("traceparent", &value),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]));
        assert_eq!(inc, Incoming::default(), "{value:?} must be ignored");
    }
}

#[test]
fn tracestate_is_kept_only_with_a_valid_traceparent_and_joined() {
    let inc = context::read(&headers(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
        ("tracestate", "congo=t61rcWkgMzE"),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ]));
    assert_eq!(
        inc.trace_state.as_deref(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    let inc = context::read(&headers(&[("tracestate", "congo=t61rcWkgMzE")]));
    assert_eq!(inc.trace_state, None);
}

// ------------------------------------------------------------------ reading: B3 multi

#[test]
fn b3_multi_128_and_64_bit_ids() {
    let inc = context::read(&headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
        ("x-b3-sampled", "1"),
    ]));
    assert_eq!(inc.ids, ids(TRACE, SPAN));
    assert_eq!(inc.sampled, Some(true));
    assert!(inc.b3_multi && !inc.w3c && !inc.b3_single);

    // 64-bit trace ids are the low half of a 128-bit id.
    let inc = context::read(&headers(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", SPAN),
    ]));
    assert_eq!(inc.ids, ids("0000000000000000a3ce929d0e0e4736", SPAN));
    assert_eq!(inc.sampled, None, "no decision came with the ids");
}

#[test]
fn b3_multi_sampling_values() {
    for (value, want) in [("1", true), ("true", true), ("0", false), ("false", false)] {
        let inc = context::read(&headers(&[
            ("x-b3-traceid", TRACE),
            ("x-b3-spanid", SPAN),
            ("x-b3-sampled", value),
        ]));
        assert_eq!(inc.sampled, Some(want), "x-b3-sampled: {value}");
    }
    // Debug samples even against x-b3-sampled: 0.
    let inc = context::read(&headers(&[
        ("x-b3-traceid", TRACE),
        ("x-b3-spanid", SPAN),
        ("x-b3-sampled", "0"),
        ("x-b3-flags", "1"),
    ]));
    assert_eq!(inc.sampled, Some(true));
    // A decision alone starts a new trace with that decision.
    let inc = context::read(&headers(&[("x-b3-sampled", "0")]));
    assert_eq!(
        (inc.ids, inc.sampled, inc.b3_multi),
        (None, Some(false), true)
    );
}

#[test]
fn b3_multi_malformed_is_absent() {
    let bad: [&[(&str, &str)]; 6] = [
        &[("x-b3-traceid", TRACE)],                               // no span id
        &[("x-b3-spanid", SPAN)],                                 // no trace id
        &[("x-b3-traceid", &TRACE[..20]), ("x-b3-spanid", SPAN)], // 80-bit id
        &[("x-b3-traceid", TRACE), ("x-b3-spanid", "xyz")],       // not hex
        &[("x-b3-traceid", "0000000000000000"), ("x-b3-spanid", SPAN)], // zero id
        &[("x-b3-sampled", "maybe")],                             // bad decision
    ];
    for pairs in bad {
        assert_eq!(
            context::read(&headers(pairs)),
            Incoming::default(),
            "{pairs:?}"
        );
    }
}

// ------------------------------------------------------------------ reading: B3 single

#[test]
fn b3_single_forms() {
    let parent = "05e3ac9a4f6e3b90";
    let inc = context::read(&headers(&[("b3", &format!("{TRACE}-{SPAN}-1-{parent}"))]));
    assert_eq!((inc.ids, inc.sampled), (ids(TRACE, SPAN), Some(true)));
    assert!(inc.b3_single && !inc.b3_multi);
    let inc = context::read(&headers(&[("b3", &format!("{TRACE}-{SPAN}-d"))]));
    assert_eq!((inc.ids, inc.sampled), (ids(TRACE, SPAN), Some(true)));
    let inc = context::read(&headers(&[("b3", &format!("{TRACE}-{SPAN}-0"))]));
    assert_eq!(inc.sampled, Some(false));
    let inc = context::read(&headers(&[("b3", &format!("{TRACE}-{SPAN}"))]));
    assert_eq!((inc.ids, inc.sampled), (ids(TRACE, SPAN), None));
    let inc = context::read(&headers(&[("b3", "a3ce929d0e0e4736-00f067aa0ba902b7-1")]));
    assert_eq!(inc.ids, ids("0000000000000000a3ce929d0e0e4736", SPAN));
    for (value, want) in [("0", false), ("1", true), ("d", true)] {
        let inc = context::read(&headers(&[("b3", value)]));
        assert_eq!(
            (inc.ids, inc.sampled, inc.b3_single),
            (None, Some(want), true)
        );
    }
}

#[test]
fn b3_single_malformed_is_absent() {
    for value in [
        "x".to_string(),
        format!("{TRACE}-{SPAN}-2"),
        format!("{TRACE}-{SPAN}-1-zz"),
        format!("{TRACE}-{SPAN}-1-{SPAN}-extra"),
        format!("{TRACE}-0000000000000000-1"),
        TRACE.to_string(),
        "-".to_string(),
    ] {
        assert_eq!(
            context::read(&headers(&[("b3", &value)])),
            Incoming::default(),
            "b3: {value:?}"
        );
    }
}

// ------------------------------------------------------------------ reading: mixed

#[test]
fn w3c_wins_over_b3_and_single_over_multi() {
    let other_trace = "11111111111111111111111111111111";
    let other_span = "2222222222222222";
    let inc = context::read(&headers(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-00")),
        ("x-b3-traceid", other_trace),
        ("x-b3-spanid", other_span),
        ("x-b3-sampled", "1"),
    ]));
    assert_eq!((inc.ids, inc.sampled), (ids(TRACE, SPAN), Some(false)));
    assert!(inc.w3c && inc.b3_multi);

    // A broken traceparent does not hide valid B3.
    let inc = context::read(&headers(&[
        ("traceparent", "00-broken"),
        ("x-b3-traceid", other_trace),
        ("x-b3-spanid", other_span),
    ]));
    assert_eq!(inc.ids, ids(other_trace, other_span));
    assert!(!inc.w3c);

    let inc = context::read(&headers(&[
        ("b3", &format!("{TRACE}-{SPAN}-0")),
        ("x-b3-traceid", other_trace),
        ("x-b3-spanid", other_span),
        ("x-b3-sampled", "1"),
    ]));
    assert_eq!((inc.ids, inc.sampled), (ids(TRACE, SPAN), Some(false)));
}

// ------------------------------------------------------------------ sampling

#[test]
fn upstream_decisions_are_honoured_whatever_the_percentage() {
    let all = Sampler::seeded(100.0, 1);
    let none = Sampler::seeded(0.0, 1);
    for _ in 0..100 {
        assert!(!all.decide(Some(false)));
        assert!(none.decide(Some(true)));
        assert!(all.decide(None));
        assert!(!none.decide(None));
    }
}

#[test]
fn percentage_sampling_with_a_seeded_generator() {
    // 200k draws at 10%: the standard deviation of the rate is 0.067 points; the tolerance
    // of 0.4 points is six of them.
    let draws = 200_000;
    for seed in [7, 42, 1234] {
        let sampler = Sampler::seeded(10.0, seed);
        let hits = (0..draws).filter(|_| sampler.decide(None)).count();
        let rate = hits as f64 * 100.0 / draws as f64;
        assert!((rate - 10.0).abs() < 0.4, "seed {seed}: {rate}%");
    }
    // Istio's default 1%, and a fractional percentage.
    let sampler = Sampler::seeded(1.0, 9);
    let hits = (0..draws).filter(|_| sampler.decide(None)).count();
    assert!(
        (hits as f64 * 100.0 / draws as f64 - 1.0).abs() < 0.15,
        "{hits}"
    );
    let sampler = Sampler::seeded(0.5, 9);
    let hits = (0..draws).filter(|_| sampler.decide(None)).count();
    assert!(
        (hits as f64 * 100.0 / draws as f64 - 0.5).abs() < 0.1,
        "{hits}"
    );
    // The same seed gives the same decisions.
    let a = Sampler::seeded(50.0, 5);
    let b = Sampler::seeded(50.0, 5);
    let da: Vec<bool> = (0..1000).map(|_| a.decide(None)).collect();
    let db: Vec<bool> = (0..1000).map(|_| b.decide(None)).collect();
    assert_eq!(da, db);
}

// ------------------------------------------------------------------ the tracer's start

fn config(protocol: TraceProtocol) -> TracingConfig {
    collector_config(protocol, "127.0.0.1:9".parse().unwrap(), "product.shop")
}

/// A tracer whose spans go nowhere (no exporter) unless `report`.
fn tracer(cfg: &TracingConfig, report: bool) -> ProxyTracer {
    let exporter = report.then(|| {
        weft_proxy::telemetry::trace::export::Exporter::new(
            cfg.provider.clone(),
            Default::default(),
        )
    });
    ProxyTracer::new(
        cfg,
        &Node::default(),
        exporter,
        Sampler::seeded(cfg.sampling_percent, 3),
    )
}

#[test]
fn w3c_in_is_continued_in_w3c_only() {
    let t = tracer(&config(TraceProtocol::OtlpGrpc), true);
    let mut h = headers(&[
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
        ("tracestate", "congo=t61rcWkgMzE"),
    ]);
    let span = t.start(&mut h, true).expect("sampled upstream");
    assert_eq!(span.trace_id_hex(), TRACE);
    assert_eq!(span.parent_span_id, context::parse_span_id(SPAN));
    assert_ne!(span.span_id_hex(), SPAN);
    assert_eq!(span.trace_state.as_deref(), Some("congo=t61rcWkgMzE"));
    assert_eq!(
        get(&h, "traceparent"),
        Some(format!("00-{TRACE}-{}-01", span.span_id_hex()).as_str())
    );
    assert_eq!(get(&h, "tracestate"), Some("congo=t61rcWkgMzE"));
    assert!(h.get("x-b3-traceid").is_none() && h.get("b3").is_none());
}

#[test]
fn b3_multi_in_is_continued_in_b3_and_w3c() {
    let t = tracer(&config(TraceProtocol::ZipkinJson), true);
    let mut h = headers(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", SPAN),
        ("x-b3-parentspanid", "1111111111111111"),
        ("x-b3-sampled", "1"),
    ]);
    let span = t.start(&mut h, false).expect("sampled");
    let trace = "0000000000000000a3ce929d0e0e4736";
    assert_eq!(span.trace_id_hex(), trace);
    assert_eq!(get(&h, "x-b3-traceid"), Some(trace));
    assert_eq!(get(&h, "x-b3-spanid"), Some(span.span_id_hex().as_str()));
    assert_eq!(get(&h, "x-b3-parentspanid"), Some(SPAN));
    assert_eq!(get(&h, "x-b3-sampled"), Some("1"));
    assert_eq!(
        get(&h, "traceparent"),
        Some(format!("00-{trace}-{}-01", span.span_id_hex()).as_str())
    );
    assert!(h.get("b3").is_none());
}

#[test]
fn b3_single_in_is_continued_in_all_three() {
    let t = tracer(&config(TraceProtocol::ZipkinJson), true);
    let mut h = headers(&[("b3", &format!("{TRACE}-{SPAN}-1"))]);
    let span = t.start(&mut h, true).expect("sampled");
    let me = span.span_id_hex();
    assert_eq!(
        get(&h, "b3"),
        Some(format!("{TRACE}-{me}-1-{SPAN}").as_str())
    );
    assert_eq!(get(&h, "x-b3-spanid"), Some(me.as_str()));
    assert_eq!(
        get(&h, "traceparent"),
        Some(format!("00-{TRACE}-{me}-01").as_str())
    );
}

#[test]
fn a_new_trace_gets_traceparent_and_b3_multi() {
    let t = tracer(&config(TraceProtocol::OtlpHttp), true);
    let mut h = HeaderMap::new();
    let span = t.start(&mut h, true).expect("100% sampling");
    assert_eq!(span.parent_span_id, None);
    assert_ne!(span.trace_id, [0; 16]);
    let (trace, me) = (span.trace_id_hex(), span.span_id_hex());
    assert_eq!(
        get(&h, "traceparent"),
        Some(format!("00-{trace}-{me}-01").as_str())
    );
    assert_eq!(get(&h, "x-b3-traceid"), Some(trace.as_str()));
    assert_eq!(get(&h, "x-b3-spanid"), Some(me.as_str()));
    assert_eq!(get(&h, "x-b3-sampled"), Some("1"));
    assert!(h.get("x-b3-parentspanid").is_none() && h.get("b3").is_none());
    assert!(h.get("tracestate").is_none());
}

#[test]
fn unsampled_requests_carry_the_decision_without_a_span() {
    let mut cfg = config(TraceProtocol::OtlpGrpc);
    cfg.sampling_percent = 100.0;
    let t = tracer(&cfg, true);
    let mut h = headers(&[("traceparent", &format!("00-{TRACE}-{SPAN}-00"))]);
    assert!(t.start(&mut h, true).is_none(), "upstream said no");
    let tp = get(&h, "traceparent").unwrap();
    assert!(
        tp.starts_with(&format!("00-{TRACE}-")) && tp.ends_with("-00"),
        "{tp}"
    );
    assert!(!tp.contains(SPAN), "a new span id goes on: {tp}");

    cfg.sampling_percent = 0.0;
    let t = tracer(&cfg, true);
    let mut h = HeaderMap::new();
    assert!(t.start(&mut h, true).is_none());
    assert!(get(&h, "traceparent").unwrap().ends_with("-00"));
    assert_eq!(get(&h, "x-b3-sampled"), Some("0"));
}

#[test]
fn disabled_propagation_and_reporting() {
    let mut cfg = config(TraceProtocol::OtlpGrpc);
    cfg.disable_context_propagation = true;
    let t = tracer(&cfg, true);
    let tp = format!("00-{TRACE}-{SPAN}-01");
    let mut h = headers(&[("traceparent", &tp)]);
    let span = t.start(&mut h, true).expect("still reported");
    assert_eq!(span.parent_span_id, context::parse_span_id(SPAN));
    assert_eq!(get(&h, "traceparent"), Some(tp.as_str()), "not rewritten");

    // disableSpanReporting: no span, but the headers still go on.
    let cfg = config(TraceProtocol::OtlpGrpc);
    let t = tracer(&cfg, false);
    let mut h = headers(&[("traceparent", &tp)]);
    assert!(t.start(&mut h, true).is_none());
    assert_ne!(get(&h, "traceparent"), Some(tp.as_str()));
}

#[test]
fn mode_limits_the_traced_direction() {
    let mut cfg = config(TraceProtocol::OtlpGrpc);
    cfg.mode = ReporterMode::Server;
    let t = tracer(&cfg, true);
    let tp = format!("00-{TRACE}-{SPAN}-01");
    let mut h = headers(&[("traceparent", &tp)]);
    assert!(t.start(&mut h, true).is_none(), "client side not traced");
    assert_eq!(get(&h, "traceparent"), Some(tp.as_str()), "passed through");
    assert!(t.start(&mut h, false).is_some(), "server side traced");
}

#[test]
fn request_id_is_made_when_absent_and_kept_when_present() {
    let t = tracer(&config(TraceProtocol::OtlpGrpc), false);
    let mut h = HeaderMap::new();
    t.start(&mut h, true);
    let id = get(&h, "x-request-id").expect("generated").to_string();
    assert_eq!(id.len(), 36);
    assert_eq!(&id[14..15], "4", "UUID version 4: {id}");
    let mut h = headers(&[("x-request-id", "keep-me")]);
    t.start(&mut h, true);
    assert_eq!(get(&h, "x-request-id"), Some("keep-me"));
}

// ------------------------------------------------------------------ span contents

#[test]
fn span_tags_name_and_kind() {
    let mut cfg = config(TraceProtocol::OtlpGrpc);
    cfg.max_tag_length = 24;
    cfg.custom_tags = vec![
        CustomTag {
            name: "team".into(),
            value: TagValue::Literal("checkout".into()),
        },
        CustomTag {
            name: "pkg".into(),
            value: TagValue::Environment {
                // Set by cargo for every test binary it runs.
                name: "CARGO_PKG_NAME".into(),
                default: None,
            },
        },
        CustomTag {
            name: "missing_env".into(),
            value: TagValue::Environment {
                name: "WEFT_TEST_SURELY_UNSET_VARIABLE".into(),
                default: Some("fallback".into()),
            },
        },
        CustomTag {
            name: "tenant".into(),
            value: TagValue::Header {
                name: "X-Tenant".into(),
                default: None,
            },
        },
        CustomTag {
            name: "plan".into(),
            value: TagValue::Header {
                name: "x-plan".into(),
                default: Some("free".into()),
            },
        },
    ];
    let node = Node {
        id: "product-v1-abc.shop".into(),
        namespace: "shop".into(),
        workload: "product-v1".into(),
        labels: [("app".to_string(), "product".to_string())].into(),
        trust_domain: "cluster.local".into(),
        ..Node::default()
    };
    let t = ProxyTracer::new(&cfg, &node, None, Sampler::seeded(100.0, 1));
    let mut h = headers(&[
        ("user-agent", "curl/8"),
        ("x-tenant", "acme"),
        ("traceparent", &format!("00-{TRACE}-{SPAN}-01")),
    ]);
    // No exporter: build the span by hand from what start would return with one.
    let spans = t.span_config();
    let handle = weft_proxy::telemetry::SpanHandle {
        trace_id: context::parse_trace_id(TRACE).unwrap(),
        span_id: [1, 2, 3, 4, 5, 6, 7, 8],
        parent_span_id: context::parse_span_id(SPAN),
        trace_state: None,
        start: std::time::SystemTime::now(),
        request_tags: spans.request_tags(&h),
    };
    h.clear();
    let mut ex = Exchange::new(true, "cart.shop:3002", 503);
    ex.flags = "UO".into();
    ex.error_code = Some("upstream_overflow");
    ex.request_id = Some("req-1".into());
    ex.upstream = Some(weft_proxy::telemetry::UpstreamInfo {
        cluster: "outbound|3002|v1|cart.shop.svc.cluster.local".into(),
        service: Some("cart.shop.svc.cluster.local".into()),
        host: Some("10.0.0.9:3002".parse().unwrap()),
        ..Default::default()
    });
    let span = spans.build(handle, &ex.record(None));
    assert_eq!(span.name, "cart.shop.svc.cluster.local:3002/*");
    assert_eq!(span.kind, SpanKind::Client);
    assert!(span.error);
    assert_eq!(span.error_message.as_deref(), Some("upstream_overflow"));
    assert_eq!(span.remote, Some("10.0.0.9:3002".parse().unwrap()));
    let want = [
        ("component", "proxy"),
        ("node_id", "product-v1-abc.shop"),
        ("guid:x-request-id", "req-1"),
        // Cut to max_tag_length (24).
        ("http.url", "http://cart.shop:3002/ite"),
        ("http.method", "GET"),
        ("http.protocol", "HTTP/1.1"),
        ("http.status_code", "503"),
        ("request_size", "12"),
        ("response_size", "345"),
        ("response_flags", "UO"),
        ("upstream_cluster", "outbound|3002|v1|cart.shop."),
        ("peer.address", "10.0.0.1:40000"),
        ("error", "true"),
        ("x-weft-error", "upstream_overflow"),
        ("istio.canonical_service", "product"),
        ("istio.canonical_revision", "latest"),
        ("istio.mesh_id", "cluster.local"),
        ("istio.namespace", "shop"),
        ("user_agent", "curl/8"),
        ("team", "checkout"),
        ("pkg", "weft-proxy"),
        ("missing_env", "fallback"),
        ("tenant", "acme"),
        ("plan", "free"),
    ];
    for (k, v) in want {
        let v = &v[..v.len().min(24)];
        assert_eq!(span.tag(k), Some(v), "tag {k}: {:#?}", span.tags);
    }

    // A clean inbound request: SERVER, no error tags, remote is the caller.
    let handle = weft_proxy::telemetry::SpanHandle {
        trace_id: [9; 16],
        span_id: [8; 8],
        parent_span_id: None,
        trace_state: None,
        start: std::time::SystemTime::now(),
        request_tags: Vec::new(),
    };
    let ex = Exchange::new(false, "product.shop:9080", 200);
    let span = spans.build(handle, &ex.record(None));
    assert_eq!(span.kind, SpanKind::Server);
    assert_eq!(span.name, "product.shop:9080/*");
    assert!(!span.error && span.tag("error").is_none() && span.tag("x-weft-error").is_none());
    assert_eq!(span.tag("response_flags"), Some("-"));
    assert_eq!(span.remote, Some("10.0.0.1:40000".parse().unwrap()));
}
