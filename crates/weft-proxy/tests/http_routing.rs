//! Routing and request/response shaping through a real proxy on 127.0.0.1.

mod http_support;

use bytes::Bytes;
use http::HeaderMap;
use http_support::Proxy;
use weft_api::*;
use weft_proxy::http::route::{self, CompiledTable, NoMatch, RouteRequest};
use weft_testkit::client::{TestClient, request};
use weft_testkit::echo::EchoServer;
use weft_testkit::fixtures::*;

fn path_match(path: PathMatch) -> RouteMatch {
    RouteMatch {
        path: Some(path),
        ..RouteMatch::default()
    }
}

fn select_name(
    table: &CompiledTable,
    authority: &str,
    path: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    method: &str,
) -> Result<String, NoMatch> {
    route::select(
        table,
        &RouteRequest {
            authority,
            path,
            query,
            method,
            scheme: "http",
            headers,
        },
    )
    .map(|s| format!("{}/{}", s.vhost.name, s.route.name))
}

#[test]
fn virtual_hosts_exact_then_longest_wildcard_then_any() {
    let t = CompiledTable::compile(table(
        "t",
        vec![
            vhost("any", &["*"], vec![route_to("r", "c")]),
            vhost("wide", &["*.example.com"], vec![route_to("r", "c")]),
            vhost("narrow", &["*.api.example.com"], vec![route_to("r", "c")]),
            vhost(
                "exact",
                &["cart.shop", "cart.shop:3002", "Cart"],
                vec![route_to("r", "c")],
            ),
        ],
    ))
    .unwrap();
    let h = HeaderMap::new();
    let pick = |a: &str| select_name(&t, a, "/", &h, None, "GET").unwrap();
    assert_eq!(pick("cart.shop"), "exact/r");
    assert_eq!(pick("cart.shop:3002"), "exact/r");
    assert_eq!(pick("CART"), "exact/r", "domains ignore case");
    assert_eq!(
        pick("cart.shop:9999"),
        "exact/r",
        "port-less domain matches any port"
    );
    assert_eq!(pick("x.api.example.com"), "narrow/r");
    assert_eq!(pick("x.example.com:80"), "wide/r");
    assert_eq!(pick("example.com"), "any/r", "wildcard needs a label");
    assert_eq!(pick("other"), "any/r");
}

