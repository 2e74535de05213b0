//! Server connections: connecting (with the PROXY header for `send-proxy` servers) or
//! taking an idle pooled one, and HTTP/1.1 exchanges for the HTTP/2 path, which gets
//! the server's response as a hyper `Response` whose body streams from the server
//! connection and puts it back in the worker's pool when done. The HTTP/1 path (client_h1.rs)
//! writes and reads server connections itself; both share the same per-worker pools, so
//! a request and its server connection stay on one thread.
use std::{
    future::Future,
    net::SocketAddr,
    ops::Range,
    pin::Pin,
    sync::atomic::Ordering::Relaxed,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use hyper::{
    body::{Body as _, Frame, SizeHint},
    header::{HeaderMap, HeaderName, HeaderValue},
    Method,
};
use tokio::{
    io::{AsyncRead, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};

use super::{
    body_pump::{BodyPump, ClientGone, Progress},
    conn::{read_more, within, BUF},
    recv_body::RecvBody,
    state::{BackendRt, BoxError, ServerRt, ServerSession},
};
use ballast_l7::haproxy::model::{HttpReuse, ProxyProtocol};
use ballast_l7::{
    http1::{parse_response, BodyLen, Chunked, ResponseHead},
    proxy_protocol,
};

/// Why a request did not get a response head from the server.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SendError {
    /// Could not connect: retried (another server on the last try with `redispatch`).
    Connect,
    /// Closed before sending a byte of response (a stale reused connection, typically).
    Empty,
    Timeout,
    /// The client went away, sent a bad body, or stopped sending it.
    Client(ClientGone),
    Other,
}

/// A connection to `server`: an idle pooled one unless `fresh_only`, else a new one (with
/// the PROXY header first for `send-proxy` servers, whose connections carry one client's
/// addresses and so are never pooled). Also says whether it was reused.
pub(super) async fn connect(
    be: &BackendRt,
    server: &ServerRt,
    fresh_only: bool,
    peer: SocketAddr,
    local: SocketAddr,
) -> Result<(TcpStream, bool), ()> {
    if server.cfg.send_proxy.is_none() && !fresh_only {
        if let Some(s) = server.take_idle() {
            server.counters.reuse.fetch_add(1, Relaxed);
            be.counters.reuse.fetch_add(1, Relaxed);
            return Ok((s, true));
        }
    }
    server.counters.connect.fetch_add(1, Relaxed);
    be.counters.connect.fetch_add(1, Relaxed);
    let mut stream =
        match tokio::time::timeout(be.connect_timeout(), TcpStream::connect(server.cfg.addr)).await {
            Ok(Ok(s)) => s,
            _ => return Err(()),
        };
    let _ = stream.set_nodelay(true);
    if let Some(version) = server.cfg.send_proxy {
        let header = match version {
            ProxyProtocol::V1 => proxy_protocol::encode_v1(peer, local),
            ProxyProtocol::V2 => proxy_protocol::encode_v2(peer, local),
        };
        stream.write_all(&header).await.map_err(|_| ())?;
    }
    Ok((stream, false))
}

/// The HTTP/1.1 request head for a request that came over HTTP/2 (`headers` already
/// rewritten: no hop-by-hop fields). A body of unknown length goes chunked (and then any
/// Content-Length is left out, so the framing is never ambiguous).
pub(super) fn request_head(method: &Method, path_q: &str, headers: &HeaderMap, chunked: bool) -> Vec<u8> {
    let mut up = Vec::with_capacity(256);
    up.extend_from_slice(method.as_str().as_bytes());
    up.push(b' ');
    up.extend_from_slice(path_q.as_bytes());
    up.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == hyper::header::TRANSFER_ENCODING
            || name == hyper::header::COOKIE
            || (chunked && name == hyper::header::CONTENT_LENGTH)
        {
            continue;
        }
        up.extend_from_slice(name.as_str().as_bytes());
        up.extend_from_slice(b": ");
        up.extend_from_slice(value.as_bytes());
        up.extend_from_slice(b"\r\n");
    }
    // HTTP/2 clients split cookies into several fields; HTTP/1.1 wants one, joined with
    // "; " (RFC 9113 §8.2.3).
    let mut cookies = headers.get_all(hyper::header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        up.extend_from_slice(b"cookie: ");
        up.extend_from_slice(first.as_bytes());
        for c in cookies {
            up.extend_from_slice(b"; ");
            up.extend_from_slice(c.as_bytes());
        }
        up.extend_from_slice(b"\r\n");
    }
    if chunked {
        up.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    up.extend_from_slice(b"\r\n");
    up
}

/// What one HTTP/2 request sends to a server.
pub(super) struct Outgoing<'a> {
    pub head: &'a [u8],
    /// The request body, streamed once (None: no body, so the request can be resent).
    pub body: Option<RecvBody>,
    /// The body's length (None: unknown, it goes chunked).
    pub length: Option<u64>,
    pub idempotent: bool,
    /// Reading the client's body: `timeout client`.
    pub client_timeout: Duration,
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// Sends a request to `server` and reads the final response head; the body goes as it
/// comes, while the response is awaited (and after: the `Upload` returned, if it is not
/// done, goes on with the response body). A request without a body that meets a reused
/// connection the server closed meanwhile goes again on a new one, once.
pub(super) async fn exchange(
    be: &BackendRt,
    server: &ServerRt,
    req: &mut Outgoing<'_>,
) -> Result<(TcpStream, BytesMut, ResponseHead, Option<Upload>), SendError> {
    let resendable = req.body.is_none() && req.idempotent;
    // `safe`: what could not be resent unseen goes on a new connection, which the server
    // cannot have closed meanwhile (each stream is a first request: an HTTP/2 client does
    // not retry a stream that failed after it was sent).
    let mut fresh_only = match be.cfg.settings.http_reuse {
        HttpReuse::Never => true,
        HttpReuse::Safe => !resendable,
        HttpReuse::Always => false,
    };
    loop {
        let (mut up, reused) =
            connect(be, server, fresh_only, req.peer, req.local).await.map_err(|()| SendError::Connect)?;
        if let Err(e) = within(be.server_timeout(), up.write_all(req.head)).await {
            if reused && !fresh_only {
                // Nothing of the body was read yet: a new connection can still take it all.
                fresh_only = true;
                continue;
            }
            return Err(if e.kind() == std::io::ErrorKind::TimedOut {
                SendError::Timeout
            } else {
                SendError::Other
            });
        }
        let mut upload = req
            .body
            .take()
            .map(|body| Upload::new(body, req.length, req.client_timeout, be.server_timeout()));
        // Most heads fit; smaller than BUF because a buffer is allocated per request here
        // (and a large allocation costs more in malloc).
        let mut sbuf = BytesMut::with_capacity(4096);
        match read_response_head(be, &mut up, &mut sbuf, req.head, upload.as_mut()).await {
            Ok(r) => return Ok((up, sbuf, r, upload.filter(|u| u.pump.progress() != Progress::Sent))),
            Err(SendError::Empty) if reused && !fresh_only && resendable => fresh_only = true,
            Err(e) => return Err(e),
        }
    }
}

/// A request body on its way to a server while the response comes back (see
/// `body_pump`): the client's HTTP/2 DATA frames as the bytes of an HTTP/1.1 body.
pub(super) struct Upload {
    reader: FramesReader,
    buf: BytesMut,
    pump: BodyPump,
}

impl Upload {
    fn new(
        body: RecvBody,
        length: Option<u64>,
        client_timeout: Duration,
        server_timeout: Duration,
    ) -> Upload {
        let chunked = length.is_none();
        Upload {
            reader: FramesReader { body, chunked, pending: Bytes::new(), ended: false },
            buf: BytesMut::new(),
            pump: match length {
                Some(n) => BodyPump::by_length(n, client_timeout, server_timeout),
                None => BodyPump::chunked(Chunked::default(), client_timeout, server_timeout),
            },
        }
    }
}

/// HTTP/2 DATA frames read as HTTP/1.1 body bytes: as they are for a body of known length
/// (h2 checks the frames add up to it), chunk-framed otherwise. Trailers are dropped.
struct FramesReader {
    body: RecvBody,
    chunked: bool,
    pending: Bytes,
    ended: bool,
}

impl AsyncRead for FramesReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(out.remaining());
                out.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else { continue };
                    this.pending = if this.chunked && !data.is_empty() {
                        let mut w = BytesMut::with_capacity(data.len() + 12);
                        w.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        w.extend_from_slice(&data);
                        w.extend_from_slice(b"\r\n");
                        w.freeze()
                    } else {
                        data
                    };
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Ready(None) => {
                    this.ended = true;
                    if this.chunked {
                        this.pending = Bytes::from_static(b"0\r\n\r\n");
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The final response head (interim 1xx responses are dropped: HTTP/2 clients here get
/// the final one only).
async fn read_response_head(
    be: &BackendRt,
    up: &mut TcpStream,
    sbuf: &mut BytesMut,
    head: &[u8],
    mut upload: Option<&mut Upload>,
) -> Result<ResponseHead, SendError> {
    let method = head.split(|&b| b == b' ').next().unwrap_or(b"GET");
    let mut got_any = false;
    loop {
        if !sbuf.is_empty() {
            match parse_response(sbuf, method) {
                Ok(Some(r)) if (100..200).contains(&r.status) && r.status != 101 => {
                    sbuf.advance(r.len);
                    continue;
                }
                // No upgrade over HTTP/2 (its CONNECT is not served).
                Ok(Some(r)) if r.status == 101 => return Err(SendError::Other),
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => {
                    log::debug!("bad response from a server: {e}");
                    return Err(SendError::Other);
                }
            }
        }
        match upload.as_deref_mut().filter(|u| u.pump.progress() == Progress::Sending) {
            None => read_head_bytes(be, up, sbuf, &mut got_any).await?,
            Some(u) => {
                let read = u
                    .pump
                    .read_server(up, sbuf, &mut u.reader, &mut u.buf)
                    .await
                    .map_err(SendError::Client)?;
                head_bytes(read, &mut got_any)?;
            }
        }
    }
}

/// More of a response head from the server: a close before any byte is `Empty` (a
/// pooled connection the server had closed), after some `Other`.
pub(super) async fn read_head_bytes(
    be: &BackendRt,
    up: &mut TcpStream,
    sbuf: &mut BytesMut,
    got_any: &mut bool,
) -> Result<(), SendError> {
    head_bytes(read_more(up, sbuf, be.server_timeout()).await, got_any)
}

/// What a read of response head bytes means (see `read_head_bytes`).
pub(super) fn head_bytes(read: std::io::Result<usize>, got_any: &mut bool) -> Result<(), SendError> {
    let closed = if *got_any { SendError::Other } else { SendError::Empty };
    match read {
        Ok(0) => Err(closed),
        Ok(_) => {
            *got_any = true;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(SendError::Timeout),
        Err(_) => Err(closed),
    }
}

/// The response head's fields as hyper headers (hop-by-hop and framing fields left out:
/// HTTP/2 frames the body itself; Content-Length stays).
pub(super) fn response_headers(head: &Bytes, r: &ResponseHead) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(r.fields.len());
    for f in r.fields.iter().filter(|f| !f.hop) {
        let name = &head[f.name.clone()];
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            continue;
        }
        // Values share the head's buffer instead of each being copied.
        if let (Ok(n), Ok(v)) =
            (HeaderName::from_bytes(name), HeaderValue::from_maybe_shared(head.slice(f.value.clone())))
        {
            headers.append(n, v);
        }
    }
    headers
}

/// What `poll_frame` gives.
type Polled = Poll<Option<Result<Frame<Bytes>, BoxError>>>;

/// A response body read from the server connection as the client takes it. The
/// connection goes back to the pool once the body ended cleanly; the server's session
/// count and `maxconn` slot are held until then (or until the client goes away).
pub(super) struct ServerBody {
    io: Option<TcpStream>,
    buf: BytesMut,
    len: BodyLen,
    left: u64,
    chunked: Chunked,
    spans: Vec<Range<usize>>,
    reusable: bool,
    /// The rest of the request body, sent as the response is read.
    upload: Option<Upload>,
    /// Counted on the server until the body is dropped.
    server: ServerSession,
    _permit: crate::queue::Slot,
    timeout: Duration,
    /// Set while waiting; `true` when it waits for the client's request body.
    timer: Option<(Pin<Box<tokio::time::Sleep>>, bool)>,
    bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error("server closed the connection in the middle of a response body")]
    Truncated,
    #[error("bad chunked response body: {0}")]
    Chunked(String),
    #[error("server sent nothing for {0:?}")]
    Timeout(Duration),
    #[error("reading from the server: {0}")]
    Io(std::io::Error),
    #[error("the client's request body failed")]
    Client,
}

impl ServerBody {
    /// `buf`: what was read after the head (the head itself already split off).
    pub(super) fn new(
        be: &BackendRt,
        server: ServerSession,
        permit: crate::queue::Slot,
        io: TcpStream,
        buf: BytesMut,
        r: &ResponseHead,
        upload: Option<Upload>,
    ) -> ServerBody {
        let reusable = r.keep_alive
            && server.0.cfg.send_proxy.is_none()
            && be.cfg.settings.http_reuse != HttpReuse::Never;
        let mut body = ServerBody {
            io: Some(io),
            buf,
            len: r.body,
            left: match r.body {
                BodyLen::Length(n) => n,
                _ => 0,
            },
            chunked: Chunked::default(),
            spans: Vec::new(),
            reusable,
            upload,
            server,
            _permit: permit,
            timeout: be.server_timeout(),
            timer: None,
            bytes: 0,
        };
        // A body already complete (none, or empty) is never polled.
        if body.is_end_stream() {
            body.finish();
        }
        body
    }

    /// The body ended: the connection goes back to the pool if it can take another
    /// request (nothing left over, the server keeps it, it took the whole request body).
    fn finish(&mut self) {
        if let Some(io) = self.io.take() {
            let body_sent = self.upload.as_ref().is_none_or(|u| u.pump.progress() == Progress::Sent);
            if self.reusable && body_sent && self.buf.is_empty() && self.len != BodyLen::UntilClose {
                self.server.0.put_idle(io);
            }
        }
    }

    fn data(&mut self, b: Bytes) -> Polled {
        self.bytes += b.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(b))))
    }

    /// A frame from what is buffered, if there is one (or the end).
    fn next_buffered(&mut self) -> Option<Polled> {
        match self.len {
            BodyLen::None => {
                self.finish();
                Some(Poll::Ready(None))
            }
            BodyLen::Length(_) if self.left == 0 => {
                self.finish();
                Some(Poll::Ready(None))
            }
            BodyLen::Length(_) if !self.buf.is_empty() => {
                let k = self.left.min(self.buf.len() as u64) as usize;
                let b = self.buf.split_to(k).freeze();
                self.left -= k as u64;
                if self.left == 0 {
                    self.finish();
                }
                Some(self.data(b))
            }
            BodyLen::Chunked if self.chunked.done() => {
                self.finish();
                Some(Poll::Ready(None))
            }
            BodyLen::Chunked if !self.buf.is_empty() => {
                self.spans.clear();
                let k = match self.chunked.feed(&self.buf, Some(&mut self.spans)) {
                    Ok(k) => k,
                    Err(e) => return Some(Poll::Ready(Some(Err(BodyError::Chunked(e.to_string()).into())))),
                };
                let mut out = BytesMut::with_capacity(self.spans.iter().map(|s| s.len()).sum());
                for s in &self.spans {
                    out.extend_from_slice(&self.buf[s.clone()]);
                }
                self.buf.advance(k);
                if out.is_empty() {
                    // Only framing here: the end, or more to read.
                    return self.chunked.done().then(|| {
                        self.finish();
                        Poll::Ready(None)
                    });
                }
                if self.chunked.done() {
                    self.finish();
                }
                Some(self.data(out.freeze()))
            }
            BodyLen::UntilClose if !self.buf.is_empty() => {
                let b = self.buf.split().freeze();
                Some(self.data(b))
            }
            _ => None,
        }
    }
}

