//! The proxy's HTTP/1 path on the wire, with raw clients and a scripted backend: request
//! and response bodies by length and chunked (both ways, any size), pipelining, HTTP/1.0
//! keep-alive and de-chunking, `Expect: 100-continue`, hop-by-hop fields, responses that
//! end at close, a pooled server connection the server closed, Upgrade (101) tunnels,
//! and requests refused as smuggling attempts or ambiguous framing (never reaching the
//! server).
mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{
    free_port,
    l7::{start_proxy, start_proxy_args},
};

/// A backend that answers by path:
/// - `/echo`: `len=<body bytes> sum=<byte sum> te=<transfer-encoding> expect=<expect>
///   secret=<x-secret> host=<host>`
/// - `/chunked`: `hello world` in two chunks
/// - `/big`: 1 MB of a pattern, with a length
/// - `/close`: `bye`, then the server closes the connection without saying so
/// - `/noclen`: a body without length, ended by closing
/// - `/upgrade`: 101, then echoes bytes
/// - `/conn`: `conn=<n>`, n numbering the backend's connections from 1
/// - `/refuse`: 413 before reading the body, then a lingering close
/// - `/refuse-rst`: 413 before reading the body, then a close into the unread body (the
///   kernel answers the proxy's next writes with a reset)
/// - `/refuse-keep`: 413 before reading the body, keeping the connection: then reads the
///   body (by length) and goes on with the next request
/// - `/stream-echo`: a chunked response echoing each piece of the body as it arrives
///   (by length), before reading the next
///
/// Counts requests it saw.
fn scripted_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for (n, c) in l.incoming().flatten().enumerate() {
            let count = count.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                loop {
                    let Some((line, headers)) = read_head(&mut r) else { return };
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                    match answer_before_body(&path, &headers, &mut r, &mut w, &count) {
                        Some(true) => continue,
                        Some(false) => return,
                        None => {}
                    }
                    let Some(body) = read_body(&mut r, &headers) else { return };
                    count.fetch_add(1, Ordering::SeqCst);
                    let h = |n: &str| {
                        headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default()
                    };
                    let reply: Vec<u8> = match path.as_str() {
                        "/conn" => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\nconn={}", 5 + (n + 1).to_string().len(), n + 1).into_bytes(),
                        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
                        "/big" => {
                            let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
                            [format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes(), body].concat()
                        }
                        "/close" => {
                            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye");
                            return;
                        }
                        "/noclen" => {
                            let _ = w.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close");
                            return;
                        }
                        "/upgrade" => {
                            let _ = w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n");
                            let mut b = [0u8; 64];
                            while let Ok(n) = r.read(&mut b) {
                                if n == 0 || w.write_all(&b[..n]).is_err() {
                                    break;
                                }
                            }
                            return;
                        }
                        _ => {
                            let sum: u64 = body.iter().map(|&b| b as u64).sum();
                            let text = format!(
                                "len={} sum={sum} te={} expect={} secret={} host={}",
                                body.len(),
                                h("transfer-encoding"),
                                h("expect"),
                                h("x-secret"),
                                h("host")
                            );
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len()).into_bytes()
                        }
                    };
                    if w.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

type Head = (String, Vec<(String, String)>);

fn read_head(r: &mut impl BufRead) -> Option<Head> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).ok()? == 0 {
            return None;
        }
        let l = l.trim_end();
        if l.is_empty() {
            return Some((first.trim_end().to_string(), headers));
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
}

fn read_chunked(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        r.read_line(&mut size).ok()?;
        let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        if n == 0 {
            // Trailers up to the empty line.
            loop {
                let mut l = String::new();
                r.read_line(&mut l).ok()?;
                if l.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..n]);
    }
}

fn read_body(r: &mut impl BufRead, headers: &[(String, String)]) -> Option<Vec<u8>> {
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        read_chunked(r)
    } else {
        let mut b = vec![0; get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0)];
        r.read_exact(&mut b).ok()?;
        Some(b)
    }
}

/// The scripted backend's paths that answer before reading the body (see there). None:
/// not such a path; Some(true): the connection can take the next request; Some(false):
/// it ended.
fn answer_before_body(
    path: &str,
    headers: &[(String, String)],
    r: &mut BufReader<TcpStream>,
    w: &mut TcpStream,
    count: &AtomicUsize,
) -> Option<bool> {
    match path {
        "/refuse-keep" => {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = w.write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big\n");
            Some(read_body(r, headers).is_some())
        }
        "/refuse" | "/refuse-rst" => {
            count.fetch_add(1, Ordering::SeqCst);
            let _ = w.write_all(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n",
            );
            if path == "/refuse" {
                let _ = w.shutdown(std::net::Shutdown::Write);
                let mut sink = [0u8; 65536];
                while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
            }
            // Else closed with body bytes unread: the kernel resets the connection.
            Some(false)
        }
        "/stream-echo" => {
            count.fetch_add(1, Ordering::SeqCst);
            let Some(len) = header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) else {
                return Some(false);
            };
            let echo = |w: &mut TcpStream, r: &mut BufReader<TcpStream>| -> Option<()> {
                w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").ok()?;
                let mut left = len;
                let mut piece = vec![0u8; 16 * 1024];
                while left > 0 {
                    let n = r.read(&mut piece[..left.min(16 * 1024)]).ok().filter(|&n| n > 0)?;
                    w.write_all(format!("{n:x}\r\n").as_bytes()).ok()?;
                    w.write_all(&piece[..n]).ok()?;
                    w.write_all(b"\r\n").ok()?;
                    left -= n;
                }
                w.write_all(b"0\r\n\r\n").ok()
            };
            Some(echo(w, r).is_some())
        }
        _ => None,
    }
}

