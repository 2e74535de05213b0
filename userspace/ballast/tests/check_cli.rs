//! `ballast check -f FILE` against `haproxy -c -f FILE` (Debian's HAProxy 2.6) on the seed
//! configurations and on broken ones.
use std::{path::Path, process::Command};

fn run(cmd: &str, file: &Path) -> (bool, String) {
    let mut c = Command::new(cmd);
    if cmd == "haproxy" {
        c.args(["-c", "-f"]);
    } else {
        c.args(["check", "-f"]);
    }
    let out = c.arg(file).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn have_haproxy() -> bool {
    let ok = Command::new("haproxy").arg("-v").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("haproxy is not installed (scripts/install.sh installs it)");
    }
    ok
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../l7/tests/fixtures").join(name)
}

#[test]
fn seed_configs_load_and_legacy_ones_get_file_line_warnings() {
    let ballast = env!("CARGO_BIN_EXE_ballast");
    let (ok, out) = run(ballast, &fixture("seed003-haproxy.cfg"));
    assert!(ok && out.contains("Configuration file is valid"), "{out}");
    for (file, warning) in [
        (
            "seed004-haproxy.cfg",
            "seed004-haproxy.cfg:21: 'contimeout' was removed in HAProxy 2.1; read as 'timeout connect 5000'",
        ),
        ("seed004-lb01.cfg", "seed004-lb01.cfg:6: server 'apache01' has the same name as another server"),
        ("seed004-lb02.cfg", "seed004-lb02.cfg:5: server 'apache01' has the same name as another server"),
    ] {
        let (ok, out) = run(ballast, &fixture(file));
        assert!(ok, "{file}: {out}");
        assert!(out.contains(&format!("[WARNING] {}", fixture("").join(warning).display())), "{file}: {out}");
    }
    if !have_haproxy() {
        eprintln!("haproxy not installed: parity with haproxy -c not checked");
        return;
    }
    // HAProxy 2.6 agrees on the modern config and refuses the legacy ones (which is why
    // ballast loads them with warnings instead).
    assert!(run("haproxy", &fixture("seed003-haproxy.cfg")).0);
    for file in ["seed004-haproxy.cfg", "seed004-lb01.cfg", "seed004-lb02.cfg"] {
        assert!(!run("haproxy", &fixture(file)).0, "haproxy 2.6 accepted {file}");
    }
}

#[test]
fn broken_configs_fail_like_haproxy_with_file_and_line() {
    let ballast = env!("CARGO_BIN_EXE_ballast");
    let dir = std::env::temp_dir().join(format!("ballast-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let head = "defaults\n mode http\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n";
    let cases = [
        ("typo.cfg", "listen x\n bind 127.0.0.1:8080\n balanse roundrobin\n", 8),
        ("nobackend.cfg", "frontend f\n bind 127.0.0.1:8080\n default_backend nope\n", 6),
        ("badaddr.cfg", "listen x\n bind 127.0.0.1:8080\n server s 10.0.0.1:99999\n", 8),
    ];
    let haproxy = have_haproxy();
    for (name, body, line) in cases {
        let f = dir.join(name);
        std::fs::write(&f, format!("{head}{body}")).unwrap();
        let (ok, out) = run(ballast, &f);
        assert!(!ok, "{name}: accepted: {out}");
        assert!(out.contains(&format!("[ALERT] {}:{line}:", f.display())), "{name}: {out}");
        assert!(out.contains("Fatal errors found in configuration."), "{out}");
        if haproxy {
            assert!(!run("haproxy", &f).0, "{name}: haproxy accepted it");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
