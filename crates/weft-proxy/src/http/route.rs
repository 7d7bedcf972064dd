//! Request routing: which virtual host and route of a route table a request takes.
//!
//! [`select`] is a pure function of the compiled route table and the request's parts, so
//! `weft why` (the request simulator) runs exactly the code the proxy runs.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;
use regex::Regex;
use weft_api::{
    PathMatch, PathRewrite, ProxyConfig, RouteAction, RouteMatch, RouteTable, StringMatch,
    VirtualHost,
};

use crate::runtime::BuildError;

/// A route table with its domains indexed and its regexes compiled. The table itself is
/// read in place from the runtime's `ProxyConfig` (a copy per table would double the
/// config's memory: thousands of virtual hosts on a gateway).
pub struct CompiledTable {
    config: Arc<ProxyConfig>,
    index: usize,
    exact: HashMap<Box<str>, u32>,
    /// `(suffix including the dot, vhost)`, longest suffix first.
    wildcards: Vec<(Box<str>, u32)>,
    any: Option<u32>,
    /// Per virtual host, the range of its routes in `routes`.
    vhosts: Vec<(u32, u32)>,
    routes: Vec<CompiledRoute>,
}

impl std::fmt::Debug for CompiledTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTable")
            .field("table", self.table())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct CompiledRoute {
    matches: Vec<CompiledMatch>,
    /// The compiled `PathRewrite::Regex` of the forward or redirect action.
    rewrite_regex: Option<Regex>,
}

#[derive(Debug)]
struct CompiledMatch {
    path: Option<CompiledPath>,
    headers: Vec<(String, Matcher, bool)>,
    query: Vec<(String, Matcher)>,
    method: Option<Matcher>,
    authority: Option<Matcher>,
    scheme: Option<Matcher>,
}

#[derive(Debug)]
enum CompiledPath {
    Exact { value: String, ignore_case: bool },
    Prefix { value: String, ignore_case: bool },
    Segment(String),
    Regex(Regex),
}

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Regex(Regex),
    Present,
}

impl Matcher {
    fn compile(
        m: &StringMatch,
        what: &dyn Fn(&str, String) -> BuildError,
    ) -> Result<Matcher, BuildError> {
        Ok(match m {
            StringMatch::Exact(v) => Matcher::Exact(v.clone()),
            StringMatch::Prefix(v) => Matcher::Prefix(v.clone()),
            StringMatch::Suffix(v) => Matcher::Suffix(v.clone()),
            StringMatch::Regex(r) => Matcher::Regex(full_regex(r, false).map_err(|e| what(r, e))?),
            StringMatch::Present => Matcher::Present,
        })
    }

    /// Matches a present value.
    fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Exact(v) => value == v,
            Matcher::Prefix(v) => value.starts_with(v.as_str()),
            Matcher::Suffix(v) => value.ends_with(v.as_str()),
            Matcher::Regex(r) => r.is_match(value),
            Matcher::Present => true,
        }
    }
}

/// RE2-style whole-value match: anchored on both ends.
fn full_regex(re: &str, ignore_case: bool) -> Result<Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{re})$"))
        .case_insensitive(ignore_case)
        .build()
        .map_err(|e| e.to_string())
}

impl CompiledTable {
    /// Compiles `table` on its own, rejecting invalid regexes with the route that holds
    /// them.
    pub fn compile(table: RouteTable) -> Result<CompiledTable, BuildError> {
        let config = Arc::new(ProxyConfig {
            route_tables: vec![table],
            ..ProxyConfig::default()
        });
        CompiledTable::compile_in(&config, 0)
    }

    /// Compiles route table `index` of `config`, keeping `config` to read the table from.
    pub fn compile_in(
        config: &Arc<ProxyConfig>,
        index: usize,
    ) -> Result<CompiledTable, BuildError> {
        let table = &config.route_tables[index];
        let mut exact = HashMap::new();
        let mut wildcards = Vec::new();
        let mut any = None;
        let mut vhosts = Vec::with_capacity(table.virtual_hosts.len());
        let mut routes = Vec::new();
        for (vi, vh) in table.virtual_hosts.iter().enumerate() {
            let vi = u32::try_from(vi).unwrap_or(u32::MAX);
            for domain in &vh.domains {
                let d = domain.to_ascii_lowercase();
                if d == "*" {
                    any.get_or_insert(vi);
                } else if let Some(suffix) = d.strip_prefix('*') {
                    wildcards.push((suffix.into(), vi));
                } else {
                    exact.entry(d.into_boxed_str()).or_insert(vi);
                }
            }
            let start = routes.len();
            for r in &vh.routes {
                routes.push(compile_route(&table.name, r)?);
            }
            vhosts.push((as_u32(start), as_u32(routes.len())));
        }
        // Longest suffix first; stable, so the first listed wins among equals.
        wildcards.sort_by_key(|(s, _): &(Box<str>, u32)| std::cmp::Reverse(s.len()));
        exact.shrink_to_fit();
        routes.shrink_to_fit();
        Ok(CompiledTable {
            config: config.clone(),
            index,
            exact,
            wildcards,
            any,
            vhosts,
            routes,
        })
    }

