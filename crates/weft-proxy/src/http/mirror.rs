//! Traffic mirroring: a fire-and-forget copy of the request to another cluster.
//!
//! The copy goes to `<host>-shadow` (Istio's convention), its response is read and dropped,
//! and at most [`MIRROR_CONCURRENCY`](crate::runtime::MIRROR_CONCURRENCY) copies are in
//! flight: when all slots are busy the copy is skipped, never queued, so mirroring cannot
//! slow the real request down.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Uri};
use http_body_util::BodyExt;
use tokio::sync::Semaphore;

use super::body::ProxyBody;
use super::route::strip_port;
use crate::ConnInfo;
use crate::upstream::{ClusterState, Proto};

/// A mirror that takes longer than this is abandoned.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

/// `cart.shop:3002` → `cart.shop-shadow:3002`.
pub fn shadow_authority(authority: &str) -> String {
    let host = strip_port(authority);
    format!("{host}-shadow{}", &authority[host.len()..])
}

pub fn spawn(
    slots: &Arc<Semaphore>,
    cluster: Arc<ClusterState>,
    mut req: Request<ProxyBody>,
    conn: ConnInfo,
    proto: Proto,
) {
    let Ok(permit) = slots.clone().try_acquire_owned() else {
        tracing::debug!(cluster = %cluster.config.name, "mirror skipped: too many in flight");
        return;
    };
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let shadow = shadow_authority(&authority);
    if let Ok(v) = HeaderValue::from_str(&shadow) {
        req.headers_mut().insert(header::HOST, v);
    }
    if proto == Proto::Http2 {
        req.headers_mut().remove(header::HOST);
        let mut parts = req.uri().clone().into_parts();
        if let Ok(a) = shadow.parse() {
            parts.authority = Some(a);
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    tokio::spawn(async move {
        let _permit = permit;
        let send = async {
            let ep = cluster
                .pick(None, &[], &conn)
                .await
                .map_err(|e| e.to_string())?;
            let _guard = cluster.start_request(&ep).map_err(|e| e.to_string())?;
            let resp = cluster
                .send_http(&ep, req, proto, false)
                .await
                .map_err(|e| format!("{e:?}"))?;
            resp.into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        };
        match tokio::time::timeout(MIRROR_TIMEOUT, send).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(cluster = %cluster.config.name, "mirror failed: {e}"),
            Err(_) => tracing::debug!(cluster = %cluster.config.name, "mirror timed out"),
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn shadow_authorities() {
        assert_eq!(
            super::shadow_authority("cart.shop:3002"),
            "cart.shop-shadow:3002"
        );
        assert_eq!(super::shadow_authority("cart"), "cart-shadow");
    }
}
