//! One VirtualService HTTP route → one weft [`Route`]: matches, action, rewrites, headers,
//! retries, faults, mirrors and CORS, with Istio's defaults.

use weft_api::{
    AbortStatus, CorsPolicy, DirectResponse, Fault, FaultAbort, FaultDelay, Forward, HeaderMatch,
    HeaderOps, Mirror, Origin, PathMatch, PathRewrite, QueryMatch, Redirect, RedirectPort, Rewrite,
    Route, RouteAction, RouteMatch, StringMatch, WeightedCluster,
};
use weft_config::kinds::common::{StringMatch as IstioMatch, grpc_status_code};
use weft_config::kinds::istio::{
    HTTPMatchRequest, HTTPRoute, HeaderOperations, Headers, RedirectPortSelection,
    UnmatchedPreflights,
};

use crate::context::Ctx;
use crate::retry::retry_policy;

/// Where a route is being generated.
pub struct RouteEnv<'c, 'a> {
    pub ctx: &'c Ctx<'a>,
    /// The namespace of the VirtualService (short names resolve against it).
    pub rule_ns: &'c str,
    pub origin: Origin,
    /// The port of the route table; match blocks naming another port are dropped.
    pub port: Option<u16>,
    /// `ns/name` of the gateway being compiled; None for sidecars (`mesh`).
    pub gateway: Option<&'c str>,
}

impl RouteEnv<'_, '_> {
    /// Whether a match-level `gateways` list selects this proxy.
    pub fn gateways_select(&self, gateways: &[String]) -> bool {
        if gateways.is_empty() {
            return true;
        }
        gateways.iter().any(|g| match self.gateway {
            None => g == "mesh",
            Some(full) => qualify_gateway(g, self.rule_ns) == full,
        })
    }

    /// sourceLabels / sourceNamespace / gateways: config-time selectors on this proxy.
    fn selects_proxy(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        ns: &str,
        gateways: &[String],
    ) -> bool {
        weft_config::kinds::common::labels_match(labels, self.ctx.labels())
            && (ns.is_empty() || ns == self.ctx.namespace())
            && self.gateways_select(gateways)
    }

    pub fn port_selected(&self, port: Option<u32>) -> bool {
        match (port, self.port) {
            (Some(p), Some(cur)) => p == u32::from(cur),
            _ => true,
        }
    }

    /// Whether an L4 (tcp/tls) match block applies to this proxy and port.
    pub fn l4_selected(
        &self,
        port: Option<u32>,
        labels: &std::collections::BTreeMap<String, String>,
        ns: &str,
        gateways: &[String],
    ) -> bool {
        self.port_selected(port) && self.selects_proxy(labels, ns, gateways)
    }
}

/// `name` → `ns/name` relative to the VirtualService's namespace.
pub fn qualify_gateway(g: &str, ns: &str) -> String {
    if g.contains('/') {
        g.to_string()
    } else {
        format!("{ns}/{g}")
    }
}

