//! CORS (VirtualService `corsPolicy`, Gateway API CORS filter) as Envoy's CORS filter does
//! it: preflights are answered by the proxy, allowed origins are echoed back.

use http::header::{HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use regex::Regex;
use weft_api::{CorsPolicy, StringMatch};

use super::body::{self, ProxyBody};

pub enum Cors {
    /// Answer now (a preflight).
    Answer(Response<ProxyBody>),
    /// Forward; add these headers to the response.
    Forward(Vec<(&'static str, HeaderValue)>),
}

fn origin_allowed(policy: &CorsPolicy, origin: &str) -> bool {
    policy.allow_origins.iter().any(|m| match m {
        StringMatch::Exact(v) => v == "*" || v == origin,
        StringMatch::Prefix(v) => origin.starts_with(v.as_str()),
        StringMatch::Suffix(v) => origin.ends_with(v.as_str()),
        StringMatch::Regex(r) => {
            Regex::new(&format!("^(?:{r})$")).is_ok_and(|re| re.is_match(origin))
        }
        StringMatch::Present => true,
    })
}

fn value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

pub fn apply(policy: &CorsPolicy, method: &Method, headers: &HeaderMap) -> Cors {
    let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else {
        return Cors::Forward(Vec::new());
    };
    let preflight =
        method == Method::OPTIONS && headers.contains_key("access-control-request-method");
    let allowed = origin_allowed(policy, origin);
    let mut out: Vec<(&'static str, HeaderValue)> = Vec::new();
    if allowed {
        out.extend(value(origin).map(|v| ("access-control-allow-origin", v)));
        if policy.allow_credentials {
            out.push((
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            ));
        }
    }
    if !preflight {
        if allowed && !policy.expose_headers.is_empty() {
            out.extend(
                value(&policy.expose_headers.join(","))
                    .map(|v| ("access-control-expose-headers", v)),
            );
        }
        return Cors::Forward(out);
    }
    if !allowed {
        if policy.ignore_unmatched_preflights {
            return Cors::Answer(preflight_response(Vec::new()));
        }
        // Envoy forwards preflights it does not accept; the upstream decides.
        return Cors::Forward(Vec::new());
    }
    if !policy.allow_methods.is_empty() {
        out.extend(
            value(&policy.allow_methods.join(",")).map(|v| ("access-control-allow-methods", v)),
        );
    }
    if !policy.allow_headers.is_empty() {
        out.extend(
            value(&policy.allow_headers.join(",")).map(|v| ("access-control-allow-headers", v)),
        );
    }
    if let Some(age) = policy.max_age {
        out.extend(value(&age.as_secs().to_string()).map(|v| ("access-control-max-age", v)));
    }
    Cors::Answer(preflight_response(out))
}

fn preflight_response(headers: Vec<(&'static str, HeaderValue)>) -> Response<ProxyBody> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::OK;
    for (n, v) in headers {
        resp.headers_mut().insert(n, v);
    }
    resp
}
