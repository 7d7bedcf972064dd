//! weft-config's parsed expressions and log formats, converted to the data-plane model.
//! Both sides mirror each other variant for variant; the matches are exhaustive so that a
//! variant added on one side fails to compile until it is handled here.

use weft_api as api;
use weft_config::log_format::{self as cfg_fmt, Operator, Part};
use weft_config::telemetry_expr::{self as cfg_expr, Attribute as A};

/// A CEL expression; `None` when it does not parse (validation reported it).
pub fn parse_expr(text: &str) -> Option<api::Expr> {
    cfg_expr::parse(text).ok().map(|e| expr(&e))
}

pub fn expr(e: &cfg_expr::Expr) -> api::Expr {
    use api::Expr as X;
    use cfg_expr::Expr as E;
    let b = |e: &cfg_expr::Expr| Box::new(expr(e));
    match e {
        E::String(s) => X::String(s.clone()),
        E::Int(i) => X::Int(*i),
        E::Bool(v) => X::Bool(*v),
        E::Attr(a) => X::Attr(attribute(*a)),
        E::Index(m, k) => X::Index(map(*m), k.clone()),
        E::Has(e) => X::Has(b(e)),
        E::Not(e) => X::Not(b(e)),
        E::And(l, r) => X::And(b(l), b(r)),
        E::Or(l, r) => X::Or(b(l), b(r)),
        E::Compare(l, op, r) => X::Compare(b(l), compare(*op), b(r)),
        E::Cond(c, l, r) => X::Cond(b(c), b(l), b(r)),
        E::ToString(e) => X::ToString(b(e)),
        E::ToInt(e) => X::ToInt(b(e)),
        E::Call(t, m, a) => X::Call(b(t), method(*m), b(a)),
        E::Add(l, r) => X::Add(b(l), b(r)),
    }
}

fn compare(op: cfg_expr::CompareOp) -> api::CompareOp {
    use cfg_expr::CompareOp as C;
    match op {
        C::Eq => api::CompareOp::Eq,
        C::Ne => api::CompareOp::Ne,
        C::Lt => api::CompareOp::Lt,
        C::Le => api::CompareOp::Le,
        C::Gt => api::CompareOp::Gt,
        C::Ge => api::CompareOp::Ge,
    }
}

fn method(m: cfg_expr::StringMethod) -> api::StringMethod {
    use cfg_expr::StringMethod as M;
    match m {
        M::Contains => api::StringMethod::Contains,
        M::StartsWith => api::StringMethod::StartsWith,
        M::EndsWith => api::StringMethod::EndsWith,
        M::Matches => api::StringMethod::Matches,
    }
}

fn map(m: cfg_expr::MapAttribute) -> api::MapAttribute {
    use cfg_expr::MapAttribute as M;
    match m {
        M::RequestHeaders => api::MapAttribute::RequestHeaders,
        M::ResponseHeaders => api::MapAttribute::ResponseHeaders,
        M::ResponseTrailers => api::MapAttribute::ResponseTrailers,
        M::UpstreamPeerLabels => api::MapAttribute::UpstreamPeerLabels,
        M::DownstreamPeerLabels => api::MapAttribute::DownstreamPeerLabels,
    }
}

