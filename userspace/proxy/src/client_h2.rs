//! HTTP/2 client connections: the protocol state of `ballast_l7::http2` driven on the client's
//! socket. All of a connection's streams run inside its one task: each poll reads what
//! the client sent, advances every stream (its request to a server, then its response
//! body within the flow-control windows) and writes the frames all streams produced in
//! one go. Requests go through the same routing, balancing and server exchange as
//! before (`http::handle`); only the client side's protocol is ours.
use std::{
    future::{poll_fn, Future},
    net::SocketAddr,
    pin::Pin,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex, RwLock},
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use hyper::{
    body::Body as _,
    header::{HeaderMap, HeaderName, HeaderValue},
    http::uri,
    Method, Request, Response, StatusCode, Uri, Version,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{
    conn::ClientTimeouts,
    http,
    recv_body::{Inbox, RecvBody},
    state::{Body, Shared},
};
use ballast_l7::http2::{Conn, Event, Limits, Reason, RequestHead, StreamMap};

/// Above this many bytes waiting to be written, the connection stops reading requests
/// and response bodies until the client takes them.
const HIGH_WATER: usize = 256 * 1024;
/// Rounds of work in one poll before yielding to other tasks.
const ROUNDS: usize = 32;
/// Most body bytes one stream sends in a round: the others get their turn.
const STREAM_BUDGET: usize = 64 * 1024;
/// How long a closing connection reads (and drops) what the client still sends, so that
/// the close is a FIN and not a reset that could destroy our last frames unread.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
/// Streams a client may reset before their answer (beyond the number answered) before
/// the connection ends with ENHANCE_YOUR_CALM: each one cost a routed request, so a
/// flood of them (CVE-2023-44487, "rapid reset") is work without end.
const FREE_RESETS: u32 = 100;

type Answer = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// One stream of the connection.
enum Active {
    /// Its request is on its way; the response head is awaited.
    Waiting(Answer),
    /// The response head went out; its body is sent as the windows allow (`pending`:
    /// bytes taken from the body, not yet sent; `stalled`: since when the client's
    /// windows have held them back).
    Sending { body: Body, pending: Bytes, stalled: Option<tokio::time::Instant> },
}

struct Stream {
    active: Active,
    inbox: Option<Arc<Mutex<Inbox>>>,
}

/// What a connection's requests need.
pub(super) struct ConnInfo {
    pub current: Arc<RwLock<Arc<Shared>>>,
    pub frontend: String,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub timeouts: ClientTimeouts,
    /// TLS, and the SNI the client sent (None: a plain connection).
    pub tls: Option<Option<Arc<str>>>,
}

/// Serves an HTTP/2 connection whose first bytes (`buf`, starting with the preface)
/// were already read, until it ends.
pub(super) async fn serve<S>(io: S, buf: BytesMut, ctx: ConnInfo)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut c = Connection {
        io,
        rbuf: buf,
        conn: Conn::new(Limits::default()),
        streams: StreamMap::default(),
        events: Vec::new(),
        idle: Box::pin(tokio::time::sleep(ctx.timeouts.keep_alive)),
        ctx,
        goaway_received: false,
        closing: false,
        shut: false,
        flushed: true,
        resets: 0,
        answered: 0,
        order: Vec::new(),
        done: Vec::new(),
        last_sender: 0,
        stalled_since: None,
    };
    // The bytes read to recognise the preface often hold the first frames too.
    c.receive();
    poll_fn(|cx| c.poll(cx)).await;
    // Streams still waiting on servers are dropped with the connection: their bodies
    // are marked broken first, so an upload in progress ends as a client abort.
    let open: Vec<u32> = c.streams.keys().copied().collect();
    for id in open {
        c.forget(id);
    }
}

