use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, Version};
use weft_api::Direction;

use super::*;
use crate::ConnInfo;
use crate::telemetry::record::{TcpEvent, UpstreamInfo};

fn conn(mtls: bool) -> ConnInfo {
    ConnInfo {
        listener: Arc::from("inbound"),
        direction: Direction::Inbound,
        peer: "10.0.0.7:41234".parse().unwrap(),
        original_dst: "10.0.0.9:8080".parse().unwrap(),
        local: "10.0.0.9:15006".parse().unwrap(),
        sni: None,
        peer_identity: mtls.then(|| Arc::from("spiffe://cluster.local/ns/shop/sa/web")),
        local_identity: mtls.then(|| Arc::from("spiffe://cluster.local/ns/shop/sa/cart")),
    }
}

fn meta(workload: &str, ns: &str, app: &str, version: &str) -> PeerMeta {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), app.to_string());
    labels.insert("version".to_string(), version.to_string());
    PeerMeta::from_labels(workload, ns, &labels)
}

struct Fixture {
    conn: ConnInfo,
    local: PeerMeta,
    peer: PeerMeta,
    headers: HeaderMap,
    response: HeaderMap,
    upstream: UpstreamInfo,
    method: Method,
}

impl Fixture {
    fn new(mtls: bool) -> Fixture {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", HeaderValue::from_static("curl/8.0"));
        headers.insert("x-tenant", HeaderValue::from_static("acme"));
        let mut response = HeaderMap::new();
        response.insert("content-type", HeaderValue::from_static("text/plain"));
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), "db".to_string());
        labels.insert("tier".to_string(), "backend".to_string());
        Fixture {
            conn: conn(mtls),
            local: meta("cart-v1", "shop", "cart", "v1"),
            peer: meta("web-v2", "front", "web", "v2"),
            headers,
            response,
            upstream: UpstreamInfo {
                cluster: Arc::from("inbound|8080||"),
                service: Some(Arc::from("cart.shop.svc.cluster.local")),
                host: Some("127.0.0.1:8080".parse().unwrap()),
                labels: Some(Arc::new(labels)),
                attempts: 1,
                ..UpstreamInfo::default()
            },
            method: Method::GET,
        }
    }

    fn http(&self, client_side: bool) -> HttpRecord<'_> {
        HttpRecord {
            client_side,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: Some(&self.peer),
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(12),
            response_start: Some(Duration::from_millis(10)),
            version: Version::HTTP_11,
            method: &self.method,
            path: "/api/v1beta3/items?limit=5",
            authority: "cart.shop:8080",
            scheme: "http",
            grpc: false,
            request_headers: &self.headers,
            response_code: 503,
            response_headers: Some(&self.response),
            response_trailers: None,
            grpc_status: None,
            flags: "UO",
            error_code: Some("upstream_overflow"),
            code_details: "upstream_overflow",
            request_bytes: 10,
            response_bytes: 20,
            request_messages: 0,
            response_messages: 0,
            route_name: Some("default"),
            upstream: Some(&self.upstream),
            request_id: Some("req-1"),
            span: None,
        }
    }

    fn tcp(&self) -> TcpRecord<'_> {
        TcpRecord {
            event: TcpEvent::Closed,
            client_side: false,
            conn: &self.conn,
            local: &self.local,
            downstream_peer: None,
            start: SystemTime::UNIX_EPOCH,
            duration: Duration::from_secs(1),
            received_bytes: 1,
            sent_bytes: 2,
            total_received: 1,
            total_sent: 2,
            flags: "",
            error_code: None,
            termination: None,
            route_name: None,
            upstream: Some(&self.upstream),
        }
    }
}

fn b(e: Expr) -> Box<Expr> {
    Box::new(e)
}

fn attr(a: Attribute) -> Expr {
    Expr::Attr(a)
}

fn s(v: &str) -> Expr {
    Expr::String(v.to_string())
}

fn cmp(a: Expr, op: CompareOp, b_: Expr) -> Expr {
    Expr::Compare(b(a), op, b(b_))
}