fn attribute(a: A) -> api::Attribute {
    use api::Attribute as X;
    match a {
        A::RequestPath => X::RequestPath,
        A::RequestUrlPath => X::RequestUrlPath,
        A::RequestHost => X::RequestHost,
        A::RequestScheme => X::RequestScheme,
        A::RequestMethod => X::RequestMethod,
        A::RequestUserAgent => X::RequestUserAgent,
        A::RequestReferer => X::RequestReferer,
        A::RequestId => X::RequestId,
        A::RequestProtocol => X::RequestProtocol,
        A::RequestSize => X::RequestSize,
        A::RequestTotalSize => X::RequestTotalSize,
        A::RequestDuration => X::RequestDuration,
        A::ResponseCode => X::ResponseCode,
        A::ResponseCodeDetails => X::ResponseCodeDetails,
        A::ResponseFlags => X::ResponseFlags,
        A::ResponseGrpcStatus => X::ResponseGrpcStatus,
        A::ResponseSize => X::ResponseSize,
        A::ResponseTotalSize => X::ResponseTotalSize,
        A::SourceAddress => X::SourceAddress,
        A::SourcePort => X::SourcePort,
        A::DestinationAddress => X::DestinationAddress,
        A::DestinationPort => X::DestinationPort,
        A::ConnectionMtls => X::ConnectionMtls,
        A::ConnectionRequestedServerName => X::ConnectionRequestedServerName,
        A::ConnectionUriSanPeerCertificate => X::ConnectionUriSanPeerCertificate,
        A::ConnectionUriSanLocalCertificate => X::ConnectionUriSanLocalCertificate,
        A::UpstreamAddress => X::UpstreamAddress,
        A::UpstreamPort => X::UpstreamPort,
        A::XdsClusterName => X::XdsClusterName,
        A::XdsRouteName => X::XdsRouteName,
        A::XdsNodeId => X::XdsNodeId,
        A::SourceWorkload => X::SourceWorkload,
        A::SourceNamespace => X::SourceNamespace,
        A::SourcePrincipal => X::SourcePrincipal,
        A::SourceApp => X::SourceApp,
        A::SourceVersion => X::SourceVersion,
        A::DestinationWorkload => X::DestinationWorkload,
        A::DestinationNamespace => X::DestinationNamespace,
        A::DestinationPrincipal => X::DestinationPrincipal,
        A::DestinationApp => X::DestinationApp,
        A::DestinationVersion => X::DestinationVersion,
        A::DestinationService => X::DestinationService,
        A::DestinationServiceName => X::DestinationServiceName,
        A::DestinationServiceNamespace => X::DestinationServiceNamespace,
    }
}

/// A text format string; `None` when it does not parse (validation reported it).
pub fn text_parts(text: &str) -> Option<Vec<api::LogPart>> {
    cfg_fmt::parse(text).ok().map(|p| parts(&p))
}

pub fn parts(parts: &[Part]) -> Vec<api::LogPart> {
    let mut out: Vec<api::LogPart> = Vec::with_capacity(parts.len());
    for p in parts {
        let part = match p {
            Part::Text(t) => api::LogPart::Text(t.clone()),
            // Envoy prints `-` for a value it does not have.
            Part::Op {
                op: Operator::Unsupported(_),
                ..
            } => api::LogPart::Text("-".to_string()),
            Part::Op { op, max_len, .. } => api::LogPart::Op {
                op: operator(op),
                max_len: *max_len,
            },
        };
        // Keep literal text in one piece (an unsupported operator between two texts).
        if let (Some(api::LogPart::Text(prev)), api::LogPart::Text(t)) = (out.last_mut(), &part) {
            prev.push_str(t);
            continue;
        }
        out.push(part);
    }
    out
}

pub fn json(fields: &cfg_fmt::JsonFormat) -> api::LogFormat {
    api::LogFormat::Json(fields.iter().map(|(k, p)| (k.clone(), parts(p))).collect())
}