/// A response as a client reads it: (status line, headers, body).
fn read_response(r: &mut impl BufRead) -> (String, Vec<(String, String)>, Vec<u8>) {
    let (line, headers) = read_head(r).expect("response head");
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        read_chunked(r).expect("chunked body")
    } else if let Some(n) = get("content-length") {
        let mut b = vec![0; n.parse().unwrap()];
        r.read_exact(&mut b).unwrap();
        b
    } else if line.contains(" 101 ") || line.contains(" 100 ") {
        Vec::new()
    } else {
        let mut b = Vec::new();
        r.read_to_end(&mut b).unwrap();
        b
    };
    (line, headers, body)
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn connect(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// A plain GET on a connection that must still take requests is answered.
fn next_request_answered(s: &TcpStream, r: &mut BufReader<TcpStream>) {
    let mut w = s;
    w.write_all(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (line, _, got) = read_response(r);
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert_eq!(got, b"len=0 sum=0 te= expect= secret= host=a");
}

/// True when the peer closed (read gives 0 bytes).
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut b = [0u8; 1];
    matches!(r.read(&mut b), Ok(0))
}

const DEFAULTS: &str =
    "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n";

/// A proxy with one `listen` in front of `backend`; `extra` goes into `defaults`.
fn proxy_to(backend: SocketAddr, extra: &str) -> common::l7::Proxy {
    let port = free_port();
    start_proxy(&format!("{DEFAULTS}{extra}listen web\n    bind 127.0.0.1:{port}\n    server s1 {backend}\n"))
}

#[test]
fn http1_framing_both_ways() {
    let (backend, seen) = scripted_backend();
    let p = proxy_to(backend, "    option httplog\n");
    let (mut s, mut r) = connect(p.port);

    // Pipelined requests on one connection, answered in order; hop-by-hop fields (also
    // those named by Connection) stay here; Host passes through.
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: a.example\r\nConnection: X-Secret\r\nX-Secret: 1\r\n\r\nGET /chunked HTTP/1.1\r\nHost: a.example\r\n\r\n").unwrap();
    let (line, _, body) = read_response(&mut r);
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert_eq!(String::from_utf8(body).unwrap(), "len=0 sum=0 te= expect= secret= host=a.example");
    let (line, h, body) = read_response(&mut r);
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert_eq!(header(&h, "transfer-encoding"), Some("chunked"));
    assert_eq!(body, b"hello world");

    // A body by length, split over several writes, and a 1 MB response.
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    let sum: u64 = body.iter().map(|&b| b as u64).sum();
    s.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
    )
    .unwrap();
    for part in body.chunks(50_000) {
        s.write_all(part).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, _, got) = read_response(&mut r);
    assert_eq!(String::from_utf8(got).unwrap(), format!("len=200000 sum={sum} te= expect= secret= host=a"));
    s.write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (_, _, got) = read_response(&mut r);
    assert_eq!(got.len(), 1_000_000);
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));

    // A chunked request body reaches the server chunked and whole.
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(b"2;x=y\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n").unwrap();
    let (_, _, got) = read_response(&mut r);
    let sum: u64 = b"abcde".iter().map(|&b| b as u64).sum();
    assert_eq!(String::from_utf8(got).unwrap(), format!("len=5 sum={sum} te=chunked expect= secret= host=a"));

    // Connection cannot make the body's length disappear on the way to the server.
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nGET /",
    )
    .unwrap();
    let (_, _, got) = read_response(&mut r);
    assert!(String::from_utf8(got).unwrap().starts_with("len=5 "));

    // Expect: 100-continue is answered by the proxy; the server never sees Expect.
    s.write_all(b"PUT /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        .unwrap();
    let (line, _, _) = read_response(&mut r);
    assert_eq!(line, "HTTP/1.1 100 Continue");
    s.write_all(b"ok").unwrap();
    let (line, _, got) = read_response(&mut r);
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert!(String::from_utf8(got).unwrap().starts_with("len=2 "));

    // A response without length ends the client connection too.
    s.write_all(b"GET /noclen HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let (_, h, got) = read_response(&mut r);
    assert_eq!(got, b"until close");
    assert_eq!(header(&h, "connection"), Some("close"));

    // HTTP/1.0 keep-alive: the connection stays for lengths; a chunked body is
    // de-chunked for it and the connection then closes.
    let (mut s, mut r) = connect(p.port);
    s.write_all(b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let (line, h, _) = read_response(&mut r);
    assert!(line.ends_with("200 OK"), "{line}");
    assert_eq!(header(&h, "connection"), Some("keep-alive"));
    s.write_all(b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let (_, h, got) = read_response(&mut r);
    assert_eq!(header(&h, "transfer-encoding"), None);
    assert_eq!(header(&h, "connection"), Some("close"));
    assert_eq!(got, b"hello world");

    // The server closes a connection it just answered on (no Connection: close): the
    // next requests, which may get that pooled connection, still succeed.
    for _ in 0..5 {
        let (mut s, mut r) = connect(p.port);
        s.write_all(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\nGET /echo HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut r).2, b"bye");
        let (line, _, _) = read_response(&mut r);
        assert_eq!(line, "HTTP/1.1 200 OK");
    }
    // The same with a POST second: it cannot be resent unseen, so when it meets the closed
    // connection the proxy closes the client connection without an answer (the client
    // may retry, as after any keep-alive close); never a 502.
    for _ in 0..5 {
        let (mut s, mut r) = connect(p.port);
        s.write_all(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\nPOST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx").unwrap();
        assert_eq!(read_response(&mut r).2, b"bye");
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.is_empty() || line == "HTTP/1.1 200 OK\r\n", "{line:?}");
    }

    // Upgrade: 101, then bytes flow both ways.
    let (mut s, mut r) = connect(p.port);
    s.write_all(b"GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n").unwrap();
    let (line, h, _) = read_response(&mut r);
    assert_eq!(line, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(header(&h, "upgrade"), Some("echo"));
    s.write_all(b"ping").unwrap();
    let mut four = [0u8; 4];
    r.read_exact(&mut four).unwrap();
    assert_eq!(&four, b"ping");

    // Smuggling attempts and garbage: 400, connection closed, the server sees nothing.
    let before = seen.load(Ordering::SeqCst);
    for bad in [
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        "GET /echo HTTP/1.1\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /echo HTTP/1.1\r\nBad Header: x\r\n\r\n",
        "\x16\x03\x01\x00\x05hello\r\n\r\n",
    ] {
        let (mut s, mut r) = connect(p.port);
        s.write_all(bad.as_bytes()).unwrap();
        let (line, _, _) = read_response(&mut r);
        assert_eq!(line, "HTTP/1.1 400 Bad Request", "{bad:?}");
        assert!(closed(&mut r), "connection left open after {bad:?}");
    }
    assert_eq!(seen.load(Ordering::SeqCst), before, "a refused request reached the server");

    let log = std::fs::read_to_string(&p.log).unwrap();
    assert!(log.contains("\"POST /echo HTTP/1.1\"") && log.contains(" web web/s1 "), "{log}");
}

/// `timeout http-keep-alive` bounds the wait for the next request on an idle connection;
/// a new connection's first request gets `timeout http-request` instead.
#[test]
fn keep_alive_timeout_closes_idle_connections_only() {
    let (backend, _seen) = scripted_backend();
    let p = proxy_to(backend, "    timeout http-request 10s\n    timeout http-keep-alive 200ms\n");
    // Silent for longer than the keep-alive timeout before its first request: still served.
    let (mut s, mut r) = connect(p.port);
    std::thread::sleep(Duration::from_millis(800));
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut r).0, "HTTP/1.1 200 OK");
    // Then idle after a response: closed by the proxy (well before the 10 s read timeout).
    let start = std::time::Instant::now();
    assert!(closed(&mut r), "idle keep-alive connection not closed");
    assert!(start.elapsed() < Duration::from_secs(9), "closed by the client timeout, not http-keep-alive");
}

/// A request refused while its client is still sending a body: the client can finish
/// sending and then read the 400 (the proxy drains what keeps arriving for a while, a
/// lingering close, instead of closing into it with a reset that fails its writes).
#[test]
fn error_reply_survives_a_client_still_sending() {
    let (backend, seen) = scripted_backend();
    let p = proxy_to(backend, "");
    for _ in 0..5 {
        let (s, mut r) = connect(p.port);
        // Content-Length with Transfer-Encoding: refused before any body is read.
        let mut w = s.try_clone().unwrap();
        let sender = std::thread::spawn(move || {
            let _ = w.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4000000\r\nTransfer-Encoding: chunked\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            for i in 0..60 {
                if let Err(e) = w.write_all(&chunk) {
                    return Err(format!("write {i}: {e}"));
                }
            }
            w.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())
        });
        let mut line = String::new();
        r.read_line(&mut line).expect("the 400 is read, not reset");
        assert!(line.starts_with("HTTP/1.1 400"), "{line:?}");
        sender.join().unwrap().expect("the client's body writes were not reset");
    }
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

/// The request body and the response flow at the same time: a server refusing an
/// upload before reading it gets its answer to the client (whether it then drains the
/// body or closes into it), and a server echoing the body as it reads it is not
/// deadlocked by a proxy that sends the whole body first.
#[test]
fn server_answers_while_the_body_is_coming() {
    let (backend, seen) = scripted_backend();
    let p = proxy_to(backend, "");
    const LEN: usize = 4_000_000;
    let body: Vec<u8> = (0..LEN as u32).map(|i| (i % 253) as u8).collect();
    let send = |s: &TcpStream, path: &str| {
        let mut w = s.try_clone().unwrap();
        let body = body.clone();
        let path = path.to_string();
        std::thread::spawn(move || {
            w.write_all(
                format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {LEN}\r\n\r\n").as_bytes(),
            )?;
            for part in body.chunks(64 * 1024) {
                w.write_all(part)?;
            }
            Ok::<(), std::io::Error>(())
        })
    };
    let mut extra = 0;
    for path in ["/refuse", "/refuse-rst"] {
        let (s, mut r) = connect(p.port);
        let sender = send(&s, path);
        let (line, h, got) = read_response(&mut r);
        assert_eq!(line, "HTTP/1.1 413 Payload Too Large", "{path}");
        assert_eq!(got, b"too big\n");
        // The rest of the body is drained, so the client's writes all went through.
        sender.join().unwrap().unwrap_or_else(|e| panic!("{path}: the body writes failed: {e}"));
        match header(&h, "connection") {
            Some("close") => assert!(closed(&mut r), "{path}"),
            // On a slow machine the socket buffers can take the whole body before the
            // server writes its answer: then the client's request is complete, and its
            // connection rightly stays open for the next one.
            None => {
                eprintln!("{path}: the whole body was sent before the answer was read");
                next_request_answered(&s, &mut r);
                extra += 1;
            }
            other => panic!("{path}: Connection: {other:?}"),
        }
    }

    // A server that answers early but keeps the connection reads the rest of the body:
    // the proxy sends it, and both connections go on.
    let (s, mut r) = connect(p.port);
    let sender = send(&s, "/refuse-keep");
    let (line, h, got) = read_response(&mut r);
    assert_eq!(line, "HTTP/1.1 413 Payload Too Large");
    assert_eq!((header(&h, "connection"), got.as_slice()), (None, &b"too big\n"[..]));
    sender.join().unwrap().unwrap();
    next_request_answered(&s, &mut r);

    let (s, mut r) = connect(p.port);
    let sender = send(&s, "/stream-echo");
    let (line, h, got) = read_response(&mut r);
    sender.join().unwrap().unwrap();
    assert_eq!(line, "HTTP/1.1 200 OK");
    assert_eq!(header(&h, "transfer-encoding"), Some("chunked"));
    assert!(got == body, "echoed {} bytes, sent {LEN}", got.len());
    // Both sides complete: the connection takes the next request.
    next_request_answered(&s, &mut r);
    assert_eq!(seen.load(Ordering::SeqCst), 6 + extra);

    // The same over HTTP/2.
    let file = std::env::temp_dir().join(format!("ballast-h2-upload-{}", p.port));
    std::fs::write(&file, &body).unwrap();
    let at = format!("@{}", file.display());
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", p.port);
    for path in ["/refuse", "/refuse-rst"] {
        // The answer, then RST_STREAM(NO_ERROR) to stop the upload (RFC 9113 §8.1), which
        // curl 7.88 reports as an error: nghttp reads it as meant.
        let out = std::process::Command::new("nghttp")
            .args(["-v", "-t", "10", "-d", &file.display().to_string(), &url(path)])
            .output()
            .expect("nghttp");
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains(":status: 413") && out.contains("too big\n"), "{path} over HTTP/2: {out}");
    }
    let (st, got) = curl_h2(&["--data-binary", &at, &url("/stream-echo")], b"");
    let _ = std::fs::remove_file(&file);
    assert_eq!(st, "200 2");
    assert!(got == body, "echoed {} bytes over HTTP/2, sent {LEN}", got.len());
}

