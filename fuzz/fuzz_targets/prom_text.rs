//! The control plane reads every proxy's `/stats/prometheus`: whatever a proxy (or anything
//! answering on its admin port) sends, parsing must answer without panicking, and the
//! samples it returns must survive being written out and read again unchanged.
#![no_main]

use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use weft_control::dashboard::promtext::{Sample, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(samples) = parse(text) else {
        return;
    };
    let mut out = String::new();
    for s in &samples {
        write_sample(&mut out, s);
    }
    let again = parse(&out).unwrap_or_else(|e| panic!("re-encoded text fails: {e}\n{out}"));
    assert_eq!(again.len(), samples.len(), "{out}");
    for (a, b) in samples.iter().zip(&again) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.labels, b.labels, "{out}");
        assert!(
            a.value.to_bits() == b.value.to_bits() || (a.value.is_nan() && b.value.is_nan()),
            "value {} came back as {}",
            a.value,
            b.value
        );
    }
});

/// The exposition format as a proxy writes it: label values escape `\`, `"` and newline.
fn write_sample(out: &mut String, s: &Sample) {
    out.push_str(&s.name);
    if !s.labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in s.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{k}=\"{v}\"");
        }
        out.push('}');
    }
    let value = if s.value.is_nan() {
        "NaN".to_string()
    } else if s.value.is_infinite() {
        if s.value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{:?}", s.value)
    };
    let _ = writeln!(out, " {value}");
}