/// Translate route `index` of a VirtualService. None when no match block applies to this
/// proxy and port, or the rule has no action weft can run (delegation).
pub fn translate(env: &RouteEnv, index: usize, h: &HTTPRoute) -> Option<Route> {
    let mut matches = Vec::new();
    if !h.r#match.is_empty() {
        for m in &h.r#match {
            if !env.port_selected(m.port)
                || !env.selects_proxy(&m.source_labels, &m.source_namespace, &m.gateways)
            {
                continue;
            }
            if let Some(rm) = route_match(m) {
                matches.push(rm);
            }
        }
        if matches.is_empty() {
            return None;
        }
        // A block with no request condition left (only `port`, selectors) matches every
        // request: the route is a catch-all.
        if matches.iter().any(|m| *m == RouteMatch::default()) {
            matches.clear();
        }
    }
    let (req_ops, mut authority) = header_ops(h.headers.as_ref(), true);
    let (resp_ops, _) = header_ops(h.headers.as_ref(), false);
    let action = if let Some(r) = &h.redirect {
        RouteAction::Redirect(Redirect {
            scheme: non_empty(&r.scheme),
            host: non_empty(&r.authority),
            port: match (r.port, r.derive_port) {
                (Some(p), _) => u16::try_from(p).ok().map(RedirectPort::Fixed),
                (None, Some(RedirectPortSelection::FromRequestPort)) => {
                    Some(RedirectPort::FromRequest)
                }
                (None, Some(RedirectPortSelection::FromProtocolDefault)) => {
                    Some(RedirectPort::FromProtocolDefault)
                }
                (None, None) => None,
            },
            path: non_empty(&r.uri).map(PathRewrite::Full),
            status: r
                .redirect_code
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(301),
        })
    } else if let Some(d) = &h.direct_response {
        RouteAction::DirectResponse(DirectResponse {
            status: u16::try_from(d.status).unwrap_or(500),
            body: d.body.as_ref().and_then(|b| {
                b.string
                    .clone()
                    .or_else(|| b.bytes.as_deref().and_then(base64_text))
            }),
        })
    } else if !h.route.is_empty() {
        let lone = h.route.len() == 1;
        let mut clusters = Vec::new();
        for rd in &h.route {
            let Some(d) = &rd.destination else { continue };
            let Some(cluster) = env.ctx.destination_cluster(d, env.rule_ns, env.port) else {
                continue;
            };
            let weight = if lone {
                100
            } else {
                u32::try_from(rd.weight.unwrap_or(0)).unwrap_or(0)
            };
            let (request_headers, dest_authority) = header_ops(rd.headers.as_ref(), true);
            let (response_headers, _) = header_ops(rd.headers.as_ref(), false);
            // A destination-level authority applies to the route when none is set there.
            if authority.is_none() {
                authority = dest_authority;
            }
            clusters.push(WeightedCluster {
                cluster,
                weight,
                request_headers,
                response_headers,
            });
        }
        // Weight 0 drops a destination; if every weight is 0 (invalid), share equally.
        if clusters.iter().all(|c| c.weight == 0) {
            clusters.iter_mut().for_each(|c| c.weight = 1);
        } else {
            clusters.retain(|c| c.weight > 0);
        }
        if clusters.is_empty() {
            return None;
        }
        let rewrite = h.rewrite.as_ref().map(|rw| Rewrite {
            path: match &rw.uri_regex_rewrite {
                Some(rx) => Some(PathRewrite::Regex {
                    pattern: rx.r#match.clone(),
                    substitution: rx.rewrite.clone(),
                }),
                None => non_empty(&rw.uri).map(PathRewrite::MatchedPrefix),
            },
            authority: non_empty(&rw.authority),
        });
        let rewrite = match (rewrite, authority.take()) {
            (Some(mut rw), a) => {
                if rw.authority.is_none() {
                    rw.authority = a;
                }
                Some(rw)
            }
            (None, Some(a)) => Some(Rewrite {
                path: None,
                authority: Some(a),
            }),
            (None, None) => None,
        };
        RouteAction::Forward(Forward {
            clusters,
            rewrite,
            timeout: h.timeout.map(|t| t.as_std()).filter(|t| !t.is_zero()),
            retry: retry_policy(h.retries.as_ref(), env.ctx.mesh),
            mirrors: mirrors(env, h),
        })
    } else {
        return None;
    };
    Some(Route {
        name: if h.name.is_empty() {
            format!("route-{index}")
        } else {
            h.name.clone()
        },
        origin: Some(env.origin.clone()),
        matches,
        action,
        request_headers: req_ops,
        response_headers: resp_ops,
        fault: h.fault.as_ref().and_then(fault),
        cors: h.cors_policy.as_ref().map(cors),
        rate_limit: None,
    })
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn is_authority(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

/// Header operations of one direction; for requests, a `set` (or else `add`) of
/// `:authority`/`host` is taken out and returned as the authority rewrite.
fn header_ops(h: Option<&Headers>, request: bool) -> (HeaderOps, Option<String>) {
    let ops: Option<&HeaderOperations> = h.and_then(|h| {
        if request {
            h.request.as_ref()
        } else {
            h.response.as_ref()
        }
    });
    let Some(ops) = ops else {
        return (HeaderOps::default(), None);
    };
    let mut authority = None;
    if request {
        authority = ops
            .set
            .iter()
            .chain(ops.add.iter())
            .find(|(k, _)| is_authority(k))
            .map(|(_, v)| v.clone());
    }
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| !(request && is_authority(k)))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    };
    (
        HeaderOps {
            set: pairs(&ops.set),
            add: pairs(&ops.add),
            remove: ops.remove.iter().map(|r| r.to_ascii_lowercase()).collect(),
        },
        authority,
    )
}

