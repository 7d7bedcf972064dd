//! Trace context on the wire: W3C Trace Context (`traceparent`, `tracestate`) and Zipkin's
//! B3, as a single `b3` header or as `x-b3-*` headers.
//!
//! Reading: W3C wins over B3 when both are valid; between the B3 forms the single header
//! wins (as Envoy reads them). A malformed header of one form is ignored as if absent, so a
//! broken `traceparent` next to valid B3 headers still joins the B3 trace. A sampling
//! decision without ids (`b3: 0`, `x-b3-sampled` alone) is a decision for a new trace.
//!
//! Writing ([`write`]): `traceparent` always; `x-b3-*` when B3 (either form) came in or when
//! nothing came in (so a trace this proxy starts reaches B3-only and W3C-only apps alike, as
//! Envoy's Zipkin tracer adds B3 and its OpenTelemetry tracer adds W3C); the single `b3`
//! header only when it came in. `tracestate` is passed on as received with a valid
//! `traceparent` and removed otherwise (W3C: an invalid `traceparent` voids it).

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::telemetry::hex;

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const B3: HeaderName = HeaderName::from_static("b3");
pub const B3_TRACE_ID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub const B3_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub const B3_PARENT_SPAN_ID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub const B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub const B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// The context a request arrived with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    /// Trace and parent span, when a valid context came in.
    pub ids: Option<Ids>,
    /// The caller's sampling decision, if it made one.
    pub sampled: Option<bool>,
    /// `tracestate`, only with a valid `traceparent`.
    pub trace_state: Option<String>,
    /// Which forms were present and valid (they decide what is written on).
    pub w3c: bool,
    pub b3_single: bool,
    pub b3_multi: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

/// What goes on to the upstream: this hop's span as the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The span this hop's span is a child of (B3 `parentspanid`).
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
    pub incoming: &'a Incoming,
}

/// Reads the incoming context.
pub fn read(headers: &HeaderMap) -> Incoming {
    let mut inc = Incoming::default();
    if let Some((ids, sampled)) = headers.get(&TRACEPARENT).and_then(parse_traceparent) {
        inc.ids = Some(ids);
        inc.sampled = Some(sampled);
        inc.w3c = true;
        inc.trace_state = trace_state(headers);
    }
    let single = headers.get(&B3).and_then(parse_b3_single);
    let multi = parse_b3_multi(headers);
    inc.b3_single = single.is_some();
    inc.b3_multi = multi.is_some();
    if !inc.w3c
        && let Some(b3) = single.or(multi)
    {
        inc.ids = b3.ids;
        inc.sampled = b3.sampled;
    }
    inc
}

/// Rewrites the trace headers for the upstream.
pub fn write(headers: &mut HeaderMap, out: &Outgoing<'_>) {
    let inc = out.incoming;
    headers.insert(TRACEPARENT, traceparent(out));
    match &inc.trace_state {
        Some(state) => {
            if let Ok(v) = HeaderValue::from_str(state) {
                headers.insert(TRACESTATE, v);
            }
        }
        None => {
            headers.remove(TRACESTATE);
        }
    }
    let nothing_came = !inc.w3c && !inc.b3_single && !inc.b3_multi;
    if inc.b3_single || inc.b3_multi || nothing_came {
        headers.insert(B3_TRACE_ID, hex_value(&out.trace_id));
        headers.insert(B3_SPAN_ID, hex_value(&out.span_id));
        match &out.parent_span_id {
            Some(parent) => {
                headers.insert(B3_PARENT_SPAN_ID, hex_value(parent));
            }
            None => {
                headers.remove(B3_PARENT_SPAN_ID);
            }
        }
        let sampled = if out.sampled { "1" } else { "0" };
        headers.insert(B3_SAMPLED, HeaderValue::from_static(sampled));
    }
    if inc.b3_single {
        let mut v = format!(
            "{}-{}-{}",
            hex(&out.trace_id),
            hex(&out.span_id),
            if out.sampled { '1' } else { '0' }
        );
        if let Some(parent) = &out.parent_span_id {
            v.push('-');
            v.push_str(&hex(parent));
        }
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(B3, v);
        }
    }
}

