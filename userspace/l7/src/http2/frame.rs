//! HTTP/2 frame types, flags and limits (RFC 9113 §4, §6), and the 9-byte frame head.
use bytes::{BufMut, BytesMut};

pub(super) const DATA: u8 = 0;
pub(super) const HEADERS: u8 = 1;
pub(super) const PRIORITY: u8 = 2;
pub(super) const RST_STREAM: u8 = 3;
pub(super) const SETTINGS: u8 = 4;
pub(super) const PUSH_PROMISE: u8 = 5;
pub(super) const PING: u8 = 6;
pub(super) const GOAWAY: u8 = 7;
pub(super) const WINDOW_UPDATE: u8 = 8;
pub(super) const CONTINUATION: u8 = 9;

pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY_FLAG: u8 = 0x20;

/// The largest frame payload accepted (SETTINGS_MAX_FRAME_SIZE left at its default).
pub(super) const MAX_FRAME: usize = 16384;
pub(super) const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The default window of a new stream and of the connection (RFC 9113 §6.9.2).
pub(super) const DEFAULT_WINDOW: i64 = 65535;
/// Most bytes of one header block across its CONTINUATION frames.
pub(super) const MAX_BLOCK: usize = 64 * 1024;
/// How many of the streams we reset are remembered: frames the client sent before it
/// saw the reset are dropped, not taken as errors (RFC 9113 §5.1).
pub(super) const REMEMBERED_RESETS: usize = 128;
/// DATA payloads shorter than this are copied out of the read buffer: a small slice
/// would keep the whole buffer it came in alive while it waits to be consumed.
pub(super) const COPY_BELOW: usize = 4096;

pub(super) fn frame_head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream & 0x7fff_ffff);
}
