//! Protocol detection on the first bytes of a connection: HTTP/1 request line, the HTTP/2
//! connection preface, or a TLS ClientHello (whose SNI is extracted).
//!
//! Everything here is a pure function of a byte slice and must never panic, whatever the
//! bytes: it runs on untrusted input before any other check, and it is fuzzed.

/// What the first bytes of a connection look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// An HTTP/1.x request line (`GET /path HTTP/1.1`).
    Http1,
    /// The HTTP/2 prior-knowledge preface (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`).
    Http2,
    /// A TLS handshake record; `sni` is the ClientHello's server name when it has one.
    Tls { sni: Option<String> },
    /// Anything else (including nothing at all): opaque TCP.
    Opaque,
}

impl Protocol {
    pub fn is_http(&self) -> bool {
        matches!(self, Protocol::Http1 | Protocol::Http2)
    }

    pub fn sni(&self) -> Option<&str> {
        match self {
            Protocol::Tls { sni } => sni.as_deref(),
            _ => None,
        }
    }
}

/// The most bytes detection looks at. A ClientHello is one or a few TLS records (a record
/// holds at most 16 KiB); an HTTP/1 request line longer than this is still called HTTP.
pub const MAX_SNIFF_BYTES: usize = 16 * 1024 + 5;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Request methods that mark HTTP/1 (RFC 9110 plus PATCH; WebDAV methods are rare enough
/// on mesh ports that they go to TCP rather than risk misreading a binary protocol).
const HTTP1_METHODS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
];

/// Classify the bytes received so far. `None` means more bytes could change the answer;
/// the caller reads more, or settles with [`sniff_final`] at end of stream, timeout or
/// [`MAX_SNIFF_BYTES`].
pub fn sniff(buf: &[u8]) -> Option<Protocol> {
    if buf.is_empty() {
        return None;
    }
    if buf[0] == TLS_HANDSHAKE {
        return match parse_client_hello(buf) {
            TlsHello::NeedMore if buf.len() < MAX_SNIFF_BYTES => None,
            TlsHello::NeedMore | TlsHello::Malformed => Some(Protocol::Tls { sni: None }),
            TlsHello::Parsed { sni } => Some(Protocol::Tls { sni }),
            TlsHello::NotTls => Some(Protocol::Opaque),
        };
    }
    if let Some(p) = sniff_h2(buf) {
        return p;
    }
    sniff_http1(buf)
}

/// Classify when no more bytes will come (end of stream, timeout or size limit): whatever
/// is still undecided is opaque TCP, except a ClientHello cut short, which is still TLS.
pub fn sniff_final(buf: &[u8]) -> Protocol {
    match sniff(buf) {
        Some(p) => p,
        None if buf.first() == Some(&TLS_HANDSHAKE) => Protocol::Tls { sni: None },
        None if buf.len() >= MAX_SNIFF_BYTES && starts_with_method(buf) => Protocol::Http1,
        None => Protocol::Opaque,
    }
}

/// `Some(Some(Http2))` on the full preface, `Some(None)` on a strict prefix of it (need
/// more), `None` when the bytes are not the preface.
fn sniff_h2(buf: &[u8]) -> Option<Option<Protocol>> {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] != H2_PREFACE[..n] {
        return None;
    }
    Some((n == H2_PREFACE.len()).then_some(Protocol::Http2))
}

fn starts_with_method(buf: &[u8]) -> bool {
    HTTP1_METHODS.iter().any(|m| buf.starts_with(m))
}

fn sniff_http1(buf: &[u8]) -> Option<Protocol> {
    if !starts_with_method(buf) {
        // Still a prefix of some method ("GE", "OPTIO")? Then wait for more.
        let prefix = HTTP1_METHODS.iter().any(|m| m.starts_with(buf));
        return if prefix { None } else { Some(Protocol::Opaque) };
    }
    // The request line must end in an HTTP/1 version, which tells HTTP from text protocols
    // that also start with `GET ` (Redis inline commands, memcached).
    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
        return (buf.len() >= MAX_SNIFF_BYTES).then_some(Protocol::Http1);
    };
    let line = buf[..eol].strip_suffix(b"\r").unwrap_or(&buf[..eol]);
    let is_http = line.len() >= 9 && {
        let version = &line[line.len() - 9..];
        version.starts_with(b" HTTP/1.") && version[8].is_ascii_digit()
    };
    Some(if is_http {
        Protocol::Http1
    } else {
        Protocol::Opaque
    })
}

