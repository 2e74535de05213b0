//! Health checks of the L4 backends this device forwards to (the proxy checks its L7
//! servers itself): a TCP connect, or an HTTP GET of the listener's check path answered
//! 2xx or 3xx, every `interval`, with HAProxy's rise and fall. Each device checks from
//! where it stands, so a backend it cannot reach leaves its own maps only.
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};

use ballast_l7::health::{Health, Transition};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
    task::JoinHandle,
};

use crate::desired::Check;

/// The checks running, and the set of those failing, which `down` watches.
pub struct Checker {
    running: HashMap<Check, JoinHandle<()>>,
    failing: Arc<Mutex<BTreeSet<Check>>>,
    tx: watch::Sender<BTreeSet<Check>>,
}

impl Checker {
    pub fn new() -> (Checker, watch::Receiver<BTreeSet<Check>>) {
        let (tx, rx) = watch::channel(BTreeSet::new());
        (Checker { running: HashMap::new(), failing: Arc::default(), tx }, rx)
    }

    /// Runs exactly `checks`: new ones start (their backend counted up, as HAProxy
    /// starts its servers), gone ones stop and are forgotten.
    pub fn set(&mut self, checks: &BTreeSet<Check>) {
        self.running.retain(|c, task| {
            let keep = checks.contains(c);
            if !keep {
                task.abort();
            }
            keep
        });
        let forgot = {
            let mut f = self.failing.lock().unwrap_or_else(|p| p.into_inner());
            let before = f.len();
            f.retain(|c| checks.contains(c));
            (before != f.len()).then(|| f.clone())
        };
        if let Some(now) = forgot {
            self.tx.send_replace(now);
        }
        for c in checks {
            if !self.running.contains_key(c) {
                let task = tokio::spawn(run(c.clone(), self.failing.clone(), self.tx.clone()));
                self.running.insert(c.clone(), task);
            }
        }
    }
}

impl Checker {
    /// The checks running.
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.running.keys()
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        for task in self.running.values() {
            task.abort();
        }
    }
}

async fn run(c: Check, failing: Arc<Mutex<BTreeSet<Check>>>, tx: watch::Sender<BTreeSet<Check>>) {
    let every = Duration::from_millis(u64::from(c.interval_ms.max(100)));
    // A check takes at most the interval (and never more than HAProxy's default
    // `timeout check`-like bound of a few seconds).
    let limit = every.min(Duration::from_secs(5));
    let mut health = Health::new(c.rise, c.fall);
    loop {
        tokio::time::sleep(every).await;
        let ok = matches!(tokio::time::timeout(limit, probe(&c)).await, Ok(Ok(())));
        let Some(t) = health.observe(ok) else { continue };
        let now = {
            let mut f = failing.lock().unwrap_or_else(|p| p.into_inner());
            match t {
                Transition::WentDown => f.insert(c.clone()),
                Transition::WentUp => f.remove(&c),
            };
            f.clone()
        };
        log::info!("L4 backend {} is {}", c.addr, if t == Transition::WentUp { "UP" } else { "DOWN" });
        tx.send_replace(now);
    }
}

async fn probe(c: &Check) -> std::io::Result<()> {
    let mut s = TcpStream::connect(c.addr).await?;
    let Some(path) = &c.path else { return Ok(()) };
    // host:port, an IPv6 address in brackets (RFC 9110's Host syntax).
    let host = c.addr;
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: ballast-check\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    // The status line is all that is read: "HTTP/1.x NNN".
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await?;
    let status = std::str::from_utf8(&head[9..12]).ok().and_then(|t| t.parse::<u16>().ok());
    match status {
        Some(200..=399) if head.starts_with(b"HTTP/1.") => Ok(()),
        _ => Err(std::io::Error::other("bad status")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that accepts, then stops accepting: the backend goes down after `fall`
    /// failed checks and up again after `rise` good ones.
    #[tokio::test]
    async fn a_backend_goes_down_and_up_with_its_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let c = Check { addr, path: None, interval_ms: 100, rise: 2, fall: 2 };
        let (mut checker, mut down) = Checker::new();
        checker.set(&[c.clone()].into());
        // Nothing listens: down after two failures.
        tokio::time::timeout(Duration::from_secs(10), down.wait_for(|d| d.contains(&c))).await.unwrap().unwrap();
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let accept = tokio::spawn(async move {
            loop {
                let _ = l.accept().await;
            }
        });
        tokio::time::timeout(Duration::from_secs(10), down.wait_for(|d| d.is_empty())).await.unwrap().unwrap();
        accept.abort();
        // A check no longer wanted is forgotten.
        checker.set(&BTreeSet::new());
        assert!(down.borrow().is_empty());
    }

    #[tokio::test]
    async fn an_http_check_wants_2xx_or_3xx() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let status = Arc::new(Mutex::new("500 Oops"));
        let s2 = status.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut c, _)) = l.accept().await else { return };
                let mut buf = [0u8; 512];
                let _ = c.read(&mut buf).await;
                let line = format!("HTTP/1.0 {}\r\n\r\n", s2.lock().unwrap());
                let _ = c.write_all(line.as_bytes()).await;
            }
        });
        let c = Check { addr, path: Some("/health".into()), interval_ms: 100, rise: 1, fall: 1 };
        assert!(probe(&c).await.is_err());
        *status.lock().unwrap() = "302 Found";
        assert!(probe(&c).await.is_ok());
        server.abort();
    }
}
