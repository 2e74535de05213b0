#![no_main]
// HTTP/2 from clients: any bytes after the preface, no panic. Fed whole or in two pieces,
// the connection sees the same events and writes the same frames; it answers every
// request (exercising the send side and its windows). HPACK blocks of any bytes decode or
// fail cleanly, and Huffman coding round-trips.
use ballast_l7::{
    http2::{Conn, Event, Limits, PREFACE},
    hpack::{huffman_decode, huffman_encode, Decoder},
};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

/// Feeds `pieces` after the preface and an empty SETTINGS, then answers each request and
/// consumes each body (after all pieces: doing it between them would legitimately change
/// what later frames mean).
fn run(pieces: &[&[u8]]) -> (Vec<String>, bool) {
    let mut conn = Conn::new(Limits { max_streams: 4, stream_window: 1024, conn_window: 4096, max_header_list: 2048 });
    let mut buf = BytesMut::from(PREFACE);
    buf.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let mut events = Vec::new();
    let mut failed = false;
    for p in pieces {
        buf.extend_from_slice(p);
        if conn.receive(&mut buf, &mut events).is_err() {
            failed = true;
            break;
        }
    }
    let seen = events.iter().map(|e| format!("{e:?}")).collect();
    for e in events {
        match e {
            Event::Request { stream, .. } => {
                let fields = [(&b"content-type"[..], &b"text/plain"[..])];
                conn.send_headers(stream, Some(200), fields.into_iter(), false);
                let n = conn.send_window(stream).min(3000);
                assert_eq!(conn.send_data(stream, &vec![b'x'; n], true), n);
            }
            Event::Data { stream, data, .. } => conn.release(stream, data.len()),
            _ => {}
        }
    }
    (seen, failed)
}

fuzz_target!(|data: &[u8]| {
    let whole = run(&[data]);
    let cut = data.len() / 3;
    let split = run(&[&data[..cut], &data[cut..]]);
    // Splitting can only change things once an error stopped the first run early.
    if !whole.1 && !split.1 {
        assert_eq!(whole.0, split.0);
    }

    let mut fields = Vec::new();
    let _ = Decoder::new(4096).decode(&Bytes::copy_from_slice(data), &mut fields);
    let mut out = Vec::new();
    let _ = huffman_decode(data, &mut out);
    let mut enc = Vec::new();
    huffman_encode(data, &mut enc);
    let mut dec = Vec::new();
    huffman_decode(&enc, &mut dec).unwrap();
    assert_eq!(dec, data);
});
