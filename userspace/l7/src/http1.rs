//! HTTP/1.x framing for the proxy's own HTTP/1 path: request and response heads (parsed by
//! httparse, kept as byte ranges so headers are forwarded without re-encoding), how each
//! body is delimited (RFC 9112 §6), and a scanner for chunked bodies that finds where one
//! ends so the bytes can be forwarded as they are (or de-chunked for HTTP/1.0 clients).
use std::ops::Range;

/// Largest request or response head, like HAProxy's default `tune.bufsize` (16 KiB).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one head (HAProxy: `tune.http.maxhdr` 101).
pub const MAX_HEADERS: usize = 101;
/// Longest chunk-size line (with extensions) or trailer line.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyLen {
    None,
    Length(u64),
    Chunked,
    /// A response without length: it ends when the server closes.
    UntilClose,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    #[error("HTTP head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("invalid or conflicting Content-Length")]
    BadLength,
    #[error("Transfer-Encoding other than chunked")]
    BadTransferEncoding,
    #[error("both Content-Length and Transfer-Encoding (request smuggling)")]
    LengthAndEncoding,
    #[error("unsupported request target")]
    BadTarget,
    #[error("HTTP version other than 1.0 or 1.1")]
    BadVersion,
    #[error("no Host (HTTP/1.1) or more than one")]
    BadHost,
}

/// One header field: byte ranges into the head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: Range<usize>,
    pub value: Range<usize>,
    /// Hop-by-hop: never forwarded as is (RFC 9110 §7.6.1, including names listed in
    /// `Connection`).
    pub hop: bool,
}

/// What the `Connection` header fields say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, including the empty line.
    pub len: usize,
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub fields: Vec<Field>,
    pub body: BodyLen,
    /// The client wants the connection kept after this request.
    pub keep_alive: bool,
    /// `Upgrade` asked for (with `Connection: upgrade`): its value.
    pub upgrade: Option<Range<usize>>,
    pub expect_continue: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub reason: Range<usize>,
    pub minor: u8,
    pub fields: Vec<Field>,
    pub body: BodyLen,
    /// The server keeps the connection after this response.
    pub keep_alive: bool,
}

const HOP: [&[u8]; 8] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-authorization",
    b"expect",
];

/// Where `part` (a slice httparse returned) lies in `base`; empty if it is not in it
/// (httparse gives a static "" for an absent reason phrase).
/// Fields `Connection` can never make hop-by-hop.
const FRAMING: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"host"];

fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    if start > base.len() || part.len() > base.len() - start {
        return 0..0;
    }
    start..start + part.len()
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(v.len());
    let e = v.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(s, |e| e + 1);
    &v[s..e]
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim).filter(|t| !t.is_empty())
}

/// Framing facts shared by requests and responses.
struct Scan {
    conn: ConnectionTokens,
    length: Option<u64>,
    chunked: bool,
    has_te: bool,
    expect_continue: bool,
    upgrade: Option<Range<usize>>,
    hosts: usize,
}

