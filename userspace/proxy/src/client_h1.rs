//! The HTTP/1.x path (clients that do not speak HTTP/2): one task per client connection
//! reads a request head, picks a server, writes the rewritten head and the body to a
//! pooled connection to that server, then reads the response head and streams the
//! response back. Heads are parsed in place and copied once; bodies are forwarded as
//! they come (chunked bodies as they are). No codec objects and no task per server
//! connection: the request and its response share the client's task, as in HAProxy.
//!
//! Same rules as the HTTP/2 path (`http.rs` with `upstream.rs`): stats page, routing,
//! cookie persistence, balancing, `maxconn` queue, retries and `redispatch` on connect
//! failures, `X-Forwarded-For`, PROXY protocol to servers, httplog. A request whose reused
//! server connection turns out closed (no response byte) is sent again on a new one when
//! it is idempotent and was sent whole.
use std::{
    net::SocketAddr,
    sync::{atomic::Ordering::Relaxed, Arc, RwLock},
    time::{Duration, Instant},
};

use bytes::{Buf, BytesMut};
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    body_pump::{BodyPump, ClientGone, Progress},
    conn::{read_more, within, ClientConn, BUF},
    http::{
        assign, count_failure, error_page, local_response, persistence, response_edits, retry,
        run_request_rules, server_failure, Unassigned,
    },
    httplog::{log_request, Outcome},
    sample::{H1Request, ResponseHeaders, ServerResponse},
    state::{BackendRt, Body, FrontendRt, ServerRt, Shared},
    stats,
    upstream::{self, SendError},
};
use ballast_l7::haproxy::model::HttpReuse;
use ballast_l7::termination::{Cause, Phase, Termination};
use ballast_l7::{
    cookie::{self, CookieServer},
    http1::{self, BodyLen, Chunked, Field, RequestHead, ResponseHead},
    route::backend_for,
    rules::{edited, Edits},
};

/// Milliseconds since `t`, when timing was taken (for the log only).
fn ms_since(t: Option<Instant>) -> u128 {
    t.map_or(0, |t| t.elapsed().as_millis())
}

fn field<'a>(head: &'a [u8], fields: &[Field], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|f| head[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
        .map(|f| &head[f.value.clone()])
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}

