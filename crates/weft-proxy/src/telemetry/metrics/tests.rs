//! The sink end to end: records in, OpenMetrics text out (parsed strictly).

use std::time::Duration;

use weft_api::{Attribute, MetricOverride, ReporterMode, TagOverride};

use super::fixture::{CART_ID, Fixture, SLEEP_ID};
use super::textcheck::{self, Exposition};
use super::*;
use crate::telemetry::Telemetry;

fn sink(config: &MetricsConfig, hub: &Arc<Hub>) -> IstioMetrics {
    IstioMetrics::new(config, hub.clone()).expect("metrics are enabled")
}

fn scrape(hub: &Arc<Hub>) -> (String, Exposition) {
    hub.metrics.series.expire_idle();
    let text = encode::render(hub.clone(), Vec::new()).expect("encodes");
    let parsed = textcheck::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, parsed)
}

fn override_(metric: IstioMetric, mode: ReporterMode) -> MetricOverride {
    MetricOverride {
        metric,
        mode,
        disabled: None,
        tags: Vec::new(),
    }
}

#[test]
fn client_and_server_requests_with_istio_names_types_and_labels() {
    let hub = Arc::new(Hub::default());
    let m = sink(&MetricsConfig::default(), &hub);
    let mut client = Fixture::client();
    client.conn.local_identity = Some(SLEEP_ID.into());
    m.http(&client.http(true, 200));
    m.http(&client.http(true, 200));
    let server = Fixture::server();
    m.http(&server.http(false, 200));
    let (text, e) = scrape(&hub);

    assert!(
        text.contains("istio_requests_total{reporter=\"source\",source_workload=\"sleep\","),
        "{text}"
    );
    assert_eq!(e.families["istio_requests"], "counter");
    for h in [
        "istio_request_duration_milliseconds",
        "istio_request_bytes",
        "istio_response_bytes",
    ] {
        assert_eq!(e.families[h], "histogram");
    }
    let source = [
        ("reporter", "source"),
        ("source_principal", SLEEP_ID),
        ("destination_principal", CART_ID),
        ("destination_service", "cart.shop.svc.cluster.local"),
        ("response_code", "200"),
        ("response_flags", "-"),
        ("connection_security_policy", "unknown"),
    ];
    assert_eq!(e.value("istio_requests_total", &source), 2.0);
    let sample = e.find("istio_requests_total", &source)[0];
    let mut names: Vec<&str> = sample.labels.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut want = labels::HTTP_LABELS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "exactly Istio's 25 labels");
    let destination = [
        ("reporter", "destination"),
        ("connection_security_policy", "mutual_tls"),
        ("source_principal", SLEEP_ID),
    ];
    assert_eq!(e.value("istio_requests_total", &destination), 1.0);

    // 7 ms, 120 bytes in, 3000 out, twice on the client side.
    let dur = |le: &str| {
        let mut l = source.to_vec();
        l.push(("le", le));
        e.value("istio_request_duration_milliseconds_bucket", &l)
    };
    assert_eq!((dur("5.0"), dur("10.0"), dur("+Inf")), (0.0, 2.0, 2.0));
    assert_eq!(
        e.value("istio_request_duration_milliseconds_sum", &source),
        14.0
    );
    assert_eq!(e.value("istio_request_bytes_sum", &source), 240.0);
    assert_eq!(e.value("istio_response_bytes_count", &source), 2.0);
    let les: Vec<&str> = e
        .find("istio_response_bytes_bucket", &source)
        .iter()
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(
        les,
        [
            "0.5",
            "1.0",
            "5.0",
            "10.0",
            "25.0",
            "50.0",
            "100.0",
            "250.0",
            "500.0",
            "1000.0",
            "2500.0",
            "5000.0",
            "10000.0",
            "30000.0",
            "60000.0",
            "300000.0",
            "600000.0",
            "1800000.0",
            "3600000.0",
            "+Inf"
        ]
    );
    // Plain HTTP: no gRPC message counters, no TCP families.
    assert!(!e.families.contains_key("istio_request_messages"));
    assert!(!e.families.contains_key("istio_tcp_connections_opened"));
    assert_eq!(e.value("istio_build", &[("component", "proxy")]), 1.0);
}

#[test]
fn grpc_requests_count_messages() {
    let hub = Arc::new(Hub::default());
    let m = sink(&MetricsConfig::default(), &hub);
    let f = Fixture::client();
    let mut rec = f.http(true, 200);
    rec.grpc = true;
    rec.grpc_status = Some(0);
    rec.request_messages = 3;
    rec.response_messages = 5;
    m.http(&rec);
    m.http(&rec);
    m.http(&f.http(true, 200));
    let (_, e) = scrape(&hub);
    let grpc = [("request_protocol", "grpc"), ("grpc_response_status", "0")];
    assert_eq!(e.value("istio_request_messages_total", &grpc), 6.0);
    assert_eq!(e.value("istio_response_messages_total", &grpc), 10.0);
    assert_eq!(
        e.find("istio_request_messages_total", &[]).len(),
        1,
        "none for HTTP"
    );
    assert_eq!(e.value("istio_requests_total", &grpc), 2.0);
    assert_eq!(
        e.value("istio_requests_total", &[("request_protocol", "http")]),
        1.0
    );
}