fn scan(buf: &[u8], headers: &[httparse::Header<'_>]) -> Result<(Vec<Field>, Scan), HeadError> {
    let mut s = Scan {
        conn: ConnectionTokens::default(),
        length: None,
        chunked: false,
        has_te: false,
        expect_continue: false,
        upgrade: None,
        hosts: 0,
    };
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in headers {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens(h.value) {
                if t.eq_ignore_ascii_case(b"close") {
                    s.conn.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    s.conn.keep_alive = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") {
                    s.conn.upgrade = true;
                } else if !FRAMING.iter().any(|f| t.eq_ignore_ascii_case(f)) {
                    // A client may not make the fields that frame or route the message
                    // disappear downstream by naming them in Connection.
                    listed.push(t);
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for t in tokens(h.value) {
                if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
                    return Err(HeadError::BadLength);
                }
                let n: u64 =
                    std::str::from_utf8(t).ok().and_then(|t| t.parse().ok()).ok_or(HeadError::BadLength)?;
                if s.length.is_some_and(|l| l != n) {
                    return Err(HeadError::BadLength);
                }
                s.length = Some(n);
            }
            if trim(h.value).is_empty() {
                return Err(HeadError::BadLength);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            s.has_te = true;
            // Only the last coding decides; "chunked" anywhere else is invalid.
            for t in tokens(h.value) {
                if s.chunked {
                    return Err(HeadError::BadTransferEncoding);
                }
                s.chunked = t.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            s.hosts += 1;
        } else if name.eq_ignore_ascii_case(b"expect") {
            s.expect_continue = trim(h.value).eq_ignore_ascii_case(b"100-continue");
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            s.upgrade = Some(offset(buf, trim(h.value)));
        }
    }
    let fields = headers
        .iter()
        .map(|h| {
            let name = h.name.as_bytes();
            let hop = HOP.iter().any(|x| name.eq_ignore_ascii_case(x))
                || listed.iter().any(|x| name.eq_ignore_ascii_case(x));
            Field { name: offset(buf, name), value: offset(buf, h.value), hop }
        })
        .collect();
    Ok((fields, s))
}

fn malformed(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => HeadError::BadVersion,
        e => HeadError::Malformed(e.to_string()),
    }
}

/// The length of a complete head, None while more bytes may complete it, or the error.
fn head_len(parsed: httparse::Result<usize>, have: usize) -> Result<Option<usize>, HeadError> {
    match parsed.map_err(malformed)? {
        httparse::Status::Complete(n) if n > MAX_HEAD => Err(HeadError::TooLarge),
        httparse::Status::Complete(n) => Ok(Some(n)),
        httparse::Status::Partial if have >= MAX_HEAD => Err(HeadError::TooLarge),
        httparse::Status::Partial => Ok(None),
    }
}

/// Parses a request head at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(len) = head_len(req.parse(buf), buf.len())? else { return Ok(None) };
    let (method, target, minor) = match (req.method, req.path, req.version) {
        (Some(m), Some(p), Some(v)) => (m, p, v),
        _ => return Err(HeadError::Malformed("incomplete request line".into())),
    };
    if !(target.starts_with('/')
        || target == "*"
        || target.starts_with("http://")
        || target.starts_with("https://"))
    {
        return Err(HeadError::BadTarget);
    }
    let (fields, s) = scan(buf, req.headers)?;
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in 1.0.
    if s.hosts > 1 || (minor == 1 && s.hosts == 0) {
        return Err(HeadError::BadHost);
    }
    if s.has_te && s.length.is_some() {
        return Err(HeadError::LengthAndEncoding);
    }
    let body = if s.has_te {
        if !s.chunked || minor == 0 {
            return Err(HeadError::BadTransferEncoding);
        }
        BodyLen::Chunked
    } else {
        match s.length {
            Some(0) | None => BodyLen::None,
            Some(n) => BodyLen::Length(n),
        }
    };
    let keep_alive = if minor == 1 { !s.conn.close } else { s.conn.keep_alive && !s.conn.close };
    Ok(Some(RequestHead {
        len,
        method: offset(buf, method.as_bytes()),
        target: offset(buf, target.as_bytes()),
        minor,
        fields,
        body,
        keep_alive,
        upgrade: if s.conn.upgrade && minor == 1 { s.upgrade } else { None },
        expect_continue: s.expect_continue && minor == 1,
    }))
}

/// Parses a response head to a request with method `method`.
pub fn parse_response(buf: &[u8], method: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(len) = head_len(resp.parse(buf), buf.len())? else { return Ok(None) };
    let (status, minor) = match (resp.code, resp.version) {
        (Some(c), Some(v)) => (c, v),
        _ => return Err(HeadError::Malformed("incomplete status line".into())),
    };
    let reason = offset(buf, resp.reason.unwrap_or("").as_bytes());
    let (mut fields, s) = scan(buf, resp.headers)?;
    if s.has_te {
        // RFC 9112 §6.3: Transfer-Encoding wins; Content-Length must not go on.
        for f in fields.iter_mut().filter(|f| buf[f.name.clone()].eq_ignore_ascii_case(b"content-length")) {
            f.hop = true;
        }
    }
    // Method names are case-sensitive: only "HEAD" is HEAD.
    let body = if method == b"HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
        BodyLen::None
    } else if s.has_te {
        if s.chunked {
            BodyLen::Chunked
        } else {
            BodyLen::UntilClose
        }
    } else {
        match s.length {
            Some(0) => BodyLen::None,
            Some(n) => BodyLen::Length(n),
            None => BodyLen::UntilClose,
        }
    };
    // An HTTP/1.0 message with Transfer-Encoding has faulty framing (§6.1): close after.
    let keep_alive = body != BodyLen::UntilClose
        && !(minor == 0 && s.has_te)
        && if minor == 1 { !s.conn.close } else { s.conn.keep_alive && !s.conn.close };
    Ok(Some(ResponseHead { len, status, reason, minor, fields, body, keep_alive }))
}

