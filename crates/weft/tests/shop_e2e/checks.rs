//! Checks 1-4 of the shop suite: proxies ready and in the path, gateway routing, the
//! product canary, STRICT mTLS. Each takes the mesh under test and asserts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{Value, json};

use super::harness::MeshUnderTest;
use super::http::{self, Req, Resp};

/// A replica with no callers of its own: requests "from inside the mesh" start at its
/// proxy, as its application's would.
pub const CLIENT: &str = "product-v1-0";

/// The shop's replicas, the service each serves and its port (examples/shop/services).
pub const SERVICES: [(&str, &str); 5] = [
    ("product-v1-0", "product:3001"),
    ("product-v2-0", "product:3001"),
    ("cart-0", "cart:3002"),
    ("order-0", "order:3003"),
    ("user-0", "user:3004"),
];

/// Requests received through the mesh tunnel (from other proxies).
pub const TUNNEL_IN: &str = "weft_tunnel_streams_received_total";
/// Requests sent through peers' tunnels.
pub const MESH_OUT: &str = "weft_mesh_streams_total";
const PLAINTEXT_REFUSED: &str = "weft_inbound_plaintext_refused_total";
const GATEWAY: &str = "istio-ingressgateway-0";

/// A new shop user through the gateway; its id.
pub async fn new_user(m: &MeshUnderTest, name: &str) -> i64 {
    let resp = m
        .gateway(Req::post(
            "",
            "/users",
            json!({"name": name, "email": format!("{name}@example.com")}),
        ))
        .await;
    assert_eq!(resp.status, 201, "POST /users: {}", resp.describe());
    resp.json()["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no user id: {}", resp.describe()))
}

pub async fn add_to_cart(m: &MeshUnderTest, user: i64, product: i64) {
    let resp = m
        .gateway(Req::post(
            "",
            &format!("/cart/{user}"),
            json!({"productId": product, "quantity": 1}),
        ))
        .await;
    assert_eq!(resp.status, 201, "POST /cart/{user}: {}", resp.describe());
}

/// Places an order through the gateway; the order as the shop returned it.
pub async fn place_order(m: &MeshUnderTest, user: i64) -> Value {
    let resp = m
        .gateway(Req::post("", "/orders", json!({"userId": user})))
        .await;
    assert_eq!(resp.status, 201, "POST /orders: {}", resp.describe());
    resp.json()
}

/// How much each proxy's counter `name` grew since `before`.
async fn grown(
    m: &MeshUnderTest,
    name: &str,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    let after = m.metric_all(name).await;
    after
        .iter()
        .map(|(r, v)| (r.clone(), v - before.get(r).copied().unwrap_or(0)))
        .collect()
}

/// Check 1: every replica (and the gateway) has a proxy that is ready, and a request through the
/// gateway crosses the sidecars: an order placed at the front door reaches order, which
/// calls user and cart (and cart calls product) through the proxies' mTLS tunnels.
pub async fn proxies_ready_and_in_the_path(m: &MeshUnderTest) {
    let procs = m.processes();
    let apps: Vec<&String> = procs
        .iter()
        .filter(|(_, role, _, _)| role == "app")
        .map(|(_, _, r, _)| r)
        .collect();
    let proxied = m.proxied_replicas();
    assert_eq!(apps.len(), SERVICES.len(), "shop replicas: {apps:?}");
    for app in &apps {
        assert!(proxied.contains(app), "replica {app} has no proxy");
    }
    assert!(proxied.iter().any(|r| r == GATEWAY), "no gateway proxy");
    for replica in &proxied {
        let admin = m.admin(replica);
        let ready = http::send(admin, &Req::get(&admin.to_string(), "/ready"), false).await;
        assert!(
            ready.as_ref().is_ok_and(|r| r.status == 200),
            "{replica}'s proxy is not ready: {:?}",
            ready.map(|r| r.describe())
        );
    }

    let tunnel_before = m.metric_all(TUNNEL_IN).await;
    let mesh_before = m.metric_all(MESH_OUT).await;
    let user = new_user(m, "ada").await;
    add_to_cart(m, user, 2).await;
    place_order(m, user).await;
    let tunnel_in = grown(m, TUNNEL_IN, &tunnel_before).await;
    let mesh_out = grown(m, MESH_OUT, &mesh_before).await;
    let seen = format!("received through the tunnel {tunnel_in:?}, sent {mesh_out:?}");
    // The gateway sent POST /users, /cart, /orders into the mesh.
    assert!(mesh_out[GATEWAY] >= 3, "{seen}");
    // order: POST /orders in; GET /users, GET /cart, DELETE /cart line out.
    assert!(
        tunnel_in["order-0"] >= 1 && mesh_out["order-0"] >= 3,
        "{seen}"
    );
    // user: POST /users (gateway) and GET /users (order) in.
    assert!(tunnel_in["user-0"] >= 2, "{seen}");
    // cart: POST (gateway), GET and DELETE (order) in; product lookups out.
    assert!(
        tunnel_in["cart-0"] >= 3 && mesh_out["cart-0"] >= 2,
        "{seen}"
    );
    assert!(
        tunnel_in["product-v1-0"] + tunnel_in["product-v2-0"] >= 2,
        "{seen}"
    );
}