fn operator(op: &Operator) -> api::LogOperator {
    use api::LogOperator as L;
    match op {
        Operator::StartTime(f) => L::StartTime(f.clone()),
        Operator::Req(h, alt) => L::Req(h.clone(), alt.clone()),
        Operator::ReqWithoutQuery(h, alt) => L::ReqWithoutQuery(h.clone(), alt.clone()),
        Operator::Resp(h, alt) => L::Resp(h.clone(), alt.clone()),
        Operator::Trailer(h, alt) => L::Trailer(h.clone(), alt.clone()),
        Operator::GrpcStatus(f) => L::GrpcStatus(match f {
            cfg_fmt::GrpcStatusFormat::CamelString => api::GrpcStatusFormat::CamelString,
            cfg_fmt::GrpcStatusFormat::SnakeString => api::GrpcStatusFormat::SnakeString,
            cfg_fmt::GrpcStatusFormat::Number => api::GrpcStatusFormat::Number,
        }),
        Operator::Environment(v) => L::Environment(v.clone()),
        Operator::Cel(e) => L::Cel(expr(e)),
        // Handled by `parts`; kept total for the compiler's sake.
        Operator::Unsupported(_) => L::Hostname,
        Operator::Protocol => L::Protocol,
        Operator::ResponseCode => L::ResponseCode,
        Operator::ResponseFlags => L::ResponseFlags,
        Operator::ResponseFlagsLong => L::ResponseFlagsLong,
        Operator::ResponseCodeDetails => L::ResponseCodeDetails,
        Operator::ConnectionTerminationDetails => L::ConnectionTerminationDetails,
        Operator::UpstreamTransportFailureReason => L::UpstreamTransportFailureReason,
        Operator::BytesReceived => L::BytesReceived,
        Operator::BytesSent => L::BytesSent,
        Operator::Duration => L::Duration,
        Operator::RequestDuration => L::RequestDuration,
        Operator::ResponseDuration => L::ResponseDuration,
        Operator::ResponseTxDuration => L::ResponseTxDuration,
        Operator::UpstreamHost => L::UpstreamHost,
        Operator::UpstreamCluster => L::UpstreamCluster,
        Operator::UpstreamClusterRaw => L::UpstreamClusterRaw,
        Operator::UpstreamLocalAddress => L::UpstreamLocalAddress,
        Operator::UpstreamRequestAttemptCount => L::UpstreamRequestAttemptCount,
        Operator::DownstreamLocalAddress => L::DownstreamLocalAddress,
        Operator::DownstreamLocalAddressWithoutPort => L::DownstreamLocalAddressWithoutPort,
        Operator::DownstreamLocalPort => L::DownstreamLocalPort,
        Operator::DownstreamRemoteAddress => L::DownstreamRemoteAddress,
        Operator::DownstreamRemoteAddressWithoutPort => L::DownstreamRemoteAddressWithoutPort,
        Operator::DownstreamRemotePort => L::DownstreamRemotePort,
        Operator::DownstreamDirectRemoteAddress => L::DownstreamDirectRemoteAddress,
        Operator::DownstreamDirectRemoteAddressWithoutPort => {
            L::DownstreamDirectRemoteAddressWithoutPort
        }
        Operator::DownstreamPeerUriSan => L::DownstreamPeerUriSan,
        Operator::DownstreamLocalUriSan => L::DownstreamLocalUriSan,
        Operator::DownstreamTlsVersion => L::DownstreamTlsVersion,
        Operator::RequestedServerName => L::RequestedServerName,
        Operator::RouteName => L::RouteName,
        Operator::Hostname => L::Hostname,
        Operator::TraceId => L::TraceId,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_operators_become_a_dash_inside_the_text() {
        let p = text_parts("a %DYNAMIC_METADATA(x:y)% b %PROTOCOL%").unwrap();
        assert_eq!(
            p,
            vec![
                api::LogPart::Text("a - b ".into()),
                api::LogPart::Op {
                    op: api::LogOperator::Protocol,
                    max_len: None
                }
            ]
        );
        assert_eq!(text_parts("%NOPE%"), None);
    }

    #[test]
    fn expressions_convert() {
        assert_eq!(
            parse_expr("response.code >= 400 && has(request.headers['X-A'])"),
            Some(api::Expr::And(
                Box::new(api::Expr::Compare(
                    Box::new(api::Expr::Attr(api::Attribute::ResponseCode)),
                    api::CompareOp::Ge,
                    Box::new(api::Expr::Int(400))
                )),
                Box::new(api::Expr::Has(Box::new(api::Expr::Index(
                    api::MapAttribute::RequestHeaders,
                    "x-a".into()
                ))))
            ))
        );
    }
}