#[test]
fn request_and_response_attributes() {
    let f = Fixture::new(true);
    let rec = f.http(false);
    let x = Exchange::Http(&rec);
    let v = |e: Expr| eval(&e, &x).to_label();
    assert_eq!(
        v(attr(Attribute::RequestPath)),
        "/api/v1beta3/items?limit=5"
    );
    assert_eq!(v(attr(Attribute::RequestUrlPath)), "/api/v1beta3/items");
    assert_eq!(v(attr(Attribute::RequestHost)), "cart.shop:8080");
    assert_eq!(v(attr(Attribute::RequestMethod)), "GET");
    assert_eq!(v(attr(Attribute::RequestUserAgent)), "curl/8.0");
    assert_eq!(v(attr(Attribute::RequestProtocol)), "HTTP/1.1");
    assert_eq!(v(attr(Attribute::RequestId)), "req-1");
    assert_eq!(v(attr(Attribute::RequestReferer)), "unknown");
    assert_eq!(eval(&attr(Attribute::ResponseCode), &x), Value::Int(503));
    assert_eq!(v(attr(Attribute::ResponseFlags)), "UO");
    assert_eq!(v(attr(Attribute::ResponseCodeDetails)), "upstream_overflow");
    assert_eq!(eval(&attr(Attribute::RequestSize), &x), Value::Int(10));
    assert_eq!(eval(&attr(Attribute::ResponseSize), &x), Value::Int(20));
    assert_eq!(eval(&attr(Attribute::RequestDuration), &x), Value::Int(12));
    assert_eq!(
        eval(&attr(Attribute::ResponseGrpcStatus), &x),
        Value::Absent
    );
    assert_eq!(
        v(Expr::Index(MapAttribute::RequestHeaders, "x-tenant".into())),
        "acme"
    );
    assert_eq!(
        v(Expr::Index(
            MapAttribute::ResponseHeaders,
            "content-type".into()
        )),
        "text/plain"
    );
    assert_eq!(
        eval(
            &Expr::Index(MapAttribute::ResponseTrailers, "grpc-status".into()),
            &x
        ),
        Value::Absent
    );
    assert_eq!(v(attr(Attribute::XdsClusterName)), "inbound|8080||");
    assert_eq!(v(attr(Attribute::XdsRouteName)), "default");
    assert_eq!(v(attr(Attribute::UpstreamAddress)), "127.0.0.1:8080");
    assert_eq!(eval(&attr(Attribute::UpstreamPort), &x), Value::Int(8080));
    assert_eq!(v(attr(Attribute::SourceAddress)), "10.0.0.7:41234");
    assert_eq!(
        eval(&attr(Attribute::DestinationPort), &x),
        Value::Int(8080)
    );
}