/// Origin-form of a request target: `/path?q` stays, `http://host:port/path?q` gives
/// (`host:port`, `/path?q`), `http://h?q` gives (`h`, `/?q`), `*` stays.
pub fn split_target(target: &str) -> (Option<&str>, std::borrow::Cow<'_, str>) {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            let cut = rest.find(['/', '?']).unwrap_or(rest.len());
            let (auth, pq) = rest.split_at(cut);
            let pq = if pq.starts_with('/') { pq.into() } else { format!("/{pq}").into() };
            return (Some(auth), pq);
        }
    }
    (None, target.into())
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("invalid chunk size line")]
    BadSize,
    #[error("chunk size or trailer line too long")]
    LineTooLong,
    #[error("missing CRLF after chunk data")]
    MissingCrlf,
    #[error("trailers too large")]
    TrailersTooLarge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hex digits of the size (how many read so far).
    Size(u8),
    /// Extensions or whitespace after the size, up to CR.
    SizeRest,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLineLf,
    TrailerEndLf,
    Done,
}

/// Finds the end of a chunked body fed to it in pieces. `feed` reports how many bytes
/// belong to the body (it stops at its end: what follows is the next message) and, when
/// asked, the ranges holding chunk data (for de-chunking). The bytes are forwarded as they
/// are, so the framing is checked strictly (RFC 9112 §7.1: CRLF everywhere, no bare LF or
/// CR, no control characters in extensions): a laxer reading downstream cannot see
/// different chunk boundaries than this one.
#[derive(Clone, Debug)]
pub struct Chunked {
    state: State,
    size: u64,
    line: usize,
    trailers: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size(0), size: 0, line: 0, trailers: 0 }
    }
}