    /// Checks `table` as [`CompiledTable::compile`] would, without keeping anything.
    pub fn check(table: &RouteTable) -> Result<(), BuildError> {
        for vh in &table.virtual_hosts {
            for r in &vh.routes {
                compile_route(&table.name, r)?;
            }
        }
        Ok(())
    }

    /// The route table as configured.
    pub fn table(&self) -> &RouteTable {
        &self.config.route_tables[self.index]
    }

    fn compiled_routes(&self, vhost: usize) -> &[CompiledRoute] {
        match self.vhosts.get(vhost) {
            Some(&(start, end)) => &self.routes[start as usize..end as usize],
            None => &[],
        }
    }

    /// The compiled path-rewrite regex of route `(vhost, route)`, if it has one.
    pub fn rewrite_regex(&self, vhost: usize, route: usize) -> Option<&Regex> {
        self.compiled_routes(vhost)
            .get(route)?
            .rewrite_regex
            .as_ref()
    }

    fn vhost_for(&self, authority: &str) -> Option<usize> {
        // Hosts are nearly always lower case already: no copy then.
        let full = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(authority.to_ascii_lowercase())
        } else {
            Cow::Borrowed(authority)
        };
        let host = strip_port(&full);
        let found = [&*full, host]
            .into_iter()
            .find_map(|candidate| self.exact.get(candidate).copied())
            .or_else(|| {
                [&*full, host].into_iter().find_map(|candidate| {
                    self.wildcards
                        .iter()
                        .find(|(suffix, _)| {
                            candidate.len() > suffix.len() && candidate.ends_with(&**suffix)
                        })
                        .map(|(_, i)| *i)
                })
            })
            .or(self.any);
        found.map(|i| i as usize)
    }
}

fn as_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn compile_route(table: &str, route: &weft_api::Route) -> Result<CompiledRoute, BuildError> {
    let bad = |re: &str, detail: String| BuildError::BadRegex {
        table: table.to_string(),
        route: route.name.clone(),
        regex: re.to_string(),
        detail,
    };
    let matches = route
        .matches
        .iter()
        .map(|m| compile_match(m, &bad))
        .collect::<Result<Vec<_>, _>>()?;
    let rewrite = match &route.action {
        RouteAction::Forward(f) => f.rewrite.as_ref().and_then(|r| r.path.as_ref()),
        RouteAction::Redirect(r) => r.path.as_ref(),
        RouteAction::DirectResponse(_) => None,
    };
    let rewrite_regex = match rewrite {
        Some(PathRewrite::Regex { pattern, .. }) => {
            Some(Regex::new(pattern).map_err(|e| bad(pattern, e.to_string()))?)
        }
        _ => None,
    };
    Ok(CompiledRoute {
        matches,
        rewrite_regex,
    })
}

fn compile_match(
    m: &RouteMatch,
    bad: &dyn Fn(&str, String) -> BuildError,
) -> Result<CompiledMatch, BuildError> {
    let path = match &m.path {
        None => None,
        Some(PathMatch::Exact { value, ignore_case }) => Some(CompiledPath::Exact {
            value: value.clone(),
            ignore_case: *ignore_case,
        }),
        Some(PathMatch::Prefix { value, ignore_case }) => Some(CompiledPath::Prefix {
            value: value.clone(),
            ignore_case: *ignore_case,
        }),
        Some(PathMatch::SegmentPrefix { value }) => Some(CompiledPath::Segment(
            value.trim_end_matches('/').to_string(),
        )),
        Some(PathMatch::Regex { regex }) => Some(CompiledPath::Regex(
            full_regex(regex, false).map_err(|e| bad(regex, e))?,
        )),
    };
    let opt = |s: &Option<StringMatch>| s.as_ref().map(|s| Matcher::compile(s, bad)).transpose();
    Ok(CompiledMatch {
        path,
        headers: m
            .headers
            .iter()
            .map(|h| {
                Ok((
                    h.name.to_ascii_lowercase(),
                    Matcher::compile(&h.value, bad)?,
                    h.invert,
                ))
            })
            .collect::<Result<_, BuildError>>()?,
        query: m
            .query_params
            .iter()
            .map(|q| Ok((q.name.clone(), Matcher::compile(&q.value, bad)?)))
            .collect::<Result<_, BuildError>>()?,
        method: opt(&m.method)?,
        authority: opt(&m.authority)?,
        scheme: opt(&m.scheme)?,
    })
}