/// One HTTPMatchRequest; None when it uses something weft cannot match (JWT claim
/// headers), so the block never matches rather than matching too much.
fn route_match(m: &HTTPMatchRequest) -> Option<RouteMatch> {
    let ignore_case = m.ignore_uri_case == Some(true);
    let path = m.uri.as_ref().and_then(|u| {
        if let Some(v) = &u.exact {
            Some(PathMatch::Exact {
                value: v.clone(),
                ignore_case,
            })
        } else if let Some(v) = &u.prefix {
            Some(PathMatch::Prefix {
                value: v.clone(),
                ignore_case,
            })
        } else {
            u.regex
                .as_ref()
                .map(|r| PathMatch::Regex { regex: r.clone() })
        }
    });
    let mut headers = Vec::new();
    for (invert, map) in [(false, &m.headers), (true, &m.without_headers)] {
        for (name, v) in map {
            let name = name.to_ascii_lowercase();
            if ["uri", "scheme", "method", "authority"].contains(&name.as_str()) {
                continue;
            }
            if name.starts_with("@request.auth.claims") {
                return None;
            }
            headers.push(HeaderMatch {
                name,
                value: string_match(v, true),
                invert,
            });
        }
    }
    let query_params = m
        .query_params
        .iter()
        .map(|(name, v)| QueryMatch {
            name: name.clone(),
            value: if v.exact.as_deref() == Some("") {
                StringMatch::Present
            } else {
                string_match(v, true)
            },
        })
        .collect();
    let opt = |s: &Option<IstioMatch>| {
        s.as_ref()
            .filter(|s| !s.is_empty())
            .map(|s| string_match(s, false))
    };
    Some(RouteMatch {
        path,
        headers,
        query_params,
        method: opt(&m.method),
        authority: opt(&m.authority),
        scheme: opt(&m.scheme),
    })
}

/// Istio StringMatch → weft; `{}` and `regex: "*"` mean "present" where allowed.
fn string_match(s: &IstioMatch, presence: bool) -> StringMatch {
    if let Some(v) = &s.exact {
        StringMatch::Exact(v.clone())
    } else if let Some(v) = &s.prefix {
        StringMatch::Prefix(v.clone())
    } else if let Some(r) = &s.regex {
        if presence && r == "*" {
            StringMatch::Present
        } else {
            StringMatch::Regex(r.clone())
        }
    } else {
        StringMatch::Present
    }
}

fn fault(f: &weft_config::kinds::istio::HTTPFaultInjection) -> Option<Fault> {
    let delay = f.delay.as_ref().and_then(|d| {
        Some(FaultDelay {
            delay: d.fixed_delay?.as_std(),
            percent: match (&d.percentage, d.percent) {
                (Some(p), _) => p.value,
                (None, Some(p)) => p as f64,
                (None, None) => 0.0,
            },
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let status = match (&a.http_status, &a.grpc_status) {
            (Some(s), _) => AbortStatus::Http(u16::try_from(*s).ok()?),
            (None, Some(g)) => AbortStatus::Grpc(grpc_status_code(g)?),
            (None, None) => return None,
        };
        Some(FaultAbort {
            status,
            percent: a.percentage.map(|p| p.value).unwrap_or(0.0),
        })
    });
    (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
}

fn mirrors(env: &RouteEnv, h: &HTTPRoute) -> Vec<Mirror> {
    let mut out = Vec::new();
    let mut push = |d: &weft_config::kinds::istio::Destination, percent: f64| {
        if percent > 0.0
            && let Some(cluster) = env.ctx.destination_cluster(d, env.rule_ns, env.port)
        {
            out.push(Mirror { cluster, percent });
        }
    };
    if let Some(m) = &h.mirror {
        let percent = match (&h.mirror_percentage, h.mirror_percent) {
            (Some(p), _) => p.value,
            (None, Some(p)) => f64::from(p),
            (None, None) => 100.0,
        };
        push(m, percent);
    }
    for m in &h.mirrors {
        if let Some(d) = &m.destination {
            push(d, m.percentage.map(|p| p.value).unwrap_or(100.0));
        }
    }
    out
}

fn cors(c: &weft_config::kinds::istio::CorsPolicy) -> CorsPolicy {
    CorsPolicy {
        allow_origins: c
            .allow_origins
            .iter()
            .map(|m| string_match(m, false))
            .chain(c.allow_origin.iter().map(|o| {
                if o == "*" {
                    StringMatch::Present
                } else {
                    StringMatch::Exact(o.clone())
                }
            }))
            .collect(),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: c.max_age.map(|d| d.as_std()),
        allow_credentials: c.allow_credentials == Some(true),
        ignore_unmatched_preflights: c.unmatched_preflights == Some(UnmatchedPreflights::Ignore),
    }
}

/// A `directResponse.body.bytes` (base64) as text; None when it is not valid base64 or not
/// UTF-8.
fn base64_text(b64: &str) -> Option<String> {
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b64
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_bodies() {
        assert_eq!(
            base64_text("aGVsbG8gd29ybGQ=").as_deref(),
            Some("hello world")
        );
        assert_eq!(base64_text("!"), None);
    }

    #[test]
    fn grpc_codes() {
        assert_eq!(grpc_status_code("UNAVAILABLE"), Some(14));
        assert_eq!(grpc_status_code("8"), Some(8));
        assert_eq!(grpc_status_code("NOPE"), None);
    }
}
