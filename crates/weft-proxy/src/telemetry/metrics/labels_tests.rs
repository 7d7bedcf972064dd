use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::telemetry::TcpEvent;
use crate::telemetry::metrics::fixture::{CART_ID, Fixture, SLEEP_ID};

fn labels(values: &[Cow<'_, str>], names: &[&str]) -> BTreeMap<String, String> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn expect(got: &BTreeMap<String, String>, want: &[(&str, &str)]) {
    for (name, value) in want {
        assert_eq!(
            got.get(*name).map(String::as_str),
            Some(*value),
            "label {name} in {got:#?}"
        );
    }
}

#[test]
fn client_side_mtls_names_both_workloads_and_reports_unknown_policy() {
    let mut f = Fixture::client();
    f.conn.local_identity = Some(SLEEP_ID.into());
    let rec = f.http(true, 200);
    let got = labels(&http_values(&rec), &HTTP_LABELS);
    assert_eq!(got.len(), 25);
    expect(
        &got,
        &[
            ("reporter", "source"),
            ("source_workload", "sleep"),
            ("source_workload_namespace", "shop"),
            ("source_principal", SLEEP_ID),
            ("source_app", "sleep"),
            ("source_version", "v1"),
            ("source_canonical_service", "sleep"),
            ("source_canonical_revision", "v1"),
            ("source_cluster", "Kubernetes"),
            ("destination_workload", "cart-v1"),
            ("destination_workload_namespace", "shop"),
            ("destination_principal", CART_ID),
            ("destination_app", "cart"),
            ("destination_version", "v1"),
            ("destination_service", "cart.shop.svc.cluster.local"),
            ("destination_service_name", "cart"),
            ("destination_service_namespace", "shop"),
            ("destination_canonical_service", "cart"),
            ("destination_canonical_revision", "v1"),
            ("destination_cluster", "Kubernetes"),
            ("request_protocol", "http"),
            ("response_code", "200"),
            ("grpc_response_status", ""),
            ("response_flags", "-"),
            ("connection_security_policy", "unknown"),
        ],
    );
}

#[test]
fn server_side_mtls_takes_principals_from_the_connection() {
    let f = Fixture::server();
    let rec = f.http(false, 503);
    let got = labels(&http_values(&rec), &HTTP_LABELS);
    expect(
        &got,
        &[
            ("reporter", "destination"),
            ("source_workload", "sleep"),
            ("source_principal", SLEEP_ID),
            ("destination_workload", "cart-v1"),
            ("destination_principal", CART_ID),
            ("destination_service", "cart.shop.svc.cluster.local"),
            ("destination_service_name", "cart"),
            ("response_code", "503"),
            ("connection_security_policy", "mutual_tls"),
        ],
    );
}

#[test]
fn server_side_plaintext_without_peer_is_unknown_and_none() {
    let mut f = Fixture::server();
    f.conn.peer_identity = None;
    f.conn.local_identity = None;
    f.downstream_peer = None;
    let rec = f.http(false, 200);
    let got = labels(&http_values(&rec), &HTTP_LABELS);
    expect(
        &got,
        &[
            ("source_workload", "unknown"),
            ("source_workload_namespace", "unknown"),
            ("source_principal", "unknown"),
            ("source_app", "unknown"),
            ("source_version", "unknown"),
            ("source_canonical_service", "unknown"),
            ("source_canonical_revision", "latest"),
            ("source_cluster", "unknown"),
            ("destination_principal", "unknown"),
            ("destination_workload", "cart-v1"),
            ("connection_security_policy", "none"),
        ],
    );
    // Only one side has a certificate: still not mutual TLS.
    f.conn.local_identity = Some(CART_ID.into());
    let rec = f.http(false, 200);
    assert_eq!(http_values(&rec)[24], "none");
}

#[test]
fn client_side_missing_peer_falls_back_to_endpoint_labels_then_unknown() {
    let mut f = Fixture::client();
    let upstream = f.upstream.as_mut().unwrap();
    upstream.peer = None;
    upstream.identity = None;
    let mut endpoint = BTreeMap::new();
    endpoint.insert("app".to_string(), "cart".to_string());
    endpoint.insert("version".to_string(), "v2".to_string());
    upstream.labels = Some(Arc::new(endpoint));
    let rec = f.http(true, 200);
    let got = labels(&http_values(&rec), &HTTP_LABELS);
    expect(
        &got,
        &[
            ("destination_workload", "unknown"),
            ("destination_app", "cart"),
            ("destination_version", "v2"),
            ("destination_canonical_service", "cart"),
            ("destination_canonical_revision", "v2"),
            ("destination_principal", "unknown"),
            ("source_principal", "unknown"),
            // From the `.svc.` host, as the workload's namespace is not known.
            ("destination_service_namespace", "shop"),
        ],
    );
    f.upstream.as_mut().unwrap().labels = None;
    let rec = f.http(true, 200);
    let got = labels(&http_values(&rec), &HTTP_LABELS);
    expect(
        &got,
        &[
            ("destination_app", "unknown"),
            ("destination_canonical_revision", "latest"),
            ("destination_cluster", "unknown"),
        ],
    );
}

#[test]
fn no_upstream_uses_the_host_header_and_code_zero() {
    let mut f = Fixture::client();
    f.upstream = None;
    f.authority = "ratings.example.com:8080".into();
    f.flags = "NR".into();
    let rec = f.http(true, 0);
    let got = labels(&http_values(&rec), &HTTP_LABELS);
    expect(
        &got,
        &[
            ("destination_service", "ratings.example.com"),
            ("destination_service_name", "ratings"),
            ("destination_service_namespace", "unknown"),
            ("destination_workload", "unknown"),
            ("response_code", "0"),
            ("response_flags", "NR"),
        ],
    );
    f.authority = String::new();
    let rec = f.http(true, 404);
    let got = labels(&http_values(&rec), &HTTP_LABELS);
    expect(
        &got,
        &[
            ("destination_service", "unknown"),
            ("destination_service_name", "unknown"),
        ],
    );
}

#[test]
fn passthrough_and_blackhole_clusters_name_themselves() {
    for cluster in [
        "PassthroughCluster",
        "BlackHoleCluster",
        "InboundPassthroughClusterIpv4",
    ] {
        let mut f = Fixture::client();
        let upstream = f.upstream.as_mut().unwrap();
        upstream.cluster = cluster.into();
        upstream.service = None;
        upstream.peer = None;
        upstream.identity = None;
        f.authority = "httpbin.org".into();
        let rec = f.http(true, 200);
        let got = labels(&http_values(&rec), &HTTP_LABELS);
        expect(
            &got,
            &[
                ("destination_service", "httpbin.org"),
                ("destination_service_name", cluster),
            ],
        );
    }
}

#[test]
fn grpc_status_from_trailers_or_mapped_from_http() {
    let f = Fixture::client();
    let mut rec = f.http(true, 200);
    rec.grpc = true;
    rec.grpc_status = Some(5);
    let v = http_values(&rec);
    assert_eq!((&*v[20], &*v[22]), ("grpc", "5"));
    rec.grpc_status = None;
    rec.response_code = 503;
    assert_eq!(http_values(&rec)[22], "14", "503 maps to UNAVAILABLE");
    rec.response_code = 0;
    assert_eq!(http_values(&rec)[22], "");
}

#[test]
fn tcp_labels_have_no_response_code() {
    let f = Fixture::server();
    let rec = f.tcp(false, TcpEvent::Opened);
    let got = labels(&tcp_values(&rec), &TCP_LABELS);
    assert_eq!(got.len(), 23);
    assert!(!got.contains_key("response_code") && !got.contains_key("grpc_response_status"));
    expect(
        &got,
        &[
            ("reporter", "destination"),
            ("request_protocol", "tcp"),
            ("response_flags", "-"),
            ("connection_security_policy", "mutual_tls"),
            ("destination_service", "cart.shop.svc.cluster.local"),
        ],
    );
}

#[test]
fn authority_hosts() {
    assert_eq!(authority_host("a.b:80"), "a.b");
    assert_eq!(authority_host("a.b"), "a.b");
    assert_eq!(authority_host("[::1]:80"), "::1");
    assert_eq!(authority_host(""), "");
}
