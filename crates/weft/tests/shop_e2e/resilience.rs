//! Checks 5-7 of the shop suite: the cart circuit breaker, order's retries and per-try
//! timeout, the fault overlay applied and removed live.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use weft_testkit::wait::eventually;

use super::checks::{CLIENT, TUNNEL_IN, add_to_cart, new_user};
use super::harness::{DEADLINE, MeshUnderTest, cart_faults_overlay};
use super::http::{self, Conn, Req};

/// The shop's product ids (examples/shop/app: the catalogue).
const PRODUCTS: [i64; 6] = [1, 2, 3, 4, 5, 6];

/// Check 5: three clients at once, 50 requests, against cart's circuit breaker (DestinationRule
/// shop/cart: one request in flight, one pending): some are refused with 503 and flag UO
/// naming the DestinationRule, none fails otherwise, and one client alone is served again
/// right after.
///
/// The load: 3 keep-alive connections to the gateway sharing 50 GET /cart/<user>, on a
/// cart holding every product, so each answer takes cart a lookup per product through the
/// mesh (a slower endpoint, not a delay the test adds) and the three overlap.
pub async fn cart_circuit_breaker_trips_and_recovers(m: &MeshUnderTest) {
    let user = new_user(m, "breaker").await;
    for p in PRODUCTS {
        add_to_cart(m, user, p).await;
    }
    let path = format!("/cart/{user}");
    let left = Arc::new(AtomicUsize::new(50));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (left, gateway, path) = (left.clone(), m.gateway, path.clone());
        clients.spawn(async move {
            let mut conn = Conn::open(gateway).await?;
            let req = Req::get(&gateway.to_string(), &path);
            let mut got = Vec::new();
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                got.push(conn.send(&req, false).await?);
            }
            Ok::<_, String>(got)
        });
    }
    let mut ok = 0;
    let mut overflow = Vec::new();
    while let Some(joined) = clients.join_next().await {
        let responses = joined
            .expect("client task")
            .unwrap_or_else(|e| panic!("circuit breaker load: {e}"));
        for r in responses {
            match r.status {
                200 => ok += 1,
                _ => overflow.push(r),
            }
        }
    }
    assert_eq!(ok + overflow.len(), 50);
    eprintln!(
        "circuit breaker: {ok} served, {} refused of 50",
        overflow.len()
    );
    assert!(
        !overflow.is_empty(),
        "3 concurrent clients never tripped the circuit breaker of cart (50 × 200)"
    );
    for r in &overflow {
        let reason = r.weft_error().unwrap_or_default();
        assert!(
            r.status == 503
                && reason.starts_with("upstream_overflow; flag=UO;")
                && reason.contains("DestinationRule shop/cart"),
            "not a circuit-breaker refusal: {}",
            r.describe()
        );
    }
    // One client alone is within the limits again.
    for _ in 0..20 {
        let r = m.gateway(Req::get("", &path)).await;
        assert_eq!(r.status, 200, "after the load: {}", r.describe());
    }
}

/// Check 6a: order's per-try timeout: with every call from order to cart delayed 5 s (an
/// overlay this check writes and removes), a request to order from inside the mesh is cut
/// at 2 s per try and retried until the 5 s route timeout answers 504 UT. Attempt counts,
/// not clocks: order's proxy receives 2 or 3 attempts (at 0, 2 and 4 s); without the
/// per-try timeout the single first attempt would run into the route timeout.
pub async fn per_try_timeout_cuts_a_slow_upstream(m: &MeshUnderTest) {
    // A user with an empty cart: order asks user, then cart (delayed), then answers 400
    // without writing anything, so the attempts cut here leave no orders behind.
    let user = new_user(m, "patience").await;
    let overlay = cart_faults_overlay()
        .replace("value: 50", "value: 100")
        .replace("value: 10\n", "value: 0\n");
    assert!(overlay.contains("value: 100"), "overlay: {overlay}");
    m.write("mesh/cart-delay.yaml", &overlay);
    m.wait_fault("order-0", true).await;

    let before = m.metric("order-0", TUNNEL_IN).await;
    let resp = m
        .inside(
            CLIENT,
            Req::post("order:3003", "/orders", json!({"userId": user})),
        )
        .await
        .unwrap_or_else(|e| panic!("POST order:3003/orders: {e}"));
    let attempts = m.metric("order-0", TUNNEL_IN).await - before;
    eprintln!("per-try timeout: {attempts} attempts at order");
    assert_eq!(resp.status, 504, "{}", resp.describe());
    assert!(
        resp.weft_error()
            .is_some_and(|e| e.starts_with("upstream_timeout; flag=UT")),
        "{}",
        resp.describe()
    );
    assert!(
        (2..=3).contains(&attempts),
        "order received {attempts} attempts; per-try timeout 2s within 5s expects 2-3"
    );
    m.remove("mesh/cart-delay.yaml");
    m.wait_fault("order-0", false).await;
}

