//! Starting `ballast proxy -f` on a config written to a temporary file, and what proxy
//! tests put behind or in front of it (certificates, an echo server).
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{free_port, Child};

/// A running `ballast proxy`: its first bind port and its log file.
pub struct Proxy {
    pub port: u16,
    pub _child: Child,
    pub log: std::path::PathBuf,
}

pub fn start_proxy(cfg: &str) -> Proxy {
    start_proxy_args(cfg, &[])
}

/// `ballast proxy -f CFG` with more arguments (`--threads 1`, ...).
pub fn start_proxy_args(cfg: &str, args: &[&str]) -> Proxy {
    let dir = std::env::temp_dir().join(format!("ballast-l7-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let port: u16 =
        cfg.split("bind 127.0.0.1:").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let log = dir.join("proxy.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .args(["proxy", "-f", path.to_str().unwrap()])
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proxy { port, _child: Child(child), log };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "proxy did not start: {}",
            std::fs::read_to_string(&p.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

/// A self-signed ECDSA P-256 certificate for `name`, as one PEM file (chain + key).
pub fn make_cert(dir: &Path, name: &str) -> PathBuf {
    let (crt, key, pem) =
        (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")), dir.join(format!("{name}.pem")));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
        ])
        .args(["-keyout", key.to_str().unwrap(), "-out", crt.to_str().unwrap()])
        .args(["-subj", &format!("/CN={name}"), "-addext", &format!("subjectAltName=DNS:{name}")])
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut both = std::fs::read(&crt).unwrap();
    both.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, both).unwrap();
    pem
}

/// A server that echoes what it reads, and closes its side when the client closes.
pub fn echo_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                loop {
                    match c.read(&mut b) {
                        Ok(0) | Err(_) => {
                            let _ = c.shutdown(std::net::Shutdown::Write);
                            return;
                        }
                        Ok(n) => {
                            if c.write_all(&b[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Starts Debian's HAProxy with `cfg` (listening on `port`); killed on drop.
pub fn start_haproxy(cfg: &str, port: u16) -> Child {
    let path = std::env::temp_dir().join(format!("ballast-hap-{port}.cfg"));
    std::fs::write(&path, cfg).unwrap();
    let c = Child(
        Command::new("haproxy")
            .args(["-db", "-f", path.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "haproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    c
}

/// Whether Debian's haproxy is here; under CI=true it must be (scripts/install.sh).
pub fn have_haproxy() -> bool {
    let ok = Command::new("haproxy").arg("-v").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(ok || std::env::var("CI").as_deref() != Ok("true"), "haproxy missing in CI");
    ok
}
