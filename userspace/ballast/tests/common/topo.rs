//! The namespace topology of scripts/topo.sh (client, lb, switch, backends), torn down on
//! drop, with the `ballast` processes that run in it.
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{sh, Child};

pub fn script() -> String {
    format!("{}/../../scripts/topo.sh", env!("CARGO_MANIFEST_DIR"))
}

pub fn ballast_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ballast")
}

pub struct Topo {
    pub prefix: String,
    pub backends: usize,
    pub dir: PathBuf,
}

impl Topo {
    pub fn up(tag: &str, backends: usize) -> Topo {
        // Short: interface-free names, but `ip netns list` output stays readable.
        let prefix = format!("{tag}{}", std::process::id() % 100000);
        let dir = std::env::temp_dir().join(format!("ballast-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t = Topo { prefix, backends, dir };
        sh(&["bash", &script(), "up", &t.prefix, &backends.to_string()]);
        t
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    pub fn backend_ns(&self, i: usize) -> String {
        format!("{}b{i}", self.prefix)
    }

    pub fn vips_on_backends(&self, addrs: &[&str]) {
        let mut args = vec!["bash".to_string(), script(), "vips".into(), self.prefix.clone()];
        args.extend(addrs.iter().map(|s| s.to_string()));
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        sh(&a);
    }

    /// Starts `ballast ARGS` inside namespace `ns`; its output goes to DIR/LOG.
    pub fn ballast(&self, ns: &str, log: &str, args: &[&str]) -> Child {
        let out = std::fs::File::create(self.dir.join(log)).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, ballast_bin()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn ballast");
        Child(child)
    }

    pub fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(log)).unwrap_or_default()
    }

    /// Waits (bounded) until a `ballast lb` answers `ballast stats` on `socket`.
    pub fn wait_for_lb(&self, socket: &std::path::Path) {
        self.wait_for("ballast lb to serve its control socket", 20, || {
            Command::new(ballast_bin())
                .args(["stats", "--control", socket.to_str().unwrap()])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
    }

    /// Waits (bounded) until `check` is true.
    pub fn wait_for(&self, what: &str, secs: u64, mut check: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {secs}s waiting for {what}");
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        let _ = Command::new("bash").args([&script(), "down", &self.prefix]).status();
    }
}