#[test]
fn tcp_connections_and_bytes() {
    let hub = Arc::new(Hub::default());
    let m = sink(&MetricsConfig::default(), &hub);
    let f = Fixture::server();
    m.tcp(&f.tcp(false, TcpEvent::Opened));
    m.tcp(&f.tcp(false, TcpEvent::Progress));
    m.tcp(&f.tcp(false, TcpEvent::Closed));
    m.tcp(&f.tcp(false, TcpEvent::Opened));
    let (_, e) = scrape(&hub);
    let l = [
        ("reporter", "destination"),
        ("request_protocol", "tcp"),
        ("connection_security_policy", "mutual_tls"),
    ];
    assert_eq!(e.value("istio_tcp_connections_opened_total", &l), 2.0);
    assert_eq!(e.value("istio_tcp_connections_closed_total", &l), 1.0);
    assert_eq!(e.value("istio_tcp_received_bytes_total", &l), 200.0);
    assert_eq!(e.value("istio_tcp_sent_bytes_total", &l), 500.0);
    let sample = e.find("istio_tcp_sent_bytes_total", &l)[0];
    assert_eq!(sample.labels.len(), 23);
    assert!(!sample.labels.contains_key("response_code"));
    assert!(!e.families.contains_key("istio_requests"));
}

#[test]
fn a_disabled_metric_is_not_recorded_at_all() {
    let hub = Arc::new(Hub::default());
    let mut config = MetricsConfig::default();
    let mut off = override_(IstioMetric::RequestCount, ReporterMode::ClientAndServer);
    off.disabled = Some(true);
    let mut tcp_off = override_(IstioMetric::AllMetrics, ReporterMode::Server);
    tcp_off.disabled = Some(true);
    config.overrides = vec![off, tcp_off];
    let m = sink(&config, &hub);
    let f = Fixture::client();
    m.http(&f.http(true, 200));
    m.http(&Fixture::server().http(false, 200));
    m.tcp(&Fixture::server().tcp(false, TcpEvent::Opened));
    let (text, e) = scrape(&hub);
    assert!(!text.contains("istio_requests_total{"), "{text}");
    assert!(!e.families.contains_key("istio_requests"));
    assert!(!e.families.contains_key("istio_tcp_connections_opened"));
    assert_eq!(
        e.value(
            "istio_request_duration_milliseconds_count",
            &[("reporter", "source")]
        ),
        1.0
    );
    // Everything is off on the server side.
    assert!(
        e.find("istio_request_bytes_count", &[("reporter", "destination")])
            .is_empty()
    );
    // A later override re-enables what an earlier one disabled.
    let mut on = override_(IstioMetric::RequestCount, ReporterMode::Client);
    on.disabled = Some(false);
    config.overrides.push(on);
    let m = sink(&config, &hub);
    m.http(&f.http(true, 200));
    let (_, e) = scrape(&hub);
    assert_eq!(
        e.value("istio_requests_total", &[("reporter", "source")]),
        1.0
    );
}

#[test]
fn tag_overrides_remove_and_upsert_labels() {
    let hub = Arc::new(Hub::default());
    let mut config = MetricsConfig::default();
    let mut o = override_(IstioMetric::RequestCount, ReporterMode::Client);
    o.tags = vec![
        TagOverride {
            tag: "destination_canonical_revision".into(),
            value: None,
        },
        TagOverride {
            tag: "request_host".into(),
            value: Some(Expr::Attr(Attribute::RequestHost)),
        },
        TagOverride {
            tag: "destination_app".into(),
            value: Some(Expr::String("rewritten".into())),
        },
        TagOverride {
            tag: "request_operation".into(),
            value: Some(Expr::Index(
                weft_api::MapAttribute::RequestHeaders,
                "x-op".into(),
            )),
        },
    ];
    config.overrides = vec![o];
    let m = sink(&config, &hub);
    let f = Fixture::client();
    m.http(&f.http(true, 200));
    m.http(&Fixture::server().http(false, 200));
    let (_, e) = scrape(&hub);
    let client = e.find("istio_requests_total", &[("reporter", "source")]);
    assert_eq!(client.len(), 1);
    let labels = &client[0].labels;
    assert!(!labels.contains_key("destination_canonical_revision"));
    assert_eq!(labels["request_host"], "cart.shop:3002");
    assert_eq!(labels["destination_app"], "rewritten");
    assert_eq!(labels["request_operation"], "unknown", "absent value");
    assert_eq!(labels.len(), 26);
    // The other client metrics and the server side keep the standard labels.
    let duration = e.find(
        "istio_request_duration_milliseconds_count",
        &[("reporter", "source")],
    );
    assert_eq!(duration[0].labels.len(), 25);
    assert_eq!(duration[0].labels["destination_app"], "cart");
    let server = e.find("istio_requests_total", &[("reporter", "destination")]);
    assert_eq!(server[0].labels.len(), 25);
}

