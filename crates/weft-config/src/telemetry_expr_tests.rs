use super::*;

fn b(e: Expr) -> Box<Expr> {
    Box::new(e)
}

fn attr(a: Attribute) -> Expr {
    Expr::Attr(a)
}

fn err_of(text: &str) -> ExprError {
    parse(text).expect_err(text)
}

#[test]
fn istio_examples_parse() {
    assert_eq!(
        parse("response.code >= 400").unwrap(),
        Expr::Compare(
            b(attr(Attribute::ResponseCode)),
            CompareOp::Ge,
            b(Expr::Int(400))
        )
    );
    assert_eq!(
        parse("connection.mtls && request.url_path.contains('v1beta3')").unwrap(),
        Expr::And(
            b(attr(Attribute::ConnectionMtls)),
            b(Expr::Call(
                b(attr(Attribute::RequestUrlPath)),
                StringMethod::Contains,
                b(Expr::String("v1beta3".into()))
            ))
        )
    );
    assert_eq!(
        parse("string(destination.port)").unwrap(),
        Expr::ToString(b(attr(Attribute::DestinationPort)))
    );
    assert_eq!(
        parse("filter_state.upstream_peer.labels['x']").unwrap(),
        Expr::Index(MapAttribute::UpstreamPeerLabels, "x".into())
    );
    assert_eq!(
        parse("request.headers['X-User']").unwrap(),
        Expr::Index(MapAttribute::RequestHeaders, "x-user".into())
    );
    assert_eq!(
        parse("has(request.headers.x_user)").unwrap(),
        Expr::Has(b(Expr::Index(
            MapAttribute::RequestHeaders,
            "x_user".into()
        )))
    );
}

#[test]
fn precedence_and_operators() {
    // && binds tighter than ||; ?: is loosest and right-associative.
    let e = parse("request.host == 'a' || request.host == 'b' && !connection.mtls").unwrap();
    let Expr::Or(_, rhs) = e else { panic!("{e:?}") };
    assert!(matches!(*rhs, Expr::And(_, _)));
    let e =
        parse("response.code < 400 ? 'ok' : response.code < 500 ? 'client' : 'server'").unwrap();
    let Expr::Cond(_, _, other) = e else { panic!() };
    assert!(matches!(*other, Expr::Cond(..)));
    assert_eq!(
        parse("request.method + ' ' + request.path").unwrap(),
        Expr::Add(
            b(Expr::Add(
                b(attr(Attribute::RequestMethod)),
                b(Expr::String(" ".into()))
            )),
            b(attr(Attribute::RequestPath))
        )
    );
    assert_eq!(
        parse("-5 != int('5')").unwrap(),
        Expr::Compare(
            b(Expr::Int(-5)),
            CompareOp::Ne,
            b(Expr::ToInt(b(Expr::String("5".into()))))
        )
    );
    assert_eq!(parse("(true)").unwrap(), Expr::Bool(true));
    assert_eq!(
        parse("source.workload.name == destination.workload").unwrap(),
        Expr::Compare(
            b(attr(Attribute::SourceWorkload)),
            CompareOp::Eq,
            b(attr(Attribute::DestinationWorkload))
        )
    );
    assert_eq!(parse("\"a\\\"b\"").unwrap(), Expr::String("a\"b".into()));
    assert_eq!(
        parse("request.path.matches('^/api/v[0-9]+')").unwrap(),
        Expr::Call(
            b(attr(Attribute::RequestPath)),
            StringMethod::Matches,
            b(Expr::String("^/api/v[0-9]+".into()))
        )
    );
}

#[test]
fn reads_request_headers() {
    assert!(
        parse("request.headers['x'] == 'y'")
            .unwrap()
            .reads_request_headers()
    );
    assert!(
        parse("true ? request.useragent : 'x'")
            .unwrap()
            .reads_request_headers()
    );
    assert!(
        !parse("response.headers['x'] == 'y'")
            .unwrap()
            .reads_request_headers()
    );
}

#[test]
fn errors_point_at_the_token_and_suggest() {
    let e = err_of("response.code >= 400 && request.hots == 'a'");
    assert_eq!((e.offset, e.len), (24, 12));
    assert_eq!(e.message, "unknown attribute `request.hots`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `request.host`?"));

    let e = err_of("respose.code == 200");
    assert_eq!(e.offset, 0);
    assert_eq!(e.hint.as_deref(), Some("did you mean `response.code`?"));

    let e = err_of("request.path.startswith('/a')");
    assert_eq!(e.offset, 13);
    assert_eq!(e.hint.as_deref(), Some("did you mean `startsWith`?"));

    let e = err_of("response.code = 200");
    assert_eq!(e.offset, 14);
    assert_eq!(e.hint.as_deref(), Some("compare with `==`"));

    let e = err_of("response.code == 200 &");
    assert_eq!(e.offset, 21);

    let e = err_of("request.headers == 'x'");
    assert!(e.message.contains("is a map"), "{e:?}");

    let e = err_of("request.path == 'unterminated");
    assert_eq!(e.offset, 16);
    assert!(e.message.contains("unterminated"));

    let e = err_of("response.code >= 4.5");
    assert!(e.message.contains("floating-point"));

    let e = err_of("size(request.path) > 3");
    assert_eq!(e.message, "unknown function `size`");

    let e = err_of("has('x')");
    assert!(e.message.contains("has() takes"), "{e:?}");

    let e = err_of("response.code in [200]");
    assert!(e.message.contains("`in`"));

    let e = err_of("(response.code == 200");
    assert_eq!(e.message, "expected `)`, found end of expression");
    assert_eq!(e.offset, 21);

    let e = err_of("   ");
    assert_eq!(e.message, "the expression is empty");

    let e = err_of("response.code == 200 200");
    assert!(e.message.starts_with("unexpected number 200"), "{e:?}");

    let e = err_of(&"!".repeat(500));
    assert!(e.message.contains("too deeply"));
}

/// Found by the `telemetry_text` fuzz target (fuzz/regressions/telemetry_text/): an error
/// at the end of the expression used to span one byte past it.
#[test]
fn error_at_the_end_stays_inside_the_text() {
    let text = "has(upstream_peer.labels['app']) ? string(";
    let e = err_of(text);
    assert_eq!(e.message, "expected a value, found end of expression");
    assert_eq!((e.offset, e.len), (text.len(), 0));
    let e = err_of("request.path ==");
    assert_eq!((e.offset, e.len), (15, 0));
}

/// Seen while writing the `telemetry_text` fuzz target: the span of an unknown escape
/// covers the whole escaped character, not its first byte only.
#[test]
fn unknown_escape_span_covers_the_character() {
    let text = "'a\\é'";
    let e = err_of(text);
    assert_eq!((e.offset, e.len), (2, 3));
    assert_eq!(&text[e.offset..e.offset + e.len], "\\é");
}
