//! Tiny backends for end-to-end tests: each answers with its name, so the client can tell
//! which backend served it. Bounded: they stop when their stop flag is set.
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use super::spawn_in;

/// Serves TCP (a line in → "NAME\n" out, as long as the connection lasts) on every
/// address in `tcp`, and UDP (any datagram → "NAME") on every address in `udp`.
pub fn start(ns: &str, name: &str, tcp: Vec<SocketAddr>, udp: Vec<SocketAddr>, stop: Arc<AtomicBool>) {
    for addr in tcp {
        let (name, stop) = (name.to_string(), stop.clone());
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        spawn_in(ns, move || {
            let l = bind_tcp(addr);
            l.set_nonblocking(true).unwrap();
            r.store(true, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        let (name, stop) = (name.clone(), stop.clone());
                        std::thread::spawn(move || serve_tcp(s, &name, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        while !ready.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    for addr in udp {
        let (name, stop) = (name.to_string(), stop.clone());
        let ready = Arc::new(AtomicBool::new(false));
        let r = ready.clone();
        spawn_in(ns, move || {
            let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind udp {addr}: {e}"));
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            r.store(true, Ordering::SeqCst);
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((_, peer)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(name.as_bytes(), peer);
                }
            }
        });
        while !ready.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn bind_tcp(addr: SocketAddr) -> TcpListener {
    TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind tcp {addr}: {e}"))
}

fn serve_tcp(s: TcpStream, name: &str, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        // A timeout mid-line keeps what was read: an upload's line arrives in many reads.
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                // A long line (an upload) is answered with its length, to show it all came.
                let answer =
                    if line.len() > 64 { format!("{name} {}\n", line.len() - 1) } else { format!("{name}\n") };
                line.clear();
                if w.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => return,
        }
    }
}

/// Uploads `len` bytes as one line on a new connection: the answer ("NAME LEN").
pub fn tcp_upload(addr: SocketAddr, len: usize) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut body = vec![b'u'; len];
    body.push(b'\n');
    s.write_all(&body)?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    Ok(line.trim().to_string())
}

/// One request on a new TCP connection; the name of the backend that answered.
pub fn tcp_ask(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    ask_on(&mut s)
}

pub fn ask_on(s: &mut TcpStream) -> std::io::Result<String> {
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"hi\n")?;
    let mut line = String::new();
    BufReader::new(s.try_clone()?).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    Ok(line.trim().to_string())
}

/// A UDP "flow": a connected socket with its own source port.
pub fn udp_flow(vip: SocketAddr) -> UdpSocket {
    let local: SocketAddr =
        if vip.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let s = UdpSocket::bind(local).unwrap();
    s.connect(vip).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s
}

/// Sends on a flow and returns who answered (a few tries: the first packet to a backend
/// may wait for neighbour resolution).
pub fn udp_ask(s: &UdpSocket) -> std::io::Result<String> {
    let mut buf = [0u8; 64];
    // A late answer to an earlier ask must not be read as this one's.
    s.set_nonblocking(true)?;
    while s.recv(&mut buf).is_ok() {}
    s.set_nonblocking(false)?;
    let mut last = None;
    for _ in 0..4 {
        s.send(b"hi")?;
        match s.recv(&mut buf) {
            Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap())
}

/// Serves HTTP/1.1 on `addr` in namespace `ns`: every request (GET, no body) gets
/// `200 NAME\n`, on keep-alive connections. Returns once it listens.
pub fn start_http(ns: &str, name: &str, addr: SocketAddr, stop: Arc<AtomicBool>) {
    let name = name.to_string();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    spawn_in(ns, move || {
        let l = bind_tcp(addr);
        l.set_nonblocking(true).unwrap();
        let _ = ready_tx.send(());
        while !stop.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((s, _)) => {
                    let (name, stop) = (name.clone(), stop.clone());
                    std::thread::spawn(move || serve_http(s, &name, &stop));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("HTTP server listening");
}

fn serve_http(s: TcpStream, name: &str, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut in_head = false;
    while !stop.load(Ordering::SeqCst) {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if line == "\r\n" || line == "\n" => {
                if !in_head {
                    continue;
                }
                in_head = false;
                let body = format!("{name}\n");
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if w.write_all((head + &body).as_bytes()).is_err() {
                    return;
                }
            }
            Ok(_) => in_head = true,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => return,
        }
    }
}

/// One GET on a new connection: the body the server answered (a backend's name), or why not.
pub fn http_get(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    http_get_on(&mut s, timeout)
}

/// One GET on an open keep-alive connection.
pub fn http_get_on(s: &mut TcpStream, timeout: Duration) -> std::io::Result<String> {
    use std::io::Read;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", s.peer_addr()?).as_bytes())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if body.len() >= len {
            if !head.starts_with("HTTP/1.1 200") {
                return Err(std::io::Error::other(head.lines().next().unwrap_or("").to_string()));
            }
            return Ok(body[..len].trim().to_string());
        }
    }
}
