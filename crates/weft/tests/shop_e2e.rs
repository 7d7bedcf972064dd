//! The shop end to end (issue 5): `weft up` on a copy of examples/shop with the real shop
//! applications, checked from outside like a user would:
//!
//! 1. every replica has a ready proxy and traffic crosses the sidecars;
//! 2. the gateway routes each path prefix to its service;
//! 3. the product canary splits 90/10 and VIPs always get v2;
//! 4. STRICT mTLS: a client without a mesh identity gets no answer from a service port;
//! 5. cart's circuit breaker trips under 3 concurrent clients (503 UO) and recovers;
//! 6. order's per-try timeout cuts a slow upstream, its retries hide a failing one;
//! 7. the fault overlay applies live at its rates and goes away without restarts;
//! 8. an order survives a restart of `weft up` (same run directory, same data).
//!
//! One `weft up` serves checks 1-7; 8 stops it and starts another. Each check is a
//! function of a [`MeshUnderTest`]; a capture [`Mode`] says how `weft up` starts and how a
//! client sends from inside the mesh. [`shop_suite`] runs everything for a mode, once per
//! mode below: explicit (no root; applications use `HTTP_PROXY`) and transparent
//! (`--netns`, root; a client in a replica's network namespace calls `http://cart:3002`
//! with no proxy settings and the iptables capture takes it). The two runs use their own
//! run directories, gateway addresses and debug ports, so they run at once.
//!
//! `weft up` reports ready once every application's `readinessProbe` (`GET /ready`, 200
//! once the shop's store is open) passes, so the checks start right away.
//!
//! Needs the shop's binaries next to `weft` (`cargo build -p weft-shop`; CI's workspace
//! run builds them).

#[path = "shop_e2e/checks.rs"]
mod checks;
#[path = "shop_e2e/explicit.rs"]
mod explicit;
#[path = "shop_e2e/harness.rs"]
mod harness;
#[path = "shop_e2e/http.rs"]
mod http;
#[path = "shop_e2e/resilience.rs"]
mod resilience;
#[path = "shop_e2e/transparent.rs"]
mod transparent;

use std::path::Path;

use serde_json::Value;

use explicit::Explicit;
use harness::{MeshUnderTest, Mode, Up};
use http::Req;

/// Checks 1-7 against one running mesh, in an order where each leaves the mesh as it
/// found it (live edits are undone before the next check).
async fn run_checks(m: &MeshUnderTest) {
    checks::proxies_ready_and_in_the_path(m).await;
    checks::gateway_routes_each_prefix(m).await;
    checks::canary_split_and_vip(m).await;
    checks::strict_mtls_refuses_plaintext(m).await;
    resilience::cart_circuit_breaker_trips_and_recovers(m).await;
    resilience::per_try_timeout_cuts_a_slow_upstream(m).await;
    resilience::retries_hide_a_failing_upstream(m).await;
    resilience::fault_overlay_applies_and_goes_live(m).await;
}

/// Check 8: an order placed through the gateway is read back after `weft up` restarts on the
/// same directory and run directory (the applications' data is kept there).
async fn order_survives_a_restart(up: Up, mode: &dyn Mode) -> Up {
    let m = &up.mesh;
    let user = checks::new_user(m, "persistent").await;
    checks::add_to_cart(m, user, 6).await;
    let order = checks::place_order(m, user).await;
    let (dir, run_dir, out) = (m.dir.clone(), m.run_dir.clone(), m.out.clone());
    up.down();

    let up = Up::start(mode, &dir, &run_dir, &out).await;
    let resp = up
        .mesh
        .gateway(Req::get("", &format!("/orders/{user}")))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    assert_eq!(
        resp.json(),
        Value::Array(vec![order.clone()]),
        "orders of user {user} after the restart (placed: {order})"
    );
    up
}

/// The whole suite for one capture mode: a copy of examples/shop, one `weft up` for checks
/// 1-7, a restart for 8, then `weft down` and nothing left running.
async fn shop_suite(mode: &dyn Mode) {
    harness::require_shop_binaries();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("shop");
    harness::copy_shop(&dir);
    let run_dir = tmp.path().join("run");
    let out = tmp.path().join("up.out");
    let up = Up::start(mode, &dir, &run_dir, &out).await;
    assert_eq!(up.mesh.state()["mode"], up.mesh.mode);
    run_checks(&up.mesh).await;
    let up = order_survives_a_restart(up, mode).await;
    up.down();
    assert!(!run_dir.join("state.json").exists());
    assert!(Path::new(&run_dir).join("data/order-0/order.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_end_to_end_in_explicit_mode() {
    shop_suite(&Explicit::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shop_end_to_end_in_transparent_mode() {
    // Namespaces must be possible here (and are required under CI=true).
    let Some(mode) = transparent::Transparent::new() else {
        return;
    };
    shop_suite(&mode).await;
}
