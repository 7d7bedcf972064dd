//! The small languages inside Telemetry and MeshConfig strings (CEL expressions, Envoy
//! access-log formats, JSON log formats) are user input read by the validator: any text
//! must parse or come back as an error whose span lies inside the text, on character
//! boundaries (the validator maps it into the YAML source).
//!
//! The first byte picks the parser: `e` a CEL expression, `j` a JSON log format, anything
//! else a text log format; the rest is the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_config::{log_format, telemetry_expr};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode {
        b'e' => {
            if let Err(e) = telemetry_expr::parse(text) {
                check_span(text, e.offset, e.len, &e.message);
            }
        }
        b'j' => match log_format::parse_json(text) {
            Ok(fields) => {
                for (_, parts) in &fields {
                    let _ = log_format::reads_request_headers(parts);
                }
            }
            Err(e) => check_span(text, e.offset, e.len, &e.message),
        },
        _ => match log_format::parse(text) {
            Ok(parts) => {
                let _ = log_format::reads_request_headers(&parts);
                for part in &parts {
                    if let log_format::Part::Op { offset, .. } = part {
                        assert_eq!(text.as_bytes()[*offset], b'%', "operator offset");
                    }
                }
            }
            Err(e) => check_span(text, e.offset, e.len, &e.message),
        },
    }
});

fn check_span(text: &str, offset: usize, len: usize, message: &str) {
    let end = offset.checked_add(len).expect("span end overflows");
    assert!(
        end <= text.len(),
        "span {offset}+{len} outside a {}-byte text: {message}",
        text.len()
    );
    assert!(
        text.is_char_boundary(offset) && text.is_char_boundary(end),
        "span {offset}+{len} splits a character: {message}"
    );
}
