//! Forwarding a routed request to a cluster: destination choice, the upstream request,
//! retries within the route timeout, mirrors and protocol upgrades.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Request, Response, Uri, Version};
use hyper::body::Incoming;
use tokio::time::Instant;
use weft_api::{Discovery, Forward, RetryPolicy, WeightedCluster};

use super::body::{self, Guarded, ProxyBody, REPLAY_LIMIT};
use super::body_tee::SharedBody;
use super::headers;
use super::mirror;
use super::observe::{self, Observation};
use super::proxy::Downstream;
use super::retry::{self, Attempt};
use crate::ConnInfo;
use crate::error::ProxyError;
use crate::runtime::Runtime;
use crate::upstream::{ClusterState, Proto, lb};

/// What was decided about the upstream request before any attempt.
pub struct Plan<'a> {
    pub route_name: &'a str,
    pub forward: &'a Forward,
    pub destination: &'a WeightedCluster,
    /// Path (rewritten) and query.
    pub path_and_query: PathAndQuery,
    /// Authority to send (rewritten or the downstream one).
    pub authority: Cow<'a, str>,
}

/// Chooses a destination by weight; none when every weight is zero.
pub fn choose_destination(clusters: &[WeightedCluster]) -> Option<&WeightedCluster> {
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut roll = fastrand::u64(..total);
    clusters.iter().find(|c| {
        let w = u64::from(c.weight);
        if roll < w {
            true
        } else {
            roll -= w;
            false
        }
    })
}

/// The request head sent upstream (per attempt, with a fresh body), for one protocol:
/// HTTP/1 gets the origin-form target and `Host`, HTTP/2 the absolute URI and no `Host`
/// (`:authority` carries it; both would be a protocol error).
struct Head {
    method: http::Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Head {
    fn new(
        proto: Proto,
        method: http::Method,
        mut headers: HeaderMap,
        plan: &Plan<'_>,
    ) -> Result<Head, ProxyError> {
        let bad_uri = |e: http::Error| ProxyError::BadRequest {
            detail: format!("cannot build upstream URI: {e}"),
        };
        let (uri, version) = match proto {
            Proto::Http1 => {
                let mut parts = http::uri::Parts::default();
                parts.path_and_query = Some(plan.path_and_query.clone());
                let uri = Uri::from_parts(parts).map_err(|e| bad_uri(e.into()))?;
                (uri, Version::HTTP_11)
            }
            Proto::Http2 => {
                headers.remove(header::HOST);
                let uri = Uri::builder()
                    .scheme("http")
                    .authority(&*plan.authority)
                    .path_and_query(plan.path_and_query.clone())
                    .build()
                    .map_err(bad_uri)?;
                (uri, Version::HTTP_2)
            }
        };
        Ok(Head {
            method,
            uri,
            version,
            headers,
        })
    }

    /// A request for one attempt or mirror; the head stays for later ones.
    fn request(&self, body: ProxyBody) -> Request<ProxyBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.headers_mut() = self.headers.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        req
    }

    /// The request for the only attempt, taking the head (no copy of the headers).
    fn into_request(self, body: ProxyBody) -> Request<ProxyBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.headers_mut() = self.headers;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        req
    }
}

fn upstream_headers(
    mut headers: HeaderMap,
    plan: &Plan<'_>,
    route: &weft_api::Route,
    ds: &Downstream<'_>,
    upgrade: bool,
) -> Result<HeaderMap, ProxyError> {
    headers::strip_hop_by_hop(&mut headers, upgrade);
    // The proxy answered `Expect: 100-continue` itself (as Envoy does by default).
    headers.remove(header::EXPECT);
    headers::apply_ops(&mut headers, &route.request_headers);
    headers::apply_ops(&mut headers, &plan.destination.request_headers);
    // The downstream Host header is sent as it came unless the authority was rewritten.
    let mut hosts = headers.get_all(header::HOST).iter();
    let same_host = hosts
        .next()
        .is_some_and(|h| h.as_bytes() == plan.authority.as_bytes())
        && hosts.next().is_none();
    if !same_host {
        let host = HeaderValue::from_str(&plan.authority).map_err(|_| ProxyError::BadRequest {
            detail: format!("authority {:?} is not a valid Host header", plan.authority),
        })?;
        headers.insert(header::HOST, host);
    }
    if ds.conn.direction != weft_api::Direction::Outbound {
        // Sidecar outbound traffic comes from the local app; appending 127.0.0.1 only adds
        // noise. Inbound and gateway hops record the client.
        let ip = ds.conn.peer.ip();
        let xff = match headers
            .get(&headers::X_FORWARDED_FOR)
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => HeaderValue::from_str(&format!("{prev}, {ip}")),
            None => HeaderValue::from_str(&ip.to_string()),
        };
        if let Ok(v) = xff {
            headers.insert(headers::X_FORWARDED_FOR, v);
        }
    }
    if !headers.contains_key(&headers::X_FORWARDED_PROTO) {
        headers.insert(
            headers::X_FORWARDED_PROTO,
            HeaderValue::from_static(if ds.scheme == "https" {
                "https"
            } else {
                "http"
            }),
        );
    }
    if !headers.contains_key(&headers::X_REQUEST_ID) {
        headers.insert(headers::X_REQUEST_ID, headers::new_request_id());
    }
    Ok(headers)
}

