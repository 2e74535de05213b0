//! The server side of an HTTP/2 connection (RFC 9113) without I/O: bytes from the client
//! go in (`receive`), requests and body data come out as events, and responses go in as
//! calls that append frames to `out`, which the caller writes to the client. Flow
//! control both ways, stream states, SETTINGS, PING, GOAWAY and the errors of RFC 9113 §5.4
//! are kept here; what a stream does with its request is the caller's (ballast-proxy's
//! client_h2.rs).
use std::{
    collections::{HashMap, VecDeque},
    hash::BuildHasherDefault,
};

use bytes::{BufMut, Bytes, BytesMut};

use crate::hpack::{Decoder, HeaderField};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

mod flow;
mod frame;
mod receive;
mod request;
mod send;

use frame::*;

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
    pub(super) fn never_opened(&self, stream: u32) -> bool {
        stream > self.last_stream || stream.is_multiple_of(2)
    }

    /// No stream is open.
    pub fn is_idle(&self) -> bool {
        self.streams.is_empty() && self.partial.is_none()
    }
}

#[cfg(test)]
mod tests;
