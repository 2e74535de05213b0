//! The server side of an HTTP/2 connection (RFC 9113) without I/O: bytes from the client
//! go in (`receive`), requests and body data come out as events, and responses go in as
//! calls that append frames to `out`, which the caller writes to the client. Flow
//! control both ways, stream states, SETTINGS, PING, GOAWAY and the errors of RFC 9113 §5.4
//! are kept here; what a stream does with its request is the caller's (proxy/h2.rs).
use std::{
    collections::{HashMap, VecDeque},
    hash::BuildHasherDefault,
};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::hpack::{self, Decoder, HeaderField};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// The largest frame payload accepted (SETTINGS_MAX_FRAME_SIZE left at its default).
const MAX_FRAME: usize = 16384;
const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The default window of a new stream and of the connection (RFC 9113 §6.9.2).
const DEFAULT_WINDOW: i64 = 65535;
/// Most bytes of one header block across its CONTINUATION frames.
const MAX_BLOCK: usize = 64 * 1024;
/// How many of the streams we reset are remembered: frames the client sent before it
/// saw the reset are dropped, not taken as errors (RFC 9113 §5.1).
const REMEMBERED_RESETS: usize = 128;
/// DATA payloads shorter than this are copied out of the read buffer: a small slice
/// would keep the whole buffer it came in alive while it waits to be consumed.
const COPY_BELOW: usize = 4096;

/// Error codes (RFC 9113 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    NoError = 0,
    Protocol = 1,
    Internal = 2,
    FlowControl = 3,
    StreamClosed = 5,
    FrameSize = 6,
    Refused = 7,
    Cancel = 8,
    Compression = 9,
    EnhanceYourCalm = 11,
}

/// A connection error: the connection ends with a GOAWAY carrying `reason` (already in
/// `out` when `receive` returns it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("HTTP/2 connection error {reason:?}: {what}")]
pub struct ConnError {
    pub reason: Reason,
    pub what: &'static str,
}

fn conn_err(reason: Reason, what: &'static str) -> ConnError {
    ConnError { reason, what }
}

/// Stream ids are the client's odd counter, not attacker-chosen keys worth SipHash: a
/// multiplication spreads them over the table's buckets.
#[derive(Default)]
pub struct StreamIdHasher(u64);

impl std::hash::Hasher for StreamIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by stream id.
pub type StreamMap<V> = HashMap<u32, V, BuildHasherDefault<StreamIdHasher>>;

/// What our side of the connection allows.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_streams: u32,
    /// Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE).
    pub stream_window: u32,
    /// The connection's receive window.
    pub conn_window: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_list: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_streams: 100,
            stream_window: 256 * 1024,
            conn_window: 1024 * 1024,
            max_header_list: 64 * 1024,
        }
    }
}

/// A request's head, checked (RFC 9113 §8.3.1).
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Bytes,
    pub scheme: Bytes,
    /// Empty when absent.
    pub authority: Bytes,
    pub path: Bytes,
    /// The regular fields, in order.
    pub fields: Vec<HeaderField>,
    pub content_length: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    Request {
        stream: u32,
        head: RequestHead,
        end_stream: bool,
    },
    /// Request body bytes; give them back with `release` once consumed.
    Data {
        stream: u32,
        data: Bytes,
        end_stream: bool,
    },
    /// The stream ended abnormally: the client reset it, or it broke a rule and was reset
    /// (`malformed`: a request error, counted as HAProxy's ereq).
    Reset {
        stream: u32,
        malformed: bool,
    },
    /// A request refused before it became a stream (malformed head, too many streams).
    Refused {
        stream: u32,
        malformed: bool,
    },
    /// A send window grew: streams waiting to send may go on.
    WindowOpened,
    /// The client will open no more streams.
    GoAway,
}

/// An open stream; it is gone once our side ended it (END_STREAM or RST_STREAM) or the
/// client reset it.
struct Stream {
    send_window: i64,
    recv_window: i64,
    /// Bytes consumed but not yet given back by WINDOW_UPDATE.
    unacked: u32,
    recv_closed: bool,
    content_length: Option<u64>,
    received: u64,
}

/// A header block being read across CONTINUATION frames.
struct Partial {
    stream: u32,
    block: BytesMut,
    end_stream: bool,
    /// Its priority names the stream itself (a stream error, RFC 9113 §5.3.1).
    self_dependent: bool,
}

pub struct Conn {
    limits: Limits,
    decoder: Decoder,
    /// Frames to write to the client.
    pub out: BytesMut,
    streams: StreamMap<Stream>,
    /// The highest stream the client opened (or tried to).
    last_stream: u32,
    preface_done: bool,
    settings_seen: bool,
    partial: Option<Partial>,
    peer_window: i64,
    peer_max_frame: usize,
    send_window: i64,
    recv_window: i64,
    conn_unacked: u32,
    goaway_sent: bool,
    recently_reset: VecDeque<u32>,
    /// Scratch space for a header block being encoded.
    block: Vec<u8>,
    fields: Vec<HeaderField>,
}

fn frame_head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream & 0x7fff_ffff);
}