struct Connection<S> {
    io: S,
    rbuf: BytesMut,
    conn: Conn,
    streams: StreamMap<Stream>,
    events: Vec<Event>,
    idle: Pin<Box<tokio::time::Sleep>>,
    ctx: ConnInfo,
    /// The client sent GOAWAY: the connection ends once its streams did.
    goaway_received: bool,
    /// The connection ends: `out` is written, our side shut, and what the client still
    /// sends is read and dropped for up to `LINGER`.
    closing: bool,
    shut: bool,
    flushed: bool,
    /// Streams the client reset before their answer, and answers begun.
    resets: u32,
    answered: u32,
    /// Scratch lists for `poll_streams`; its rounds start after the stream that sent
    /// last, so that streams take turns.
    order: Vec<u32>,
    done: Vec<u32>,
    last_sender: u32,
    /// The oldest time a stream's bytes have waited for the client's windows (HAProxy's
    /// `timeout client` on a stream that cannot send).
    stalled_since: Option<tokio::time::Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut moved = false;
        for _ in 0..ROUNDS {
            if self.closing {
                return self.poll_close(cx);
            }
            let mut progress = false;
            if self.conn.out.len() < HIGH_WATER {
                match self.poll_read(cx) {
                    Poll::Ready(Ok(true)) => progress = true,
                    // The client closed: what it asked for cannot be answered.
                    Poll::Ready(Ok(false)) | Poll::Ready(Err(())) => return Poll::Ready(()),
                    Poll::Pending => {}
                }
                if self.closing {
                    continue;
                }
            }
            progress |= self.poll_streams(cx);
            match self.poll_write(cx) {
                Poll::Ready(Ok(wrote)) => progress |= wrote,
                Poll::Ready(Err(())) => return Poll::Ready(()),
                Poll::Pending => {}
            }
            if self.goaway_received && self.streams.is_empty() {
                self.close();
                continue;
            }
            if progress {
                moved = true;
                continue;
            }
            // The timer starts again from the last work done (once per poll: reading the
            // clock and moving the timer cost more than most rounds of work).
            if moved {
                self.rearm();
            }
            return self.poll_idle(cx);
        }
        if !self.closing {
            self.rearm();
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Sets the timer: `timeout http-keep-alive` from now on an idle connection, else
    /// `timeout client`, and no later than a stalled stream's `timeout client`.
    fn rearm(&mut self) {
        let t = &self.ctx.timeouts;
        let idle = self.streams.is_empty() && self.conn.out.is_empty();
        let mut at = tokio::time::Instant::now() + if idle { t.keep_alive } else { t.client };
        if let Some(since) = self.stalled_since {
            at = at.min(since + t.client);
        }
        self.idle.as_mut().reset(at);
    }

    /// The connection is to end (our GOAWAY, if any, is in `out`): what is left to
    /// write gets `timeout client`.
    fn close(&mut self) {
        self.closing = true;
        self.idle.as_mut().reset(tokio::time::Instant::now() + self.ctx.timeouts.client);
    }

    /// Nothing moved: the timer decides. An idle connection (no stream) ends with a
    /// GOAWAY after `timeout http-keep-alive`; a client that takes none of its frames
    /// for `timeout client`, or keeps a stream's window shut that long, loses the
    /// connection; streams waiting on their servers are bounded by the servers' timeouts.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.idle.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if self.streams.is_empty() && self.conn.out.is_empty() {
            self.conn.goaway(Reason::NoError);
            self.close();
            return self.poll_close(cx);
        }
        let now = tokio::time::Instant::now();
        let stalled = self.stalled_since.is_some_and(|t| t + self.ctx.timeouts.client <= now);
        if !self.conn.out.is_empty() || stalled {
            log::debug!(
                "HTTP/2 client {}: took nothing for timeout client; connection closed",
                self.ctx.peer
            );
            return Poll::Ready(());
        }
        self.rearm();
        let _ = self.idle.as_mut().poll(cx);
        Poll::Pending
    }

    /// The end: our last frames out, our side shut, then the client's bytes dropped
    /// until it closes too or the linger time is over.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Poll::Ready(Err(())) = self.poll_write(cx) {
            return Poll::Ready(());
        }
        if self.conn.out.is_empty() && self.flushed && !self.shut {
            match Pin::new(&mut self.io).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => {
                    self.shut = true;
                    self.idle.as_mut().reset(tokio::time::Instant::now() + LINGER);
                }
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => {}
            }
        }
        if self.shut {
            for _ in 0..ROUNDS {
                self.rbuf.clear();
                match self.poll_read_raw(cx) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Ready(Ok(_)) => {}
                    Poll::Pending => break,
                }
            }
        }
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_read_raw(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf)
    }

    /// Reads and handles what the client sent. Ok(false): it closed.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ()>> {
        match self.poll_read_raw(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(Err(())),
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(false)),
            Poll::Ready(Ok(_)) => {
                self.receive();
                Poll::Ready(Ok(true))
            }
        }
    }

    /// Handles the whole frames in the read buffer.
    fn receive(&mut self) {
        let mut events = std::mem::take(&mut self.events);
        let r = self.conn.receive(&mut self.rbuf, &mut events);
        for e in events.drain(..) {
            self.event(e);
        }
        self.events = events;
        if let Err(e) = r {
            log::debug!("HTTP/2 client {}: {e}", self.ctx.peer);
            self.count_request_error();
            self.close();
        } else if self.resets > FREE_RESETS && self.resets > self.answered {
            log::debug!("HTTP/2 client {}: {} streams reset before their answer", self.ctx.peer, self.resets);
            self.conn.goaway(Reason::EnhanceYourCalm);
            self.close();
        }
    }

    fn count_request_error(&self) {
        let shared = self.ctx.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(fe) = shared.frontend(&self.ctx.frontend) {
            fe.counters.ereq.fetch_add(1, Relaxed);
        }
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Request { stream, head, end_stream } => self.request(stream, head, end_stream),
            Event::Data { stream, data, end_stream } => {
                let Some(inbox) = self.streams.get(&stream).and_then(|s| s.inbox.as_ref()) else {
                    // A body nobody reads any more: its window is given back.
                    self.conn.release(stream, data.len());
                    return;
                };
                let mut i = inbox.lock().unwrap_or_else(|p| p.into_inner());
                if !data.is_empty() {
                    i.chunks.push_back(data);
                }
                i.ended |= end_stream;
                if let Some(w) = i.waker.take() {
                    w.wake();
                }
            }
            Event::Reset { stream, malformed } => {
                if let Some(s) = self.forget(stream) {
                    if matches!(s.active, Active::Waiting(_)) {
                        self.resets += 1;
                    }
                }
                if malformed {
                    self.count_request_error();
                }
            }
            Event::Refused { malformed, .. } => {
                if malformed {
                    self.count_request_error();
                }
            }
            Event::WindowOpened => {}
            Event::GoAway => self.goaway_received = true,
        }
    }

    /// A new request: it starts on its way to a server at once.
    fn request(&mut self, stream: u32, head: RequestHead, end_stream: bool) {
        let inbox = (!end_stream).then(|| Arc::new(Mutex::new(Inbox::default())));
        let body = RecvBody { shared: inbox.clone() };
        let Some(req) = build_request(head, body) else {
            self.conn.reset(stream, Reason::Protocol);
            self.count_request_error();
            return;
        };
        // Each request runs on the config current when it arrives.
        let shared = self.ctx.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        let fe = shared.frontend(&self.ctx.frontend);
        let (peer, local, tls) = (self.ctx.peer, self.ctx.local, self.ctx.tls.clone());
        let answer: Answer = Box::pin(async move {
            match fe {
                Some(fe) => match http::handle(shared, fe, peer, local, tls, req).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                },
                None => http::error_page(StatusCode::SERVICE_UNAVAILABLE),
            }
        });
        self.streams.insert(stream, Stream { active: Active::Waiting(answer), inbox });
    }

    /// Advances every stream; true if any produced frames or ended.
    fn poll_streams(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut order = std::mem::take(&mut self.order);
        let mut done = std::mem::take(&mut self.done);
        order.clear();
        order.extend(self.streams.keys());
        // The round starts after the stream that sent last: the streams first in the
        // map must not always take the room below HIGH_WATER.
        if let Some(i) = order.iter().position(|&id| id == self.last_sender) {
            order.rotate_left(i + 1);
        }
        let mut stalled_since: Option<tokio::time::Instant> = None;
        for &id in &order {
            let Some(s) = self.streams.get_mut(&id) else { continue };
            if let Active::Waiting(answer) = &mut s.active {
                let Poll::Ready(resp) = answer.as_mut().poll(cx) else { continue };
                progress = true;
                let (parts, body) = resp.into_parts();
                let end = body.is_end_stream();
                let fields = parts.headers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
                self.conn.send_headers(id, Some(parts.status.as_u16()), fields, end);
                self.answered += 1;
                if end {
                    done.push(id);
                    continue;
                }
                s.active = Active::Sending { body, pending: Bytes::new(), stalled: None };
            }
            let Active::Sending { body, pending, stalled } = &mut s.active else { continue };
            // Above HIGH_WATER, bodies wait (the write's wake-up comes back here); the
            // answers of waiting streams are still taken.
            if self.conn.out.len() < HIGH_WATER {
                match send_body(&mut self.conn, id, body, pending, cx) {
                    Sent::Progress(ended) => {
                        progress = true;
                        self.last_sender = id;
                        *stalled = None;
                        if ended {
                            done.push(id);
                            continue;
                        }
                    }
                    Sent::Blocked if !pending.is_empty() => {
                        stalled.get_or_insert_with(tokio::time::Instant::now);
                    }
                    Sent::Blocked => {}
                }
            }
            if let Some(t) = *stalled {
                stalled_since = Some(stalled_since.map_or(t, |o| o.min(t)));
            }
        }
        self.stalled_since = stalled_since;
        // Body bytes the servers' uploads took are given back to the client's windows.
        for (&id, s) in &self.streams {
            if let Some(inbox) = &s.inbox {
                let n = std::mem::take(&mut inbox.lock().unwrap_or_else(|p| p.into_inner()).consumed);
                if n > 0 {
                    self.conn.release(id, n);
                }
            }
        }
        for id in done.drain(..) {
            self.forget(id);
        }
        self.order = order;
        self.done = done;
        progress
    }

    /// Drops a stream. Its request body bytes still held (unread, or read and not yet
    /// given back) go back to the client's connection window.
    fn forget(&mut self, id: u32) -> Option<Stream> {
        let s = self.streams.remove(&id)?;
        if let Some(inbox) = &s.inbox {
            let mut i = inbox.lock().unwrap_or_else(|p| p.into_inner());
            let held = i.consumed + i.chunks.iter().map(Bytes::len).sum::<usize>();
            i.consumed = 0;
            i.chunks.clear();
            i.broken = true;
            drop(i);
            self.conn.release(id, held);
        }
        Some(s)
    }

    /// Writes what is waiting. Ok(true): bytes went out.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, ()>> {
        let mut wrote = 0;
        let mut blocked = false;
        while !self.conn.out.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.conn.out) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Ready(Ok(n)) => {
                    self.conn.out.advance(n);
                    wrote += n;
                    self.flushed = false;
                }
                Poll::Pending => {
                    blocked = true;
                    break;
                }
            }
        }
        if !blocked && !self.flushed {
            // TLS holds written bytes until flushed.
            match Pin::new(&mut self.io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flushed = true,
                Poll::Ready(Err(_)) => return Poll::Ready(Err(())),
                Poll::Pending => {}
            }
        }
        if wrote > 0 {
            Poll::Ready(Ok(true))
        } else if blocked {
            Poll::Pending
        } else {
            Poll::Ready(Ok(false))
        }
    }
}