/// `host:port` → `host`; IPv6 `[::1]:80` → `[::1]`.
pub fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i)
            if !authority[i..].contains(']')
                && authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            &authority[..i]
        }
        _ => authority,
    }
}

/// The parts of a request routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteRequest<'a> {
    /// Host header or `:authority` (the absolute-form URI's authority for HTTP proxies).
    pub authority: &'a str,
    /// Path without the query string.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    pub headers: &'a HeaderMap,
}

/// The route a request takes.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    pub vhost_index: usize,
    pub vhost: &'a VirtualHost,
    pub route_index: usize,
    pub route: &'a weft_api::Route,
    /// Which of the route's matches matched (none when the route has no matches).
    pub match_index: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoMatch {
    /// No virtual host serves the authority.
    NoVirtualHost,
    /// The virtual host (named) has no route for the request.
    NoRoute { vhost: String },
}

/// Picks the virtual host by authority (exact, longest wildcard suffix, `*`; with the port
/// and then without), then the first route whose matches accept the request.
pub fn select<'a>(
    table: &'a CompiledTable,
    req: &RouteRequest<'_>,
) -> Result<Selected<'a>, NoMatch> {
    let vi = table
        .vhost_for(req.authority)
        .ok_or(NoMatch::NoVirtualHost)?;
    let vhost = &table.table().virtual_hosts[vi];
    for (ri, (route, compiled)) in vhost
        .routes
        .iter()
        .zip(table.compiled_routes(vi))
        .enumerate()
    {
        if compiled.matches.is_empty() {
            return Ok(Selected {
                vhost_index: vi,
                vhost,
                route_index: ri,
                route,
                match_index: None,
            });
        }
        if let Some(mi) = compiled.matches.iter().position(|m| match_one(m, req)) {
            return Ok(Selected {
                vhost_index: vi,
                vhost,
                route_index: ri,
                route,
                match_index: Some(mi),
            });
        }
    }
    Err(NoMatch::NoRoute {
        vhost: vhost.name.clone(),
    })
}

fn match_one(m: &CompiledMatch, req: &RouteRequest<'_>) -> bool {
    if let Some(p) = &m.path
        && !path_matches(p, req.path)
    {
        return false;
    }
    let simple =
        |matcher: &Option<Matcher>, value: &str| matcher.as_ref().is_none_or(|m| m.matches(value));
    if !simple(&m.method, req.method)
        || !simple(&m.authority, req.authority)
        || !simple(&m.scheme, req.scheme)
    {
        return false;
    }
    for (name, matcher, invert) in &m.headers {
        let value = header_value(req.headers, name);
        let hit = match (matcher, &value) {
            (Matcher::Present, v) => v.is_some(),
            (_, Some(v)) => matcher.matches(v),
            // Inverted matches compare a missing header as the empty string (Envoy).
            (_, None) => *invert && matcher.matches(""),
        };
        if hit == *invert {
            return false;
        }
    }
    for (name, matcher) in &m.query {
        match query_value(req.query, name) {
            Some(v) if matcher.matches(&v) => {}
            _ => return false,
        }
    }
    true
}

fn path_matches(p: &CompiledPath, path: &str) -> bool {
    match p {
        CompiledPath::Exact { value, ignore_case } => {
            if *ignore_case {
                path.eq_ignore_ascii_case(value)
            } else {
                path == value
            }
        }
        CompiledPath::Prefix { value, ignore_case } => {
            path.len() >= value.len()
                && if *ignore_case {
                    path.is_char_boundary(value.len())
                        && path[..value.len()].eq_ignore_ascii_case(value)
                } else {
                    path.starts_with(value.as_str())
                }
        }
        CompiledPath::Segment(value) => {
            value.is_empty()
                || path == value
                || path
                    .strip_prefix(value.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        }
        CompiledPath::Regex(r) => r.is_match(path),
    }
}

/// All values of a header joined with `,` (as Envoy matches multi-valued headers).
fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter().peekable();
    values.peek()?;
    Some(
        values
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// The first value of query parameter `name` (`a` in `?a` is present and empty).
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}
