//! Just enough of base64, PEM and X.509 DER to tell whether a Kubernetes TLS secret holds a
//! well-formed certificate that is valid now.

/// Decode standard base64 (with or without padding; whitespace ignored).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    let mut padding = false;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            padding = true;
            continue;
        }
        if padding {
            return None; // data after padding
        }
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A lone trailing sextet cannot encode a byte.
    (bits < 6).then_some(out)
}

/// The DER bytes of the first `-----BEGIN CERTIFICATE-----` block.
pub fn pem_certificate(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let len = pem[start..].find(END)?;
    base64_decode(&pem[start..start + len])
}

/// One DER element: (tag, contents, rest of the input).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The validity period of a DER X.509 certificate, as Unix seconds (notBefore, notAfter).
/// `None` when the bytes are not a certificate.
pub fn certificate_validity(der: &[u8]) -> Option<(i64, i64)> {
    let (tag, cert, _) = der_element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let (tag, tbs, rest) = der_element(cert)?;
    let (alg_tag, _, rest) = der_element(rest)?;
    let (sig_tag, _, _) = der_element(rest)?;
    if tag != SEQUENCE || alg_tag != SEQUENCE || sig_tag != 0x03 {
        return None;
    }
    // TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer, validity, ... }
    let mut rest = tbs;
    let (mut tag, _, mut next) = der_element(rest)?;
    if tag == 0xa0 {
        rest = next;
        (tag, _, next) = der_element(rest)?;
    }
    if tag != 0x02 {
        return None; // serial number
    }
    let (alg, _, next) = der_element(next)?;
    let (issuer, _, next) = der_element(next)?;
    let (validity_tag, validity, _) = der_element(next)?;
    if alg != SEQUENCE || issuer != SEQUENCE || validity_tag != SEQUENCE {
        return None;
    }
    let (t1, nb, rest) = der_element(validity)?;
    let (t2, na, _) = der_element(rest)?;
    Some((der_time(t1, nb)?, der_time(t2, na)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn der_time(tag: u8, bytes: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(bytes).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        UTC_TIME if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        GENERALIZED_TIME if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap_or(-1) };
    let (month, day, hour, min, sec) = (num(0), num(2), num(4), num(6), num(8));
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_known_values() {
        assert_eq!(
            base64_decode("aHVzaCBodXNoIGh1c2gK").unwrap(),
            b"hush hush hush\n"
        );
        assert_eq!(
            base64_decode("c2VjcmV0IHNlY3JldAo=").unwrap(),
            b"secret secret\n"
        );
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert!(base64_decode("not*base64").is_none());
        assert!(base64_decode("QQ=Q").is_none());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(der_time(UTC_TIME, b"000301000000Z"), Some(951_868_800));
        assert_eq!(
            der_time(GENERALIZED_TIME, b"21220218061836Z").map(|t| t > 4_800_000_000),
            Some(true)
        );
        assert_eq!(der_time(UTC_TIME, b"991332000000Z"), None);
    }

    #[test]
    fn rejects_non_certificates() {
        assert!(pem_certificate("hush").is_none());
        assert!(certificate_validity(b"\x30\x03\x02\x01\x01").is_none());
    }
}