#[test]
fn every_route_match_field() {
    let header = |name: &str, value: StringMatch, invert: bool| HeaderMatch {
        name: name.into(),
        value,
        invert,
    };
    let routes = vec![
        route(
            "exact",
            vec![path_match(PathMatch::Exact {
                value: "/Exact".into(),
                ignore_case: true,
            })],
            RouteAction::Forward(Forward::default()),
        ),
        route(
            "segment",
            vec![path_match(PathMatch::SegmentPrefix {
                value: "/seg/".into(),
            })],
            RouteAction::Forward(Forward::default()),
        ),
        route(
            "regex",
            vec![path_match(PathMatch::Regex {
                regex: "/r/[0-9]+".into(),
            })],
            RouteAction::Forward(Forward::default()),
        ),
        route(
            "header",
            vec![RouteMatch {
                headers: vec![
                    header("x-user", StringMatch::Regex("ja.*".into()), false),
                    header("x-debug", StringMatch::Present, true),
                ],
                ..RouteMatch::default()
            }],
            RouteAction::Forward(Forward::default()),
        ),
        route(
            "inverted-missing",
            vec![RouteMatch {
                headers: vec![header("x-env", StringMatch::Exact("prod".into()), true)],
                path: Some(PathMatch::Prefix {
                    value: "/inv".into(),
                    ignore_case: false,
                }),
                ..RouteMatch::default()
            }],
            RouteAction::Forward(Forward::default()),
        ),
        route(
            "query",
            vec![RouteMatch {
                query_params: vec![QueryMatch {
                    name: "v".into(),
                    value: StringMatch::Regex("[0-9]+".into()),
                }],
                ..RouteMatch::default()
            }],
            RouteAction::Forward(Forward::default()),
        ),
        route(
            "method-scheme-authority",
            vec![RouteMatch {
                method: Some(StringMatch::Exact("POST".into())),
                scheme: Some(StringMatch::Exact("http".into())),
                authority: Some(StringMatch::Prefix("svc".into())),
                ..RouteMatch::default()
            }],
            RouteAction::Forward(Forward::default()),
        ),
        route(
            "second-alternative",
            vec![prefix("/nope"), prefix("/alt")],
            RouteAction::Forward(Forward::default()),
        ),
    ];
    let t = CompiledTable::compile(table("t", vec![vhost("v", &["*"], routes)])).unwrap();
    let mut h = HeaderMap::new();
    let name = |path: &str, h: &HeaderMap, q: Option<&str>, m: &str| {
        select_name(&t, "svc:80", path, h, q, m).map(|n| n.trim_start_matches("v/").to_string())
    };
    assert_eq!(name("/exact", &h, None, "GET").unwrap(), "exact");
    assert_eq!(name("/seg", &h, None, "GET").unwrap(), "segment");
    assert_eq!(name("/seg/x", &h, None, "GET").unwrap(), "segment");
    assert!(name("/segment", &h, None, "GET").is_err());
    assert_eq!(name("/r/42", &h, None, "GET").unwrap(), "regex");
    assert!(
        name("/r/42x", &h, None, "GET").is_err(),
        "regex must match the whole path"
    );
    h.insert("x-user", "jason".parse().unwrap());
    assert_eq!(name("/x", &h, None, "GET").unwrap(), "header");
    h.insert("x-debug", "1".parse().unwrap());
    assert!(
        name("/x", &h, None, "GET").is_err(),
        "inverted Present excludes"
    );
    let empty = HeaderMap::new();
    assert_eq!(
        name("/inv", &empty, None, "GET").unwrap(),
        "inverted-missing",
        "missing header compares as empty, so the inverted exact match holds"
    );
    let mut prod = HeaderMap::new();
    prod.insert("x-env", "prod".parse().unwrap());
    assert!(name("/inv", &prod, None, "GET").is_err());
    assert_eq!(
        name("/q", &empty, Some("a=b&v=12"), "GET").unwrap(),
        "query"
    );
    assert!(name("/q", &empty, Some("v=12a"), "GET").is_err());
    assert_eq!(
        name("/m", &empty, None, "POST").unwrap(),
        "method-scheme-authority"
    );
    assert_eq!(
        name("/alt/1", &empty, None, "GET").unwrap(),
        "second-alternative"
    );
    assert_eq!(
        name("/zzz", &empty, None, "GET"),
        Err(NoMatch::NoRoute { vhost: "v".into() })
    );
}

#[test]
fn a_bad_regex_is_rejected_naming_the_route() {
    let cfg = config(
        vec![table(
            "t",
            vec![vhost(
                "v",
                &["*"],
                vec![route(
                    "broken",
                    vec![path_match(PathMatch::Regex { regex: "/(".into() })],
                    RouteAction::Forward(Forward::default()),
                )],
            )],
        )],
        vec![],
    );
    let err = weft_proxy::runtime::Runtime::build(cfg, None)
        .err()
        .expect("must be rejected")
        .to_string();
    assert!(err.contains("broken") && err.contains("/("), "{err}");
}

