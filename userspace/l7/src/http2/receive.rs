//! Reading the client's frames: the preface, SETTINGS, PING, WINDOW_UPDATE, DATA, HEADERS
//! with CONTINUATION, RST_STREAM, GOAWAY and PRIORITY, and the connection and stream
//! errors they can raise (RFC 9113 §5.4, §6).
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{
    conn_err, frame::*, request::check_request, Conn, ConnError, Event, Partial, Reason, Stream, PREFACE,
};
use crate::hpack;

impl Conn {
    /// Reads every whole frame in `buf` (the preface first), appending events. On an
    /// error the GOAWAY is in `out` and the connection must end once it is written.
    pub fn receive(&mut self, buf: &mut BytesMut, events: &mut Vec<Event>) -> Result<(), ConnError> {
        let r = self.receive_frames(buf, events);
        if let Err(e) = &r {
            self.goaway(e.reason);
        }
        r
    }

    pub(super) fn receive_frames(
        &mut self,
        buf: &mut BytesMut,
        events: &mut Vec<Event>,
    ) -> Result<(), ConnError> {
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

    pub(super) fn frame(
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

    pub(super) fn settings(
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

    pub(super) fn window_update(
        &mut self,
        stream: u32,
        p: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), ConnError> {
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
    pub(super) fn unpad(flags: u8, mut p: Bytes) -> Result<Bytes, ConnError> {
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

    pub(super) fn data(
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

    pub(super) fn headers(
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

    pub(super) fn continuation(
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
    pub(super) fn header_block(
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
    pub(super) fn stream_error(
        &mut self,
        stream: u32,
        reason: Reason,
        malformed: bool,
        events: &mut Vec<Event>,
    ) {
        self.reset_frame(stream, reason);
        if self.streams.remove(&stream).is_some() {
            events.push(Event::Reset { stream, malformed });
        }
    }

    pub(super) fn reset_frame(&mut self, stream: u32, reason: Reason) {
        frame_head(&mut self.out, 4, RST_STREAM, 0, stream);
        self.out.put_u32(reason as u32);
        self.remember(stream);
    }

    /// A stream reset (by either side): its frames still in flight are dropped.
    pub(super) fn remember(&mut self, stream: u32) {
        if self.recently_reset.len() == REMEMBERED_RESETS {
            self.recently_reset.pop_front();
        }
        self.recently_reset.push_back(stream);
    }
}

/// The stream a priority (PRIORITY payload, or HEADERS' priority fields) depends on.
fn depends_on(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff
}
