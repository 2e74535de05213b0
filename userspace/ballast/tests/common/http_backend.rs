//! A small HTTP/1.1 backend for L7 tests (keep-alive, bounded): `/` answers
//! `NAME xff=<X-Forwarded-For> cookie=<Cookie>`, `/health` answers 200 or 503 as the test
//! sets it, `/slow` answers after a second. An echo backend ([`start_echo`]) answers every
//! request with what it received (target, Host and `x-*` headers) and a header a proxy
//! may remove (`X-Internal`).
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

pub struct Backend {
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

pub fn start(name: &str) -> Backend {
    start_with(name, false)
}

pub fn start_echo(name: &str) -> Backend {
    start_with(name, true)
}

fn start_with(name: &str, echo: bool) -> Backend {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s, name) = (healthy.clone(), stop.clone(), name.to_string());
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((c, _)) => {
                    let (h, s, name) = (h.clone(), s.clone(), name.clone());
                    std::thread::spawn(move || serve(c, &name, &h, &s, echo));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Backend { addr, healthy, stop }
}

fn serve(c: TcpStream, name: &str, healthy: &AtomicBool, stop: &AtomicBool, echo: bool) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
    let mut w = c.try_clone().unwrap();
    let mut r = BufReader::new(c);
    while !stop.load(Ordering::SeqCst) {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (mut xff, mut cookie, mut len, mut close) =
            (String::new(), String::new(), 0usize, line.contains("HTTP/1.0"));
        let mut seen: Vec<String> = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            let lk = k.to_ascii_lowercase();
            if lk == "host" || (lk.starts_with("x-") && lk != "x-forwarded-for") {
                seen.push(format!("{lk}: {}", v.trim()));
            }
            match lk.as_str() {
                "x-forwarded-for" => xff = v.trim().into(),
                "cookie" => cookie = v.trim().into(),
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        if echo {
            seen.sort();
            let text = format!("{name} {path}\n{}\n", seen.join("\n"));
            // `?cc=<value>` (repeatable): Cache-Control values to answer with; `st=<code>`.
            let query = path.split_once('?').map_or("", |(_, q)| q);
            let (mut extra, mut status) = (String::new(), "200 OK".to_string());
            for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                let v = v.replace("%3D", "=").replace("%2C", ",").replace("%20", " ").replace("%22", "\"");
                match k {
                    "cc" => extra.push_str(&format!("Cache-Control: {v}\r\n")),
                    "st" => status = format!("{v} Status"),
                    _ => {}
                }
            }
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nX-Internal: secret\r\n{extra}\r\n{text}",
                text.len()
            );
            if w.write_all(resp.as_bytes()).is_err() || close {
                return;
            }
            continue;
        }
        let (status, text) = match path.as_str() {
            "/health" if healthy.load(Ordering::SeqCst) => ("200 OK", "ok\n".to_string()),
            "/health" => ("503 Service Unavailable", "down\n".to_string()),
            "/slow" => {
                std::thread::sleep(Duration::from_secs(1));
                ("200 OK", format!("{name} slow\n"))
            }
            _ => ("200 OK", format!("{name} xff={xff} cookie={cookie}\n")),
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{text}",
            text.len()
        );
        if w.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}
