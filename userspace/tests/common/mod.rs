//! Helpers shared by the integration tests: root checks, network namespaces that clean
//! up after themselves, and running code inside a namespace.
#![allow(dead_code)]
#[allow(unused_imports)]
pub use ballast::testkit::{enter, packet, parse_mac, run, sh, spawn_in, Netns};
pub mod cluster;
pub mod http_backend;
pub mod l7;
pub mod servers;
pub mod topo;

/// True when the test can run. Without root it skips with a reason, except under
/// CI=true, where tests that need root must run.
pub fn need_root(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root (BPF, network namespaces); under CI=true it must run, not skip");
    }
    eprintln!("skipping {test}: needs root (BPF, network namespaces)");
    false
}

/// A loopback port that was free a moment ago (tests bind it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (and reaped) when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