// === TLS ClientHello ===

const TLS_HANDSHAKE: u8 = 0x16;
const HANDSHAKE_CLIENT_HELLO: u8 = 0x01;
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
const SERVER_NAME_HOST: u8 = 0x00;
/// RFC 8446 §5.1: a record fragment is at most 2^14 bytes (plus expansion we allow for).
const MAX_RECORD_LEN: usize = (1 << 14) + 2048;

/// The outcome of reading a ClientHello from the start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsHello {
    /// The bytes so far are a valid beginning; more are needed.
    NeedMore,
    /// Not a TLS handshake record.
    NotTls,
    /// A TLS handshake record, but not a well-formed ClientHello.
    Malformed,
    Parsed {
        sni: Option<String>,
    },
}

/// Parse the ClientHello at the start of `buf`, reassembling a handshake message split
/// over several records. The SNI is lowercased; a name that is not a valid DNS name is
/// treated as absent.
pub fn parse_client_hello(buf: &[u8]) -> TlsHello {
    match client_hello_body(buf) {
        Ok(body) => match client_hello_sni(&body) {
            Some(sni) => TlsHello::Parsed { sni },
            None => TlsHello::Malformed,
        },
        Err(hello) => hello,
    }
}

/// The ALPN protocols a complete ClientHello at the start of `buf` offers (empty when it
/// offers none); `None` when the bytes are not a complete, well-formed ClientHello.
pub fn client_hello_alpn(buf: &[u8]) -> Option<Vec<Vec<u8>>> {
    let body = client_hello_body(buf).ok()?;
    let mut r = Reader(&body);
    r.take(2 + 32)?;
    let session_id = r.u8()?;
    r.take(usize::from(session_id))?;
    let suites = r.u16()?;
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    r.take(usize::from(compression))?;
    let mut protocols = Vec::new();
    if r.0.is_empty() {
        return Some(protocols);
    }
    let ext_len = r.u16()?;
    let mut exts = Reader(r.take(usize::from(ext_len))?);
    while !exts.0.is_empty() {
        let ext_type = exts.u16()?;
        let len = exts.u16()?;
        let data = exts.take(usize::from(len))?;
        if ext_type == EXT_ALPN {
            let mut d = Reader(data);
            let list_len = d.u16()?;
            let mut list = Reader(d.take(usize::from(list_len))?);
            while !list.0.is_empty() {
                let n = list.u8()?;
                protocols.push(list.take(usize::from(n))?.to_vec());
            }
        }
    }
    Some(protocols)
}

/// The ClientHello message body, reassembled from one or more records.
fn client_hello_body(buf: &[u8]) -> Result<Vec<u8>, TlsHello> {
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        match next_record(rest) {
            Record::NeedMore => return Err(TlsHello::NeedMore),
            Record::NotTls if handshake.is_empty() => return Err(TlsHello::NotTls),
            Record::NotTls | Record::Malformed => return Err(TlsHello::Malformed),
            Record::Fragment { body, after } => {
                handshake.extend_from_slice(body);
                rest = after;
            }
        }
        // The handshake header tells how many bytes the ClientHello needs.
        if handshake.len() >= 4 {
            if handshake[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(TlsHello::Malformed);
            }
            let len = u24(&handshake[1..4]);
            if handshake.len() >= 4 + len {
                handshake.truncate(4 + len);
                handshake.drain(..4);
                return Ok(handshake);
            }
        }
    }
}

enum Record<'a> {
    NeedMore,
    NotTls,
    Malformed,
    Fragment { body: &'a [u8], after: &'a [u8] },
}

fn next_record(buf: &[u8]) -> Record<'_> {
    let Some(&content_type) = buf.first() else {
        return Record::NeedMore;
    };
    if content_type != TLS_HANDSHAKE {
        return Record::NotTls;
    }
    if let Some(&major) = buf.get(1)
        && major != 3
    {
        return Record::NotTls;
    }
    if buf.len() < 5 {
        return Record::NeedMore;
    }
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if len == 0 || len > MAX_RECORD_LEN {
        return Record::Malformed;
    }
    match buf.get(5..5 + len) {
        Some(body) => Record::Fragment {
            body,
            after: &buf[5 + len..],
        },
        None => Record::NeedMore,
    }
}