impl Conn {
    /// A connection whose first bytes (our SETTINGS and the connection window's growth)
    /// are already in `out`.
    pub fn new(limits: Limits) -> Conn {
        let mut c = Conn {
            limits,
            decoder: Decoder::new(limits.max_header_list as usize),
            out: BytesMut::with_capacity(16 * 1024),
            streams: StreamMap::default(),
            last_stream: 0,
            preface_done: false,
            settings_seen: false,
            partial: None,
            peer_window: DEFAULT_WINDOW,
            peer_max_frame: MAX_FRAME,
            send_window: DEFAULT_WINDOW,
            recv_window: i64::from(limits.conn_window),
            conn_unacked: 0,
            goaway_sent: false,
            recently_reset: VecDeque::new(),
            block: Vec::with_capacity(512),
            fields: Vec::new(),
        };
        let settings = [(3u16, limits.max_streams), (4, limits.stream_window), (6, limits.max_header_list)];
        frame_head(&mut c.out, settings.len() * 6, SETTINGS, 0, 0);
        for (id, v) in settings {
            c.out.put_u16(id);
            c.out.put_u32(v);
        }
        let grow = i64::from(limits.conn_window) - DEFAULT_WINDOW;
        if grow > 0 {
            frame_head(&mut c.out, 4, WINDOW_UPDATE, 0, 0);
            c.out.put_u32(grow as u32);
        }
        c
    }

    /// A stream the client never opened (ids above the last one, and the even ids a
    /// server would open).
    fn never_opened(&self, stream: u32) -> bool {
        stream > self.last_stream || stream.is_multiple_of(2)
    }