fn protocol(cluster: &ClusterState, downstream: Version, upgrade: bool) -> Proto {
    if upgrade {
        return Proto::Http1;
    }
    match cluster.config.protocol {
        weft_api::UpstreamProtocol::Http2 => Proto::Http2,
        weft_api::UpstreamProtocol::SameAsDownstream if downstream == Version::HTTP_2 => {
            Proto::Http2
        }
        _ => Proto::Http1,
    }
}

/// Forwards `req` as planned and returns the response to send downstream.
pub async fn forward(
    rt: &Runtime,
    route: &weft_api::Route,
    plan: Plan<'_>,
    mut req: Request<Incoming>,
    ds: &Downstream<'_>,
    obs: &mut Observation,
) -> Result<Response<ProxyBody>, ProxyError> {
    let cluster = rt
        .clusters()
        .get(&plan.destination.cluster)
        .ok_or_else(|| ProxyError::ClusterNotFound {
            cluster: plan.destination.cluster.clone(),
            route: plan.route_name.to_string(),
        })?
        .clone();
    obs.cluster(&cluster);
    let passthrough_conn = passthrough_target(&cluster, ds).await?;
    let conn = passthrough_conn.as_ref().unwrap_or(ds.conn);
    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let proto = protocol(&cluster, req.version(), upgrade);
    let hash = lb::request_hash(
        &cluster.config.lb,
        req.headers(),
        ds.query,
        ds.conn.peer.ip(),
    );
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, incoming) = req.into_parts();
    let headers = upstream_headers(parts.headers, &plan, route, ds, upgrade)?;
    let head = Head::new(proto, parts.method, headers, &plan)?;
    let incoming = match obs.request_counts() {
        Some(counts) => body::boxed(observe::counted(incoming, counts, obs.is_grpc())),
        None => body::boxed(incoming),
    };
    let shared = SharedBody::new(incoming, REPLAY_LIMIT);
    for m in &plan.forward.mirrors {
        if fastrand::f64() * 100.0 < m.percent {
            let Some(target) = rt.clusters().get(&m.cluster) else {
                tracing::debug!(cluster = %m.cluster, "mirror cluster not found");
                continue;
            };
            let Some(follower) = shared.follower() else {
                continue;
            };
            let mirrored = head.request(follower);
            mirror::spawn(
                rt.mirror_slots(),
                target.clone(),
                mirrored,
                ds.conn.clone(),
                proto,
            );
        }
    }
    let deadline = plan.forward.timeout.map(|t| Instant::now() + t);
    let attempt = Attempt {
        cluster: &cluster,
        proto,
        upgrade,
        hash: hash.hash,
        conn,
        route_name: plan.route_name,
        route_timeout: plan.forward.timeout,
        deadline,
    };
    let policy = if upgrade {
        None
    } else {
        plan.forward.retry.as_ref()
    };
    // The head is copied per attempt only when a retry can follow.
    let retries = policy.is_some_and(|p| p.attempts > 0);
    let mut head = Some(head);
    let (mut resp, guard) = retry::run(&attempt, policy, &shared, obs, |body| {
        match (retries, head.as_ref()) {
            (true, Some(h)) => Some(h.request(body)),
            _ => head.take().map(|h| h.into_request(body)),
        }
    })
    .await?;
    obs.upstream_response(&resp);

    if let (true, Some(down)) = (
        resp.status() == http::StatusCode::SWITCHING_PROTOCOLS,
        downstream_upgrade,
    ) {
        let up = hyper::upgrade::on(&mut resp);
        tokio::spawn(splice_upgrade(down, up, guard));
        let (parts, _) = resp.into_parts();
        return Ok(Response::from_parts(parts, body::empty()));
    }

    let (mut parts, incoming) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    headers::apply_ops(&mut parts.headers, &route.response_headers);
    headers::apply_ops(&mut parts.headers, &plan.destination.response_headers);
    if let Some(cookie) = hash.set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        parts.headers.append(header::SET_COOKIE, cookie);
    }
    // Formatted only when there is a deadline to report (most routes have none).
    let timeout_message = match deadline {
        Some(_) => format!(
            "upstream response timeout after {:?} on route {}",
            plan.forward.timeout.unwrap_or_default(),
            plan.route_name
        ),
        None => String::new(),
    };
    let body = Guarded::new(body::boxed(incoming), guard).with_deadline(deadline, timeout_message);
    Ok(Response::from_parts(parts, ProxyBody::new(body)))
}

