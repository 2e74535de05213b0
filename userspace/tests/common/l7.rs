//! Starting `ballast proxy -f` on a config written to a temporary file.
use std::{
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