/// Check 2: the gateway routes each path prefix to its service: exactly that service's proxy
/// receives the request, and the answer is that service's.
pub async fn gateway_routes_each_prefix(m: &MeshUnderTest) {
    let user = new_user(m, "grace").await;
    let cases: [(&str, String, &[&str]); 4] = [
        (
            "/products",
            "/products/1".into(),
            &["product-v1-0", "product-v2-0"],
        ),
        ("/cart", format!("/cart/{user}"), &["cart-0"]),
        ("/orders", format!("/orders/{user}"), &["order-0"]),
        ("/users", format!("/users/{user}"), &["user-0"]),
    ];
    for (prefix, path, served_by) in cases {
        let before = m.metric_all(TUNNEL_IN).await;
        let resp = m.gateway(Req::get("", &path)).await;
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.describe());
        let body = resp.json();
        let shaped = match prefix {
            "/products" => body["priceCents"].is_i64() && resp.header("x-shop-version").is_some(),
            "/cart" => body["items"].is_array(),
            "/orders" => body.is_array(),
            _ => body["email"].is_string(),
        };
        assert!(
            shaped,
            "GET {path} did not answer as {prefix}: {}",
            resp.describe()
        );
        let delta = grown(m, TUNNEL_IN, &before).await;
        let to_service: u64 = served_by.iter().map(|r| delta[*r]).sum();
        let elsewhere: u64 = delta
            .iter()
            .filter(|(r, _)| !served_by.contains(&r.as_str()))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(
            (to_service, elsewhere),
            (1, 0),
            "GET {path}: requests received per proxy {delta:?}"
        );
    }
    let resp = m.gateway(Req::get("", "/nowhere")).await;
    assert_eq!(resp.status, 404, "{}", resp.describe());
    assert!(
        resp.weft_error()
            .is_some_and(|e| e.starts_with("no_route; flag=NR")),
        "{}",
        resp.describe()
    );
}

/// The share of `responses` product v2 answered; every one must be a product answer.
fn v2_share(responses: &[Result<Resp, String>]) -> f64 {
    let mut v2 = 0;
    for r in responses {
        let r = r.as_ref().unwrap_or_else(|e| panic!("canary request: {e}"));
        assert_eq!(r.status, 200, "{}", r.describe());
        match r.header("x-shop-version") {
            Some("v2") => v2 += 1,
            Some("v1") => {}
            other => panic!("x-shop-version {other:?}: {}", r.describe()),
        }
    }
    v2 as f64 / responses.len() as f64
}

