//! Opening TCP connections to endpoints: timeout, nodelay, keepalive.

use std::net::SocketAddr;

use socket2::SockRef;
use tokio::net::TcpStream;
use weft_api::Cluster;

/// `ip:port` as is, `host:port` through the resolver.
pub async fn resolve(address: &str) -> Result<SocketAddr, String> {
    match address.parse() {
        Ok(a) => Ok(a),
        Err(_) => tokio::net::lookup_host(address)
            .await
            .map_err(|e| format!("resolve {address}: {e}"))?
            .next()
            .ok_or_else(|| format!("resolve {address}: no addresses")),
    }
}

/// Connects to `address` (`ip:port`, or `host:port` resolved here) within the cluster's
/// connect timeout. The error text says what failed, for `x-weft-error`.
pub async fn connect(address: &str, cluster: &Cluster) -> Result<TcpStream, String> {
    let timeout = cluster.connect_timeout;
    let attempt = async {
        let addr = resolve(address).await?;
        TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {address}: {e}"))
    };
    let stream = match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r?,
        Err(_) => return Err(format!("connect to {address} timed out after {timeout:?}")),
    };
    // Both are best effort: a socket that refuses an option still carries traffic.
    let _ = stream.set_nodelay(true);
    if let Some(ka) = &cluster.tcp_keepalive {
        let mut params = socket2::TcpKeepalive::new();
        if let Some(t) = ka.time {
            params = params.with_time(t);
        }
        if let Some(i) = ka.interval {
            params = params.with_interval(i);
        }
        if let Some(p) = ka.probes {
            params = params.with_retries(p);
        }
        if let Err(e) = SockRef::from(&stream).set_tcp_keepalive(&params) {
            tracing::debug!(%address, "setting TCP keepalive failed: {e}");
        }
    }
    Ok(stream)
}
