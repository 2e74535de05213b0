//! Helpers shared by the integration tests: root checks, network namespaces that clean
//! up after themselves, and running code inside a namespace.
#![allow(dead_code)]
#[allow(unused_imports)]
pub use ballast_testkit::{enter, need_root, packet, parse_mac, run, sh, spawn_in, Netns};
pub mod cluster;
pub mod http_backend;
pub mod l7;
pub mod seed;
pub mod servers;
pub mod topo;

/// A loopback port, free for TCP and UDP a moment ago, that the test binds right after
/// (or keeps closed, as a dead server).
///
/// Taken below the kernel's ephemeral range, never from `bind(:0)`: a port that came
/// from there, once released, can become the source port of any outgoing connection
/// of a test running in parallel before the test binds it (an agent failed with
/// "Address already in use" that way in CI). Each test binary counts through its own
/// slice of the range, so its parallel tests never get the same port twice.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768)
        .clamp(22000, 32768);
    // Above the bench ports (19xxx); the slice starts where the process id says.
    let (low, span) = (20000, ephemeral_low - 20000);
    let offset = (std::process::id() % 16) * (span / 16);
    for _ in 0..span {
        let port = (low + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{}", low + span)
}

/// Retries `f` every 100 ms until it gives Some, at most `limit`.
pub fn eventually<T>(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A child process killed (and reaped) when dropped: SIGTERM first, SIGKILL after 10 s.
/// (An agent's graceful leave takes up to about 2.3 s; a loaded CI machine may need more,
/// and a test may check that it left rather than failed.)
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
