//! Retry policies: Istio's defaults, `attempts: 0`, the mesh `defaultHttpRetryPolicy`,
//! and `retryOn` parsing.

use std::time::Duration;

use weft_api::{RetryOn, RetryPolicy};
use weft_config::kinds::istio::{HTTPRetry, MeshConfig};

/// Istio's default `retryOn` (the code adds `retriable-status-codes`).
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(25);

/// Istio's retry policy: no `retries` → the mesh `defaultHttpRetryPolicy` or the built-in
/// default (2 attempts on connect-failure, refused-stream, unavailable, cancelled,
/// retriable-status-codes); `attempts <= 0` → none; empty `retryOn` → the default list.
/// `other_host` is cleared later for consistent-hash destinations.
pub fn retry_policy(retries: Option<&HTTPRetry>, mesh: &MeshConfig) -> Option<RetryPolicy> {
    let mesh_default;
    let r = match retries {
        Some(r) => r,
        None => match &mesh.default_http_retry_policy {
            Some(m) => {
                mesh_default = HTTPRetry {
                    attempts: m.attempts.unwrap_or(0),
                    per_try_timeout: m.per_try_timeout,
                    retry_on: m.retry_on.clone().unwrap_or_default(),
                    retry_remote_localities: m.retry_remote_localities,
                    retry_ignore_previous_hosts: m.retry_ignore_previous_hosts,
                    backoff: m.backoff,
                };
                &mesh_default
            }
            None => {
                return Some(RetryPolicy {
                    attempts: DEFAULT_RETRY_ATTEMPTS,
                    per_try_timeout: None,
                    retry_on: parse_retry_on(DEFAULT_RETRY_ON),
                    backoff_base: DEFAULT_BACKOFF,
                    other_host: true,
                    budget: None,
                });
            }
        },
    };
    let attempts = u32::try_from(r.attempts).ok().filter(|a| *a > 0)?;
    let retry_on = if r.retry_on_list().is_empty() {
        DEFAULT_RETRY_ON
    } else {
        r.retry_on.as_str()
    };
    Some(RetryPolicy {
        attempts,
        per_try_timeout: r
            .per_try_timeout
            .map(|d| d.as_std())
            .filter(|d| !d.is_zero()),
        retry_on: parse_retry_on(retry_on),
        backoff_base: r
            .backoff
            .map(|d| d.as_std())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_BACKOFF),
        other_host: r.retry_ignore_previous_hosts != Some(false),
        budget: None,
    })
}

/// Envoy `x-envoy-retry-on` / `x-envoy-retry-grpc-on` names; bare integers are status codes.
pub fn parse_retry_on(list: &str) -> RetryOn {
    let mut on = RetryOn::default();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "5xx" => on.five_xx = true,
            "gateway-error" => on.gateway_error = true,
            "reset" | "reset-before-request" => on.reset = true,
            "connect-failure" => on.connect_failure = true,
            "refused-stream" => on.refused_stream = true,
            "retriable-4xx" => on.retriable_4xx = true,
            "cancelled" | "deadline-exceeded" | "internal" | "resource-exhausted"
            | "unavailable" => on.grpc.push(item.to_string()),
            code => {
                if let Ok(c) = code.parse::<u16>() {
                    on.status_codes.push(c);
                }
                // retriable-status-codes only enables the code list; envoy-ratelimited,
                // retriable-headers and http3-post-connect-failure have no weft equivalent.
            }
        }
    }
    on.status_codes.sort_unstable();
    on.status_codes.dedup();
    on.grpc.sort();
    on.grpc.dedup();
    on
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh() -> MeshConfig {
        MeshConfig::default()
    }

    #[test]
    fn retry_defaults() {
        let r = retry_policy(None, &mesh()).unwrap();
        assert_eq!(r.attempts, 2);
        assert!(r.retry_on.connect_failure && r.retry_on.refused_stream);
        assert_eq!(r.retry_on.grpc, vec!["cancelled", "unavailable"]);
        assert_eq!(r.backoff_base, Duration::from_millis(25));
        assert!(r.other_host);
        // attempts: 0, or a retries block without attempts, turns retries off.
        assert!(retry_policy(Some(&HTTPRetry::default()), &mesh()).is_none());
        let r = HTTPRetry {
            attempts: 3,
            ..Default::default()
        };
        let p = retry_policy(Some(&r), &mesh()).unwrap();
        assert_eq!(p.attempts, 3);
        assert!(
            p.retry_on.connect_failure,
            "empty retryOn takes the default list"
        );
        let r = HTTPRetry {
            attempts: 1,
            retry_on: "5xx,503, 429".into(),
            ..Default::default()
        };
        let p = retry_policy(Some(&r), &mesh()).unwrap();
        assert!(p.retry_on.five_xx && !p.retry_on.connect_failure);
        assert_eq!(p.retry_on.status_codes, vec![429, 503]);
    }

    #[test]
    fn mesh_default_retry_policy_replaces_the_builtin_one() {
        let m = MeshConfig::parse_str(
            "m",
            "defaultHttpRetryPolicy: {attempts: 5, retryOn: gateway-error}\n",
        )
        .unwrap();
        let p = retry_policy(None, &m).unwrap();
        assert_eq!(p.attempts, 5);
        assert!(p.retry_on.gateway_error && !p.retry_on.connect_failure);
        let m = MeshConfig::parse_str("m", "defaultHttpRetryPolicy: {attempts: 0}\n").unwrap();
        assert!(retry_policy(None, &m).is_none());
    }
}