enum Sent {
    /// Frames went out; true when the stream ended.
    Progress(bool),
    /// Waiting for the server or for window.
    Blocked,
}

/// Moves a response body to the client as far as the windows allow.
fn send_body(conn: &mut Conn, id: u32, body: &mut Body, pending: &mut Bytes, cx: &mut Context<'_>) -> Sent {
    let mut moved = false;
    let mut sent = 0;
    loop {
        if !pending.is_empty() {
            let n = conn.send_data(id, &pending[..pending.len().min(STREAM_BUDGET - sent)], false);
            pending.advance(n);
            sent += n;
            moved |= n > 0;
            if !pending.is_empty() || conn.out.len() >= HIGH_WATER || sent >= STREAM_BUDGET {
                // Out of window, of room, or of this round's budget: more in a later
                // round (after a window update, a write, or at once after a budget).
                return if moved { Sent::Progress(false) } else { Sent::Blocked };
            }
        }
        if !conn.is_open(id) {
            return Sent::Progress(true);
        }
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => *pending = data,
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let fields = trailers.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
                        conn.send_headers(id, None, fields, true);
                        return Sent::Progress(true);
                    }
                }
            },
            Poll::Ready(None) => {
                conn.send_data(id, &[], true);
                return Sent::Progress(true);
            }
            Poll::Ready(Some(Err(e))) => {
                log::debug!("stream {id}: response body failed: {e}");
                conn.reset(id, Reason::Internal);
                return Sent::Progress(true);
            }
            Poll::Pending => return if moved { Sent::Progress(false) } else { Sent::Blocked },
        }
    }
}

/// The request as the routing and server exchange take it. None: fields that are not
/// valid HTTP (a stream error).
fn build_request(head: RequestHead, body: RecvBody) -> Option<Request<RecvBody>> {
    let method = Method::from_bytes(&head.method).ok()?;
    let uri = if head.authority.is_empty() {
        Uri::from_maybe_shared(head.path).ok()?
    } else {
        Uri::builder()
            .scheme(&head.scheme[..])
            .authority(uri::Authority::from_maybe_shared(head.authority).ok()?)
            .path_and_query(uri::PathAndQuery::from_maybe_shared(head.path).ok()?)
            .build()
            .ok()?
    };
    let mut headers = HeaderMap::with_capacity(head.fields.len());
    for f in head.fields {
        let name = HeaderName::from_bytes(&f.name).ok()?;
        let value = HeaderValue::from_maybe_shared(f.value).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;
    Some(req)
}
