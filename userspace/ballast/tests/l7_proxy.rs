//! The L7 proxy (`ballast proxy -f haproxy.cfg`) on loopback with real clients (curl, ab)
//! against backends the test starts: balancing, cookie persistence, health checks,
//! maxconn queueing, retries + redispatch, X-Forwarded-For, HTTP/2, the stats page.
mod common;

use std::{
    io::{Read, Write},
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use common::{
    eventually, free_port, http_backend,
    l7::{have_haproxy, start_haproxy, start_proxy, start_proxy_args},
};

/// curl ARGS URL → (status line + headers, body).
fn curl(args: &[&str], url: &str) -> (String, String) {
    let out = Command::new("curl").args(["-s", "-i", "-m", "10"]).args(args).arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_string(), body.to_string())
}

fn who(body: &str) -> String {
    body.split_whitespace().next().unwrap_or("").to_string()
}

fn stats_rows(port: u16) -> Vec<Vec<String>> {
    let (_, body) = curl(&[], &format!("http://127.0.0.1:{port}/stats;csv"));
    body.lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

fn server_field(rows: &[Vec<String>], server: &str, col: usize) -> String {
    rows.iter()
        .find(|r| r.get(1).map(String::as_str) == Some(server))
        .map(|r| r[col].clone())
        .unwrap_or_default()
}

const HEAD: &str = "defaults\n    mode http\n    option httplog\n    option forwardfor\n    retries 2\n    option redispatch\n    timeout connect 500ms\n    timeout client 10s\n    timeout server 10s\n";

#[test]
fn balances_persists_with_cookies_and_forwards_client_address() {
    let b: Vec<_> = ["s1", "s2", "s3"].iter().map(|n| http_backend::start(n)).collect();
    let port = free_port();
    let cfg = format!(
        "{HEAD}listen web\n    bind 127.0.0.1:{port}\n    balance roundrobin\n    stats uri /stats\n    cookie SERVERID insert indirect nocache\n{}",
        b.iter().enumerate().map(|(i, x)| format!("    server s{} {} cookie c{}\n", i + 1, x.addr, i + 1)).collect::<String>()
    );
    let p = start_proxy(&cfg);
    let url = format!("http://127.0.0.1:{}/", p.port);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let (_, body) = curl(&[], &url);
        *seen.entry(who(&body)).or_insert(0) += 1;
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [("s1".into(), 10), ("s2".into(), 10), ("s3".into(), 10)]
    );

    // First response sets the cookie; the client then sticks to that server, and the
    // server never sees the persistence cookie (indirect), only the client's others. A
    // response no shared cache could store gets no `Cache-Control: private` (`nocache` as
    // HAProxy 2.6 does it: see l7_side_by_side's nocache case).
    let (head, body) = curl(&[], &url);
    let server = who(&body);
    let n = &server[1..];
    assert!(head.to_ascii_lowercase().contains(&format!("set-cookie: serverid=c{n}; path=/")), "{head}");
    assert!(!head.to_ascii_lowercase().contains("cache-control: private"), "{head}");
    assert!(body.contains("xff=127.0.0.1"), "X-Forwarded-For: {body}");
    for _ in 0..6 {
        let (head, body) = curl(&["-H", &format!("Cookie: theme=dark; SERVERID=c{n}")], &url);
        assert_eq!(who(&body), server, "persistence broken");
        assert!(body.contains("cookie=theme=dark") && !body.contains("SERVERID"), "indirect: {body}");
        assert!(!head.to_ascii_lowercase().contains("set-cookie"), "cookie inserted again: {head}");
    }
    // HTTP/2 from the client (prior knowledge, cleartext).
    let (head, body) = curl(&["--http2-prior-knowledge"], &url);
    assert!(head.starts_with("HTTP/2 200"), "{head}");
    assert!(body.starts_with('s'));
    // h2load, cleartext HTTP/2 (prior knowledge), many streams per connection.
    let out =
        Command::new("h2load").args(["-n", "2000", "-c", "4", "-m", "10", &url]).output().expect("h2load");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2000 succeeded, 0 failed, 0 errored"), "{text}");
    // A bounded keep-alive load: no failures.
    let out = Command::new("ab")
        .args(["-q", "-k", "-n", "2000", "-c", "8", "-s", "10", &url])
        .output()
        .expect("ab");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Complete requests:      2000"), "{text}");
    assert!(text.contains("Failed requests:        0"), "{text}");
    let log = std::fs::read_to_string(&p.log).unwrap();
    assert!(log.contains(" web web/s1 ") && log.contains("\"GET / HTTP/1.1\""), "httplog lines: {log}");
}