/// The SNI of a complete ClientHello body: `Some(None)` when it has no (valid) server name,
/// `None` when the body is malformed.
fn client_hello_sni(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    let session_id = r.u8()?;
    r.take(usize::from(session_id))?;
    let suites = r.u16()?;
    r.take(usize::from(suites))?;
    let compression = r.u8()?;
    r.take(usize::from(compression))?;
    if r.0.is_empty() {
        // No extensions at all (TLS 1.0-era hello): valid, no SNI.
        return Some(None);
    }
    let ext_len = r.u16()?;
    let mut exts = Reader(r.take(usize::from(ext_len))?);
    while !exts.0.is_empty() {
        let ext_type = exts.u16()?;
        let len = exts.u16()?;
        let data = exts.take(usize::from(len))?;
        if ext_type == EXT_SERVER_NAME {
            return Some(server_name(data));
        }
    }
    Some(None)
}

/// The host name from a server_name extension (RFC 6066 §3).
fn server_name(data: &[u8]) -> Option<String> {
    let mut r = Reader(data);
    let list_len = r.u16()?;
    let mut list = Reader(r.take(usize::from(list_len))?);
    while !list.0.is_empty() {
        let name_type = list.u8()?;
        let len = list.u16()?;
        let name = list.take(usize::from(len))?;
        if name_type == SERVER_NAME_HOST {
            return valid_dns_name(name);
        }
    }
    None
}

fn valid_dns_name(name: &[u8]) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    ok.then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

fn u24(b: &[u8]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// A cursor that fails (returns `None`) instead of reading past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

// === server names ===

/// Whether an SNI (or host) matches a configured server name: exact (ASCII case-insensitive),
/// `*` (any), or `*.example.com`, which matches any subdomain and, as Istio's `sniHosts`
/// do, `example.com` itself.
pub fn server_name_matches(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            name.eq_ignore_ascii_case(suffix)
                || (name.len() > suffix.len() + 1
                    && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
                    && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
        }
        None => pattern.eq_ignore_ascii_case(name),
    }
}