/// Check 3: the product canary, through the gateway and from inside the mesh: 10 % to v2 within
/// 3.5 standard deviations of a binomial over 1,000 requests (3.5 * sqrt(0.1 * 0.9 /
/// 1000) = 3.3 points; a correct split fails this about once in 2,000 runs), and
/// `user-type: vip` always gets v2.
pub async fn canary_split_and_vip(m: &MeshUnderTest) {
    const N: usize = 1000;
    let tolerance = 3.5 * (0.1f64 * 0.9 / N as f64).sqrt();
    let gateway = m.gateway;
    let front = http::many(N, 8, |_| {
        Box::pin(async move {
            http::send(
                gateway,
                &Req::get(&gateway.to_string(), "/products/1"),
                false,
            )
            .await
        })
    })
    .await;
    let share = v2_share(&front);
    eprintln!(
        "canary via the gateway: v2 {:.1}% of {N} (10% ± {:.1})",
        share * 100.0,
        tolerance * 100.0
    );
    assert!(
        (share - 0.1).abs() <= tolerance,
        "gateway: v2 got {:.1}% of {N}, expected 10% ± {:.1} points",
        share * 100.0,
        tolerance * 100.0
    );
    let inside = m.inside.clone();
    let mesh = http::many(N, 8, |_| {
        inside.send(CLIENT, Req::get("product:3001", "/products/1"))
    })
    .await;
    let share = v2_share(&mesh);
    eprintln!("canary inside the mesh: v2 {:.1}% of {N}", share * 100.0);
    assert!(
        (share - 0.1).abs() <= tolerance,
        "inside the mesh: v2 got {:.1}% of {N}, expected 10% ± {:.1} points",
        share * 100.0,
        tolerance * 100.0
    );

    let vip = http::many(100, 8, |_| {
        Box::pin(async move {
            let req = Req::get(&gateway.to_string(), "/products/1").header("user-type", "vip");
            http::send(gateway, &req, false).await
        })
    })
    .await;
    assert_eq!(v2_share(&vip), 1.0, "vip through the gateway");
    let vip = http::many(100, 8, |_| {
        inside.send(
            CLIENT,
            Req::get("product:3001", "/products/1").header("user-type", "vip"),
        )
    })
    .await;
    assert_eq!(v2_share(&vip), 1.0, "vip inside the mesh");
}

/// What a plain client without a mesh identity gets from `addr`: the bytes answered before
/// the connection closed (none means refused).
fn plain_request(addr: SocketAddr, authority: &str) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let req = format!("GET /health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    // A refused connection may already be closed: a failed write is a refusal too.
    if s.write_all(req.as_bytes()).is_err() {
        return Ok(Vec::new());
    }
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => Ok(got),
        // Reset by the proxy: refused, whatever arrived before.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(got),
        Err(e) => Err(format!(
            "reading from {addr}: {e} (the proxy neither answered nor closed)"
        )),
    }
}

/// Check 4: under STRICT, a client without a mesh identity connecting straight to a replica's
/// service port gets no HTTP answer (the proxy closes the plaintext connection and counts
/// it), while the same request through the mesh is answered.
pub async fn strict_mtls_refuses_plaintext(m: &MeshUnderTest) {
    for (replica, authority) in SERVICES {
        let port = authority.rsplit_once(':').expect("port").1;
        let addr: SocketAddr = format!("{}:{port}", m.address(replica))
            .parse()
            .expect("address");
        let refused_before = m.metric(replica, PLAINTEXT_REFUSED).await;
        let authority_owned = authority.to_string();
        let got = tokio::task::spawn_blocking(move || plain_request(addr, &authority_owned))
            .await
            .expect("plain client");
        let got = got.unwrap_or_else(|e| panic!("{replica}: {e}"));
        assert!(
            got.is_empty(),
            "{replica}: a plaintext client at {addr} got an answer under STRICT: {:?}",
            String::from_utf8_lossy(&got)
        );
        let refused = m.metric(replica, PLAINTEXT_REFUSED).await;
        assert_eq!(refused, refused_before + 1, "{replica}: refusals counted");

        let via_mesh = m
            .inside(CLIENT, Req::get(authority, "/health"))
            .await
            .unwrap_or_else(|e| panic!("{authority} through the mesh: {e}"));
        assert_eq!(via_mesh.status, 200, "{authority}: {}", via_mesh.describe());
    }
}