#[test]
fn health_checks_take_servers_out_and_back() {
    let b: Vec<_> = ["s1", "s2"].iter().map(|n| http_backend::start(n)).collect();
    let port = free_port();
    let cfg = format!(
        "{HEAD}listen web\n    bind 127.0.0.1:{port}\n    stats uri /stats\n    option httpchk GET /health\n    http-check expect status 200\n{}",
        b.iter().enumerate().map(|(i, x)| format!("    server s{} {} check inter 400 rise 2 fall 3\n", i + 1, x.addr)).collect::<String>()
    );
    // (A check times out after `inter`: 400 ms and fall 3 keep a healthy server UP on a
    // loaded machine, where 100 ms checks were seen to miss.)
    let p = start_proxy(&cfg);
    let url = format!("http://127.0.0.1:{}/", p.port);
    let wait_status = |server: &str, want: &str| {
        let start = Instant::now();
        loop {
            let s = server_field(&stats_rows(p.port), server, 17);
            if s == want {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "{server} stayed {s}, wanted {want}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_status("s2", "UP");
    b[1].healthy.store(false, Ordering::SeqCst);
    wait_status("s2", "DOWN");
    for _ in 0..10 {
        assert_eq!(who(&curl(&[], &url).1), "s1", "traffic went to a DOWN server");
    }
    // Every check rewrites check_desc: the 503 shows once a check got its answer.
    eventually("check_desc L7STS 503", Duration::from_secs(10), || {
        server_field(&stats_rows(p.port), "s2", 65).starts_with("L7STS 503").then_some(())
    });
    b[1].healthy.store(true, Ordering::SeqCst);
    wait_status("s2", "UP");
    let got: std::collections::BTreeSet<String> = (0..6).map(|_| who(&curl(&[], &url).1)).collect();
    assert_eq!(got.len(), 2, "s2 is back: {got:?}");
    let log = std::fs::read_to_string(&p.log).unwrap();
    assert!(log.contains("Server web/s2 is DOWN") && log.contains("Server web/s2 is UP"), "{log}");
}

#[test]
fn maxconn_queues_then_503_and_dead_servers_are_retried_elsewhere() {
    let slow = http_backend::start("slow");
    let port = free_port();
    let cfg = format!(
        "{HEAD}    timeout queue 200ms\nlisten web\n    bind 127.0.0.1:{port}\n    stats uri /stats\n    server s1 {} maxconn 1\n",
        slow.addr
    );
    let p = start_proxy(&cfg);
    // Two at once on a server with maxconn 1: the first is served (its answer takes a
    // second), the second waits in the queue longer than `timeout queue` and gets a 503.
    // The second is sent once the stats show the first on the server, so that they
    // overlap however slow the machine is.
    let ask = || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
        s
    };
    let status = |mut s: std::net::TcpStream| {
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.lines().next().unwrap_or("").to_string()
    };
    let first = ask();
    eventually("the first request on s1", Duration::from_secs(10), || {
        (server_field(&stats_rows(p.port), "s1", 4) == "1").then_some(())
    });
    let second = ask();
    assert_eq!(status(second), "HTTP/1.1 503 Service Unavailable");
    assert_eq!(status(first), "HTTP/1.1 200 OK");
    // It waited in the backend's queue (no server had a free slot), as in HAProxy.
    let rows = stats_rows(p.port);
    assert_eq!(server_field(&rows, "BACKEND", 3), "1", "qmax: {rows:?}");
    assert_eq!(server_field(&rows, "s1", 3), "0", "qmax: {rows:?}");
    drop(p);

    // A server whose port is closed: the connection fails and is retried on a live
    // server, so the client sees no error.
    let live = http_backend::start("live");
    let dead_port = free_port();
    let port = free_port();
    let cfg = format!(
        "{HEAD}listen web\n    bind 127.0.0.1:{port}\n    stats uri /stats\n    balance roundrobin\n    server dead 127.0.0.1:{dead_port}\n    server live {}\n",
        live.addr
    );
    let p = start_proxy(&cfg);
    for _ in 0..6 {
        let (head, body) = curl(&[], &format!("http://127.0.0.1:{}/", p.port));
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(who(&body), "live");
    }
    let rows = stats_rows(p.port);
    let (econ, wretr, wredis) =
        (server_field(&rows, "dead", 13), server_field(&rows, "dead", 15), server_field(&rows, "dead", 16));
    // Round robin does not hash: as in HAProxy 2.6, each failed connect is redispatched
    // at its first retry (logged `+1`), not after `retries` tries on the dead server.
    let log = std::fs::read_to_string(&p.log).unwrap();
    let moved = log.lines().filter(|l| l.contains(" web web/live ") && l.contains("/+1 ")).count();
    assert!(moved >= 1, "{log}");
    // Counted as HAProxy counts them (l7_side_by_side.rs compares): redispatches only, no
    // connection error (each request was served in the end), no plain retry.
    assert_eq!(
        (econ.as_str(), wretr.as_str(), wredis.parse::<usize>().unwrap()),
        ("0", "0", moved),
        "econ {econ} wretr {wretr} wredis {wredis}"
    );
    drop(p);

    // Without redispatch (or with one server) the retries stay on the server, each after
    // HAProxy's turn-around pause, min(timeout connect, 1 s): 2 retries of 500 ms here,
    // then 503 `SC--` with no connect or response time.
    let port = free_port();
    let cfg = format!("{HEAD}listen web\n    bind 127.0.0.1:{port}\n    server dead 127.0.0.1:{dead_port}\n");
    let p = start_proxy(&cfg);
    let (head, _) = curl(&[], &format!("http://127.0.0.1:{}/", p.port));
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    let log = eventually("the 503 logged", Duration::from_secs(10), || {
        let log = std::fs::read_to_string(&p.log).unwrap();
        log.lines().find(|l| l.contains(" web web/dead ")).map(String::from)
    });
    let f: Vec<&str> = log.split_whitespace().collect();
    let i = f.iter().position(|x| *x == "web/dead").unwrap();
    let timers: Vec<i64> = f[i + 1].split('/').map(|t| t.parse().unwrap()).collect();
    assert_eq!(&timers[..4], &[0, 0, -1, -1], "{log}");
    assert!(timers[4] >= 1000, "two 500 ms pauses before the 503: {log}");
    assert!(log.contains(" SC-- ") && log.contains("/2 "), "{log}");
}

#[test]
fn stats_page_speaks_haproxy_csv_html_and_prometheus() {
    let b = http_backend::start("s1");
    let port = free_port();
    let cfg = format!(
        "{HEAD}listen web\n    bind 127.0.0.1:{port}\n    stats uri /haproxy_stats\n    server s1 {}\n",
        b.addr
    );
    let p = start_proxy(&cfg);
    curl(&[], &format!("http://127.0.0.1:{}/", p.port));
    for _ in 0..4 {
        curl(&[], &format!("http://127.0.0.1:{}/", p.port));
    }
    // Rates are per second: after a tick the server's max rate shows the burst.
    eventually("rate_max >= 1", Duration::from_secs(10), || {
        let (_, body) = curl(&[], &format!("http://127.0.0.1:{}/haproxy_stats;csv", p.port));
        let rows: Vec<Vec<String>> = body.lines().map(|l| l.split(',').map(String::from).collect()).collect();
        (server_field(&rows, "s1", 35).parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
    let (_, csv) = curl(&[], &format!("http://127.0.0.1:{}/haproxy_stats;csv", p.port));
    let header = csv.lines().next().unwrap();
    assert_eq!(header, ballast_proxy::stats::CSV_HEADER);
    let cols = header.matches(',').count();
    for line in csv.lines().skip(1) {
        assert_eq!(line.matches(',').count(), cols, "row width: {line}");
    }
    assert!(csv.contains("web,FRONTEND,") && csv.contains("web,s1,") && csv.contains("web,BACKEND,"));
    let (head, html) = curl(&[], &format!("http://127.0.0.1:{}/haproxy_stats", p.port));
    assert!(head.contains("text/html") && html.contains("<h2>web</h2>") && html.contains(">s1<"), "{html}");
    let (_, prom) = curl(&[], &format!("http://127.0.0.1:{}/haproxy_stats/metrics", p.port));
    assert!(prom.contains("ballast_server_up{proxy=\"web\",server=\"s1\"} 1"), "{prom}");
}

/// One keep-alive GET on `s`: the status line and the body.
fn ask(s: &mut std::net::TcpStream) -> (String, String) {
    use std::io::Write;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    read_response(s)
}

/// One response (status line, body) read byte by byte, so a response after it stays unread.
fn read_response(s: &mut std::net::TcpStream) -> (String, String) {
    use std::io::{BufRead, BufReader};
    let mut r = BufReader::with_capacity(1, s.try_clone().unwrap());
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut len = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        if h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; len];
    std::io::Read::read_exact(&mut r, &mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

fn api(sock: &std::path::Path, cmd: &str) -> String {
    use std::io::{Read, Write};
    let mut s =
        std::os::unix::net::UnixStream::connect(sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
    s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn runtime_api_sets_server_state_and_weight() {
    let b: Vec<_> = ["s1", "s2"].iter().map(|n| http_backend::start(n)).collect();
    let port = free_port();
    let sock = std::env::temp_dir().join(format!("ballast-api-{port}.sock"));
    let cfg = format!(
        "global\n    stats socket {}\n{HEAD}listen web\n    bind 127.0.0.1:{port}\n    cookie SRV insert\n{}",
        sock.display(),
        b.iter()
            .enumerate()
            .map(|(i, x)| format!("    server s{} {} cookie c{}\n", i + 1, x.addr, i + 1))
            .collect::<String>()
    );
    // Two workers whatever the machine has, so the spread below is between two.
    let p = start_proxy_args(&cfg, &["--threads", "2"]);
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("http://127.0.0.1:{}/", p.port);
    let spread = |n: usize| {
        let mut c = std::collections::BTreeMap::new();
        for _ in 0..n {
            *c.entry(who(&curl(&[], &url).1)).or_insert(0) += 1;
        }
        c
    };
    assert!(api(&sock, "show stat").starts_with(ballast_proxy::stats::CSV_HEADER));
    assert_eq!(api(&sock, "set server web/s2 state maint"), "\n");
    assert_eq!(spread(6).keys().cloned().collect::<Vec<_>>(), ["s1"]);
    assert!(api(&sock, "show stat").contains(",s2,") && api(&sock, "show stat").contains("MAINT"));
    // drain: no new traffic, but a client holding s2's cookie still reaches it.
    api(&sock, "set server web/s2 state drain");
    assert_eq!(spread(6).keys().cloned().collect::<Vec<_>>(), ["s1"]);
    assert_eq!(who(&curl(&["-H", "Cookie: SRV=c2"], &url).1), "s2");
    api(&sock, "set server web/s2 state ready");
    api(&sock, "set server web/s1 weight 3");
    let c = spread(40);
    assert_eq!((c["s1"], c["s2"]), (30, 10), "weights 3:1: {c:?}");
    assert!(api(&sock, "set server web/nope state maint").starts_with("No such server"));
    assert!(api(&sock, "bogus").starts_with("Unknown command"));

    // Worker threads: SO_REUSEPORT hashes connections over them; a connection that stays
    // after a response moves to a worker with two fewer. So 20 connections, each asked
    // one request in turn, end up within 2 of each other, and closing them uncounts them.
    let thread_conns = || {
        let info = api(&sock, "show info");
        let line = info.lines().find_map(|l| l.strip_prefix("ThreadConns: ")).expect(&info).to_string();
        line.split(',').map(|n| n.parse::<usize>().unwrap()).collect::<Vec<_>>()
    };
    let settle = |want: usize| {
        let start = Instant::now();
        loop {
            let t = thread_conns();
            if t.iter().sum::<usize>() == want {
                return t;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "ThreadConns {t:?}, want {want} in all");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    settle(0);
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(ask(&mut s).0.starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let t = settle(20);
    assert!(t.iter().max().unwrap() - t.iter().min().unwrap() <= 2, "ThreadConns {t:?}");
    assert!(api(&sock, "show info").contains(&format!("Nbthread: {}\n", t.len())));
    drop(held);
    settle(0);

    // Connections that sent nothing yet stay where they were accepted: open them until
    // the hash has put two more on one worker (a random walk gets there in a few steps).
    let mut idle = Vec::new();
    let start = Instant::now();
    let apart = loop {
        let s = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        idle.push(s);
        let t = settle(idle.len());
        if t.iter().max().unwrap() - t.iter().min().unwrap() >= 2 {
            break t;
        }
        assert!(idle.len() < 200 && start.elapsed() < Duration::from_secs(30), "never apart: {t:?}");
    };
    // Now two pipelined requests on each: after the first response, connections on the
    // busier worker move, carrying the second request (already read) with them.
    for s in &mut idle {
        use std::io::Write;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    for s in &mut idle {
        for _ in 0..2 {
            assert!(read_response(s).0.starts_with("HTTP/1.1 200"), "was {apart:?}");
        }
    }
    // And they keep working where they went.
    for s in &mut idle {
        assert!(ask(s).0.starts_with("HTTP/1.1 200"));
    }
    // Two apart, and no connection opened or closed since: within one means one moved.
    let t = settle(idle.len());
    assert!(t.iter().max().unwrap() - t.iter().min().unwrap() <= 1, "was {apart:?}, now {t:?}");
    drop(idle);
    settle(0);
}

#[test]
fn reload_under_load_drops_nothing_and_keeps_idle_connections() {
    let b: Vec<_> = ["s1", "s2", "s3"].iter().map(|n| http_backend::start(n)).collect();
    let port = free_port();
    let sock = std::env::temp_dir().join(format!("ballast-reload-{port}.sock"));
    let cfg_for = |servers: &[usize]| {
        format!(
            "global\n    stats socket {}\n{HEAD}listen web\n    bind 127.0.0.1:{port}\n    balance roundrobin\n{}",
            sock.display(),
            servers.iter().map(|&i| format!("    server s{} {}\n", i + 1, b[i].addr)).collect::<String>()
        )
    };
    let p = start_proxy(&cfg_for(&[0, 1]));
    let cfg_path = p.log.with_file_name("haproxy.cfg");
    let url = format!("http://127.0.0.1:{}/", p.port);

    // An idle keep-alive connection opened before the reloads.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(ask(&mut idle).0.starts_with("HTTP/1.1 200"));

    let pid = p._child.0.id();
    let ab = std::thread::spawn(move || {
        let out = Command::new("ab")
            .args(["-q", "-k", "-n", "30000", "-c", "8", "-s", "10", &url])
            .output()
            .expect("ab");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    std::thread::sleep(Duration::from_millis(300));
    // SIGHUP with a third server, then an API reload back to two, then a broken file.
    std::fs::write(&cfg_path, cfg_for(&[0, 1, 2])).unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    // ab's requests share the round robin, so which server a curl gets is random: ask
    // until s3 answers ((2/3)^60 odds of missing it when it is in).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(who(&curl(&[], &format!("http://127.0.0.1:{}/", p.port)).1));
        if seen.contains("s3") {
            break;
        }
    }
    assert!(seen.contains("s3"), "the new server gets traffic after SIGHUP: {seen:?}");
    std::fs::write(&cfg_path, cfg_for(&[0, 1])).unwrap();
    assert_eq!(api(&sock, "reload"), "Success=1\n\n");
    std::fs::write(&cfg_path, cfg_for(&[0, 1]).replace("balance roundrobin", "balanse roundrobin")).unwrap();
    let r = api(&sock, "reload");
    assert!(r.starts_with("Success=0") && r.contains("unknown keyword 'balanse'"), "{r}");
    // The idle connection opened before both reloads still works, on the current config.
    let (status, body) = ask(&mut idle);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.starts_with("s1") || body.starts_with("s2"), "{body}");
    let text = ab.join().unwrap();
    assert!(text.contains("Complete requests:      30000"), "{text}");
    assert!(text.contains("Failed requests:        0"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
}

#[test]
fn proxy_protocol_v1_v2_both_ways_and_with_haproxy() {
    let b = http_backend::start("s1");
    // B accepts the PROXY protocol and reports the client it names via X-Forwarded-For.
    let pb = free_port();
    let p_b = start_proxy(&format!(
        "{HEAD}listen b\n    bind 127.0.0.1:{pb} accept-proxy\n    server s1 {}\n",
        b.addr
    ));
    // v1 by hand.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", pb)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"PROXY TCP4 192.0.2.9 198.51.100.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.contains("s1 xff=192.0.2.9"), "{out}");
        // No header on an accept-proxy bind: refused.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", pb)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(!out.contains("200"), "{out}");
    }
    // A (send-proxy-v2, then v1) -> B: the backend sees the real client, 127.0.0.2.
    for send in ["send-proxy-v2", "send-proxy"] {
        let pa = free_port();
        let _a = start_proxy(&format!(
            "{HEAD}listen a\n    bind 127.0.0.1:{pa}\n    server b 127.0.0.1:{pb} {send}\n"
        ));
        let (_, body) = curl(&["--interface", "127.0.0.2"], &format!("http://127.0.0.1:{pa}/"));
        assert!(body.contains("xff=127.0.0.2"), "{send}: {body}");
    }
    drop(p_b);
    if !have_haproxy() {
        return;
    }
    // Interop: HAProxy sends v2 to ballast, ballast sends v2 to HAProxy.
    let pb = free_port();
    let _b = start_proxy(&format!(
        "{HEAD}listen b\n    bind 127.0.0.1:{pb} accept-proxy\n    server s1 {}\n",
        b.addr
    ));
    let ph = free_port();
    let _h = start_haproxy(
        &format!("defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\nlisten h\n  bind 127.0.0.1:{ph}\n  server b 127.0.0.1:{pb} send-proxy-v2\n"),
        ph,
    );
    let (_, body) = curl(&["--interface", "127.0.0.2"], &format!("http://127.0.0.1:{ph}/"));
    assert!(body.contains("xff=127.0.0.2"), "HAProxy -> ballast: {body}");
    let ph2 = free_port();
    let _h2 = start_haproxy(
        &format!("defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\nlisten h\n  bind 127.0.0.1:{ph2} accept-proxy\n  option forwardfor\n  server s1 {}\n", b.addr),
        ph2,
    );
    let pa = free_port();
    let _a = start_proxy(&format!(
        "{HEAD}listen a\n    bind 127.0.0.1:{pa}\n    server h 127.0.0.1:{ph2} send-proxy-v2\n"
    ));
    let (_, body) = curl(&["--interface", "127.0.0.2"], &format!("http://127.0.0.1:{pa}/"));
    // HAProxy appends its own view of the client after ours: the first address is the real one.
    assert!(body.contains("xff=127.0.0.2"), "ballast -> HAProxy: {body}");
}

/// `global maxconn` limits the whole process (and is every frontend's default limit):
/// with 1, a second client is not served while a first keeps its connection open, and is
/// served once it closes. `nbthread` sets the worker threads. `show info` reports both.
#[test]
fn global_maxconn_and_nbthread_are_honoured() {
    let b = http_backend::start("s1");
    let port = free_port();
    let sock = std::env::temp_dir().join(format!("ballast-gmax-{}-{port}.sock", std::process::id()));
    let cfg = format!(
        "global\n    maxconn 1\n    nbthread 3\n    stats socket {}\n{HEAD}listen web\n    bind 127.0.0.1:{port}\n    server s1 {}\n",
        sock.display(),
        b.addr
    );
    let _p = start_proxy(&cfg);
    eventually("the runtime socket", Duration::from_secs(10), || sock.exists().then_some(()));
    let info = api(&sock, "show info");
    assert!(info.contains("Nbthread: 3\n") && info.contains("Maxconn: 1\n"), "{info}");

    // The first client is served and keeps its connection (keep-alive): it holds the slot.
    let mut first = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(ask(&mut first).0.contains("200"));
    let mut second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    second.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    second.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut byte = [0u8; 1];
    match second.read(&mut byte) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        other => panic!("the second client was answered while the first held the only slot: {other:?}"),
    }
    drop(first);
    second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (status, body) = read_response(&mut second);
    assert!(status.contains("200") && who(&body) == "s1", "{status} {body}");
    let _ = std::fs::remove_file(&sock);
}
