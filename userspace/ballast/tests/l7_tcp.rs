//! `mode tcp` on the wire: bytes relayed both ways, inactivity timeouts on each side,
//! retries then `SC` for a dead server, TLS offload (`bind ... ssl crt` in TCP mode, what
//! stunnel does), and one `option tcplog` line per connection in HAProxy's format
//! (`option dontlognull` leaves out connections that moved nothing).
mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use common::{
    free_port,
    l7::{echo_server, make_cert, start_proxy},
};

/// An address nothing listens on: a socket bound to it but not listening (connects to it
/// are refused), kept open for the test so that no other socket gets the port.
fn dead_addr() -> (SocketAddr, std::os::fd::OwnedFd) {
    use std::{mem::size_of, os::fd::FromRawFd};
    // SAFETY: a fresh socket owned at once; plain sockaddr_in structures of the right size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len), 0, "bind");
        let mut got = len;
        assert_eq!(libc::getsockname(fd, &mut sa as *mut _ as *mut libc::sockaddr, &mut got), 0);
        (SocketAddr::from(([127, 0, 0, 1], u16::from_be(sa.sin_port))), owned)
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Sends `msg` and reads it back.
fn echoed(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// The proxy closed the connection (read gives 0, or a reset).
fn closed_by_proxy(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn tcp_relay_timeouts_retries_and_tcplog() {
    let (echo, (dead, _dead_socket)) = (echo_server(), dead_addr());
    let (first, slow_client, slow_server, gone, quiet, tls) =
        (free_port(), free_port(), free_port(), free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("ballast-tcp-{}-{tls}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pem = make_cert(&dir, "tcp.example");
    // The harness waits for the first bind to accept: a proxy of its own.
    let p = start_proxy(&format!(
        "defaults\n    mode tcp\n    option tcplog\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n\
         listen first\n    bind 127.0.0.1:{first}\n    server e1 {echo}\n\
         listen slowc\n    bind 127.0.0.1:{slow_client}\n    timeout client 1s\n    server e1 {echo}\n\
         listen slows\n    bind 127.0.0.1:{slow_server}\n    timeout server 1s\n    server e1 {echo}\n\
         listen gone\n    bind 127.0.0.1:{gone}\n    retries 2\n    server d1 {dead}\n\
         listen quiet\n    bind 127.0.0.1:{quiet}\n    option dontlognull\n    server e1 {echo}\n\
         listen tlsx\n    bind 127.0.0.1:{tls} ssl crt {}\n    timeout client 3s\n    server e1 {echo}\n",
        pem.display()
    ));

    // Moved nothing: not logged under dontlognull.
    drop(connect(quiet));
    // Relayed both ways; the client closes, the server follows: a clean end (logged).
    {
        let mut s = connect(quiet);
        echoed(&mut s, b"hello");
        echoed(&mut s, &[7u8; 100_000]);
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(closed_by_proxy(&mut s));
    }
    // A silent client: `timeout client` (1 s) ends it, not `timeout server` (10 s).
    {
        let mut s = connect(slow_client);
        echoed(&mut s, b"x");
        assert!(closed_by_proxy(&mut s), "idle client kept");
    }
    // A silent server (the echo server says nothing unasked): `timeout server`.
    {
        let mut s = connect(slow_server);
        echoed(&mut s, b"y");
        assert!(closed_by_proxy(&mut s), "idle server kept");
    }
    // No server to reach: 1 try + 2 retries, then the client is closed.
    {
        let mut s = connect(gone);
        assert!(closed_by_proxy(&mut s), "connection kept without a server");
    }

    // TLS offloaded (stunnel's job): the echo server gets plain bytes, so what comes back
    // through the TLS session is what was sent. (s_client waits for the proxy to close,
    // after `timeout client`, 3 s: also the handshake's limit.)
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-quiet", "-ign_eof", "-connect", &format!("127.0.0.1:{tls}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"ping over tls\n")?;
            c.wait_with_output()
        })
        .expect("openssl s_client");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ping over tls"), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);

    let log = common::eventually("tcplog lines", Duration::from_secs(5), || {
        let log = std::fs::read_to_string(&p.log).unwrap();
        let want = ["quiet quiet/", "slowc slowc/", "slows slows/", "gone gone/", "tlsx tlsx/"];
        want.iter().all(|w| log.contains(w)).then_some(log)
    });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("ballast::tcplog")).collect();
    let line = |proxy: &str, state: &str| -> Vec<String> {
        let found: Vec<_> = lines
            .iter()
            .filter(|l| l.contains(&format!(" {proxy} {proxy}/")) && l.contains(&format!(" {state} ")))
            .map(|l| l.split("] ").skip(1).collect::<Vec<_>>().join("] "))
            .collect();
        assert!(!found.is_empty(), "no {proxy} line with {state}: {log}");
        found
    };
    // %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
    let fields = |l: &str| l.split(' ').map(String::from).collect::<Vec<_>>();
    let clean = line("quiet", "--");
    assert_eq!(clean.len(), 1, "only the connection that moved bytes: {log}");
    let f = fields(&clean[0]);
    assert_eq!(f.len(), 9, "{clean:?}");
    assert!(f[0].starts_with("127.0.0.1:") && f[1].starts_with('[') && f[1].ends_with(']'), "{f:?}");
    assert_eq!((f[2].as_str(), f[3].as_str()), ("quiet", "quiet/e1"));
    let timers: Vec<i64> = f[4].split('/').map(|t| t.parse().unwrap()).collect();
    assert!(timers.len() == 3 && timers.iter().all(|t| *t >= 0), "{f:?}");
    assert_eq!(f[5], "100005", "bytes to the client: {f:?}");
    assert!(f[7].ends_with("/0") && f[8] == "0/0", "{f:?}");
    assert_eq!(line("slowc", "cD").len(), 1);
    assert_eq!(line("slows", "sD").len(), 1);
    let sc = line("gone", "SC");
    let f = fields(&sc[0]);
    assert_eq!(f[3], "gone/d1", "{f:?}");
    assert!(f[4].split('/').nth(1) == Some("-1") && f[5] == "0", "never connected: {f:?}");
    assert!(f[7].ends_with("/2"), "two retries: {f:?}");
    let f = fields(&line("tlsx", "cD")[0]);
    assert_eq!(f[5], "14", "plain bytes back: {f:?}");
}