#[test]
fn invalid_tag_names_are_ignored() {
    let hub = Arc::new(Hub::default());
    let mut config = MetricsConfig::default();
    let mut o = override_(IstioMetric::AllMetrics, ReporterMode::ClientAndServer);
    o.tags = vec![
        TagOverride {
            tag: "bad-name".into(),
            value: Some(Expr::String("x".into())),
        },
        TagOverride {
            tag: "le".into(),
            value: Some(Expr::String("x".into())),
        },
    ];
    config.overrides = vec![o];
    let m = sink(&config, &hub);
    m.http(&Fixture::client().http(true, 200));
    let (_, e) = scrape(&hub);
    assert_eq!(e.find("istio_requests_total", &[])[0].labels.len(), 25);
}

#[test]
fn the_cap_sends_new_label_sets_to_the_overflow_series() {
    let hub = Arc::new(Hub::default());
    let config = MetricsConfig {
        max_series_per_metric: 2,
        ..MetricsConfig::default()
    };
    let m = sink(&config, &hub);
    let f = Fixture::client();
    for code in [200, 201, 202, 203, 200] {
        m.http(&f.http(true, code));
    }
    let (_, e) = scrape(&hub);
    assert_eq!(e.find("istio_requests_total", &[]).len(), 3);
    assert_eq!(
        e.value("istio_requests_total", &[("response_code", "200")]),
        2.0
    );
    let overflow: Vec<(&str, &str)> = labels::HTTP_LABELS
        .iter()
        .map(|n| (*n, "overflow"))
        .collect();
    assert_eq!(e.value("istio_requests_total", &overflow), 2.0);
    assert_eq!(e.value("istio_request_bytes_count", &overflow), 2.0);
    assert_eq!(
        e.value(
            "weft_metric_series_overflow_total",
            &[("metric", "istio_requests_total")]
        ),
        2.0
    );
    assert_eq!(
        e.value("weft_metric_series", &[("metric", "istio_requests_total")]),
        2.0
    );
}

#[tokio::test(start_paused = true)]
async fn idle_series_leave_the_output() {
    let hub = Arc::new(Hub::default());
    let config = MetricsConfig {
        series_idle_expiry: Duration::from_secs(300),
        ..MetricsConfig::default()
    };
    let m = sink(&config, &hub);
    m.http(&Fixture::client().http(true, 200));
    tokio::time::advance(Duration::from_secs(200)).await;
    m.http(&Fixture::client().http(true, 500));
    tokio::time::advance(Duration::from_secs(200)).await;
    let (_, e) = scrape(&hub);
    assert!(
        e.find("istio_requests_total", &[("response_code", "200")])
            .is_empty()
    );
    assert_eq!(
        e.value("istio_requests_total", &[("response_code", "500")]),
        1.0
    );
    tokio::time::advance(Duration::from_secs(101)).await;
    let (_, e) = scrape(&hub);
    assert!(!e.families.contains_key("istio_requests"));
}

#[test]
fn series_survive_a_config_change_and_the_sink_is_installed_by_build() {
    let hub = Arc::new(Hub::default());
    let node = weft_api::Node::default();
    let first = Telemetry::build(&node, hub.clone());
    let f = Fixture::client();
    first.record_http(&f.http(true, 200));
    let second = Telemetry::build(&node, hub.clone());
    second.record_http(&f.http(true, 200));
    let (_, e) = scrape(&hub);
    assert_eq!(
        e.value("istio_requests_total", &[("reporter", "source")]),
        2.0
    );

    let mut off = node.clone();
    off.telemetry.metrics.enabled = false;
    let third = Telemetry::build(&off, hub.clone());
    third.record_http(&f.http(true, 200));
    let (_, e) = scrape(&hub);
    assert_eq!(
        e.value("istio_requests_total", &[("reporter", "source")]),
        2.0
    );
}

#[test]
fn rate_limited_requests_are_counted() {
    let hub = Arc::new(Hub::default());
    let m = sink(&MetricsConfig::default(), &hub);
    let mut f = Fixture::server();
    f.flags = "RL".into();
    m.http(&f.http(false, 429));
    f.flags = "URX,UO".into();
    m.http(&f.http(false, 503));
    assert_eq!(hub.metrics.rate_limited(), 1);
}
