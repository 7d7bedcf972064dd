//! Route matcher microbenchmarks: [`route::select`], the function every HTTP request runs
//! (and `weft why` simulates), over route tables shaped like a gateway's:
//!
//! - `route_select/exact_host/{100,5000}`: one virtual host per service (`svcN.bench.example`
//!   and `svcN.bench.example:80`, as the compiler emits them), one catch-all route; the
//!   request names the last service;
//! - `route_select/exact_host_upper_case`: the same with `Host` in upper case (the lookup
//!   lower-cases a copy only then);
//! - `route_select/wildcard_host`: `*.example.com` among 100 exact hosts;
//! - `route_select/no_virtual_host`: an authority nothing serves;
//! - `route_select/matches`: a virtual host whose routes match on path prefix, a header and
//!   a regex, the request taking the last route.
//!
//! Run: `cargo bench -p weft-proxy --bench route_match` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use weft_api::{HeaderMatch, PathMatch, RouteMatch, StringMatch};
use weft_proxy::http::route::{self, CompiledTable, RouteRequest};
use weft_testkit::fixtures::{route, route_to, table, vhost};

/// A gateway's table: `services` virtual hosts, each with its two domains and one route.
fn gateway_table(services: usize, extra: Vec<weft_api::VirtualHost>) -> CompiledTable {
    let mut hosts: Vec<_> = (0..services)
        .map(|i| {
            let host = format!("svc{i}.bench.example");
            let with_port = format!("{host}:80");
            vhost(
                &with_port,
                &[host.as_str(), with_port.as_str()],
                vec![route_to("route-0", &format!("outbound|80||svc{i}"))],
            )
        })
        .collect();
    hosts.extend(extra);
    CompiledTable::compile(table("gateway", hosts)).expect("the table compiles")
}

fn select(table: &CompiledTable, authority: &str, path: &str, headers: &HeaderMap) -> bool {
    route::select(
        table,
        &RouteRequest {
            authority,
            path,
            query: None,
            method: "GET",
            scheme: "http",
            headers,
        },
    )
    .is_ok()
}

fn matching_routes() -> weft_api::VirtualHost {
    let prefix = |p: &str| RouteMatch {
        path: Some(PathMatch::Prefix {
            value: p.to_string(),
            ignore_case: false,
        }),
        ..RouteMatch::default()
    };
    let header = RouteMatch {
        headers: vec![HeaderMatch {
            name: "x-canary".into(),
            value: StringMatch::Exact("yes".into()),
            invert: false,
        }],
        ..prefix("/")
    };
    let regex = RouteMatch {
        path: Some(PathMatch::Regex {
            regex: "/api/v[0-9]+/items/[a-z0-9-]+".into(),
        }),
        ..RouteMatch::default()
    };
    let forward = |cluster: &str| route_to("r", cluster).action;
    vhost(
        "matches",
        &["matches.example"],
        vec![
            route("admin", vec![prefix("/admin")], forward("admin")),
            route("canary", vec![header], forward("canary")),
            route("items", vec![regex], forward("items")),
        ],
    )
}

fn bench(c: &mut Criterion) {
    let none = HeaderMap::new();
    let mut group = c.benchmark_group("route_select");
    for services in [100, 5000] {
        let table = gateway_table(services, Vec::new());
        let host = format!("svc{}.bench.example", services - 1);
        assert!(select(&table, &host, "/", &none));
        group.bench_function(format!("exact_host/{services}"), |b| {
            b.iter(|| select(black_box(&table), black_box(&host), "/", &none))
        });
    }
    let wildcard = vhost("wide", &["*.example.com"], vec![route_to("r", "wide")]);
    let table = gateway_table(100, vec![wildcard, matching_routes()]);
    let upper = "SVC99.BENCH.EXAMPLE";
    assert!(select(&table, upper, "/", &none));
    group.bench_function("exact_host_upper_case", |b| {
        b.iter(|| select(black_box(&table), black_box(upper), "/", &none))
    });
    assert!(select(&table, "shop.example.com", "/", &none));
    group.bench_function("wildcard_host", |b| {
        b.iter(|| select(black_box(&table), black_box("shop.example.com"), "/", &none))
    });
    assert!(!select(&table, "nobody.invalid", "/", &none));
    group.bench_function("no_virtual_host", |b| {
        b.iter(|| select(black_box(&table), black_box("nobody.invalid"), "/", &none))
    });
    let path = "/api/v2/items/abc-123";
    assert!(select(&table, "matches.example", path, &none));
    group.bench_function("matches", |b| {
        b.iter(|| select(black_box(&table), "matches.example", black_box(path), &none))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