/// Copies bytes both ways between an upgraded downstream and upstream connection.
async fn splice_upgrade<G>(
    down: hyper::upgrade::OnUpgrade,
    up: hyper::upgrade::OnUpgrade,
    guard: G,
) {
    let _guard = guard;
    let (down, up) = match tokio::join!(down, up) {
        (Ok(d), Ok(u)) => (d, u),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!("protocol upgrade failed: {e}");
            return;
        }
    };
    let mut down = hyper_util::rt::TokioIo::new(down);
    let mut up = hyper_util::rt::TokioIo::new(up);
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!("upgraded connection ended: {e}");
    }
}

/// The backoff before retry `n` (1-based): fully jittered, exponential from `base`, capped
/// at ten times `base` (Envoy: 25 ms base, 250 ms cap).
pub fn backoff(base: Duration, n: u32) -> Duration {
    let base = if base.is_zero() {
        Duration::from_millis(25)
    } else {
        base
    };
    let ceiling = base
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(base * 10);
    ceiling.mul_f64(fastrand::f64())
}

/// Whether the policy retries on this response.
pub fn retriable_response(policy: &RetryPolicy, status: u16, headers: &HeaderMap) -> bool {
    let on = &policy.retry_on;
    if (on.five_xx && status >= 500)
        || (on.gateway_error && matches!(status, 502..=504))
        || (on.retriable_4xx && status == 409)
        || on.status_codes.contains(&status)
    {
        return true;
    }
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok())
    else {
        return false;
    };
    let name = match code {
        1 => "cancelled",
        4 => "deadline-exceeded",
        8 => "resource-exhausted",
        13 => "internal",
        14 => "unavailable",
        _ => return false,
    };
    on.grpc.iter().any(|g| g == name)
}

/// For a passthrough cluster, where the request really goes. Under transparent capture that
/// is the original destination. On an explicit listener (an HTTP proxy) the "original
/// destination" is the listener itself, so the request's authority names the target. Either
/// way, a target that is the accepting listener is refused: connecting would feed the
/// request back into this proxy, again and again, until it runs out of sockets.
async fn passthrough_target(
    cluster: &ClusterState,
    ds: &Downstream<'_>,
) -> Result<Option<ConnInfo>, ProxyError> {
    if !matches!(cluster.config.discovery, Discovery::OriginalDestination) {
        return Ok(None);
    }
    let target = if ds.conn.original_dst == ds.conn.local {
        resolve_authority(ds.authority, ds.scheme, &cluster.config.name).await?
    } else {
        ds.conn.original_dst
    };
    if target == ds.conn.local {
        return Err(ProxyError::PassthroughLoop {
            target: target.to_string(),
        });
    }
    Ok(Some(ConnInfo {
        original_dst: target,
        ..ds.conn.clone()
    }))
}

async fn resolve_authority(
    authority: &str,
    scheme: &str,
    cluster: &str,
) -> Result<SocketAddr, ProxyError> {
    let failed = |detail: String| ProxyError::UpstreamConnectFailed {
        cluster: cluster.to_string(),
        detail,
    };
    let parsed: http::uri::Authority = authority.parse().map_err(|e| {
        failed(format!(
            "request authority `{authority}` is not a host: {e}"
        ))
    })?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = parsed.host().trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_u16().unwrap_or(default_port);
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| failed(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| failed(format!("{host} resolves to no address")))
}
