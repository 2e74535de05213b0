//! Writing responses: HEADERS (HPACK-encoded) and DATA within the client's windows,
//! RST_STREAM and GOAWAY.
use bytes::BufMut;

use super::{frame::*, request::is_connection_specific, Conn, Reason};
use crate::hpack;

impl Conn {
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
    pub(super) fn end_sending(&mut self, stream: u32) {
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
