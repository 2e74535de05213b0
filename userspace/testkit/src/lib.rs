//! Helpers for the integration tests and the benches (never a dependency of the daemon):
//! crafted frames with correct checksums, network namespaces that clean up after
//! themselves, packet captures on a namespace's interface, and FIB test nets for running
//! the XDP program.
pub mod capture;
pub mod fibnet;
pub mod linearizability;
pub mod netns;
pub mod packet;

pub use netns::{enter, parse_mac, run, sh, spawn_in, Netns};

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