    /// No stream is open.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.partial.is_none()
    }

    /// Reads every whole frame in `buf` (the preface first), appending events. On an
    /// error the GOAWAY is in `out` and the connection must end once it is written.
    pub fn receive(&mut self, buf: &mut BytesMut, events: &mut Vec<Event>) -> Result<(), ConnError> {
        let r = self.receive_frames(buf, events);
        if let Err(e) = &r {
            self.goaway(e.reason);
        }
        r
    }

    fn receive_frames(&mut self, buf: &mut BytesMut, events: &mut Vec<Event>) -> Result<(), ConnError> {
        if !self.preface_done {
            let n = buf.len().min(PREFACE.len());
            if buf[..n] != PREFACE[..n] {
                return Err(conn_err(Reason::Protocol, "bad connection preface"));
            }
            if n < PREFACE.len() {
                return Ok(());
            }
            buf.advance(n);
            self.preface_done = true;
        }
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if len > MAX_FRAME {
                return Err(conn_err(Reason::FrameSize, "frame larger than SETTINGS_MAX_FRAME_SIZE"));
            }
            if buf.len() < 9 + len {
                // Room for the rest, so one read can complete it.
                buf.reserve(9 + len - buf.len());
                return Ok(());
            }
            let kind = buf[3];
            let flags = buf[4];
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            buf.advance(9);
            let payload = buf.split_to(len).freeze();
            if !self.settings_seen && kind != SETTINGS {
                return Err(conn_err(Reason::Protocol, "first frame is not SETTINGS"));
            }
            if self.partial.is_some() && kind != CONTINUATION {
                return Err(conn_err(Reason::Protocol, "frame in the middle of a header block"));
            }
            self.frame(kind, flags, stream, payload, events)?;
        }
        Ok(())
    }

    fn frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Bytes,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnError> {
        match kind {
            DATA => self.data(flags, stream, payload, events),
            HEADERS => self.headers(flags, stream, payload, events),
            CONTINUATION => self.continuation(flags, stream, payload, events),
            PRIORITY => {
                if stream == 0 {
                    return Err(conn_err(Reason::Protocol, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    self.stream_error(stream, Reason::FrameSize, false, events);
                } else if depends_on(&payload) == stream {
                    self.stream_error(stream, Reason::Protocol, false, events);
                }
                Ok(())
            }
            RST_STREAM => {
                if stream == 0 || self.never_opened(stream) {
                    return Err(conn_err(Reason::Protocol, "RST_STREAM on an idle stream"));
                }
                if payload.len() != 4 {
                    return Err(conn_err(Reason::FrameSize, "RST_STREAM of a wrong size"));
                }
                if self.streams.remove(&stream).is_some() {
                    self.remember(stream);
                    events.push(Event::Reset { stream, malformed: false });
                }
                Ok(())
            }
            SETTINGS => self.settings(flags, stream, &payload, events),
            PUSH_PROMISE => Err(conn_err(Reason::Protocol, "PUSH_PROMISE from a client")),
            PING => {
                if stream != 0 {
                    return Err(conn_err(Reason::Protocol, "PING on a stream"));
                }
                if payload.len() != 8 {
                    return Err(conn_err(Reason::FrameSize, "PING of a wrong size"));
                }
                if flags & ACK == 0 {
                    frame_head(&mut self.out, 8, PING, ACK, 0);
                    self.out.extend_from_slice(&payload);
                }
                Ok(())
            }
            GOAWAY => {
                if stream != 0 {
                    return Err(conn_err(Reason::Protocol, "GOAWAY on a stream"));
                }
                if payload.len() < 8 {
                    return Err(conn_err(Reason::FrameSize, "GOAWAY too short"));
                }
                events.push(Event::GoAway);
                Ok(())
            }
            WINDOW_UPDATE => self.window_update(stream, &payload, events),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    fn settings(
        &mut self,
        flags: u8,
        stream: u32,
        p: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), ConnError> {
        if stream != 0 {
            return Err(conn_err(Reason::Protocol, "SETTINGS on a stream"));
        }
        if flags & ACK != 0 {
            if !p.is_empty() {
                return Err(conn_err(Reason::FrameSize, "SETTINGS ack with a payload"));
            }
            return Ok(());
        }
        if !p.len().is_multiple_of(6) {
            return Err(conn_err(Reason::FrameSize, "SETTINGS of a wrong size"));
        }
        self.settings_seen = true;
        for s in p.chunks_exact(6) {
            let id = u16::from_be_bytes([s[0], s[1]]);
            let v = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
            match id {
                // ENABLE_PUSH: a server never pushes here, but the value must be valid.
                2 if v > 1 => return Err(conn_err(Reason::Protocol, "bad SETTINGS_ENABLE_PUSH")),
                4 => {
                    if i64::from(v) > MAX_WINDOW {
                        return Err(conn_err(Reason::FlowControl, "SETTINGS_INITIAL_WINDOW_SIZE too large"));
                    }
                    let delta = i64::from(v) - self.peer_window;
                    self.peer_window = i64::from(v);
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return Err(conn_err(Reason::FlowControl, "a stream window grew too large"));
                        }
                    }
                    events.push(Event::WindowOpened);
                }
                5 => {
                    if !(16384..=16_777_215).contains(&v) {
                        return Err(conn_err(Reason::Protocol, "bad SETTINGS_MAX_FRAME_SIZE"));
                    }
                    self.peer_max_frame = v as usize;
                }
                // The header table size does not matter to an encoder that never indexes;
                // the rest are advisory or unknown.
                _ => {}
            }
        }
        frame_head(&mut self.out, 0, SETTINGS, ACK, 0);
        Ok(())
    }

    fn window_update(&mut self, stream: u32, p: &[u8], events: &mut Vec<Event>) -> Result<(), ConnError> {
        if p.len() != 4 {
            return Err(conn_err(Reason::FrameSize, "WINDOW_UPDATE of a wrong size"));
        }
        let inc = i64::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff);
        if stream == 0 {
            if inc == 0 {
                return Err(conn_err(Reason::Protocol, "WINDOW_UPDATE of 0"));
            }
            self.send_window += inc;
            if self.send_window > MAX_WINDOW {
                return Err(conn_err(Reason::FlowControl, "connection window grew too large"));
            }
            events.push(Event::WindowOpened);
            return Ok(());
        }
        if self.never_opened(stream) {
            return Err(conn_err(Reason::Protocol, "WINDOW_UPDATE on an idle stream"));
        }
        let Some(s) = self.streams.get_mut(&stream) else { return Ok(()) };
        if inc == 0 {
            self.stream_error(stream, Reason::Protocol, false, events);
            return Ok(());
        }
        s.send_window += inc;
        if s.send_window > MAX_WINDOW {
            self.stream_error(stream, Reason::FlowControl, false, events);
            return Ok(());
        }
        events.push(Event::WindowOpened);
        Ok(())
    }

    /// Strips the padding of a DATA or HEADERS payload.
    fn unpad(flags: u8, mut p: Bytes) -> Result<Bytes, ConnError> {
        if flags & PADDED == 0 {
            return Ok(p);
        }
        let pad =
            usize::from(*p.first().ok_or(conn_err(Reason::Protocol, "padded frame without a pad length"))?);
        if pad >= p.len() {
            return Err(conn_err(Reason::Protocol, "padding longer than the frame"));
        }
        p.advance(1);
        p.truncate(p.len() - pad);
        Ok(p)
    }

    fn data(
        &mut self,
        flags: u8,
        stream: u32,
        payload: Bytes,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnError> {
        if stream == 0 || self.never_opened(stream) {
            return Err(conn_err(Reason::Protocol, "DATA on an idle stream"));
        }
        if !self.streams.contains_key(&stream) && !self.recently_reset.contains(&stream) {
            return Err(conn_err(Reason::StreamClosed, "DATA on a closed stream"));
        }
        let len = payload.len() as i64;
        if len > self.recv_window {
            return Err(conn_err(Reason::FlowControl, "DATA beyond the connection window"));
        }
        self.recv_window -= len;
        let data = Self::unpad(flags, payload)?;
        let end_stream = flags & END_STREAM != 0;
        // Padding, and data nobody will read, is given back at once.
        let mut unused = len as u32 - data.len() as u32;
        let verdict = match self.streams.get_mut(&stream) {
            // A stream we reset: its frames still in flight are dropped.
            None => {
                unused = len as u32;
                Ok(())
            }
            Some(s) if s.recv_closed => Err(Reason::StreamClosed),
            Some(s) if len > s.recv_window => Err(Reason::FlowControl),
            Some(s) => {
                s.recv_window -= len;
                s.received += data.len() as u64;
                let bad_length =
                    s.content_length.is_some_and(|n| s.received > n || (end_stream && s.received != n));
                if bad_length {
                    Err(Reason::Protocol)
                } else {
                    s.unacked += unused;
                    s.recv_closed = end_stream;
                    let data = if data.len() < COPY_BELOW { Bytes::copy_from_slice(&data) } else { data };
                    if !data.is_empty() || end_stream {
                        events.push(Event::Data { stream, data, end_stream });
                    }
                    Ok(())
                }
            }
        };
        if let Err(reason) = verdict {
            unused = len as u32;
            self.stream_error(stream, reason, reason == Reason::Protocol, events);
        }
        self.credit_conn(unused);
        if verdict.is_ok() {
            self.credit_stream(stream);
        }
        Ok(())
    }

    fn headers(
        &mut self,
        flags: u8,
        stream: u32,
        payload: Bytes,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnError> {
        if stream == 0 || stream.is_multiple_of(2) {
            return Err(conn_err(Reason::Protocol, "HEADERS on stream 0 or an even stream"));
        }
        let mut p = Self::unpad(flags, payload)?;
        let mut self_dependent = false;
        if flags & PRIORITY_FLAG != 0 {
            if p.len() < 5 {
                return Err(conn_err(Reason::FrameSize, "HEADERS too short for its priority"));
            }
            self_dependent = depends_on(&p) == stream;
            p.advance(5);
        }
        let end_stream = flags & END_STREAM != 0;
        if flags & END_HEADERS == 0 {
            let block = BytesMut::from(&p[..]);
            self.partial = Some(Partial { stream, block, end_stream, self_dependent });
            return Ok(());
        }
        self.header_block(stream, p, end_stream, self_dependent, events)
    }

    fn continuation(
        &mut self,
        flags: u8,
        stream: u32,
        p: Bytes,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnError> {
        let Some(partial) = self.partial.as_mut().filter(|x| x.stream == stream) else {
            return Err(conn_err(Reason::Protocol, "CONTINUATION without a header block"));
        };
        if partial.block.len() + p.len() > MAX_BLOCK {
            return Err(conn_err(Reason::Protocol, "header block too large"));
        }
        partial.block.extend_from_slice(&p);
        if flags & END_HEADERS == 0 {
            return Ok(());
        }
        let Some(Partial { block, end_stream, self_dependent, .. }) = self.partial.take() else {
            return Ok(());
        };
        self.header_block(stream, block.freeze(), end_stream, self_dependent, events)
    }

    /// A whole header block: a new request, or the trailers of one.
    fn header_block(
        &mut self,
        stream: u32,
        block: Bytes,
        end_stream: bool,
        self_dependent: bool,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnError> {
        // Always decoded: the dynamic table must stay in step with the client's.
        let mut fields = std::mem::take(&mut self.fields);
        fields.clear();
        let decoded = match self.decoder.decode(&block, &mut fields) {
            Ok(()) => Ok(()),
            Err(hpack::HpackError::TooLarge(_)) => Err(()),
            Err(_) => return Err(conn_err(Reason::Compression, "bad header block")),
        };
        if stream <= self.last_stream {
            let pseudo = fields.iter().any(|f| f.name.starts_with(b":"));
            self.fields = fields;
            return match self.streams.get_mut(&stream) {
                Some(s) if s.recv_closed => {
                    self.stream_error(stream, Reason::StreamClosed, false, events);
                    Ok(())
                }
                // Trailers: they end the body (and are not forwarded).
                Some(s) if end_stream => {
                    s.recv_closed = true;
                    let short = s.content_length.is_some_and(|n| s.received != n);
                    if short || pseudo {
                        self.stream_error(stream, Reason::Protocol, true, events);
                    } else {
                        events.push(Event::Data { stream, data: Bytes::new(), end_stream: true });
                    }
                    Ok(())
                }
                Some(_) => {
                    self.stream_error(stream, Reason::Protocol, true, events);
                    Ok(())
                }
                None if self.recently_reset.contains(&stream) => Ok(()),
                None => Err(conn_err(Reason::Protocol, "HEADERS on a closed or reused stream")),
            };
        }
        self.last_stream = stream;
        if self.goaway_sent {
            self.fields = fields;
            return Ok(());
        }
        if self.streams.len() >= self.limits.max_streams as usize {
            self.fields = fields;
            self.reset_frame(stream, Reason::Refused);
            events.push(Event::Refused { stream, malformed: false });
            return Ok(());
        }
        let head = decoded.ok().filter(|()| !self_dependent).and_then(|()| check_request(&mut fields));
        self.fields = fields;
        let Some(head) = head else {
            self.reset_frame(stream, Reason::Protocol);
            events.push(Event::Refused { stream, malformed: true });
            return Ok(());
        };
        if end_stream && head.content_length.is_some_and(|n| n != 0) {
            self.reset_frame(stream, Reason::Protocol);
            events.push(Event::Refused { stream, malformed: true });
            return Ok(());
        }
        self.streams.insert(
            stream,
            Stream {
                send_window: self.peer_window,
                recv_window: i64::from(self.limits.stream_window),
                unacked: 0,
                recv_closed: end_stream,
                content_length: head.content_length,
                received: 0,
            },
        );
        events.push(Event::Request { stream, head, end_stream });
        Ok(())
    }

    /// Resets a stream for a stream error (RFC 9113 §5.4.2).
    fn stream_error(&mut self, stream: u32, reason: Reason, malformed: bool, events: &mut Vec<Event>) {
        self.reset_frame(stream, reason);
        if self.streams.remove(&stream).is_some() {
            events.push(Event::Reset { stream, malformed });
        }
    }

    fn reset_frame(&mut self, stream: u32, reason: Reason) {
        frame_head(&mut self.out, 4, RST_STREAM, 0, stream);
        self.out.put_u32(reason as u32);
        self.remember(stream);
    }

    /// A stream reset (by either side): its frames still in flight are dropped.
    fn remember(&mut self, stream: u32) {
        if self.recently_reset.len() == REMEMBERED_RESETS {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(stream);
    }

    fn credit_conn(&mut self, n: u32) {
        self.conn_unacked += n;
        // Given back in batches: a WINDOW_UPDATE per DATA frame would double the frames.
        if self.conn_unacked >= self.limits.conn_window / 4 {
            frame_head(&mut self.out, 4, WINDOW_UPDATE, 0, 0);
            self.out.put_u32(self.conn_unacked);
            self.recv_window += i64::from(self.conn_unacked);
            self.conn_unacked = 0;
        }
    }

    fn credit_stream(&mut self, stream: u32) {
        let quarter = self.limits.stream_window / 4;
        let Some(s) = self.streams.get_mut(&stream) else { return };
        // A stream whose body is whole needs no more window.
        if !s.recv_closed && s.unacked >= quarter {
            frame_head(&mut self.out, 4, WINDOW_UPDATE, 0, stream);
            self.out.put_u32(s.unacked);
            s.recv_window += i64::from(s.unacked);
            s.unacked = 0;
        }
    }

    /// `n` bytes of a stream's request body were consumed: the client may send more.
    pub fn release(&mut self, stream: u32, n: usize) {
        let n = n as u32;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.unacked += n;
            self.credit_stream(stream);
        }
        self.credit_conn(n);
    }

    /// How many body bytes `stream` may send now.
    pub fn send_window(&self, stream: u32) -> usize {
        match self.streams.get(&stream) {
            Some(s) => s.send_window.min(self.send_window).max(0) as usize,
            None => 0,
        }
    }

    /// The stream is still open on our side (not reset, not ended).
    pub fn is_open(&self, stream: u32) -> bool {
        self.streams.contains_key(&stream)
    }

    /// Sends a response head (or trailers, with `status` None): the fields' names must
    /// be lower case; connection-specific ones are left out.
    pub fn send_headers<'a>(
        &mut self,
        stream: u32,
        status: Option<u16>,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        end_stream: bool,
    ) {
        if !self.is_open(stream) {
            return;
        }
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        if let Some(s) = status {
            hpack::encode_status(&mut block, s);
        }
        for (name, value) in fields {
            if !is_connection_specific(name) {
                hpack::encode_field(&mut block, name, value);
            }
        }
        let mut kind = HEADERS;
        let mut rest = &block[..];
        loop {
            let n = rest.len().min(self.peer_max_frame);
            let last = n == rest.len();
            let mut flags = if last { END_HEADERS } else { 0 };
            if kind == HEADERS && end_stream {
                flags |= END_STREAM;
            }
            frame_head(&mut self.out, n, kind, flags, stream);
            self.out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            kind = CONTINUATION;
            if last {
                break;
            }
        }
        self.block = block;
        if end_stream {
            self.end_sending(stream);
        }
    }

    /// Sends body bytes, at most `send_window(stream)` of them (the rest is not sent:
    /// returns how many were).
    pub fn send_data(&mut self, stream: u32, mut data: &[u8], end_stream: bool) -> usize {
        let n = data.len().min(self.send_window(stream));
        let whole = end_stream && n == data.len();
        data = &data[..n];
        if n == 0 && !whole {
            return 0;
        }
        loop {
            let k = data.len().min(self.peer_max_frame);
            let last = k == data.len();
            frame_head(&mut self.out, k, DATA, if last && whole { END_STREAM } else { 0 }, stream);
            self.out.extend_from_slice(&data[..k]);
            data = &data[k..];
            if last {
                break;
            }
        }
        self.send_window -= n as i64;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.send_window -= n as i64;
        }
        if whole {
            self.end_sending(stream);
        }
        n
    }

    /// Our side of the stream ended: it closes, and a request body the client is still
    /// sending is stopped (RFC 9113 §8.1: RST_STREAM NO_ERROR after a whole response).
    fn end_sending(&mut self, stream: u32) {
        let Some(s) = self.streams.remove(&stream) else { return };
        if !s.recv_closed {
            self.reset_frame(stream, Reason::NoError);
        }
    }

    /// Ends a stream abnormally from our side (its server failed mid-response).
    pub fn reset(&mut self, stream: u32, reason: Reason) {
        if self.streams.remove(&stream).is_some() {
            self.reset_frame(stream, reason);
        }
    }

    /// Announces the end of the connection: streams above the last one seen are refused
    /// from now on (the client may retry them elsewhere).
    pub fn goaway(&mut self, reason: Reason) {
        if self.goaway_sent {
            return;
        }
        self.goaway_sent = true;
        frame_head(&mut self.out, 8, GOAWAY, 0, 0);
        self.out.put_u32(self.last_stream);
        self.out.put_u32(reason as u32);
    }
}

/// The stream a priority (PRIORITY payload, or HEADERS' priority fields) depends on.
fn depends_on(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2); `te` is allowed with "trailers" only and is
/// checked on requests.
fn is_connection_specific(name: &[u8]) -> bool {
    matches!(name, b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade")
}

/// Checks a request's fields (RFC 9113 §8.3.1, §8.2): the pseudo-header fields first,
/// each once, the three of a request all there (CONNECT is not served); names lower
/// case; no connection-specific fields; a valid Content-Length. None: malformed.
fn check_request(fields: &mut Vec<HeaderField>) -> Option<RequestHead> {
    let (mut method, mut scheme, mut authority, mut path) = (None, None, None, None);
    let mut regular = 0;
    for f in fields.iter() {
        if f.name.first() != Some(&b':') {
            break;
        }
        let slot = match &f.name[..] {
            b":method" => &mut method,
            b":scheme" => &mut scheme,
            b":authority" => &mut authority,
            b":path" => &mut path,
            _ => return None,
        };
        if slot.replace(f.value.clone()).is_some() {
            return None;
        }
        regular += 1;
    }
    let rest = fields.split_off(regular);
    let mut content_length = None;
    for f in &rest {
        let bad_name = f.name.is_empty()
            || f.name.iter().any(|&b| b == b':' || b.is_ascii_uppercase() || b <= b' ' || b == 0x7f)
            || is_connection_specific(&f.name)
            || (&f.name[..] == b"te" && &f.value[..] != b"trailers");
        if bad_name || f.value.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return None;
        }
        if &f.name[..] == b"content-length" {
            let n = std::str::from_utf8(&f.value).ok()?.parse::<u64>().ok()?;
            if content_length.replace(n).is_some_and(|m| m != n) {
                return None;
            }
        }
    }
    let (method, scheme, path) = (method?, scheme?, path?);
    if path.is_empty() || &method[..] == b"CONNECT" {
        return None;
    }
    Some(RequestHead {
        method,
        scheme,
        authority: authority.unwrap_or_default(),
        path,
        fields: rest,
        content_length,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hpack::encode_field;

    /// What a client adds to its bytes, and the connection error it must cause.
    type Case = (fn(&mut Client), Reason);

    fn expect_conn_errors(cases: &[Case]) {
        for (i, (add, reason)) in cases.iter().enumerate() {
            let mut conn = Conn::new(Limits::default());
            let mut c = Client::new();
            add(&mut c);
            let (_, r) = run(&mut conn, &c, 1000);
            assert_eq!(r.map_err(|e| e.reason), Err(*reason), "case {i}");
        }
    }

    /// A client's bytes: preface, SETTINGS, then what the test adds.
    struct Client {
        bytes: BytesMut,
    }

    impl Client {
        fn new() -> Client {
            let mut bytes = BytesMut::from(PREFACE);
            frame_head(&mut bytes, 0, SETTINGS, 0, 0);
            Client { bytes }
        }
        fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> &mut Client {
            frame_head(&mut self.bytes, payload.len(), kind, flags, stream);
            self.bytes.extend_from_slice(payload);
            self
        }
        fn get(&mut self, stream: u32, extra: &[(&str, &str)], flags: u8) -> &mut Client {
            let mut b = vec![0x82, 0x87]; // GET, https
            encode_field(&mut b, b":path", b"/x");
            encode_field(&mut b, b":authority", b"a.example");
            for (n, v) in extra {
                encode_field(&mut b, n.as_bytes(), v.as_bytes());
            }
            self.frame(HEADERS, END_HEADERS | flags, stream, &b)
        }
    }

    /// Feeds the client's bytes (in pieces of `step`), returns the events.
    fn run(conn: &mut Conn, c: &Client, step: usize) -> (Vec<Event>, Result<(), ConnError>) {
        let mut events = Vec::new();
        let mut buf = BytesMut::new();
        for piece in c.bytes.chunks(step) {
            buf.extend_from_slice(piece);
            if let Err(e) = conn.receive(&mut buf, &mut events) {
                return (events, Err(e));
            }
        }
        (events, Ok(()))
    }

    /// The frames in `out`: (type, flags, stream, payload).
    fn frames(out: &mut BytesMut) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut v = Vec::new();
        while out.len() >= 9 {
            let len = (usize::from(out[0]) << 16) | (usize::from(out[1]) << 8) | usize::from(out[2]);
            let f = (
                out[3],
                out[4],
                u32::from_be_bytes([out[5], out[6], out[7], out[8]]),
                out[9..9 + len].to_vec(),
            );
            out.advance(9 + len);
            v.push(f);
        }
        v
    }

    #[test]
    fn a_request_in_pieces_of_any_size() {
        for step in [1, 7, 1000] {
            let mut conn = Conn::new(Limits::default());
            let mut c = Client::new();
            c.get(1, &[("user-agent", "t"), ("cookie", "a=1"), ("cookie", "b=2")], END_STREAM);
            let (events, r) = run(&mut conn, &c, step);
            r.unwrap();
            let [Event::Request { stream: 1, head, end_stream: true }] = &events[..] else {
                panic!("{events:?}")
            };
            assert_eq!(head.method, "GET");
            assert_eq!(head.scheme, "https");
            assert_eq!(head.path, "/x");
            assert_eq!(head.authority, "a.example");
            assert_eq!(head.fields.len(), 3);
            let sent = frames(&mut conn.out);
            assert_eq!(sent[0].0, SETTINGS);
            assert_eq!(sent[1].0, WINDOW_UPDATE);
            assert_eq!((sent[2].0, sent[2].1), (SETTINGS, ACK));
        }
    }

    #[test]
    fn response_with_flow_control() {
        let mut conn = Conn::new(Limits::default());
        let mut c = Client::new();
        // The client's stream window is 10 bytes.
        c.frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]);
        c.get(1, &[], END_STREAM);
        run(&mut conn, &c, 1000).1.unwrap();
        conn.out.clear();
        conn.send_headers(
            1,
            Some(200),
            [(&b"content-type"[..], &b"text/plain"[..]), (b"connection", b"close")].into_iter(),
            false,
        );
        assert_eq!(conn.send_window(1), 10);
        assert_eq!(conn.send_data(1, b"0123456789abcdef", true), 10);
        assert_eq!(conn.send_window(1), 0);
        let mut events = Vec::new();
        let mut more = BytesMut::new();
        frame_head(&mut more, 4, WINDOW_UPDATE, 0, 1);
        more.put_u32(100);
        conn.receive(&mut more, &mut events).unwrap();
        assert_eq!(events, [Event::WindowOpened]);
        assert_eq!(conn.send_data(1, b"abcdef", true), 6);
        assert!(!conn.is_open(1));
        let sent = frames(&mut conn.out);
        assert_eq!(sent.len(), 3);
        assert_eq!((sent[0].0, sent[0].1), (HEADERS, END_HEADERS));
        let mut d = Decoder::new(1 << 16);
        let mut fields = Vec::new();
        d.decode(&Bytes::from(sent[0].3.clone()), &mut fields).unwrap();
        assert_eq!(fields.len(), 2, "connection: close is left out");
        assert_eq!((sent[1].0, sent[1].1, &sent[1].3[..]), (DATA, 0, &b"0123456789"[..]));
        assert_eq!((sent[2].0, sent[2].1, &sent[2].3[..]), (DATA, END_STREAM, &b"abcdef"[..]));
        assert!(conn.is_idle());
    }

    #[test]
    fn request_body_and_window_updates() {
        let limits = Limits { stream_window: 100, conn_window: 65535, ..Limits::default() };
        let mut conn = Conn::new(limits);
        let mut c = Client::new();
        c.get(1, &[("content-length", "130")], 0);
        c.frame(DATA, 0, 1, &[b'a'; 60]);
        // Padded: 1 + 30 + 9 bytes of padding.
        let mut padded = vec![9u8];
        padded.extend_from_slice(&[b'b'; 30]);
        padded.extend_from_slice(&[0; 9]);
        c.frame(DATA, PADDED, 1, &padded);
        let (events, r) = run(&mut conn, &c, 1000);
        r.unwrap();
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[2], Event::Data { stream: 1, data, end_stream: false } if data.len() == 30));
        conn.out.clear();
        conn.release(1, 90);
        let sent = frames(&mut conn.out);
        // 90 + 10 of padding consumed: past a quarter of the window.
        assert_eq!(sent, vec![(WINDOW_UPDATE, 0, 1, 100u32.to_be_bytes().to_vec())]);
        // More than the window allows is a stream error.
        let mut c2 = BytesMut::new();
        frame_head(&mut c2, 101, DATA, 0, 1);
        c2.extend_from_slice(&[0; 101]);
        // (window now 100 - 100 + 100 = 100)
        let mut events = Vec::new();
        conn.receive(&mut c2, &mut events).unwrap();
        assert_eq!(events, [Event::Reset { stream: 1, malformed: false }]);
    }

    #[test]
    fn content_length_must_match_the_body() {
        let mut conn = Conn::new(Limits::default());
        let mut c = Client::new();
        c.get(1, &[("content-length", "5")], 0);
        c.frame(DATA, END_STREAM, 1, b"abc");
        c.get(3, &[("content-length", "5")], END_STREAM);
        let (events, r) = run(&mut conn, &c, 1000);
        r.unwrap();
        assert!(matches!(events[0], Event::Request { stream: 1, .. }));
        assert_eq!(events[1], Event::Reset { stream: 1, malformed: true });
        assert_eq!(events[2], Event::Refused { stream: 3, malformed: true });
    }

    #[test]
    fn malformed_requests_are_refused() {
        let cases: Vec<Vec<u8>> = vec![
            vec![0x82, 0x87],             // no :path
            vec![0x82, 0x82, 0x87, 0x84], // :method twice
            {
                let mut b = vec![0x82, 0x87, 0x84];
                encode_field(&mut b, b"Upper", b"x");
                b
            },
            {
                let mut b = vec![0x82, 0x87, 0x84];
                encode_field(&mut b, b"connection", b"close");
                b
            },
            {
                let mut b = vec![0x82, 0x87, 0x84];
                encode_field(&mut b, b"te", b"gzip");
                b
            },
            {
                let mut b = vec![0x82, 0x87];
                encode_field(&mut b, b"user-agent", b"x");
                b.push(0x84); // pseudo after regular
                b
            },
            {
                let mut b = vec![0x82, 0x87, 0x84];
                encode_field(&mut b, b"content-length", b"12x");
                b
            },
        ];
        for (i, block) in cases.iter().enumerate() {
            let mut conn = Conn::new(Limits::default());
            let mut c = Client::new();
            c.frame(HEADERS, END_HEADERS | END_STREAM, 1, block);
            let (events, r) = run(&mut conn, &c, 1000);
            r.unwrap();
            assert_eq!(events, [Event::Refused { stream: 1, malformed: true }], "case {i}");
        }
    }

    #[test]
    fn continuation_and_too_many_streams() {
        let mut conn = Conn::new(Limits { max_streams: 1, ..Limits::default() });
        let mut c = Client::new();
        let mut b = vec![0x82, 0x87];
        encode_field(&mut b, b":path", b"/long");
        let (first, second) = b.split_at(3);
        c.frame(HEADERS, 0, 1, first).frame(CONTINUATION, END_HEADERS, 1, second);
        c.get(3, &[], END_STREAM);
        let (events, r) = run(&mut conn, &c, 1000);
        r.unwrap();
        assert!(
            matches!(&events[0], Event::Request { stream: 1, head, end_stream: false } if head.path == "/long")
        );
        assert_eq!(events[1], Event::Refused { stream: 3, malformed: false });
        // A frame inside a header block is a connection error.
        let mut conn = Conn::new(Limits::default());
        let mut c = Client::new();
        c.frame(HEADERS, 0, 1, first).frame(PING, 0, 0, &[0; 8]);
        let (_, r) = run(&mut conn, &c, 1000);
        assert_eq!(r.unwrap_err().reason, Reason::Protocol);
        let sent = frames(&mut conn.out);
        assert_eq!(sent.last().unwrap().0, GOAWAY);
    }

    #[test]
    fn connection_errors() {
        let cases: Vec<Case> = vec![
            (
                |c| {
                    c.frame(PUSH_PROMISE, 0, 1, &[0; 4]);
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    c.frame(DATA, 0, 5, b"x");
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    c.frame(WINDOW_UPDATE, 0, 0, &[0; 4]);
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    c.frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes());
                },
                Reason::FlowControl,
            ),
            (
                |c| {
                    c.frame(PING, 0, 0, &[0; 7]);
                },
                Reason::FrameSize,
            ),
            (
                |c| {
                    c.frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1]);
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    c.frame(HEADERS, END_HEADERS, 2, &[0x82]);
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    c.frame(HEADERS, END_HEADERS, 1, &[0x80 | 70]);
                },
                Reason::Compression,
            ),
            (
                |c| {
                    c.frame(CONTINUATION, END_HEADERS, 1, &[0x82]);
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    frame_head(&mut c.bytes, MAX_FRAME + 1, DATA, 0, 1);
                },
                Reason::FrameSize,
            ),
        ];
        expect_conn_errors(&cases);
        // No SETTINGS first.
        let mut conn = Conn::new(Limits::default());
        let mut b = BytesMut::from(PREFACE);
        frame_head(&mut b, 8, PING, 0, 0);
        b.extend_from_slice(&[0; 8]);
        assert!(conn.receive(&mut b, &mut Vec::new()).is_err());
        let mut conn = Conn::new(Limits::default());
        assert!(conn.receive(&mut BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]), &mut Vec::new()).is_err());
    }

    #[test]
    fn stream_states_after_close_and_reset() {
        let cases: Vec<Case> = vec![
            // A new stream with a lower id than one already opened.
            (
                |c| {
                    c.get(3, &[], END_STREAM).get(1, &[], END_STREAM);
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    c.get(1, &[], END_STREAM).frame(WINDOW_UPDATE, 0, 2, &[0, 0, 0, 1]);
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    c.get(1, &[], END_STREAM).frame(RST_STREAM, 0, 2, &[0, 0, 0, 8]);
                },
                Reason::Protocol,
            ),
            (
                |c| {
                    c.frame(GOAWAY, 0, 0, &[0; 4]);
                },
                Reason::FrameSize,
            ),
        ];
        expect_conn_errors(&cases);
        // Stream errors: HEADERS on a stream whose request is whole (STREAM_CLOSED);
        // trailers with a pseudo-header field (malformed).
        let mut conn = Conn::new(Limits::default());
        let mut c = Client::new();
        c.get(1, &[], END_STREAM).frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x82]);
        c.get(3, &[], 0).frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x82]);
        let (events, r) = run(&mut conn, &c, 1000);
        r.unwrap();
        assert_eq!(events[1], Event::Reset { stream: 1, malformed: false });
        assert_eq!(events[3], Event::Reset { stream: 3, malformed: true });
        let sent = frames(&mut conn.out);
        assert!(sent.contains(&(RST_STREAM, 0, 1, (Reason::StreamClosed as u32).to_be_bytes().to_vec())));
        // A stream depending on itself is refused (HEADERS) or reset (PRIORITY).
        let mut more = Client { bytes: BytesMut::new() };
        let mut b = vec![0, 0, 0, 5, 16];
        b.extend_from_slice(&[0x82, 0x87, 0x84]);
        more.frame(HEADERS, END_HEADERS | END_STREAM | PRIORITY_FLAG, 5, &b);
        more.frame(PRIORITY, 0, 9, &[0, 0, 0, 9, 16]);
        let mut events = Vec::new();
        conn.receive(&mut more.bytes, &mut events).unwrap();
        assert_eq!(events, [Event::Refused { stream: 5, malformed: true }]);
        let sent = frames(&mut conn.out);
        assert!(sent.contains(&(RST_STREAM, 0, 9, (Reason::Protocol as u32).to_be_bytes().to_vec())));
        // Frames the client sent before it saw our reset are dropped.
        let mut more = Client { bytes: BytesMut::new() };
        more.frame(DATA, END_STREAM, 3, b"late").frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &[0x40, 1, b'x', 1, b'y'],
        );
        let mut events = Vec::new();
        conn.receive(&mut more.bytes, &mut events).unwrap();
        assert!(events.is_empty());
        // DATA on a stream that closed normally (both sides ended it) is a connection
        // error; on a half-closed one, a stream error.
        let mut conn = Conn::new(Limits::default());
        let mut c = Client::new();
        c.get(1, &[], END_STREAM).get(3, &[], END_STREAM).frame(DATA, 0, 3, b"x");
        let (events, r) = run(&mut conn, &c, 1000);
        r.unwrap();
        assert_eq!(events[2], Event::Reset { stream: 3, malformed: false });
        conn.send_headers(1, Some(200), std::iter::empty(), true);
        let mut more = Client { bytes: BytesMut::new() };
        more.frame(DATA, 0, 1, b"x");
        assert_eq!(
            conn.receive(&mut more.bytes, &mut Vec::new()).map_err(|e| e.reason),
            Err(Reason::StreamClosed)
        );
    }

    #[test]
    fn the_connection_window_is_given_back_once() {
        let limits = Limits { stream_window: 65535, conn_window: 65535, ..Limits::default() };
        let mut conn = Conn::new(limits);
        let mut c = Client::new();
        // Two bodies of 10000 bytes, each consumed, then the streams answered.
        for id in [1, 3] {
            c.get(id, &[("content-length", "10000")], 0);
            c.frame(DATA, END_STREAM, id, &[b'a'; 10000]);
        }
        run(&mut conn, &c, 1000).1.unwrap();
        conn.out.clear();
        for id in [1, 3] {
            conn.release(id, 10000);
            conn.send_headers(id, Some(200), std::iter::empty(), true);
        }
        // 20000 bytes came, 20000 go back (in one update: past a quarter of the window).
        let updates: Vec<u32> = frames(&mut conn.out)
            .into_iter()
            .filter(|f| f.0 == WINDOW_UPDATE && f.2 == 0)
            .map(|f| u32::from_be_bytes([f.3[0], f.3[1], f.3[2], f.3[3]]))
            .collect();
        assert_eq!(updates, vec![20000]);
        assert_eq!(conn.recv_window, 65535);
    }

    #[test]
    fn ping_is_answered_and_settings_acked() {
        let mut conn = Conn::new(Limits::default());
        let mut c = Client::new();
        c.frame(PING, 0, 0, b"12345678");
        run(&mut conn, &c, 1000).1.unwrap();
        let sent = frames(&mut conn.out);
        assert!(sent.contains(&(PING, ACK, 0, b"12345678".to_vec())));
        assert!(sent.contains(&(SETTINGS, ACK, 0, vec![])));
    }

    #[test]
    fn an_early_response_stops_the_upload() {
        let mut conn = Conn::new(Limits::default());
        let mut c = Client::new();
        c.get(1, &[], 0);
        run(&mut conn, &c, 1000).1.unwrap();
        conn.out.clear();
        conn.send_headers(1, Some(413), std::iter::empty(), true);
        let sent = frames(&mut conn.out);
        assert_eq!(sent[1], (RST_STREAM, 0, 1, 0u32.to_be_bytes().to_vec()));
        // Data still in flight is dropped, its window given back eventually.
        let mut more = BytesMut::new();
        frame_head(&mut more, 3, DATA, 0, 1);
        more.extend_from_slice(b"abc");
        let mut events = Vec::new();
        conn.receive(&mut more, &mut events).unwrap();
        assert!(events.is_empty());
    }
}