impl Chunked {
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    pub fn feed(
        &mut self,
        buf: &[u8],
        mut data: Option<&mut Vec<Range<usize>>>,
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            let b = buf[i];
            if self.state == State::Data {
                let take = (buf.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                if let Some(d) = data.as_deref_mut() {
                    d.push(i..i + take);
                }
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.state = match (self.state, b) {
                (State::Size(n), _) if b.is_ascii_hexdigit() => {
                    if n >= 16 {
                        return Err(ChunkError::BadSize);
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    self.size = self.size << 4 | u64::from(d);
                    self.line += 1;
                    State::Size(n + 1)
                }
                (State::Size(0), _) => return Err(ChunkError::BadSize),
                (State::Size(_), b'\r') | (State::SizeRest, b'\r') => State::SizeLf,
                (State::Size(_), b';' | b' ' | b'\t') => {
                    self.line += 1;
                    State::SizeRest
                }
                (State::Size(_), _) => return Err(ChunkError::BadSize),
                (State::SizeRest, _) => {
                    if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(ChunkError::BadSize);
                    }
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(ChunkError::LineTooLong);
                    }
                    State::SizeRest
                }
                (State::SizeLf, b'\n') => {
                    self.line = 0;
                    if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    }
                }
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataLf, b'\n') => {
                    self.size = 0;
                    self.line = 0;
                    State::Size(0)
                }
                (State::TrailerStart, b'\r') => {
                    self.count_trailer()?;
                    State::TrailerEndLf
                }
                (State::TrailerStart | State::TrailerLine, b'\n') => return Err(ChunkError::MissingCrlf),
                (State::TrailerStart, _) => {
                    self.count_trailer()?;
                    self.line = 1;
                    State::TrailerLine
                }
                (State::TrailerLine, b'\r') => {
                    self.count_trailer()?;
                    State::TrailerLineLf
                }
                (State::TrailerLine, _) => {
                    self.count_trailer()?;
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(ChunkError::LineTooLong);
                    }
                    State::TrailerLine
                }
                (State::TrailerLineLf, b'\n') => {
                    self.count_trailer()?;
                    State::TrailerStart
                }
                (State::TrailerEndLf, b'\n') => State::Done,
                (State::SizeLf, _) => return Err(ChunkError::BadSize),
                _ => return Err(ChunkError::MissingCrlf),
            };
            i += 1;
        }
        Ok(i)
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailers += 1;
        if self.trailers > MAX_TRAILERS {
            return Err(ChunkError::TrailersTooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(s.as_bytes())
    }

    fn field<'a>(buf: &'a str, h: &RequestHead, name: &str) -> Option<&'a str> {
        h.fields
            .iter()
            .find(|f| buf[f.name.clone()].eq_ignore_ascii_case(name))
            .map(|f| &buf[f.value.clone()])
    }

    #[test]
    fn request_heads_and_their_bodies() {
        let s = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\nNEXT";
        let h = req(s).unwrap().unwrap();
        assert_eq!(h.len, s.len() - 4);
        assert_eq!(&s[h.method.clone()], "GET");
        assert_eq!(&s[h.target.clone()], "/a?b=1");
        assert_eq!((h.minor, h.body, h.keep_alive), (1, BodyLen::None, true));
        assert_eq!(field(s, &h, "host"), Some("x"));

        assert_eq!(req("GET / HTTP/1.1\r\nHost: x\r\n").unwrap(), None);
        let h = req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.body, BodyLen::Length(12));
        let h = req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.body, BodyLen::Length(3));
        let h =
            req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.body, BodyLen::Chunked);
        let h = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
        assert!(h.keep_alive);
        let h = req("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = req("PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
    }

    #[test]
    fn smuggling_and_bad_framing_are_refused() {
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(HeadError::BadLength)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
            Err(HeadError::BadLength)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n"),
            Err(HeadError::BadLength)
        );
        assert_eq!(req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"), Err(HeadError::BadLength));
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(HeadError::BadLength)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::LengthAndEncoding)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Err(HeadError::BadTransferEncoding)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(HeadError::BadTransferEncoding)
        );
        assert_eq!(
            req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::BadTransferEncoding)
        );
        assert_eq!(req("GET example.com HTTP/1.1\r\nHost: h\r\n\r\n"), Err(HeadError::BadTarget));
        assert!(matches!(req("GET / HTTP/2.0\r\n\r\n"), Err(HeadError::BadVersion)));
        assert!(matches!(
            req("GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let big = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(req(&big), Err(HeadError::TooLarge));
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("X{i}: y\r\n")).collect();
        assert_eq!(req(&format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n")), Err(HeadError::TooManyHeaders));
    }

    #[test]
    fn hop_by_hop_fields_include_those_connection_lists() {
        let s = "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Keep: 2\r\n\r\n";
        let h = req(s).unwrap().unwrap();
        let hops: Vec<&str> = h.fields.iter().filter(|f| f.hop).map(|f| &s[f.name.clone()]).collect();
        assert_eq!(hops, ["Connection", "X-Secret", "Keep-Alive", "TE"]);
    }

    #[test]
    fn connection_cannot_hide_framing_or_host() {
        let s = "POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length, transfer-encoding, host\r\nContent-Length: 3\r\n\r\n";
        let h = req(s).unwrap().unwrap();
        let kept: Vec<&str> = h.fields.iter().filter(|f| !f.hop).map(|f| &s[f.name.clone()]).collect();
        assert_eq!(kept, ["Host", "Content-Length"]);
    }

    #[test]
    fn host_exactly_once_in_http11() {
        assert_eq!(req("GET / HTTP/1.1\r\n\r\n"), Err(HeadError::BadHost));
        assert_eq!(req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), Err(HeadError::BadHost));
        assert_eq!(req("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"), Err(HeadError::BadHost));
        assert!(req("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn upgrade_needs_connection_upgrade() {
        let s = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let h = req(s).unwrap().unwrap();
        assert_eq!(&s[h.upgrade.clone().unwrap()], "websocket");
        assert_eq!(
            req("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n").unwrap().unwrap().upgrade,
            None
        );
    }

    #[test]
    fn response_bodies() {
        let r = |s: &str, m: &str| parse_response(s.as_bytes(), m.as_bytes()).unwrap().unwrap();
        let h = r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET");
        assert_eq!((h.status, h.body, h.keep_alive), (200, BodyLen::Length(5), true));
        assert_eq!(r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD").body, BodyLen::None);
        // Methods are case-sensitive: "head" is not HEAD, its response has a body.
        assert_eq!(r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "head").body, BodyLen::Length(5));
        // Transfer-Encoding wins over Content-Length, which is not passed on.
        let s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        let h = r(s, "GET");
        assert_eq!(h.body, BodyLen::Chunked);
        assert!(h.fields.iter().filter(|f| f.hop).any(|f| &s[f.name.clone()] == "Content-Length"));
        assert!(
            !r("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n", "GET")
                .keep_alive
        );
        assert_eq!(r("HTTP/1.1 204 No Content\r\n\r\n", "GET").body, BodyLen::None);
        assert_eq!(r("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", "GET").body, BodyLen::None);
        assert_eq!(r("HTTP/1.1 100 Continue\r\n\r\n", "POST").body, BodyLen::None);
        assert_eq!(r("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET").body, BodyLen::Chunked);
        let h = r("HTTP/1.1 200 OK\r\n\r\n", "GET");
        assert_eq!((h.body, h.keep_alive), (BodyLen::UntilClose, false));
        assert!(!r("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET").keep_alive);
        assert!(!r("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", "GET").keep_alive);
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", b"GET"),
            Err(HeadError::BadLength)
        );
        let s = "HTTP/1.1 404 Not Found\r\n\r\n";
        assert_eq!(&s[r(s, "GET").reason], "Not Found");
        // No reason phrase at all (found by fuzzing: httparse returns a static "").
        assert_eq!(r("HTTP/1.0 760\r\n\r\n", "GET").reason, 0..0);
    }

    #[test]
    fn targets() {
        let t = |s| {
            let (a, pq) = split_target(s);
            (a, pq.into_owned())
        };
        assert_eq!(t("/a?b"), (None, "/a?b".into()));
        assert_eq!(t("http://h:8/x?y"), (Some("h:8"), "/x?y".into()));
        assert_eq!(t("http://h?y"), (Some("h"), "/?y".into()));
        assert_eq!(t("https://h"), (Some("h"), "/".into()));
        assert_eq!(t("*"), (None, "*".into()));
    }

    fn dechunk(input: &[u8], step: usize) -> Result<(usize, Vec<u8>), ChunkError> {
        let mut c = Chunked::default();
        let (mut used, mut out) = (0, Vec::new());
        while used < input.len() && !c.done() {
            let end = (used + step).min(input.len());
            let mut spans = Vec::new();
            let n = c.feed(&input[used..end], Some(&mut spans))?;
            for r in spans {
                out.extend_from_slice(&input[used + r.start..used + r.end]);
            }
            used += n;
        }
        assert!(c.done(), "body not finished");
        Ok((used, out))
    }

    #[test]
    fn chunked_bodies_end_where_they_end_in_any_split() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\n0\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\n";
        for step in 1..body.len() {
            let (used, data) = dechunk(body, step).unwrap();
            assert_eq!(used, body.len() - 16, "step {step}");
            assert_eq!(data, b"hello ");
        }
        assert_eq!(dechunk(b"A\r\n0123456789\r\n0\r\n\r\n", 64).unwrap().1, b"0123456789");
    }

    #[test]
    fn bad_chunks_are_errors() {
        let bad = |s: &[u8]| Chunked::default().feed(s, None).unwrap_err();
        assert_eq!(bad(b"x\r\n"), ChunkError::BadSize);
        assert_eq!(bad(b"\r\n"), ChunkError::BadSize);
        assert_eq!(bad(b"11111111111111111\r\n"), ChunkError::BadSize);
        assert_eq!(bad(b"1\r\nab"), ChunkError::MissingCrlf);
        // Bare LF or CR anywhere in the framing (a laxer server could split differently).
        assert_eq!(bad(b"1\na\r\n0\r\n\r\n"), ChunkError::BadSize);
        assert_eq!(bad(b"1;x\na\r\n"), ChunkError::BadSize);
        assert_eq!(bad(b"1\r\na\n0\r\n\r\n"), ChunkError::MissingCrlf);
        assert_eq!(bad(b"0\r\n\n"), ChunkError::MissingCrlf);
        assert_eq!(bad(b"0\r\nX: 1\n\r\n"), ChunkError::MissingCrlf);
        assert_eq!(bad(b"1;\x01\r\n"), ChunkError::BadSize);
        assert_eq!(bad(b"1\rx"), ChunkError::BadSize);
        assert_eq!(bad(&[b"1;".as_slice(), &[b'a'; 5000]].concat()), ChunkError::LineTooLong);
        let trailers: Vec<u8> = [b"0\r\n".to_vec(), b"X: y\r\n".repeat(3000)].concat();
        assert_eq!(bad(&trailers), ChunkError::TrailersTooLarge);
    }
}