/// A ClientHello as a browser would send it, for tests (here and in integration tests):
/// one record, TLS 1.2 legacy version, a few cipher suites, SNI `sni` when given, then an
/// ALPN extension so the SNI is not the last thing in the message.
pub fn client_hello_fixture(sni: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let name = name.as_bytes();
        let entry_len = 3 + name.len();
        exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&(entry_len as u16 + 2).to_be_bytes());
        exts.extend_from_slice(&(entry_len as u16).to_be_bytes());
        exts.push(SERVER_NAME_HOST);
        exts.extend_from_slice(&(name.len() as u16).to_be_bytes());
        exts.extend_from_slice(name);
    }
    // ALPN: h2, http/1.1
    exts.extend_from_slice(&[0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 2, b'h', b'2', 8]);
    exts.extend_from_slice(b"http/1.1");
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0x13, 0x01, 0x13, 0x02]);
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut record = vec![TLS_HANDSHAKE, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http1_request_lines() {
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Some(Protocol::Http1)
        );
        assert_eq!(sniff(b"POST /x?y HTTP/1.0\n"), Some(Protocol::Http1));
        assert_eq!(sniff(b"OPTIONS * HTTP/1.1\r\n"), Some(Protocol::Http1));
        // Undecided until the line ends.
        assert_eq!(sniff(b"GET /long/path"), None);
        assert_eq!(sniff(b"GE"), None);
        // Text protocols that also start with a method name are not HTTP.
        assert_eq!(sniff(b"GET key\r\n"), Some(Protocol::Opaque));
        assert_eq!(sniff(b"GETX / HTTP/1.1\r\n"), Some(Protocol::Opaque));
        assert_eq!(sniff(b"get / HTTP/1.1\r\n"), Some(Protocol::Opaque));
    }

    #[test]
    fn h2_preface() {
        assert_eq!(sniff(H2_PREFACE), Some(Protocol::Http2));
        assert_eq!(sniff(&H2_PREFACE[..10]), None);
        assert_eq!(sniff(b"PRI * HTTP/1.1\r\n"), Some(Protocol::Opaque));
        assert_eq!(sniff_final(&H2_PREFACE[..10]), Protocol::Opaque);
    }

    #[test]
    fn opaque_and_final() {
        assert_eq!(sniff(b"\x00\x00\x00\x01"), Some(Protocol::Opaque));
        assert_eq!(sniff(b"*2\r\n$3\r\nGET\r\n"), Some(Protocol::Opaque));
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff_final(b""), Protocol::Opaque);
        assert_eq!(sniff_final(b"GET /x"), Protocol::Opaque);
        let mut long = b"GET /".to_vec();
        long.resize(MAX_SNIFF_BYTES, b'a');
        assert_eq!(sniff(&long), Some(Protocol::Http1));
    }

    #[test]
    fn client_hello_alpn_list() {
        let hello = client_hello_fixture(Some("a.example"));
        assert_eq!(
            client_hello_alpn(&hello),
            Some(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        );
        assert_eq!(client_hello_alpn(&hello[..hello.len() - 1]), None);
        assert_eq!(client_hello_alpn(b"GET / HTTP/1.1\r\n"), None);
    }

    #[test]
    fn client_hello_with_sni() {
        let hello = client_hello_fixture(Some("Shop.Example.com"));
        assert_eq!(
            sniff(&hello),
            Some(Protocol::Tls {
                sni: Some("shop.example.com".into())
            })
        );
        // Every strict prefix needs more bytes; at the end it is TLS without a known SNI.
        for n in 1..hello.len() {
            assert_eq!(sniff(&hello[..n]), None, "prefix {n}");
            assert_eq!(sniff_final(&hello[..n]), Protocol::Tls { sni: None });
        }
        assert_eq!(
            parse_client_hello(&client_hello_fixture(None)),
            TlsHello::Parsed { sni: None }
        );
    }

    #[test]
    fn client_hello_split_over_records() {
        let hello = client_hello_fixture(Some("db.internal"));
        let hs = &hello[5..];
        let (a, b) = hs.split_at(20);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[0x16, 0x03, 0x03]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(
            parse_client_hello(&split),
            TlsHello::Parsed {
                sni: Some("db.internal".into())
            }
        );
    }

    #[test]
    fn malformed_tls() {
        assert_eq!(parse_client_hello(b"\x16\x07"), TlsHello::NotTls);
        assert_eq!(
            parse_client_hello(b"\x16\x03\x01\x00\x00"),
            TlsHello::Malformed
        );
        // A ServerHello (type 2) is not what a client sends first.
        assert_eq!(
            parse_client_hello(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00"),
            TlsHello::Malformed
        );
        // Extension length pointing past the end.
        let mut hello = client_hello_fixture(Some("a.b"));
        let ext_len_at = 5 + 4 + 2 + 32 + 1 + 6 + 2;
        hello[ext_len_at] = 0xff;
        assert_eq!(parse_client_hello(&hello), TlsHello::Malformed);
        // Invalid host name characters: TLS, no SNI.
        let hello = client_hello_fixture(Some("bad name"));
        assert_eq!(sniff(&hello), Some(Protocol::Tls { sni: None }));
    }

    #[test]
    fn never_panics_on_noise() {
        let mut rng = fastrand::Rng::with_seed(7);
        let hello = client_hello_fixture(Some("x.example.com"));
        for _ in 0..20_000 {
            let mut bytes = hello.clone();
            for _ in 0..rng.usize(1..6) {
                let i = rng.usize(..bytes.len());
                bytes[i] = rng.u8(..);
            }
            bytes.truncate(rng.usize(..=bytes.len()));
            let _ = sniff(&bytes);
            let _ = sniff_final(&bytes);
            let noise: Vec<u8> = (0..rng.usize(..64)).map(|_| rng.u8(..)).collect();
            let _ = sniff(&noise);
        }
    }

    #[test]
    fn server_names() {
        assert!(server_name_matches("*.example.com", "a.example.com"));
        assert!(server_name_matches("*.example.com", "a.b.EXAMPLE.com"));
        assert!(server_name_matches("*.example.com", "example.com"));
        assert!(!server_name_matches("*.example.com", "badexample.com"));
        assert!(!server_name_matches("*.example.com", "example.org"));
        assert!(server_name_matches("Api.Shop", "api.shop"));
        assert!(!server_name_matches("api.shop", "x.api.shop"));
        assert!(server_name_matches("*", "anything"));
    }
}