/// A client that goes away in the middle of its request body is counted as a client
/// abort on the server (`cli_abrt` in the stats CSV), not as a server error (`eresp`).
#[test]
fn client_abandoning_its_body_is_not_the_servers_fault() {
    let (backend, _) = scripted_backend();
    let port = free_port();
    let p = start_proxy(&format!(
        "{DEFAULTS}listen web\n    bind 127.0.0.1:{port}\n    timeout client 1s\n    option httplog\n    stats uri /stats\n    server s1 {backend}\n"
    ));
    let start = |s: &mut TcpStream| {
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n0123456789").unwrap()
    };
    for _ in 0..2 {
        let (mut s, _r) = connect(p.port);
        start(&mut s);
        std::thread::sleep(Duration::from_millis(100));
        drop(s);
    }
    // A third goes silent: `timeout client` ends its request.
    let (mut silent, _r) = connect(p.port);
    start(&mut silent);
    // The proxy notices the close when it next reads: poll the CSV until it shows.
    let row = |csv: &str, col: &str| -> String {
        let header: Vec<&str> = csv.lines().next().unwrap().trim_start_matches("# ").split(',').collect();
        let i = header.iter().position(|h| *h == col).unwrap();
        let line = csv.lines().find(|l| l.starts_with("web,s1,")).expect("s1 row");
        line.split(',').nth(i).unwrap().to_string()
    };
    let csv = common::eventually("cli_abrt 3", Duration::from_secs(5), || {
        let (mut s, mut r) = connect(p.port);
        s.write_all(b"GET /stats;csv HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
        let csv = String::from_utf8(read_response(&mut r).2).unwrap();
        (row(&csv, "cli_abrt") == "3").then_some(csv)
    });
    assert_eq!(row(&csv, "eresp"), "0", "{csv}");
    drop(silent);
    // HAProxy's termination states: a client abort in the data phase (CD), a client
    // timeout there (cD).
    // (Each line is written just after its count: poll.)
    let count = |log: &str, state: &str| log.lines().filter(|l| l.contains(&format!(" {state} "))).count();
    let log = common::eventually("three log lines", Duration::from_secs(5), || {
        let log = std::fs::read_to_string(&p.log).unwrap();
        (count(&log, "CD--") + count(&log, "cD--") >= 3).then_some(log)
    });
    assert_eq!((count(&log, "CD--"), count(&log, "cD--")), (2, 1), "{log}");
}

/// `http-reuse`: `safe` (the default) sends a client connection's first request on a new
/// server connection unless it is idempotent; `never` never reuses; `always` reuses for
/// any request.
#[test]
fn http_reuse_modes() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let backends: Vec<_> = (0..3).map(|_| scripted_backend().0).collect();
    let mut cfg = String::from(DEFAULTS);
    for (i, mode) in ["safe", "never", "always"].iter().enumerate() {
        cfg += &format!(
            "listen l{i}\n    bind 127.0.0.1:{}\n    http-reuse {mode}\n    server s1 {}\n",
            ports[i], backends[i]
        );
    }
    // One worker: idle server connections are pooled per worker.
    let _p = start_proxy_args(&cfg, &["--threads", "1"]);
    // The server connection a request went on, from a new client connection each time
    // unless `s` is given.
    let conn = |port: u16, method: &str, s: Option<&mut (TcpStream, BufReader<TcpStream>)>| -> String {
        let mut own;
        let (w, r) = match s {
            Some((w, r)) => (w, r),
            None => {
                own = connect(port);
                (&mut own.0, &mut own.1)
            }
        };
        // A POST with its body in the same write; a GET without one.
        let body = if method == "POST" { "Content-Length: 1\r\n\r\nx" } else { "\r\n" };
        w.write_all(format!("{method} /conn HTTP/1.1\r\nHost: a\r\n{body}").as_bytes()).unwrap();
        let (line, _, body) = read_response(r);
        assert_eq!(line, "HTTP/1.1 200 OK");
        String::from_utf8(body).unwrap()
    };

    // safe: a first GET reuses; a first POST gets a new connection; a POST after a first
    // request on the same client connection may reuse.
    assert_eq!(conn(ports[0], "GET", None), "conn=1");
    assert_eq!(conn(ports[0], "GET", None), "conn=1");
    assert_eq!(conn(ports[0], "POST", None), "conn=2");
    let mut c = connect(ports[0]);
    assert!(["conn=1", "conn=2"].contains(&conn(ports[0], "GET", Some(&mut c)).as_str()));
    assert!(["conn=1", "conn=2"].contains(&conn(ports[0], "POST", Some(&mut c)).as_str()));

    // never: every request on its own server connection.
    assert_eq!(conn(ports[1], "GET", None), "conn=1");
    assert_eq!(conn(ports[1], "GET", None), "conn=2");
    let mut c = connect(ports[1]);
    assert_eq!(conn(ports[1], "GET", Some(&mut c)), "conn=3");
    assert_eq!(conn(ports[1], "GET", Some(&mut c)), "conn=4");

    // always: a first POST reuses too.
    assert_eq!(conn(ports[2], "GET", None), "conn=1");
    assert_eq!(conn(ports[2], "POST", None), "conn=1");
}

