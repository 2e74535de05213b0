//! Network namespaces that clean up after themselves, and running code inside one.
use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sh` from a whitespace-separated string (no quoting needed in our commands).
pub fn run(cmd: &str) -> String {
    let args: Vec<&str> = cmd.split_whitespace().collect();
    sh(&args)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted (with every interface in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("bl{}-{tag}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec("ip link set lo up");
        ns
    }

    /// Runs `cmd` inside the namespace.
    pub fn exec(&self, cmd: &str) -> String {
        let mut args = vec!["ip", "netns", "exec", &self.name];
        args.extend(cmd.split_whitespace());
        sh(&args)
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it opens live there).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        enter(&self.name, f)
    }

    pub fn ifindex(&self, dev: &str) -> u32 {
        let dev = dev.to_string();
        self.enter(move || {
            let c = std::ffi::CString::new(dev.clone()).unwrap();
            let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
            assert!(i != 0, "no interface {dev}");
            i
        })
    }

    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let out = self.exec(&format!("cat /sys/class/net/{dev}/address"));
        parse_mac(out.trim())
    }
}

/// Runs `f` on a thread inside the named namespace.
pub fn enter<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(move || {
            enter_path(&path);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Spawns a long-lived thread inside the named namespace (servers for e2e tests).
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        enter_path(&path);
        f()
    })
}

fn enter_path(path: &str) {
    let fd = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        panic!("setns {path}: {}", std::io::Error::last_os_error());
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.split(':').enumerate() {
        m[i] = u8::from_str_radix(p, 16).unwrap();
    }
    m
}
