//! Flow control (RFC 9113 §5.2): what the caller consumed of request bodies is given back
//! to the client in batched WINDOW_UPDATEs; what we may send is the smaller of the
//! stream's and the connection's windows.
use bytes::BufMut;

use super::{frame::*, Conn};

impl Conn {
    pub(super) fn credit_conn(&mut self, n: u32) {
        self.conn_unacked += n;
        // Given back in batches: a WINDOW_UPDATE per DATA frame would double the frames.
        if self.conn_unacked >= self.limits.conn_window / 4 {
            frame_head(&mut self.out, 4, WINDOW_UPDATE, 0, 0);
            self.out.put_u32(self.conn_unacked);
            self.recv_window += i64::from(self.conn_unacked);
            self.conn_unacked = 0;
        }
    }

    pub(super) fn credit_stream(&mut self, stream: u32) {
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
}