/// curl over cleartext HTTP/2 (prior knowledge) through the proxy; `input` goes to stdin.
fn curl_h2(args: &[&str], input: &[u8]) -> (String, Vec<u8>) {
    use std::process::{Command, Stdio};
    let mut child = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "10", "-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let split = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    (String::from_utf8_lossy(&out.stdout[split + 1..]).into(), out.stdout[..split].to_vec())
}

#[test]
fn http2_clients_to_http1_servers() {
    let (backend, _) = scripted_backend();
    let p = proxy_to(backend, "");
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", p.port);
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();

    // :authority becomes Host; no body, no framing field.
    let (st, body) = curl_h2(&["-H", "X-Secret: 1", &url("/echo")], b"");
    assert_eq!(st, "200 2");
    assert_eq!(text(body), format!("len=0 sum=0 te= expect= secret=1 host=127.0.0.1:{}", p.port));

    // A body of known length goes as it is; one of unknown length (an upload from stdin,
    // no content-length) goes chunked to the HTTP/1.1 server.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    let sum: u64 = data.iter().map(|&b| b as u64).sum();
    let file = std::env::temp_dir().join(format!("ballast-h2-body-{}", p.port));
    std::fs::write(&file, &data).unwrap();
    let at = format!("@{}", file.display());
    let (st, body) = curl_h2(&["--data-binary", &at, &url("/echo")], b"");
    let _ = std::fs::remove_file(&file);
    assert_eq!(st, "200 2");
    assert!(text(body).starts_with(&format!("len=200000 sum={sum} te= ")));
    let (st, body) = curl_h2(&["-T", "-", &url("/echo")], &data);
    assert_eq!(st, "200 2");
    assert!(text(body).starts_with(&format!("len=200000 sum={sum} te=chunked ")));

    // Chunked, large, and until-close responses arrive whole.
    assert_eq!(curl_h2(&[&url("/chunked")], b""), ("200 2".into(), b"hello world".to_vec()));
    let (_, big) = curl_h2(&[&url("/big")], b"");
    assert_eq!(big.len(), 1_000_000);
    assert!(big.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(curl_h2(&[&url("/noclen")], b""), ("200 2".into(), b"until close".to_vec()));
    // h2load keeps the protocol's default windows (64 KiB per stream and connection):
    // ten 1 MB responses, five at a time on each of two connections, go through only as
    // its WINDOW_UPDATEs allow.
    let out = std::process::Command::new("h2load")
        .args(["-n", "20", "-c", "2", "-m", "5", &url("/big")])
        .output()
        .expect("h2load (nghttp2-client)");
    let text_out = String::from_utf8_lossy(&out.stdout);
    assert!(text_out.contains("20 succeeded, 0 failed"), "{text_out}");
    assert!(text_out.contains("(20000000) data"), "{text_out}");
    // HEAD: a length, no body.
    let (st, head) = curl_h2(&["-I", &url("/big")], b"");
    assert_eq!(st, "200 2");
    assert!(text(head).to_ascii_lowercase().contains("content-length: 1000000"));

    // Requests one after another share one pooled server connection; one the server
    // closed after answering is not used again. (Separate client connections: curl 7.88
    // fails a second request on a prior-knowledge connection, against nginx too.)
    let p1 = start_proxy_args(
        &format!("{DEFAULTS}listen web\n    bind 127.0.0.1:{}\n    server s1 {backend}\n", free_port()),
        &["--threads", "1"],
    );
    let conn = |path: &str| text(curl_h2(&[&format!("http://127.0.0.1:{}{path}", p1.port)], b"").1);
    let first = conn("/conn");
    assert_eq!(conn("/conn"), first);
    assert_eq!(conn("/close"), "bye");
    assert_ne!(conn("/conn"), first);
}

/// Request errors, as HAProxy 2.6 handles them (checked against it): a malformed head gets
/// 400 (`PR--`), as does a bad first chunk (refused with the head); a head not whole
/// within `timeout http-request` gets 408 (`cR--`, also when nothing came); a client that
/// closes before its head is whole is logged `CR--`; a bad chunk later in the body is
/// `PH--` (before the server's answer) or `PD--` (after), not the server's fault. Each counts in the frontend's `ereq`. A connection
/// that sent nothing is not logged under `option dontlognull`, and is closed silently,
/// uncounted, under `option http-ignore-probes`.
#[test]
fn request_errors_are_answered_counted_and_logged() {
    let (backend, _) = scripted_backend();
    let (first, port, quiet, probes) = (free_port(), free_port(), free_port(), free_port());
    // The harness waits for the first bind to accept (a connection that sends nothing):
    // a frontend of its own, so the others count only this test's connections.
    let p = start_proxy(&format!(
        "{DEFAULTS}    option httplog\n    timeout http-request 1s\n\
         listen first\n    bind 127.0.0.1:{first}\n    server s1 {backend}\n\
         listen web\n    bind 127.0.0.1:{port}\n    stats uri /stats\n    server s1 {backend}\n\
         listen quiet\n    bind 127.0.0.1:{quiet}\n    option dontlognull\n    stats uri /stats\n    server s1 {backend}\n\
         listen probes\n    bind 127.0.0.1:{probes}\n    option http-ignore-probes\n    stats uri /stats\n    server s1 {backend}\n"
    ));
    let stats_csv = |port: u16| -> String {
        let (mut s, mut r) = connect(port);
        s.write_all(b"GET /stats;csv HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
        String::from_utf8(read_response(&mut r).2).unwrap()
    };
    let cell = |csv: &str, row: &str, col: &str| -> String {
        let header: Vec<&str> = csv.lines().next().unwrap().trim_start_matches("# ").split(',').collect();
        let i = header.iter().position(|h| *h == col).unwrap();
        let line = csv.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("{row} in {csv}"));
        line.split(',').nth(i).unwrap().to_string()
    };
    let status_of = |port: u16, send: &[u8]| -> String {
        let (mut s, mut r) = connect(port);
        s.write_all(send).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    };
    assert_eq!(status_of(port, b"GARBAGE\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    assert_eq!(status_of(port, b"GET /echo HTTP/1.1\r\nHost: a\r\n"), "HTTP/1.1 408 Request Timeout");
    assert_eq!(
        status_of(port, b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"),
        "HTTP/1.1 400 Bad Request"
    );
    // Bad chunks after the head: `Expect: 100-continue` makes the body come apart from
    // the head (the proxy answers 100 itself).
    let after_continue = |path: &str| {
        let (mut s, mut r) = connect(port);
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let (line, _) = read_head(&mut r).unwrap();
        assert_eq!(line, "HTTP/1.1 100 Continue");
        (s, r)
    };
    {
        // While the server's answer is awaited: 400, `PH--`.
        let (mut s, mut r) = after_continue("/echo");
        s.write_all(b"3\r\nabc\r\nzz\r\nabc\r\n").unwrap();
        assert_eq!(read_response(&mut r).0, "HTTP/1.1 400 Bad Request");
    }
    {
        // After the server answered early (keeping its connection, so the rest of the
        // body would go to it): `PD--`, and the connection closes.
        let (mut s, mut r) = after_continue("/refuse-keep");
        assert_eq!(read_response(&mut r).0, "HTTP/1.1 413 Payload Too Large");
        s.write_all(b"zz\r\nabc\r\n").unwrap();
        assert!(closed(&mut r), "open after a bad chunk");
    }
    {
        // A blank line after a request (RFC 9112 §2.2) leaves the connection idle: it
        // closes silently at the keep-alive timeout, no request error.
        let (mut s, mut r) = connect(port);
        s.write_all(b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut r).0, "HTTP/1.1 200 OK");
        assert!(closed(&mut r), "answered after a blank line");
    }
    drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    assert_eq!(status_of(port, b""), "HTTP/1.1 408 Request Timeout");
    // The same two on the quiet frontend: counted, not logged.
    drop(TcpStream::connect(("127.0.0.1", quiet)).unwrap());
    assert_eq!(status_of(quiet, b""), "HTTP/1.1 408 Request Timeout");
    // Pre-connects ignored: closed without an answer, not counted, not logged.
    drop(TcpStream::connect(("127.0.0.1", probes)).unwrap());
    {
        let (_s, mut r) = connect(probes);
        assert!(closed(&mut r), "a probe got an answer");
    }
    assert_eq!(status_of(probes, b"GET /x HTTP/1.1\r\nHost: a\r\n"), "HTTP/1.1 408 Request Timeout");

    // (Probes: only the partial request counts.)
    let want = [("web", "7"), ("quiet", "2"), ("probes", "1")];
    let csv = common::eventually("ereq counted", Duration::from_secs(5), || {
        let csv = stats_csv(port);
        want.iter().all(|(px, n)| cell(&csv, &format!("{px},FRONTEND,"), "ereq") == *n).then_some(csv)
    });
    // A bad body is not the server's fault, nor an abort.
    for col in ["eresp", "cli_abrt"] {
        assert_eq!(cell(&csv, "web,s1,", col), "0", "{col}: {csv}");
    }

    let log = common::eventually("the log lines", Duration::from_secs(5), || {
        let log = std::fs::read_to_string(&p.log).unwrap();
        let web = log.lines().filter(|l| l.contains(" web web/") && !l.contains("<STATS>")).count();
        (web >= 8 && log.contains(" probes probes/")).then_some(log)
    });
    let lines: Vec<&str> =
        log.lines().filter(|l| l.contains(" web web/") && !l.contains("<STATS>")).collect();
    let has = |state: &str, status: &str, request: &str| {
        lines.iter().any(|l| {
            l.contains(&format!(" {status} ")) && l.contains(&format!(" {state} ")) && l.ends_with(request)
        })
    };
    let count = |state: &str| lines.iter().filter(|l| l.contains(&format!(" {state} "))).count();
    // The seven errors and the request before the blank line.
    assert_eq!(lines.len(), 8, "{log}");
    assert!(has("----", "200", "\"GET /echo HTTP/1.1\""), "{log}");
    // The malformed head and the bad first chunk.
    assert_eq!(count("PR--"), 2, "{log}");
    assert!(has("PR--", "400", "\"<BADREQ>\""), "{log}");
    assert!(has("cR--", "408", "\"<BADREQ>\""), "{log}");
    assert_eq!(count("cR--"), 2, "{log}");
    assert!(has("PH--", "400", "\"POST /echo HTTP/1.1\""), "{log}");
    assert!(has("PD--", "413", "\"POST /refuse-keep HTTP/1.1\""), "{log}");
    assert!(has("CR--", "400", "\"<BADREQ>\""), "{log}");
    // `<BADREQ>`: no server, no timers but the total (-1: steps not reached), 0 bytes
    // from a server, as HAProxy logs them.
    let bad: Vec<_> = lines.iter().filter(|l| l.contains("<BADREQ>")).collect();
    assert_eq!(bad.len(), 5, "{log}");
    assert!(
        bad.iter().all(|l| l.contains(" web web/<NOSRV> -1/-1/-1/-1/") && l.contains(" 0 - - ")),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.contains(" quiet quiet/")), "dontlognull: {log}");
    assert_eq!(log.lines().filter(|l| l.contains(" probes probes/")).count(), 1, "{log}");
}

/// A raw HTTP/2 client: frames as (type, flags, stream, payload).
struct H2 {
    s: TcpStream,
    decoder: ballast_l7::hpack::Decoder,
}

type Frame = (u8, u8, u32, Vec<u8>);

impl H2 {
    /// Connects and sends the preface and `settings` ((id, value) pairs).
    fn connect(port: u16, settings: &[(u16, u32)]) -> H2 {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut h = H2 { s, decoder: ballast_l7::hpack::Decoder::new(1 << 20) };
        h.s.write_all(ballast_l7::http2::PREFACE).unwrap();
        let p: Vec<u8> =
            settings.iter().flat_map(|(id, v)| [&id.to_be_bytes()[..], &v.to_be_bytes()].concat()).collect();
        h.send(4, 0, 0, &p);
        h
    }

    fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.s.write_all(&f).unwrap();
    }

    /// A request head: method, path, then `fields` (names as given, to test bad ones).
    fn request(&mut self, stream: u32, method: &str, path: &str, fields: &[(&str, &str)], end_stream: bool) {
        use ballast_l7::hpack::encode_field;
        let mut b = Vec::new();
        encode_field(&mut b, b":method", method.as_bytes());
        encode_field(&mut b, b":scheme", b"http");
        encode_field(&mut b, b":path", path.as_bytes());
        encode_field(&mut b, b":authority", b"h2.example");
        for (n, v) in fields {
            encode_field(&mut b, n.as_bytes(), v.as_bytes());
        }
        self.send(1, 0x4 | u8::from(end_stream), stream, &b);
    }

    /// The next frame, None at a close or after `wait` without one.
    fn next(&mut self, wait: Duration) -> Option<Frame> {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut h = [0u8; 9];
        self.s.read_exact(&mut h).ok()?;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let mut p = vec![0; len];
        self.s.read_exact(&mut p).ok()?;
        Some((h[3], h[4], u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff, p))
    }

    /// True when the proxy closes the connection within `wait`, sending no DATA.
    fn closes(&mut self, wait: Duration) -> bool {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut h = [0u8; 9];
        loop {
            match self.s.read(&mut h[..1]) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
            self.s.read_exact(&mut h[1..]).unwrap();
            assert_ne!(h[3], 0, "DATA");
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let mut p = vec![0; len];
            self.s.read_exact(&mut p).unwrap();
        }
    }

    /// Frames until one matches `want` (the others are returned with it).
    fn until(&mut self, want: impl Fn(&Frame) -> bool) -> Vec<Frame> {
        let mut got = Vec::new();
        loop {
            let f = self.next(Duration::from_secs(5)).unwrap_or_else(|| panic!("no frame; got {got:?}"));
            let done = want(&f);
            got.push(f);
            if done {
                return got;
            }
        }
    }

    /// Decodes a HEADERS payload (END_HEADERS set) into (name, value) strings.
    fn fields(&mut self, payload: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.decoder.decode(&bytes::Bytes::copy_from_slice(payload), &mut out).unwrap();
        out.into_iter()
            .map(|f| (String::from_utf8_lossy(&f.name).into(), String::from_utf8_lossy(&f.value).into()))
            .collect()
    }
}

/// Our HTTP/2 server on the wire, frame by frame: SETTINGS exchanged and PING answered;
/// a request answered with HPACK-coded fields; a response body held to the client's
/// stream window and released by its WINDOW_UPDATEs; a request with an upper-case field
/// name reset (PROTOCOL_ERROR) and counted in `ereq`; a protocol error ends the connection
/// with GOAWAY (counted too); an idle connection gets GOAWAY (NO_ERROR) at `timeout
/// http-keep-alive`, then closes. After the client's GOAWAY its streams finish; a rapid
/// reset flood ends the connection (ENHANCE_YOUR_CALM); a client that opens no window
/// loses the connection at `timeout client`; two downloads on one connection take turns.
#[test]
fn http2_frames_windows_and_errors() {
    let (backend, _) = scripted_backend();
    let (first, port, slow) = (free_port(), free_port(), free_port());
    // The harness's readiness probe (a connection that sends nothing) goes to `first`:
    // `web` counts only this test's request errors.
    let _proxy = start_proxy(&format!(
        "{DEFAULTS}    timeout http-keep-alive 1s\nlisten first\n    bind 127.0.0.1:{first}\n    server s1 {backend}\n\
         listen web\n    bind 127.0.0.1:{port}\n    stats uri /stats\n    server s1 {backend}\n\
         listen slow\n    bind 127.0.0.1:{slow}\n    timeout client 1s\n    server s1 {backend}\n"
    ));
    let ereq = || -> String {
        let (mut s, mut r) = connect(port);
        s.write_all(b"GET /stats;csv HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
        let csv = String::from_utf8(read_response(&mut r).2).unwrap();
        let header: Vec<&str> = csv.lines().next().unwrap().trim_start_matches("# ").split(',').collect();
        let i = header.iter().position(|h| *h == "ereq").unwrap();
        csv.lines().find(|l| l.starts_with("web,FRONTEND")).unwrap().split(',').nth(i).unwrap().to_string()
    };

    // The client's stream window: 100 bytes.
    let mut c = H2::connect(port, &[(4, 100)]);
    c.send(6, 0, 0, b"pingpong");
    let got = c.until(|f| f.0 == 6);
    assert!(got.iter().any(|f| f.0 == 4 && f.1 == 0), "server SETTINGS: {got:?}");
    assert!(got.iter().any(|f| f.0 == 4 && f.1 == 1), "SETTINGS ack: {got:?}");
    assert_eq!(got.last().unwrap(), &(6, 1, 0, b"pingpong".to_vec()));

    c.request(1, "GET", "/echo", &[("x-secret", "7")], true);
    let got = c.until(|f| f.2 == 1 && f.1 & 1 != 0);
    let head = got.iter().find(|f| f.0 == 1 && f.2 == 1).expect("HEADERS").3.clone();
    let fields = c.fields(&head);
    assert_eq!(fields[0], (":status".into(), "200".into()));
    let body: Vec<u8> = got.iter().filter(|f| f.0 == 0).flat_map(|f| f.3.clone()).collect();
    assert_eq!(String::from_utf8(body).unwrap(), "len=0 sum=0 te= expect= secret=7 host=h2.example");

    // /big (1 MB): 100 bytes, then nothing until the window grows.
    c.request(3, "GET", "/big", &[], true);
    let got = c.until(|f| f.0 == 0 && f.2 == 3);
    assert!(got.iter().any(|f| f.0 == 1 && f.2 == 3));
    let mut data: Vec<u8> = got.iter().filter(|f| f.0 == 0).flat_map(|f| f.3.clone()).collect();
    while let Some(f) = c.next(Duration::from_millis(500)) {
        assert_eq!(f.0, 0, "only DATA expected: {f:?}");
        data.extend_from_slice(&f.3);
    }
    assert_eq!(data.len(), 100);
    c.send(8, 0, 3, &5000u32.to_be_bytes());
    while let Some(f) = c.next(Duration::from_millis(500)) {
        data.extend_from_slice(&f.3);
    }
    assert_eq!(data.len(), 5100);
    assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    c.send(3, 0, 3, &8u32.to_be_bytes()); // RST_STREAM CANCEL

    // A malformed request: reset, counted.
    c.request(5, "GET", "/echo", &[("X-Upper", "1")], true);
    let got = c.until(|f| f.0 == 3);
    assert_eq!(got.last().unwrap(), &(3, 0, 5, 1u32.to_be_bytes().to_vec()));
    assert_eq!(ereq(), "1");

    // Idle: GOAWAY (last stream 5, NO_ERROR) after the keep-alive timeout, then the close.
    let f = c.next(Duration::from_secs(5)).expect("GOAWAY");
    assert_eq!(f, (7, 0, 0, [5u32.to_be_bytes(), 0u32.to_be_bytes()].concat()));
    assert!(c.next(Duration::from_secs(5)).is_none());

    // A connection error: DATA on stream 0 ends the connection with PROTOCOL_ERROR.
    let mut c = H2::connect(port, &[]);
    c.send(0, 0, 0, b"x");
    let got = c.until(|f| f.0 == 7);
    assert_eq!(got.last().unwrap().3[4..], 1u32.to_be_bytes());
    assert!(c.next(Duration::from_secs(5)).is_none());
    assert_eq!(ereq(), "2");

    // After the client's GOAWAY its streams go on (its WINDOW_UPDATEs are still read);
    // the connection closes when the last one ended.
    let mut c = H2::connect(port, &[(4, 100)]);
    c.request(1, "GET", "/big", &[], true);
    c.until(|f| f.0 == 0 && f.2 == 1);
    c.send(7, 0, 0, &[0; 8]);
    c.send(8, 0, 1, &1000u32.to_be_bytes());
    let got = c.until(|f| f.0 == 0 && f.2 == 1);
    assert!(got.last().unwrap().3.len() <= 1000);
    c.send(3, 0, 1, &8u32.to_be_bytes());
    while let Some(f) = c.next(Duration::from_secs(5)) {
        assert_eq!(f.0, 0, "only the rest of the DATA in flight: {f:?}");
    }

    // Two downloads on one connection take turns: once both answers began (the
    // connection's window, 64 KiB, held the bodies back), each had data within the next
    // 400 KB (a stream sends at most 64 KiB a round).
    let mut c = H2::connect(port, &[(4, 1 << 24)]);
    c.request(1, "GET", "/big", &[], true);
    c.request(3, "GET", "/big", &[], true);
    let mut heads = 0;
    while heads < 2 {
        let f = c.next(Duration::from_secs(5)).expect("HEADERS");
        heads += usize::from(f.0 == 1);
    }
    // What the first window let through, then 400 KB more.
    while c.next(Duration::from_millis(300)).is_some() {}
    c.send(8, 0, 0, &400_000u32.to_be_bytes());
    let mut per_stream = [0usize; 2];
    while per_stream.iter().sum::<usize>() < 400_000 {
        let f = c.next(Duration::from_secs(5)).expect("DATA");
        if f.0 == 0 {
            per_stream[(f.2 / 2) as usize] += f.3.len();
        }
    }
    assert!(per_stream.iter().all(|&n| n > 0), "one stream took it all: {per_stream:?}");
    drop(c);

    // Rapid reset: streams opened and reset at once, over and over, end the connection
    // with ENHANCE_YOUR_CALM.
    let mut c = H2::connect(port, &[]);
    for i in 0..150u32 {
        c.request(2 * i + 1, "GET", "/echo", &[], true);
        c.send(3, 0, 2 * i + 1, &8u32.to_be_bytes());
    }
    let got = c.until(|f| f.0 == 7);
    assert_eq!(got.last().unwrap().3[4..], 11u32.to_be_bytes());

    // A client that opens no window for its response loses the connection after
    // `timeout client` (1 s here), the server's connection with it, though it pings
    // every 300 ms.
    let mut c = H2::connect(slow, &[(4, 0)]);
    c.request(1, "GET", "/big", &[], true);
    c.until(|f| f.0 == 1 && f.2 == 1);
    let ping = [&[0, 0, 8, 6, 0, 0, 0, 0, 0][..], b"stillhere"].concat();
    let closed = (0..30).any(|_| {
        let _ = c.s.write_all(&ping[..17]);
        c.closes(Duration::from_millis(300))
    });
    assert!(closed, "still open after 9 s");
}