#[test]
fn workload_attributes_follow_the_reporting_side() {
    let f = Fixture::new(true);
    let server = f.http(false);
    let x = Exchange::Http(&server);
    let v = |e: Expr| eval(&e, &x).to_label();
    assert_eq!(v(attr(Attribute::SourceWorkload)), "web-v2");
    assert_eq!(v(attr(Attribute::SourceNamespace)), "front");
    assert_eq!(v(attr(Attribute::SourceApp)), "web");
    assert_eq!(v(attr(Attribute::DestinationWorkload)), "cart-v1");
    assert_eq!(v(attr(Attribute::DestinationVersion)), "v1");
    assert_eq!(
        v(attr(Attribute::SourcePrincipal)),
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    assert_eq!(
        v(attr(Attribute::DestinationPrincipal)),
        "spiffe://cluster.local/ns/shop/sa/cart"
    );
    assert_eq!(
        v(attr(Attribute::DestinationService)),
        "cart.shop.svc.cluster.local"
    );
    assert_eq!(v(attr(Attribute::DestinationServiceName)), "cart");
    assert_eq!(v(attr(Attribute::DestinationServiceNamespace)), "shop");

    // Client side: we are the source; the destination is the upstream (no peer metadata
    // here, so its labels from the config stand in).
    let client = f.http(true);
    let x = Exchange::Http(&client);
    let v = |e: Expr| eval(&e, &x).to_label();
    assert_eq!(v(attr(Attribute::SourceWorkload)), "cart-v1");
    assert_eq!(v(attr(Attribute::DestinationWorkload)), "unknown");
    assert_eq!(v(attr(Attribute::DestinationApp)), "db");
    assert_eq!(v(attr(Attribute::DestinationNamespace)), "shop");
    assert_eq!(
        v(Expr::Index(MapAttribute::UpstreamPeerLabels, "tier".into())),
        "backend"
    );
    assert_eq!(
        v(Expr::Index(
            MapAttribute::DownstreamPeerLabels,
            "app".into()
        )),
        "web"
    );
}

#[test]
fn istio_filter_examples() {
    let f = Fixture::new(true);
    let rec = f.http(false);
    let x = Exchange::Http(&rec);
    // response.code >= 400
    let e = cmp(attr(Attribute::ResponseCode), CompareOp::Ge, Expr::Int(400));
    assert!(eval(&e, &x).truthy());
    // connection.mtls && request.url_path.contains('v1beta3')
    let e = Expr::And(
        b(attr(Attribute::ConnectionMtls)),
        b(Expr::Call(
            b(attr(Attribute::RequestUrlPath)),
            StringMethod::Contains,
            b(s("v1beta3")),
        )),
    );
    assert!(eval(&e, &x).truthy());
    let plain = Fixture::new(false);
    let rec = plain.http(false);
    assert!(!eval(&e, &Exchange::Http(&rec)).truthy());
}

#[test]
fn mismatched_types_and_absent_values_compare_false() {
    let f = Fixture::new(true);
    let rec = f.http(false);
    let x = Exchange::Http(&rec);
    let code = || attr(Attribute::ResponseCode);
    assert_eq!(
        eval(&cmp(code(), CompareOp::Eq, s("503")), &x),
        Value::Bool(false)
    );
    assert_eq!(
        eval(&cmp(code(), CompareOp::Ne, s("503")), &x),
        Value::Bool(false)
    );
    let referer = || attr(Attribute::RequestReferer);
    assert_eq!(
        eval(&cmp(referer(), CompareOp::Ne, s("x")), &x),
        Value::Bool(false)
    );
    assert_eq!(eval(&Expr::Has(b(referer())), &x), Value::Bool(false));
    assert_eq!(
        eval(&Expr::Has(b(attr(Attribute::RequestUserAgent))), &x),
        Value::Bool(true)
    );
    // `!absent` has no value; `false && absent` is decided; `true && absent` is not.
    assert_eq!(eval(&Expr::Not(b(referer())), &x), Value::Absent);
    assert_eq!(
        eval(&Expr::And(b(Expr::Bool(false)), b(referer())), &x),
        Value::Bool(false)
    );
    assert_eq!(
        eval(&Expr::And(b(Expr::Bool(true)), b(referer())), &x),
        Value::Absent
    );
    assert_eq!(
        eval(&Expr::Or(b(referer()), b(Expr::Bool(true))), &x),
        Value::Bool(true)
    );
    assert_eq!(
        eval(&Expr::Or(b(Expr::Bool(false)), b(Expr::Bool(false))), &x),
        Value::Bool(false)
    );
}

#[test]
fn conversions_methods_and_arithmetic() {
    let f = Fixture::new(true);
    let rec = f.http(false);
    let x = Exchange::Http(&rec);
    let e = Expr::ToString(b(attr(Attribute::DestinationPort)));
    assert_eq!(eval(&e, &x), Value::Str("8080".into()));
    assert_eq!(eval(&Expr::ToInt(b(s(" 42 "))), &x), Value::Int(42));
    assert_eq!(eval(&Expr::ToInt(b(s("x"))), &x), Value::Absent);
    assert_eq!(
        eval(&Expr::Add(b(Expr::Int(2)), b(Expr::Int(3))), &x),
        Value::Int(5)
    );
    assert_eq!(
        eval(&Expr::Add(b(Expr::Int(i64::MAX)), b(Expr::Int(1))), &x),
        Value::Absent
    );
    let host_port = Expr::Add(
        b(Expr::Add(b(attr(Attribute::RequestMethod)), b(s(" ")))),
        b(attr(Attribute::RequestUrlPath)),
    );
    assert_eq!(eval(&host_port, &x).to_label(), "GET /api/v1beta3/items");
    assert_eq!(
        eval(&Expr::Add(b(s("a")), b(Expr::Int(1))), &x),
        Value::Absent
    );
    let path = || b(attr(Attribute::RequestUrlPath));
    let call = |m, arg: &str| eval(&Expr::Call(path(), m, b(s(arg))), &x);
    assert_eq!(call(StringMethod::StartsWith, "/api"), Value::Bool(true));
    assert_eq!(call(StringMethod::EndsWith, "items"), Value::Bool(true));
    assert_eq!(call(StringMethod::EndsWith, "/api"), Value::Bool(false));
    // `matches` searches (unanchored), as RE2 partial match does.
    assert_eq!(call(StringMethod::Matches, "v[0-9]beta"), Value::Bool(true));
    assert_eq!(call(StringMethod::Matches, "^v1"), Value::Bool(false));
    assert_eq!(call(StringMethod::Matches, "("), Value::Absent);
    let cond = Expr::Cond(
        b(cmp(
            attr(Attribute::ResponseCode),
            CompareOp::Lt,
            Expr::Int(500),
        )),
        b(s("ok")),
        b(s("error")),
    );
    assert_eq!(eval(&cond, &x).to_label(), "error");
    assert_eq!(
        eval(&Expr::Cond(b(s("x")), b(s("a")), b(s("b"))), &x),
        Value::Absent
    );
    assert_eq!(Value::Bool(true).to_label(), "true");
    assert!(!Value::Str("true".into()).truthy());
}

#[test]
fn tcp_exchanges_have_no_request_attributes() {
    let f = Fixture::new(true);
    let rec = f.tcp();
    let x = Exchange::Tcp(&rec);
    assert_eq!(eval(&attr(Attribute::RequestPath), &x), Value::Absent);
    assert_eq!(eval(&attr(Attribute::ResponseCode), &x), Value::Absent);
    assert_eq!(
        eval(&Expr::Index(MapAttribute::RequestHeaders, "x".into()), &x),
        Value::Absent
    );
    assert_eq!(
        eval(&attr(Attribute::ConnectionMtls), &x),
        Value::Bool(true)
    );
    assert_eq!(
        eval(&attr(Attribute::DestinationWorkload), &x).to_label(),
        "cart-v1"
    );
    // No downstream metadata on this connection.
    assert_eq!(
        eval(&attr(Attribute::SourceWorkload), &x).to_label(),
        "unknown"
    );
    assert_eq!(
        eval_owned(&attr(Attribute::DestinationService), &x),
        Value::Str("cart.shop.svc.cluster.local".into())
    );
}