#[tokio::test]
async fn unmatched_requests_get_404_nr_or_502_when_blocked() {
    let echo = EchoServer::start("a").await.unwrap();
    let mut cfg = config(
        vec![table(
            "t",
            vec![vhost(
                "cart",
                &["cart.shop:3002"],
                vec![route(
                    "api",
                    vec![prefix("/api")],
                    RouteAction::Forward(forward(vec![weighted("c", 1)])),
                )],
            )],
        )],
        vec![cluster("c", &[echo.addr])],
    );
    let proxy = Proxy::start(cfg.clone(), http_chain("t")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let resp = client.get("other:3002", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.header("x-weft-error").unwrap(),
        "no_route; flag=NR; route not found for host other:3002 path /"
    );
    let resp = client.get("cart.shop:3002", "/web", &[]).await.unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(
        client
            .get("cart.shop:3002", "/api/x", &[])
            .await
            .unwrap()
            .status,
        200
    );

    cfg.route_tables[0].not_found = NotFound::BlockedByPolicy502;
    proxy.reload(cfg);
    let resp = client.get("other", "/", &[]).await.unwrap();
    assert_eq!(resp.status, 502);
    assert!(
        resp.header("x-weft-error")
            .unwrap()
            .starts_with("no_route; flag=NR;")
    );
}

#[tokio::test]
async fn forwards_with_rewrites_header_ops_and_forwarding_headers() {
    let echo = EchoServer::start("a").await.unwrap();
    let mut r = route(
        "rewrite",
        vec![prefix("/v1")],
        RouteAction::Forward(Forward {
            rewrite: Some(Rewrite {
                path: Some(PathRewrite::MatchedPrefix("/v2".into())),
                authority: Some("backend.internal".into()),
            }),
            ..forward(vec![WeightedCluster {
                request_headers: HeaderOps {
                    set: vec![("x-dest".into(), "yes".into())],
                    ..Default::default()
                },
                response_headers: HeaderOps {
                    set: vec![("x-resp".into(), "dest".into())],
                    ..Default::default()
                },
                ..weighted("c", 1)
            }])
        }),
    );
    r.request_headers = HeaderOps {
        set: vec![
            ("x-route".into(), "1".into()),
            ("x-dest".into(), "route".into()),
        ],
        add: vec![],
        remove: vec!["x-remove-me".into()],
    };
    r.response_headers = HeaderOps {
        add: vec![("x-resp-route".into(), "r".into())],
        remove: vec!["x-echo-request-count".into()],
        ..Default::default()
    };
    let cfg = config(
        vec![table("t", vec![vhost("v", &["*"], vec![r])])],
        vec![cluster("c", &[echo.addr])],
    );
    let proxy = Proxy::start(cfg, http_chain("t")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let resp = client
        .get(
            "svc",
            "/v1/items?x=1",
            &[
                ("x-remove-me", "1"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    let e = resp.echoed();
    assert_eq!(e.path, "/v2/items");
    assert_eq!(e.query.as_deref(), Some("x=1"));
    assert_eq!(e.headers["host"], "backend.internal");
    assert_eq!(e.headers["x-route"], "1");
    assert_eq!(
        e.headers["x-dest"], "yes",
        "destination ops apply after route ops"
    );
    assert!(!e.headers.contains_key("x-remove-me"));
    assert!(
        !e.headers.contains_key("x-hop") && !e.headers.contains_key("keep-alive"),
        "hop-by-hop headers must not cross: {:?}",
        e.headers
    );
    assert_eq!(e.headers["x-forwarded-proto"], "http");
    assert_eq!(e.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(e.headers["x-request-id"].len(), 36);
    assert_eq!(resp.header("x-resp"), Some("dest"));
    assert_eq!(resp.header("x-resp-route"), Some("r"));
    assert!(resp.header("x-echo-request-count").is_none());

    let kept = client
        .get("svc", "/v1/", &[("x-request-id", "abc")])
        .await
        .unwrap()
        .echoed();
    assert_eq!(
        kept.headers["x-request-id"], "abc",
        "an existing request id is kept"
    );
}

#[tokio::test]
async fn redirects_and_direct_responses() {
    let routes = vec![
        route(
            "redir",
            vec![prefix("/old")],
            RouteAction::Redirect(Redirect {
                scheme: Some("https".into()),
                host: Some("new.example".into()),
                port: None,
                path: Some(PathRewrite::MatchedPrefix("/new".into())),
                status: 308,
            }),
        ),
        route(
            "direct",
            vec![prefix("/health")],
            RouteAction::DirectResponse(DirectResponse {
                status: 418,
                body: Some("teapot".into()),
            }),
        ),
    ];
    let proxy = Proxy::start(
        config(vec![table("t", vec![vhost("v", &["*"], routes)])], vec![]),
        http_chain("t"),
    )
    .await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let resp = client.get("shop.example", "/old/a?q=1", &[]).await.unwrap();
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some("https://new.example/new/a?q=1")
    );
    let resp = client.get("shop.example", "/health", &[]).await.unwrap();
    assert_eq!(resp.status, 418);
    assert_eq!(resp.body, Bytes::from("teapot"));
}

#[tokio::test]
async fn weighted_split_within_three_points() {
    let a = EchoServer::start("a").await.unwrap();
    let b = EchoServer::start("b").await.unwrap();
    let r = route(
        "split",
        vec![],
        RouteAction::Forward(forward(vec![weighted("a", 90), weighted("b", 10)])),
    );
    let cfg = config(
        vec![table("t", vec![vhost("v", &["*"], vec![r])])],
        vec![cluster("a", &[a.addr]), cluster("b", &[b.addr])],
    );
    let proxy = Proxy::start(cfg, http_chain("t")).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let total = 2000;
    let mut to_a = 0;
    for _ in 0..total {
        let resp = client.get("svc", "/", &[]).await.unwrap();
        if resp.header("x-echo-instance") == Some("a") {
            to_a += 1;
        }
    }
    let share = to_a as f64 * 100.0 / total as f64;
    assert!(
        (87.0..=93.0).contains(&share),
        "90/10 split gave {share:.1}% to a"
    );
}

#[tokio::test]
async fn http_proxy_absolute_form_routes_by_uri_authority() {
    let echo = EchoServer::start("a").await.unwrap();
    let cfg = config(
        vec![table(
            "t",
            vec![vhost("cart", &["cart:3002"], vec![route_to("r", "c")])],
        )],
        vec![cluster("c", &[echo.addr])],
    );
    let mut chain = http_chain("t");
    chain.http_proxy = true;
    let proxy = Proxy::start(cfg, chain).await;
    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let mut req = request("GET", "ignored", "/x", &[], Bytes::new(), false);
    *req.uri_mut() = "http://cart:3002/x".parse().unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.echoed().path, "/x");
}

/// An HTTP-proxy listener's "original destination" is the listener itself: passthrough must
/// go where the request's authority says, and a request naming the proxy itself must be
/// refused instead of looping back in until the proxy runs out of sockets.
#[tokio::test]
async fn http_proxy_passthrough_follows_the_authority_and_refuses_loops() {
    let echo = EchoServer::start("outside").await.unwrap();
    let mut passthrough = cluster("PassthroughCluster", &[]);
    passthrough.discovery = Discovery::OriginalDestination;
    let cfg = config(
        vec![table(
            "t",
            vec![vhost(
                "any",
                &["*"],
                vec![route_to("allow_any", "PassthroughCluster")],
            )],
        )],
        vec![passthrough],
    );
    let mut chain = http_chain("t");
    chain.http_proxy = true;
    let proxy = Proxy::start_with(cfg, chain, Direction::Outbound).await;

    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let mut req = request("GET", "ignored", "/out", &[], Bytes::new(), false);
    *req.uri_mut() = format!("http://{}/out", echo.addr).parse().unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-echo-instance"), Some("outside"));

    let mut client = TestClient::h1(proxy.addr).await.unwrap();
    let mut req = request("GET", "ignored", "/loop", &[], Bytes::new(), false);
    *req.uri_mut() = format!("http://{}/loop", proxy.addr).parse().unwrap();
    let resp = client.send(req).await.unwrap();
    assert_eq!(resp.status, 508, "{}", resp.text());
    let err = resp.header("x-weft-error").unwrap_or_default().to_string();
    assert!(err.starts_with("passthrough_loop; flag=UF;"), "{err}");
    assert_eq!(echo.requests(), 1);
}