/// Serves HTTP/1.x requests on one client connection until it closes, or until `leave`
/// (asked after each response that keeps the connection) says it should go on
/// elsewhere: then the connection is handed back with its unread bytes. `buf` holds what
/// was already read from it; `first`: no request was served on it yet.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    current: Arc<RwLock<Arc<Shared>>>,
    frontend: String,
    mut io: S,
    mut buf: BytesMut,
    conn: ClientConn,
    mut first: bool,
    mut leave: impl FnMut() -> bool,
) -> Option<(S, BytesMut)> {
    let tls_info = conn.tls_info().map(|sni| sni.map(String::from));
    let ClientConn { peer, local, timeouts, first_deadline, tls, .. } = conn;
    // What servers send, kept for the life of the connection (no allocation per request).
    let mut sbuf = BytesMut::with_capacity(BUF);
    loop {
        if !first {
            // Idle between requests. Empty lines before a request are ignored (RFC 9112
            // §2.2: some clients send one after a body), so they leave it idle.
            let idle_until = tokio::time::Instant::now() + timeouts.keep_alive;
            loop {
                let blank = buf.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
                buf.advance(blank);
                if !buf.is_empty() {
                    break;
                }
                let left = idle_until.saturating_duration_since(tokio::time::Instant::now());
                match read_more(&mut io, &mut buf, left).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        }
        let first_request = std::mem::replace(&mut first, false);
        // The whole head within `timeout http-request` (for the first request, counted
        // from the accept): a client trickling bytes does not hold the connection longer.
        // (Later requests: set only when the head is not all here.)
        let mut deadline = first_request.then_some(first_deadline);
        // The log's %Ta: a first request's time counts from the accept.
        let started = match first_deadline.checked_sub(timeouts.request) {
            Some(accepted) if first_request => accepted.into_std(),
            _ => Instant::now(),
        };
        let parsed = loop {
            if !buf.is_empty() {
                match http1::parse_request(&buf) {
                    Ok(Some(h)) => break first_chunks(&h, &buf).map(|c| (h, c)),
                    Ok(None) => {}
                    Err(e) => break Err(HeadFailure::Malformed(e.to_string())),
                }
            }
            let now = tokio::time::Instant::now();
            let left = deadline.get_or_insert(now + timeouts.request).saturating_duration_since(now);
            match read_more(&mut io, &mut buf, left).await {
                Ok(0) => break Err(HeadFailure::Closed),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break Err(HeadFailure::TimedOut),
                Err(_) => break Err(HeadFailure::Closed),
                Ok(_) => {}
            }
        };
        let shared = current.read().unwrap_or_else(|p| p.into_inner()).clone();
        let fe = shared.frontend(&frontend)?;
        let (h, first_chunks) = match parsed {
            Ok(x) => x,
            Err(failure) => {
                let bad =
                    BadRequest { shared: &shared, fe: &fe, peer, started, sent_nothing: buf.is_empty() };
                bad.answer(&mut io, failure, timeouts.client).await;
                return None;
            }
        };
        let head = buf.split_to(h.len).to_vec();
        let ex = Exchange {
            shared: &shared,
            fe: &fe,
            peer,
            local,
            client_timeout: timeouts.client,
            tls: tls_info.as_ref().map(|sni| sni.as_deref()),
            head: &head,
            h: &h,
            first_request,
            first_chunks,
            body_read: std::sync::atomic::AtomicBool::new(h.body == BodyLen::None),
        };
        sbuf.clear();
        if !ex.run(&mut io, &mut buf, &mut sbuf).await {
            // A plain connection with nothing unread just closes; TLS sends close_notify.
            // A request body may not have been read whole (an error answered early): then
            // the client may still be sending.
            let unread = !buf.is_empty() || !ex.body_read.load(Relaxed);
            if tls || unread {
                let _ = within(timeouts.client, io.shutdown()).await;
            }
            if unread {
                Box::pin(linger(&mut io)).await;
            }
            return None;
        }
        if leave() {
            return Some((io, buf));
        }
    }
}

/// The chunk framing of the body bytes that came with the head, and how many of them it
/// took: broken, the request is refused as malformed, as HAProxy does (it parses them
/// with the head).
fn first_chunks(h: &RequestHead, buf: &[u8]) -> Result<(Chunked, usize), HeadFailure> {
    let mut chunked = Chunked::default();
    if h.body != BodyLen::Chunked {
        return Ok((chunked, 0));
    }
    match chunked.feed(&buf[h.len..], None) {
        Ok(k) => Ok((chunked, k)),
        Err(e) => Err(HeadFailure::Malformed(format!("bad chunked body: {e}"))),
    }
}

/// Why a request did not come whole and well formed up to its head (and the body bytes
/// that came with it).
enum HeadFailure {
    Malformed(String),
    /// `timeout http-request` (or `timeout client`) passed first.
    TimedOut,
    /// The client closed (or the connection failed).
    Closed,
}

/// A request that came malformed or never came whole, on a connection that will close.
struct BadRequest<'a> {
    shared: &'a Shared,
    fe: &'a FrontendRt,
    peer: SocketAddr,
    started: Instant,
    /// Not a byte of the request arrived (`option dontlognull` does not log these).
    sent_nothing: bool,
}

impl BadRequest<'_> {
    /// As HAProxy does: a malformed request gets 400 (`PR--`), one not whole in time 408
    /// (`cR--`, also on a connection that sent nothing), and a client that closed before
    /// its head was whole gets nothing (`CR--`, logged with 400). Under `option
    /// http-ignore-probes`, a connection that sent nothing just closes.
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        failure: HeadFailure,
        client_timeout: Duration,
    ) {
        if self.sent_nothing && self.fe.cfg.settings.ignore_probes {
            return;
        }
        let (status, termination) = match &failure {
            HeadFailure::Malformed(e) => {
                log::debug!("{}: bad request from {}: {e}", self.fe.cfg.name, self.peer);
                (StatusCode::BAD_REQUEST, Termination::new(Cause::Proxy, Phase::Request))
            }
            HeadFailure::TimedOut => {
                (StatusCode::REQUEST_TIMEOUT, Termination::new(Cause::ClientTimeout, Phase::Request))
            }
            HeadFailure::Closed => {
                (StatusCode::BAD_REQUEST, Termination::new(Cause::ClientAbort, Phase::Request))
            }
        };
        // Counted before the answer goes: a client that has it sees the counters.
        self.count_and_log(status, termination);
        if matches!(failure, HeadFailure::Closed) {
            return;
        }
        let _ = within(client_timeout, write_local(io, error_page(status), 1, false)).await;
        let _ = within(client_timeout, io.shutdown()).await;
        if matches!(failure, HeadFailure::Malformed(_)) {
            // The client may still be sending: let it read the answer first.
            Box::pin(linger(io)).await;
        }
    }

    /// A request error (ereq) with its status; a request (req_tot) like any other, as
    /// HAProxy counts it. The log line shows `<BADREQ>` and 0 bytes (HAProxy's %B counts
    /// only what came from a server).
    fn count_and_log(&self, status: StatusCode, termination: Termination) {
        let fe = self.fe;
        fe.counters.enter();
        fe.counters.leave();
        fe.counters.response(status.as_u16());
        fe.counters.ereq.fetch_add(1, Relaxed);
        if fe.cfg.settings.httplog && !(self.sent_nothing && fe.cfg.settings.dontlognull) {
            let out = Outcome {
                status: status.as_u16(),
                t_request: None,
                termination,
                ..Outcome::new(&fe.cfg.name)
            };
            log_request(self.shared, fe, self.peer, self.started, &out, "0", "<BADREQ>");
        }
    }
}