/// `00-{trace-id}-{parent-id}-{flags}`, written into one buffer (this runs for every
/// request, sampled or not).
pub fn traceparent(out: &Outgoing<'_>) -> HeaderValue {
    let mut v = [b'-'; 55];
    v[..2].copy_from_slice(b"00");
    hex_into(&mut v[3..35], &out.trace_id);
    hex_into(&mut v[36..52], &out.span_id);
    v[53..].copy_from_slice(if out.sampled { b"01" } else { b"00" });
    // Only hex digits and dashes.
    HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Lower-case hex of `bytes` into `out` (twice as long).
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// W3C Trace Context level 1, version 00 only: exactly 55 characters, lower-case hex,
/// neither id all zeros. Other versions (and `ff`) are treated as absent.
pub fn parse_traceparent(value: &HeaderValue) -> Option<(Ids, bool)> {
    let s = value.to_str().ok()?.trim();
    let parts: Vec<&str> = s.split('-').collect();
    let [version, trace, span, flags] = parts.as_slice() else {
        return None;
    };
    if *version != "00" {
        return None;
    }
    let trace_id = lower_hex::<16>(trace)?;
    let span_id = lower_hex::<8>(span)?;
    let flags = lower_hex::<1>(flags)?;
    if is_zero(&trace_id) || is_zero(&span_id) {
        return None;
    }
    Some((Ids { trace_id, span_id }, flags[0] & 1 == 1))
}

/// All `tracestate` headers joined (a list header may be split across lines).
fn trace_state(headers: &HeaderMap) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(&TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// One B3 reading: ids (if any) and decision (if any). At least one of them is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B3Context {
    pub ids: Option<Ids>,
    pub sampled: Option<bool>,
}

/// `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]` or `b3: {sampling}`; sampling is
/// `0`, `1` or `d` (debug, which samples).
pub fn parse_b3_single(value: &HeaderValue) -> Option<B3Context> {
    let s = value.to_str().ok()?.trim();
    let parts: Vec<&str> = s.split('-').collect();
    if let [only] = parts.as_slice() {
        return Some(B3Context {
            ids: None,
            sampled: Some(single_sampling(only)?),
        });
    }
    let (trace, span, rest) = match parts.as_slice() {
        [t, s, rest @ ..] if rest.len() <= 2 => (*t, *s, rest),
        _ => return None,
    };
    let ids = b3_ids(trace, span)?;
    let sampled = match rest.first() {
        Some(s) => Some(single_sampling(s)?),
        None => None,
    };
    if let Some(parent) = rest.get(1) {
        any_hex::<8>(parent)?;
    }
    Some(B3Context {
        ids: Some(ids),
        sampled,
    })
}

fn single_sampling(s: &str) -> Option<bool> {
    match s {
        "0" => Some(false),
        "1" | "d" => Some(true),
        _ => None,
    }
}

/// `x-b3-traceid` (16 or 32 hex digits) with `x-b3-spanid`, and/or `x-b3-sampled`
/// (`1`/`0`/`true`/`false`) / `x-b3-flags: 1` (debug, which samples).
pub fn parse_b3_multi(headers: &HeaderMap) -> Option<B3Context> {
    let get = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let ids = match (get(&B3_TRACE_ID), get(&B3_SPAN_ID)) {
        (Some(t), Some(s)) => Some(b3_ids(t, s)?),
        (None, None) => None,
        // One id without the other is not a context.
        _ => return None,
    };
    let debug = get(&B3_FLAGS) == Some("1");
    let sampled = if debug {
        Some(true)
    } else {
        match get(&B3_SAMPLED) {
            Some("1") | Some("true") => Some(true),
            Some("0") | Some("false") => Some(false),
            Some(_) if ids.is_none() => return None,
            _ => None,
        }
    };
    if ids.is_none() && sampled.is_none() {
        return None;
    }
    Some(B3Context { ids, sampled })
}

/// B3 trace ids are 64 or 128 bits; a 64-bit one is the low half of the 128-bit id.
fn b3_ids(trace: &str, span: &str) -> Option<Ids> {
    let trace_id = match trace.len() {
        32 => any_hex::<16>(trace)?,
        16 => {
            let low = any_hex::<8>(trace)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            id
        }
        _ => return None,
    };
    let span_id = any_hex::<8>(span)?;
    if is_zero(&trace_id) || is_zero(&span_id) {
        return None;
    }
    Some(Ids { trace_id, span_id })
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Exactly `2 * N` lower-case hex digits (W3C forbids upper case).
fn lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    any_hex(s)
}

/// Exactly `2 * N` hex digits, either case (B3 senders are not all strict).
fn any_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let bytes = s.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Parses the 32 hex digits of a trace id (test helpers and receivers).
pub fn parse_trace_id(s: &str) -> Option<[u8; 16]> {
    any_hex(s)
}

/// Parses the 16 hex digits of a span id.
pub fn parse_span_id(s: &str) -> Option<[u8; 8]> {
    any_hex(s)
}

fn hex_value(bytes: &[u8]) -> HeaderValue {
    let mut buf = [0u8; 32];
    let out = &mut buf[..bytes.len().min(16) * 2];
    hex_into(out, bytes);
    HeaderValue::from_bytes(out).unwrap_or_else(|_| HeaderValue::from_static(""))
}