/// Check 6b: retries hide a transient failure of order's upstream: user's replica is edited
/// live to fail its first 2 requests (`FAIL_FIRST`, which restarts only that workload);
/// an order placed from inside the mesh still succeeds, after exactly 3 attempts (order
/// answers 502 while user fails; order's VirtualService retries 5xx).
pub async fn retries_hide_a_failing_upstream(m: &MeshUnderTest) {
    // The user exists and has a cart before user restarts (its store is kept; carts live
    // in cart, which keeps running).
    let user = new_user(m, "lin").await;
    add_to_cart(m, user, 3).await;
    let services = m.read("services/user.yaml");
    let failing = services.replace(
        "    PORT: \"3004\"\n",
        "    PORT: \"3004\"\n    FAIL_FIRST: \"2\"\n",
    );
    assert_ne!(failing, services, "services/user.yaml has no PORT line");
    let pids = m.pids();
    m.write("services/user.yaml", &failing);
    wait_restarted(m, "app user-0", pids["app user-0"]).await;
    let now = m.pids();
    for (label, pid) in &pids {
        if label != "app user-0" {
            assert_eq!(
                now.get(label),
                Some(pid),
                "{label} restarted by a user edit"
            );
        }
    }

    let before = (
        m.metric("order-0", TUNNEL_IN).await,
        m.metric("user-0", TUNNEL_IN).await,
    );
    let resp = m
        .inside(
            CLIENT,
            Req::post("order:3003", "/orders", json!({"userId": user})),
        )
        .await
        .unwrap_or_else(|e| panic!("POST order:3003/orders: {e}"));
    assert_eq!(resp.status, 201, "{}", resp.describe());
    let order_attempts = m.metric("order-0", TUNNEL_IN).await - before.0;
    let user_calls = m.metric("user-0", TUNNEL_IN).await - before.1;
    assert_eq!(
        (order_attempts, user_calls),
        (3, 3),
        "attempts at order, calls to user"
    );

    let pids = m.pids();
    m.write("services/user.yaml", &services);
    wait_restarted(m, "app user-0", pids["app user-0"]).await;
}

/// Wait until `label` runs with a new pid and user is ready again (its store open).
async fn wait_restarted(m: &MeshUnderTest, label: &str, old: u32) {
    eventually(&format!("{label} restarted"), DEADLINE, || async {
        m.pids().get(label).is_some_and(|p| *p != old)
    })
    .await;
    eventually(&format!("{label} answers again"), DEADLINE, || async {
        m.inside(CLIENT, Req::get("user:3004", "/ready"))
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
}

/// Check 7: the fault overlay (examples/shop/scenarios/cart-faults.yaml: 50 % of requests to cart
/// delayed 5 s, 10 % aborted with 500) copied into the running shop applies live and its
/// rates hold; removing it restores normal answers, with no process restarted.
///
/// 500 requests from inside the mesh, 250 at a time (the delays overlap, so this takes
/// two or three 5 s rounds). Tolerances are 3.5 binomial standard deviations: aborts
/// 10 % ± 3.5 * sqrt(0.1 * 0.9 / 500) = ± 4.7 points, counted by `x-weft-error:
/// fault_abort; flag=FI`; delays 50 % ± 3.5 * sqrt(0.25 / 500) = ± 7.8 points. The proxy
/// marks a delay nowhere in the response, so a delayed request is one that took at
/// least the fault's 5 s: the delay is a lower bound, and an undelayed request of an
/// empty cart takes milliseconds.
pub async fn fault_overlay_applies_and_goes_live(m: &MeshUnderTest) {
    const N: usize = 500;
    const DELAY: Duration = Duration::from_secs(5);
    let pids = m.pids();
    m.write("mesh/cart-faults.yaml", &cart_faults_overlay());
    m.wait_fault(CLIENT, true).await;

    let inside = m.inside.clone();
    let responses = http::many(N, 250, |_| {
        inside.send(CLIENT, Req::get("cart:3002", "/cart/faults"))
    })
    .await;
    let (mut aborted, mut delayed) = (0usize, 0usize);
    for r in &responses {
        let r = r.as_ref().unwrap_or_else(|e| panic!("fault request: {e}"));
        let reason = r.weft_error().unwrap_or_default();
        if reason.starts_with("fault_abort; flag=FI") {
            assert_eq!(r.status, 500, "{}", r.describe());
            aborted += 1;
        } else {
            // The rest reached cart's cluster: served, or refused by its circuit
            // breaker when many delayed requests arrive at once.
            assert!(
                r.status == 200 || reason.starts_with("upstream_overflow; flag=UO"),
                "{}",
                r.describe()
            );
        }
        if r.elapsed >= DELAY {
            delayed += 1;
        }
    }
    eprintln!("fault overlay: {aborted} aborted, {delayed} delayed of {N}");
    let share = |k: usize| k as f64 / N as f64;
    let abort_tolerance = 3.5 * (0.1f64 * 0.9 / N as f64).sqrt();
    let delay_tolerance = 3.5 * (0.25f64 / N as f64).sqrt();
    assert!(
        (share(aborted) - 0.1).abs() <= abort_tolerance,
        "aborted {aborted} of {N}, expected 10% ± {:.1} points",
        abort_tolerance * 100.0
    );
    assert!(
        (share(delayed) - 0.5).abs() <= delay_tolerance,
        "delayed {delayed} of {N}, expected 50% ± {:.1} points",
        delay_tolerance * 100.0
    );

    m.remove("mesh/cart-faults.yaml");
    m.wait_fault(CLIENT, false).await;
    for _ in 0..50 {
        let r = m
            .inside(CLIENT, Req::get("cart:3002", "/cart/faults"))
            .await
            .unwrap_or_else(|e| panic!("after removing the overlay: {e}"));
        assert_eq!(
            r.status,
            200,
            "after removing the overlay: {}",
            r.describe()
        );
    }
    assert_eq!(
        m.pids(),
        pids,
        "a process restarted for a mesh config change"
    );
}