/// Lingering close: after an answer that ends the connection while the client may still
/// be sending (a bad request, a body not read), read and drop what arrives until the
/// client closes, while it keeps sending (a pause of `LINGER_IDLE` ends it), for at most
/// `LINGER_MAX` and `LINGER_BYTES`. Closing with unread bytes sends a reset, which fails
/// the client's writes before it reads the answer.
async fn linger<S: AsyncRead + Unpin>(io: &mut S) {
    const LINGER_IDLE: Duration = Duration::from_secs(2);
    const LINGER_MAX: Duration = Duration::from_secs(30);
    const LINGER_BYTES: usize = 64 << 20;
    let end = tokio::time::Instant::now() + LINGER_MAX;
    let mut scratch = vec![0u8; 16 * 1024];
    let mut total = 0;
    while total < LINGER_BYTES {
        let deadline = end.min(tokio::time::Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(deadline, io.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

/// Writes a locally made response (error page, stats) with a length.
async fn write_local<S: AsyncWrite + Unpin>(
    io: &mut S,
    resp: Response<Body>,
    minor: u8,
    keep: bool,
) -> std::io::Result<u64> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in &parts.headers {
        if k != hyper::header::CONTENT_LENGTH {
            put_field(&mut out, k.as_str().as_bytes(), v.as_bytes());
        }
    }
    put_field(&mut out, b"content-length", body.len().to_string().as_bytes());
    if !keep {
        put_field(&mut out, b"connection", b"close");
    } else if minor == 0 {
        put_field(&mut out, b"connection", b"keep-alive");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    io.write_all(&out).await?;
    Ok(out.len() as u64)
}

fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// One request and its response.
struct Exchange<'a> {
    shared: &'a Shared,
    fe: &'a FrontendRt,
    peer: SocketAddr,
    local: SocketAddr,
    client_timeout: Duration,
    /// TLS, and the SNI the client sent (None: a plain connection).
    tls: Option<Option<&'a str>>,
    head: &'a [u8],
    h: &'a RequestHead,
    /// The client connection's first request (see `http-reuse safe`).
    first_request: bool,
    /// A chunked body's framing after the bytes read with the head, and their length.
    first_chunks: (Chunked, usize),
    /// The request body has been read whole (or there is none).
    body_read: std::sync::atomic::AtomicBool,
}

/// How forwarding went, for the log and for whether the client connection stays.
struct Done {
    status: u16,
    bytes: u64,
    keep: bool,
}

impl Exchange<'_> {
    fn method(&self) -> &[u8] {
        &self.head[self.h.method.clone()]
    }

    fn target(&self) -> &str {
        text(&self.head[self.h.target.clone()])
    }

    /// Returns whether the client connection can take another request.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        buf: &mut BytesMut,
        sbuf: &mut BytesMut,
    ) -> bool {
        let fe = self.fe;
        let start = fe.cfg.settings.httplog.then(Instant::now);
        fe.counters.enter();
        let mut out = Outcome::new(&fe.cfg.name);
        let done = self.route(io, buf, sbuf, &mut out).await;
        fe.counters.leave();
        fe.counters.response(done.status);
        if out.request_error {
            fe.counters.ereq.fetch_add(1, Relaxed);
        }
        fe.counters.bout.fetch_add(done.bytes, Relaxed);
        if let Some(start) = start {
            out.status = done.status;
            let line = format!("{} {} HTTP/1.{}", text(self.method()), self.target(), self.h.minor);
            log_request(self.shared, fe, self.peer, start, &out, &done.bytes.to_string(), &line);
        }
        done.keep
    }

    /// Answers locally; the connection stays only if the request had no body to skip.
    async fn local<S: AsyncWrite + Unpin>(&self, io: &mut S, resp: Response<Body>) -> Done {
        let status = resp.status().as_u16();
        let keep = self.h.keep_alive && self.h.body == BodyLen::None;
        match within(self.client_timeout, write_local(io, resp, self.h.minor, keep)).await {
            Ok(bytes) => Done { status, bytes, keep },
            Err(_) => Done { status, bytes: 0, keep: false },
        }
    }

    async fn route<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        buf: &mut BytesMut,
        sbuf: &mut BytesMut,
        out: &mut Outcome,
    ) -> Done {
        let (authority, origin) = http1::split_target(self.target());
        let pq: &str = &origin;
        let path = pq.split('?').next().unwrap_or("/");
        if let Some(st) = &self.fe.cfg.stats {
            if let Some(uri) = &st.uri {
                if path.starts_with(uri.as_str()) {
                    let mut req = Request::builder().uri(pq);
                    for f in &self.h.fields {
                        req = req.header(&self.head[f.name.clone()], &self.head[f.value.clone()]);
                    }
                    out.server = "<STATS>".into();
                    let resp = match req.body(()) {
                        Ok(req) => {
                            self.fe.counters.intercepted.fetch_add(1, Relaxed);
                            stats::serve(self.shared, st, &req)
                        }
                        Err(_) => local_response(
                            StatusCode::BAD_REQUEST,
                            "<html><body><h1>400 Bad request</h1></body></html>\n",
                        ),
                    };
                    return self.local(io, resp).await;
                }
            }
        }
        let host_field = field(self.head, &self.h.fields, "host").map(text);
        let view = self.sample(pq, path);
        let mut edits = Edits::default();
        if let Some(r) = run_request_rules(&self.fe.cfg, &self.fe.counters, &view, &mut edits, out) {
            return self.local(io, r).await;
        }
        let Some(be) = backend_for(&self.fe.cfg, &edited(&view, &edits))
            .and_then(|n| self.shared.backends.get(n))
            .cloned()
        else {
            out.termination = Termination::new(Cause::ServerAbort, Phase::Connect);
            return self.local(io, error_page(StatusCode::SERVICE_UNAVAILABLE)).await;
        };
        out.backend = be.cfg.name.clone();
        if be.cfg.name != self.fe.cfg.name {
            if let Some(r) = run_request_rules(&be.cfg, &be.counters, &view, &mut edits, out) {
                return self.local(io, r).await;
            }
        }
        let target = edits.target(pq);
        // `balance uri` hashes the target as received, or as `set-path` left it.
        let (pq, hash_target) = match &target {
            Some(t) => (t.as_str(), t.as_str()),
            None => (pq, self.target()),
        };
        be.counters.enter();
        let done = self
            .forward(&be, io, buf, sbuf, out, authority, pq, hash_target, host_field.is_none(), &edits)
            .await;
        be.counters.leave();
        be.counters.response(done.status);
        be.counters.bout.fetch_add(done.bytes, Relaxed);
        done
    }

    /// What ACLs and rules read from this request.
    fn sample<'s>(&'s self, url: &'s str, path: &'s str) -> H1Request<'s> {
        H1Request { head: self.head, h: self.h, url, path, peer: self.peer, local: self.local, tls: self.tls }
    }

    /// The request head as the server sees it (the same for every server tried), with the
    /// `http-request` rules' header changes.
    fn upstream_head(
        &self,
        be: &BackendRt,
        pq: &str,
        authority: Option<&str>,
        add_host: bool,
        edits: &Edits,
    ) -> Vec<u8> {
        let s = &be.cfg.settings;
        let head = self.head;
        let mut up = Vec::with_capacity(head.len() + 64);
        up.extend_from_slice(self.method());
        up.push(b' ');
        up.extend_from_slice(pq.as_bytes());
        up.extend_from_slice(b" HTTP/1.1\r\n");
        for f in self.h.fields.iter().filter(|f| !f.hop) {
            let (name, value) = (&head[f.name.clone()], &head[f.value.clone()]);
            if !edits.is_empty() && !edits.keeps(text(name)) {
                continue;
            }
            if let Some(c) = s.cookie.as_ref().filter(|c| c.indirect) {
                if name.eq_ignore_ascii_case(b"cookie") {
                    if let Some(rest) = cookie::strip(c, text(value)) {
                        put_field(&mut up, name, rest.as_bytes());
                    }
                    continue;
                }
            }
            put_field(&mut up, name, value);
        }
        for (n, v) in edits.added() {
            put_field(&mut up, n.as_bytes(), v.as_bytes());
        }
        if add_host {
            if let Some(a) = authority {
                put_field(&mut up, b"host", a.as_bytes());
            }
        }
        // HAProxy adds it when the frontend or the backend asks, named as the backend says
        // if it asks, else as the frontend says.
        if let Some(name) = s.forwardfor.as_ref().or(self.fe.cfg.settings.forwardfor.as_ref()) {
            put_field(&mut up, name.as_bytes(), self.peer.ip().to_string().as_bytes());
        }
        if let Some(u) = &self.h.upgrade {
            put_field(&mut up, b"connection", b"upgrade");
            put_field(&mut up, b"upgrade", &head[u.clone()]);
        }
        up.extend_from_slice(b"\r\n");
        up
    }

    #[allow(clippy::too_many_arguments)]
    async fn forward<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        be: &Arc<BackendRt>,
        io: &mut S,
        buf: &mut BytesMut,
        sbuf: &mut BytesMut,
        out: &mut Outcome,
        authority: Option<&str>,
        pq: &str,
        hash_target: &str,
        add_host: bool,
        edits: &Edits,
    ) -> Done {
        let s = &be.cfg.settings;
        let cookies: Vec<&str> = if s.cookie.is_some() {
            self.h
                .fields
                .iter()
                .filter(|f| self.head[f.name.clone()].eq_ignore_ascii_case(b"cookie"))
                .map(|f| text(&self.head[f.value.clone()]))
                .collect()
        } else {
            Vec::new()
        };
        let (persisted, client_cookie) = persistence(be, &cookies);
        let hdr_value = match &s.balance {
            ballast_l7::haproxy::model::Balance::Hdr(name) => {
                field(self.head, &self.h.fields, name).map(text)
            }
            _ => None,
        };

        // The first write to the server: head plus the body bytes already read.
        let mut first = self.upstream_head(be, pq, authority, add_host, edits);
        let mut body_left = match self.h.body {
            BodyLen::Length(n) => n,
            _ => 0,
        };
        let (chunked, chunk_bytes) = self.first_chunks.clone();
        let body_done = match self.h.body {
            BodyLen::Length(_) => {
                let k = (body_left.min(buf.len() as u64)) as usize;
                first.extend_from_slice(&buf[..k]);
                buf.advance(k);
                body_left -= k as u64;
                body_left == 0
            }
            BodyLen::Chunked => {
                first.extend_from_slice(&buf[..chunk_bytes]);
                buf.advance(chunk_bytes);
                chunked.done()
            }
            _ => true,
        };
        let sent_whole = body_done;
        self.body_read.store(body_done, Relaxed);
        let idempotent =
            matches!(self.method(), b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE");

        // No server at all: answered before any `100 Continue`.
        if persisted.is_none() && !be.servers.iter().any(|s| s.candidate().usable) {
            out.termination = Termination::new(Cause::ServerAbort, Phase::Connect);
            let d = self.local(io, error_page(StatusCode::SERVICE_UNAVAILABLE)).await;
            return Done { keep: d.keep && body_done, ..d };
        }
        let mut bound = persisted;
        if self.h.expect_continue && !body_done {
            // Answered here, as nginx does: the server never sees `Expect`.
            if within(self.client_timeout, io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")).await.is_err() {
                return Done { status: 0, bytes: 0, keep: false };
            }
        }
        let mut tries_left = s.retries;
        // Timings are for the log only.
        let start_timing = self.fe.cfg.settings.httplog;
        loop {
            let t0 = start_timing.then(Instant::now);
            let (idx, permit) = match assign(be, bound, self.peer, Some(hash_target), hdr_value).await {
                Ok(x) => x,
                Err(Unassigned::NoServer) => {
                    out.termination = Termination::new(Cause::ServerAbort, Phase::Connect);
                    let d = self.local(io, error_page(StatusCode::SERVICE_UNAVAILABLE)).await;
                    return Done { keep: d.keep && body_done, ..d };
                }
                Err(Unassigned::QueueTimeout) => {
                    out.termination = Termination::new(Cause::ServerTimeout, Phase::Queue);
                    out.t_queue = Some(ms_since(t0));
                    let d = self.local(io, error_page(StatusCode::SERVICE_UNAVAILABLE)).await;
                    return Done { keep: d.keep && body_done, ..d };
                }
            };
            let server = be.servers[idx].clone();
            out.server = server.cfg.name.clone();
            out.t_queue = Some(ms_since(t0));
            server.counters.enter();
            let t1 = start_timing.then(Instant::now);
            // A reused connection may have been closed by the server meanwhile: then the
            // request goes again on a new one, once.
            let mut fresh_only = match s.http_reuse {
                HttpReuse::Never => true,
                // Only what would be resent unseen may meet a closed connection.
                HttpReuse::Safe => self.first_request && !(idempotent && sent_whole),
                HttpReuse::Always => false,
            };
            let mut reused_conn = false;
            let attempt = loop {
                let (mut up, reused) =
                    match upstream::connect(be, &server, fresh_only, self.peer, self.local).await {
                        Ok(c) => c,
                        Err(()) => break Err(SendError::Connect),
                    };
                reused_conn = reused;
                if let Err(e) = within(be.server_timeout(), up.write_all(&first)).await {
                    if reused && !fresh_only {
                        fresh_only = true;
                        continue;
                    }
                    break Err(if e.kind() == std::io::ErrorKind::TimedOut {
                        SendError::Timeout
                    } else {
                        SendError::Other
                    });
                }
                // The rest of the body goes as the response is awaited and sent back.
                let mut pump = (!body_done).then(|| match self.h.body {
                    BodyLen::Chunked => {
                        BodyPump::chunked(chunked.clone(), self.client_timeout, be.server_timeout())
                    }
                    _ => BodyPump::by_length(body_left, self.client_timeout, be.server_timeout()),
                });
                sbuf.clear();
                match self.read_response_head(io, buf, &mut up, sbuf, be, pump.as_mut()).await {
                    Ok(r) => break Ok((up, r, pump)),
                    Err(SendError::Empty) if reused && !fresh_only && sent_whole && idempotent => {
                        fresh_only = true;
                        continue;
                    }
                    Err(e) => break Err(e),
                }
            };
            // A connect that failed has no response time (-1, as HAProxy logs it).
            out.t_connect_resp = (!matches!(attempt, Err(SendError::Connect))).then(|| ms_since(t1));
            match attempt {
                Ok((up, r, pump)) => {
                    server.counters.response(r.status);
                    let d = self.respond(io, buf, up, r, sbuf, pump, &server, be, client_cookie, out).await;
                    server.counters.bout.fetch_add(d.bytes, Relaxed);
                    server.counters.leave();
                    drop(permit);
                    return d;
                }
                Err(e) => {
                    server.counters.leave();
                    drop(permit);
                    if e == SendError::Empty && reused_conn && !self.first_request {
                        // The server closed a reused connection as the request went out and
                        // it cannot be resent unseen. Not the client connection's first
                        // request: close it without an answer, as a server closing an idle
                        // keep-alive connection would, so the client retries (HAProxy's
                        // abort_keep_alive). Not a server failure.
                        out.termination = Termination::new(Cause::ServerAbort, Phase::Headers);
                        return Done { status: 0, bytes: 0, keep: false };
                    }
                    count_failure(be, &server, &e, e == SendError::Connect && tries_left > 0);
                    if let SendError::Client(gone) = e {
                        out.client_gone(gone, false);
                        if gone == ClientGone::Invalid {
                            // Still there to read it (a client that left or went silent is not).
                            let d = self.local(io, error_page(StatusCode::BAD_REQUEST)).await;
                            return Done { keep: false, ..d };
                        }
                        return Done { status: 0, bytes: 0, keep: false };
                    }
                    let connect_failed = e == SendError::Connect;
                    if !(connect_failed && tries_left > 0) {
                        let (status, term) = server_failure(&e);
                        out.termination = term;
                        let d = self.local(io, error_page(status)).await;
                        return Done { keep: d.keep && self.body_read.load(Relaxed), ..d };
                    }
                    tries_left -= 1;
                    out.retries += 1;
                    let next =
                        retry(be, idx, tries_left, self.peer, Some(hash_target), hdr_value, persisted.is_some())
                            .await;
                    bound = Some(next.server);
                    out.redispatched |= next.redispatched;
                }
            }
        }
    }

    /// Reads the final response head; interim 1xx responses go to HTTP/1.1 clients.
    async fn read_response_head<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        buf: &mut BytesMut,
        up: &mut TcpStream,
        sbuf: &mut BytesMut,
        be: &BackendRt,
        mut pump: Option<&mut BodyPump>,
    ) -> Result<ResponseHead, SendError> {
        let mut got_any = false;
        loop {
            if !sbuf.is_empty() {
                match http1::parse_response(sbuf, self.method()) {
                    Ok(Some(r)) if (100..200).contains(&r.status) && r.status != 101 => {
                        if self.h.minor == 1 {
                            within(self.client_timeout, io.write_all(&sbuf[..r.len]))
                                .await
                                .map_err(|_| SendError::Client(ClientGone::Closed))?;
                        }
                        sbuf.advance(r.len);
                        continue;
                    }
                    Ok(Some(r)) if r.status == 101 && self.h.upgrade.is_none() => {
                        return Err(SendError::Other)
                    }
                    Ok(Some(r)) => return Ok(r),
                    Ok(None) => {}
                    Err(e) => {
                        log::debug!("bad response from a server: {e}");
                        return Err(SendError::Other);
                    }
                }
            }
            match pump.as_deref_mut().filter(|p| p.progress() == Progress::Sending) {
                None => upstream::read_head_bytes(be, up, sbuf, &mut got_any).await?,
                Some(p) => {
                    let read = p.read_server(up, sbuf, io, buf).await.map_err(SendError::Client)?;
                    if p.progress() == Progress::Sent {
                        self.body_read.store(true, Relaxed);
                    }
                    upstream::head_bytes(read, &mut got_any)?;
                }
            }
        }
    }

    /// Sends the response to the client, then returns the server connection to the pool
    /// if it can take another request.
    #[allow(clippy::too_many_arguments)]
    async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut S,
        buf: &mut BytesMut,
        mut up: TcpStream,
        r: ResponseHead,
        sbuf: &mut BytesMut,
        mut pump: Option<BodyPump>,
        server: &ServerRt,
        be: &BackendRt,
        client_cookie: Option<&str>,
        out: &mut Outcome,
    ) -> Done {
        let s = &be.cfg.settings;
        let rhead = sbuf.split_to(r.len);
        let resp = ServerResponse {
            headers: ResponseHeaders::Head { head: &rhead, fields: &r.fields },
            peer: self.peer,
            local: self.local,
            tls: self.tls,
        };
        let edits = response_edits(&self.fe.cfg, &be.cfg, &resp);
        // HTTP/1.0 clients cannot read chunked bodies: those are de-chunked and closed.
        let dechunk = r.body == BodyLen::Chunked && self.h.minor == 0;
        let upgraded = r.status == 101;
        // A server that answers before taking the whole body and closes will not read the
        // rest: the client's connection ends with this response too.
        let refused = !r.keep_alive && pump.as_ref().is_some_and(|p| p.progress() != Progress::Sent);
        let keep = self.h.keep_alive && !upgraded && r.body != BodyLen::UntilClose && !dechunk && !refused;
        let cookie_set = s.cookie.as_ref().and_then(|c| {
            let chosen = CookieServer { value: server.cfg.cookie.as_deref(), accepts: true };
            cookie::insert(c, client_cookie, &chosen)
        });
        // `nocache`: `Cache-Control: private` added to a response a shared cache could store.
        let private = cookie_set.as_ref().is_some_and(|(_, nocache)| *nocache)
            && cookie::cacheable(text(self.method()), r.status, &|name| {
                r.fields
                    .iter()
                    .filter(|f| rhead[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
                    .map(|f| text(&rhead[f.value.clone()]).to_string())
                    .collect()
            });

        let mut w = Vec::with_capacity(r.len + 128 + sbuf.len().min(BUF));
        w.extend_from_slice(b"HTTP/1.1 ");
        w.extend_from_slice(r.status.to_string().as_bytes());
        w.push(b' ');
        w.extend_from_slice(&rhead[r.reason.clone()]);
        w.extend_from_slice(b"\r\n");
        for f in r.fields.iter().filter(|f| !f.hop) {
            let name = &rhead[f.name.clone()];
            if (dechunk && name.eq_ignore_ascii_case(b"transfer-encoding"))
                || (!edits.is_empty() && !edits.keeps(text(name)))
            {
                continue;
            }
            put_field(&mut w, name, &rhead[f.value.clone()]);
        }
        for (n, v) in edits.added() {
            put_field(&mut w, n.as_bytes(), v.as_bytes());
        }
        if let Some((set, _)) = &cookie_set {
            put_field(&mut w, b"set-cookie", set.as_bytes());
        }
        if private {
            put_field(&mut w, b"cache-control", b"private");
        }
        if upgraded {
            put_field(&mut w, b"connection", b"upgrade");
            if let Some(u) = field(&rhead, &r.fields, "upgrade") {
                put_field(&mut w, b"upgrade", u);
            }
        } else if !keep {
            put_field(&mut w, b"connection", b"close");
        } else if self.h.minor == 0 {
            put_field(&mut w, b"connection", b"keep-alive");
        }
        w.extend_from_slice(b"\r\n");

        if upgraded {
            w.extend_from_slice(sbuf);
            let mut bytes = w.len() as u64;
            let t = &be.cfg.settings.timeouts;
            // `timeout tunnel`, else the larger of the client and server timeouts for both
            // sides, as HAProxy does for an upgraded connection.
            let idle = t.tunnel.unwrap_or_else(|| self.client_timeout.max(be.server_timeout()));
            // (Flushed: over TLS the 101 could otherwise wait for the tunnel's first bytes.)
            let head = async {
                io.write_all(&w).await?;
                io.flush().await
            };
            if within(idle, head).await.is_err() || within(idle, up.write_all(buf)).await.is_err() {
                return Done { status: 101, bytes, keep: false };
            }
            buf.clear();
            bytes += crate::relay::relay(&mut *io, &mut up, idle, idle).await.down;
            return Done { status: 101, bytes, keep: false };
        }

        let mut bytes = 0u64;
        let mut chunked = Chunked::default();
        let mut left = match r.body {
            BodyLen::Length(n) => n,
            _ => 0,
        };
        let mut spans = Vec::new();
        // Body bytes go out with the head in one write when they are already here.
        let finished = loop {
            let k = match r.body {
                BodyLen::None => 0,
                BodyLen::Length(_) => left.min(sbuf.len() as u64) as usize,
                BodyLen::UntilClose => sbuf.len(),
                BodyLen::Chunked => {
                    spans.clear();
                    match chunked.feed(sbuf, dechunk.then_some(&mut spans)) {
                        Ok(k) => k,
                        Err(e) => {
                            log::debug!("bad chunked body from {}: {e}", server.cfg.name);
                            out.termination = Termination::new(Cause::ServerAbort, Phase::Data);
                            break false;
                        }
                    }
                }
            };
            if dechunk {
                for sp in &spans {
                    w.extend_from_slice(&sbuf[sp.clone()]);
                }
            } else {
                w.extend_from_slice(&sbuf[..k]);
            }
            sbuf.advance(k);
            left -= match r.body {
                BodyLen::Length(_) => k as u64,
                _ => 0,
            };
            if !w.is_empty() {
                if within(self.client_timeout, io.write_all(&w)).await.is_err() {
                    out.termination = Termination::new(Cause::ClientAbort, Phase::Data);
                    return Done { status: r.status, bytes, keep: false };
                }
                bytes += w.len() as u64;
                w.clear();
            }
            let complete = match r.body {
                BodyLen::None => true,
                BodyLen::Length(_) => left == 0,
                BodyLen::Chunked => chunked.done(),
                BodyLen::UntilClose => false,
            };
            if complete {
                break true;
            }
            let more = match pump.as_mut().filter(|p| p.progress() == Progress::Sending) {
                None => read_more(&mut up, sbuf, be.server_timeout()).await,
                Some(p) => match p.read_server(&mut up, sbuf, io, buf).await {
                    Ok(read) => read,
                    Err(gone) => {
                        out.client_gone(gone, true);
                        return Done { status: r.status, bytes, keep: false };
                    }
                },
            };
            match more {
                Ok(0) => {
                    let ok = r.body == BodyLen::UntilClose;
                    if !ok {
                        out.termination = Termination::new(Cause::ServerAbort, Phase::Data);
                    }
                    break ok;
                }
                Ok(_) => {}
                Err(_) => {
                    out.termination = Termination::new(Cause::ServerAbort, Phase::Data);
                    break false;
                }
            }
        };
        // A server that answered early and keeps the connection reads the rest of the body;
        // one that did not take it all leaves neither connection fit for another request
        // (the client's unread body is drained on close).
        if let Some(p) =
            pump.as_mut().filter(|p| finished && r.keep_alive && p.progress() == Progress::Sending)
        {
            if let Err(gone) = p.send_rest(&mut up, sbuf, io, buf).await {
                out.client_gone(gone, true);
            }
        }
        let body_sent = pump.is_none_or(|p| p.progress() == Progress::Sent);
        if body_sent {
            self.body_read.store(true, Relaxed);
        }
        if finished
            && body_sent
            && r.keep_alive
            && sbuf.is_empty()
            && server.cfg.send_proxy.is_none()
            && be.cfg.settings.http_reuse != HttpReuse::Never
        {
            server.put_idle(up);
        }
        Done { status: r.status, bytes, keep: keep && finished && body_sent }
    }
}
