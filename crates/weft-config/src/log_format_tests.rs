use super::*;

fn op(op: Operator, offset: usize) -> Part {
    Part::Op {
        op,
        max_len: None,
        offset,
    }
}

fn text(s: &str) -> Part {
    Part::Text(s.to_string())
}

fn err_of(format: &str) -> FormatError {
    parse(format).expect_err(format)
}

#[test]
fn istio_default_formats_parse() {
    let parts = parse(ISTIO_TEXT_FORMAT).unwrap();
    let ops = parts
        .iter()
        .filter(|p| matches!(p, Part::Op { .. }))
        .count();
    assert_eq!(ops, 24);
    assert_eq!(parts[0], text("["));
    assert_eq!(parts[1], op(Operator::StartTime(None), 1));
    assert_eq!(parts.last(), Some(&text("\n")));
    assert!(parts.contains(&op(
        Operator::Req("x-envoy-original-path".into(), Some(":path".into())),
        31
    )));
    for (key, format) in ISTIO_JSON_FORMAT {
        let parts = parse(format).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(matches!(parts.as_slice(), [Part::Op { .. }]), "{key}");
    }
    assert!(reads_request_headers(&parts));
    assert!(!reads_request_headers(
        &parse("%REQ(:METHOD)% %REQ(:PATH)%").unwrap()
    ));
}

#[test]
fn operators_arguments_truncation_and_escapes() {
    let parts =
        parse("%%%REQ(X-A?X-B):10% %START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%%RESP(Content-Type)%")
            .unwrap();
    assert_eq!(
        parts,
        vec![
            text("%"),
            Part::Op {
                op: Operator::Req("x-a".into(), Some("x-b".into())),
                max_len: Some(10),
                offset: 2,
            },
            text(" "),
            op(
                Operator::StartTime(Some("%Y-%m-%dT%H:%M:%S.%3fZ".into())),
                20
            ),
            op(Operator::Resp("content-type".into(), None), 56),
        ]
    );
    assert_eq!(
        parse("%GRPC_STATUS(NUMBER)% %GRPC_STATUS% %ENVIRONMENT(POD_NAME)% %TRAILER(grpc-status)%")
            .unwrap(),
        vec![
            op(Operator::GrpcStatus(GrpcStatusFormat::Number), 0),
            text(" "),
            op(Operator::GrpcStatus(GrpcStatusFormat::CamelString), 22),
            text(" "),
            op(Operator::Environment("POD_NAME".into()), 36),
            text(" "),
            op(Operator::Trailer("grpc-status".into(), None), 60),
        ]
    );
    let parts = parse("%CEL(request.headers['x-user'].startsWith('a'))%").unwrap();
    assert!(
        matches!(
            &parts[0],
            Part::Op {
                op: Operator::Cel(telemetry_expr::Expr::Call(..)),
                ..
            }
        ),
        "{parts:?}"
    );
    assert_eq!(
        parse("%DYNAMIC_METADATA(istio.mixer:status)%").unwrap(),
        vec![op(Operator::Unsupported("DYNAMIC_METADATA".into()), 0)]
    );
    assert_eq!(parse("100% sure").unwrap_err().offset, 3);
    assert_eq!(parse("plain").unwrap(), vec![text("plain")]);
    assert_eq!(parse("").unwrap(), vec![]);
}

#[test]
fn errors_point_at_the_operator_and_suggest() {
    let f = "[%START_TIME%] %RESPONSE_COD% %BYTES_SENT%";
    let e = err_of(f);
    assert_eq!((e.offset, e.len), (15, 14));
    assert_eq!(e.message, "unknown command operator `%RESPONSE_COD%`");
    assert_eq!(e.hint.as_deref(), Some("did you mean %RESPONSE_CODE%?"));

    let e = err_of("%REQS(:PATH)%");
    assert_eq!(e.hint.as_deref(), Some("did you mean %REQ(...)%?"));

    let e = err_of("%PROTOCOL(x)%");
    assert_eq!(e.message, "%PROTOCOL% takes no argument");

    let e = err_of("a %REQ% b");
    assert_eq!(
        (e.offset, e.message.as_str()),
        (2, "%REQ% needs an argument")
    );

    let e = err_of("%REQ(A?B?C)%");
    assert_eq!(e.offset, 5);
    assert!(e.message.contains("more than one `?`"));

    let e = err_of("%REQ(a b)%");
    assert!(e.message.contains("does not name a header"));

    let e = err_of("x %DURATION");
    assert_eq!(
        (e.offset, e.message.as_str()),
        (2, "command operator `%DURATION` is not closed")
    );

    let e = err_of("%REQ(X-A%");
    assert!(e.message.contains("no closing"), "{e:?}");

    let e = err_of("%DURATION:abc%");
    assert!(e.message.contains("invalid length"), "{e:?}");

    let e = err_of("%GRPC_STATUS(CAMEL)%");
    assert_eq!(e.offset, 13);

    // A CEL error points inside the operator.
    let e = err_of("%CEL(request.hots)%");
    assert_eq!((e.offset, e.len), (5, 12));
    assert_eq!(e.message, "in %CEL(...)%: unknown attribute `request.hots`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `request.host`?"));

    let e = err_of("%response_code%");
    assert_eq!(e.hint.as_deref(), Some("did you mean %RESPONSE_CODE%?"));
}

/// Found by the `telemetry_text` fuzz target (fuzz/regressions/telemetry_text/): error
/// spans of JSON formats must lie inside the text and on character boundaries, since the
/// validator maps them into the YAML source.
#[test]
fn json_format_error_spans_stay_on_characters() {
    fn span(text: &str) -> (usize, usize) {
        let e = parse_json(text).expect_err(text);
        (e.offset, e.len)
    }
    // serde_json stops after the first byte of `ޣ`: the span is the whole character.
    assert_eq!(span("{\u{7a3}}"), (1, 2));
    // End of input: an empty span at the end, not one byte past it.
    assert_eq!(span(""), (0, 0));
    // An unterminated value: its last character.
    assert_eq!(span("{\"a\": \"%X"), (8, 1));
    // A bad escape after a multi-byte character.
    let text = "{\"é\\ü\"}";
    let (offset, len) = span(text);
    assert!(text.is_char_boundary(offset) && text.is_char_boundary(offset + len));
    // Value offsets are mapped through escapes: `\n` is one byte of value, two of text.
    let text = r#"{"k": "\né%"}"#;
    let e = parse_json(text).unwrap_err();
    assert_eq!((&text[e.offset..e.offset + e.len], e.offset), ("%", 11));
    // Spelled in a way serde_json would not write it: the key is pointed at.
    let text = r#"{"k": "\u00e9%"}"#;
    assert_eq!(span(text), (1, 3));
}
