use bytes::Buf;

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
        let f =
            (out[3], out[4], u32::from_be_bytes([out[5], out[6], out[7], out[8]]), out[9..9 + len].to_vec());
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
