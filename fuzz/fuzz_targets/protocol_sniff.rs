//! Protocol detection runs on the first bytes of every connection whose protocol is not
//! declared, before any other check: whatever the bytes, it must answer without panicking,
//! and its answers must agree with each other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_proxy::listener::detect::{
    MAX_SNIFF_BYTES, Protocol, TlsHello, client_hello_alpn, parse_client_hello, sniff,
    sniff_final,
};

fuzz_target!(|data: &[u8]| {
    let settled = sniff_final(data);
    // A decided answer is final: end of stream cannot change it.
    if let Some(decided) = sniff(data) {
        assert_eq!(decided, settled, "sniff and sniff_final disagree");
    }
    // Reading more bytes never changes a decision taken on fewer (the listener stops
    // reading at the first decision, so a later bytes-dependent answer would be a bug that
    // depends on how the client's writes were segmented).
    if let Some(&split) = data.first() {
        let cut = usize::from(split).min(data.len());
        if let Some(early) = sniff(&data[..cut]) {
            assert_eq!(
                Some(early),
                sniff(data),
                "decision on {cut} bytes changed with more"
            );
        }
    }
    match parse_client_hello(data) {
        TlsHello::Parsed { sni: Some(name) } => {
            assert!(
                !name.is_empty() && name.len() <= 253,
                "SNI length out of range"
            );
            assert_eq!(name, name.to_ascii_lowercase(), "SNI not lowercased");
            if data.len() <= MAX_SNIFF_BYTES {
                assert_eq!(sniff(data), Some(Protocol::Tls { sni: Some(name) }));
            }
        }
        TlsHello::NotTls => assert!(!matches!(settled, Protocol::Tls { .. }) || data.is_empty()),
        TlsHello::Parsed { sni: None } | TlsHello::NeedMore | TlsHello::Malformed => {}
    }
    // ALPN (mTLS PERMISSIVE reads it): only complete ClientHellos have an answer.
    if client_hello_alpn(data).is_some() {
        assert!(!matches!(
            parse_client_hello(data),
            TlsHello::NeedMore | TlsHello::NotTls
        ));
    }
});