impl hyper::body::Body for ServerBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(p) = this.next_buffered() {
                return p;
            }
            let Some(io) = this.io.as_mut() else { return Poll::Ready(None) };
            if let Some(u) = this.upload.as_mut().filter(|u| u.pump.progress() == Progress::Sending) {
                if let Poll::Ready(Err(_)) = u.pump.poll_send(cx, &mut u.reader, &mut u.buf, io) {
                    this.io = None;
                    return Poll::Ready(Some(Err(BodyError::Client.into())));
                }
                if u.pump.moved() {
                    this.timer = None;
                }
            }
            if this.buf.capacity() - this.buf.len() < 1024 {
                this.buf.reserve(BUF);
            }
            match io.try_read_buf(&mut this.buf) {
                Ok(0) => {
                    this.io = None;
                    return Poll::Ready(match this.len {
                        BodyLen::UntilClose => None,
                        _ => Some(Err(BodyError::Truncated.into())),
                    });
                }
                Ok(_) => this.timer = None,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match io.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => {
                            this.io = None;
                            return Poll::Ready(Some(Err(BodyError::Io(e).into())));
                        }
                        Poll::Pending => {}
                    }
                    // Waiting for the client's body (the server waits for it too) is bounded
                    // by `timeout client`, else by `timeout server`.
                    let for_client = this.upload.as_ref().is_some_and(|u| u.pump.waits_for_client());
                    if this.timer.as_ref().is_some_and(|(_, c)| *c != for_client) {
                        this.timer = None;
                    }
                    let d = this.upload.as_ref().map_or(this.timeout, |u| u.pump.timeout(for_client));
                    let (timer, _) =
                        this.timer.get_or_insert_with(|| (Box::pin(tokio::time::sleep(d)), for_client));
                    if timer.as_mut().poll(cx).is_ready() {
                        this.io = None;
                        let e = if for_client { BodyError::Client } else { BodyError::Timeout(d) };
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    return Poll::Pending;
                }
                Err(e) => {
                    this.io = None;
                    return Poll::Ready(Some(Err(BodyError::Io(e).into())));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.len {
            BodyLen::None => true,
            BodyLen::Length(_) => self.left == 0,
            BodyLen::Chunked => self.chunked.done(),
            BodyLen::UntilClose => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.len {
            BodyLen::None => SizeHint::with_exact(0),
            BodyLen::Length(_) => SizeHint::with_exact(self.left),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for ServerBody {
    fn drop(&mut self) {
        // (The session itself ends when `server` is dropped, right after.)
        self.server.0.counters.bout.fetch_add(self.bytes, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::{HeaderMap, HeaderValue};

    use super::request_head;

    #[test]
    fn request_heads_join_cookies_and_frame_unknown_lengths() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a.example"));
        h.append("cookie", HeaderValue::from_static("a=1"));
        h.append("cookie", HeaderValue::from_static("b=2"));
        // Never forwarded as it came: the proxy decides the framing.
        h.insert("transfer-encoding", HeaderValue::from_static("gzip"));
        let head = request_head(&hyper::Method::POST, "/x?y=1", &h, true);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /x?y=1 HTTP/1.1\r\nhost: a.example\r\ncookie: a=1; b=2\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let head = request_head(&hyper::Method::GET, "/", &HeaderMap::new(), false);
        assert_eq!(head, b"GET / HTTP/1.1\r\n\r\n");
    }
}
