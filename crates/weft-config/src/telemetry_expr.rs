//! The CEL subset Istio users write in Telemetry (`tagOverrides[].value`,
//! `accessLogging[].filter.expression`) and in `%CEL(...)%` log operators, parsed with
//! positions so that a mistake is reported at the character responsible.
//!
//! Supported: string / integer / boolean literals; the Envoy and Istio attributes of
//! [`Attribute`]; the maps `request.headers`, `response.headers`, `response.trailers` and the
//! peer label maps (`upstream_peer.labels`, `filter_state.upstream_peer.labels`, ...) indexed
//! by a string literal; `has()`, `!`, `&&`, `||`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `?:`,
//! `+`, `string()`, `int()`, and the string methods `contains`, `startsWith`, `endsWith`,
//! `matches`. Everything else CEL has is reported as unsupported rather than guessed at.

mod lex;
mod parser;

use std::fmt;

use lex::{Tok, lex};
use parser::Parser;

/// A parsed expression. Mirrors the data-plane model (weft-compile converts it).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    String(String),
    Int(i64),
    Bool(bool),
    Attr(Attribute),
    Index(MapAttribute, String),
    Has(Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, CompareOp, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    ToString(Box<Expr>),
    ToInt(Box<Expr>),
    Call(Box<Expr>, StringMethod, Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// Whether evaluating this reads the request headers (the proxy keeps a copy of them
    /// only when something needs them).
    pub fn reads_request_headers(&self) -> bool {
        match self {
            Expr::Attr(a) => matches!(
                a,
                Attribute::RequestUserAgent | Attribute::RequestReferer | Attribute::RequestId
            ),
            Expr::Index(m, _) => *m == MapAttribute::RequestHeaders,
            Expr::String(_) | Expr::Int(_) | Expr::Bool(_) => false,
            Expr::Has(e) | Expr::Not(e) | Expr::ToString(e) | Expr::ToInt(e) => {
                e.reads_request_headers()
            }
            Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Compare(a, _, b)
            | Expr::Call(a, _, b)
            | Expr::Add(a, b) => a.reads_request_headers() || b.reads_request_headers(),
            Expr::Cond(c, a, b) => {
                c.reads_request_headers() || a.reads_request_headers() || b.reads_request_headers()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringMethod {
    Contains,
    StartsWith,
    EndsWith,
    Matches,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapAttribute {
    RequestHeaders,
    ResponseHeaders,
    ResponseTrailers,
    UpstreamPeerLabels,
    DownstreamPeerLabels,
}

/// The maps an expression may index, by every name users write for them.
const MAPS: &[(&str, MapAttribute)] = &[
    ("request.headers", MapAttribute::RequestHeaders),
    ("response.headers", MapAttribute::ResponseHeaders),
    ("response.trailers", MapAttribute::ResponseTrailers),
    ("upstream_peer.labels", MapAttribute::UpstreamPeerLabels),
    (
        "filter_state.upstream_peer.labels",
        MapAttribute::UpstreamPeerLabels,
    ),
    ("downstream_peer.labels", MapAttribute::DownstreamPeerLabels),
    (
        "filter_state.downstream_peer.labels",
        MapAttribute::DownstreamPeerLabels,
    ),
];

macro_rules! attributes {
    ($($variant:ident => [$($name:literal),+]),+ $(,)?) => {
        /// Envoy request/response/connection attributes and Istio's workload attributes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Attribute { $($variant),+ }

        /// Every accepted spelling, first the canonical one.
        const ATTRIBUTES: &[(&str, Attribute)] = &[$($(($name, Attribute::$variant)),+),+];
    };
}

attributes! {
    RequestPath => ["request.path"],
    RequestUrlPath => ["request.url_path"],
    RequestHost => ["request.host"],
    RequestScheme => ["request.scheme"],
    RequestMethod => ["request.method"],
    RequestUserAgent => ["request.useragent", "request.user_agent"],
    RequestReferer => ["request.referer"],
    RequestId => ["request.id"],
    RequestProtocol => ["request.protocol"],
    RequestSize => ["request.size"],
    RequestTotalSize => ["request.total_size"],
    RequestDuration => ["request.duration"],
    ResponseCode => ["response.code"],
    ResponseCodeDetails => ["response.code_details"],
    ResponseFlags => ["response.flags"],
    ResponseGrpcStatus => ["response.grpc_status"],
    ResponseSize => ["response.size"],
    ResponseTotalSize => ["response.total_size"],
    SourceAddress => ["source.address"],
    SourcePort => ["source.port"],
    DestinationAddress => ["destination.address"],
    DestinationPort => ["destination.port"],
    ConnectionMtls => ["connection.mtls"],
    ConnectionRequestedServerName => ["connection.requested_server_name"],
    ConnectionUriSanPeerCertificate => ["connection.uri_san_peer_certificate"],
    ConnectionUriSanLocalCertificate => ["connection.uri_san_local_certificate"],
    UpstreamAddress => ["upstream.address"],
    UpstreamPort => ["upstream.port"],
    XdsClusterName => ["xds.cluster_name"],
    XdsRouteName => ["xds.route_name"],
    XdsNodeId => ["xds.node.id"],
    SourceWorkload => ["source.workload.name", "source.workload"],
    SourceNamespace => ["source.workload.namespace", "source.namespace"],
    SourcePrincipal => ["source.principal"],
    SourceApp => ["source.app"],
    SourceVersion => ["source.version"],
    DestinationWorkload => ["destination.workload.name", "destination.workload"],
    DestinationNamespace => ["destination.workload.namespace", "destination.namespace"],
    DestinationPrincipal => ["destination.principal"],
    DestinationApp => ["destination.app"],
    DestinationVersion => ["destination.version"],
    DestinationService => ["destination.service.host", "destination.service"],
    DestinationServiceName => ["destination.service.name"],
    DestinationServiceNamespace => ["destination.service.namespace"],
}

impl Attribute {
    /// The canonical name.
    pub fn name(self) -> &'static str {
        ATTRIBUTES
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// A parse error at a byte range of the expression text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Byte offset of the offending token in the expression.
    pub offset: usize,
    pub len: usize,
    pub message: String,
    pub hint: Option<String>,
    /// The expression is well formed but names an attribute weft does not know. Istio
    /// accepts such tag values (they evaluate to an error, printed `unknown`).
    pub unknown_attribute: bool,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parses one expression.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
    let tokens = lex(text)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end: text.len(),
    };
    if p.peek() == &Tok::Eof {
        return Err(p.error_at(0, 0, "the expression is empty"));
    }
    let e = p.expr(0)?;
    match p.peek() {
        Tok::Eof => Ok(e),
        other => {
            let msg = format!(
                "unexpected {} after the end of the expression",
                other.describe()
            );
            Err(p.error_here(msg))
        }
    }
}

/// The closest candidate, when it is close enough to be what was meant.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
#[path = "telemetry_expr_tests.rs"]
mod tests;
