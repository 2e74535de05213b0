//! The stats page as a person sees it: rendered by headless Chromium (Debian's), with the
//! DOM checked for the proxy, its servers and their states, and a screenshot saved.
mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{free_port, http_backend, Child};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().map(|o| o.status.success()).unwrap_or(false))
}

#[test]
fn stats_page_renders_in_a_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium missing in CI (scripts/install.sh installs it)"
        );
        eprintln!("skipping: chromium not installed");
        return;
    };
    let up = http_backend::start("s1");
    let dead = free_port();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("ballast-browser-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = format!(
        "defaults\n    mode http\n    timeout connect 300ms\n    timeout client 5s\n    timeout server 5s\n\
         listen web\n    bind 127.0.0.1:{port}\n    stats uri /haproxy_stats\n    option httpchk GET /health\n\
         server alive {} check inter 1000 rise 1 fall 3\n    server gone 127.0.0.1:{dead} check inter 200 rise 1 fall 1\n",
        up.addr
    );
    std::fs::write(dir.join("h.cfg"), cfg).unwrap();
    let _proxy = Child(
        Command::new(env!("CARGO_BIN_EXE_ballast"))
            .args(["proxy", "-f", dir.join("h.cfg").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(50));
    }
    // The page is rendered once both servers show their state (a check times out after
    // `inter`: the live one gets 1 s and fall 3 so that chromium starting up on a busy
    // machine cannot take it down).
    let status = |server: &str| {
        let out = Command::new("curl")
            .args(["-s", "-m", "5", &format!("http://127.0.0.1:{port}/haproxy_stats;csv")])
            .output()
            .expect("curl");
        let csv = String::from_utf8_lossy(&out.stdout).into_owned();
        let row = csv.lines().find(|l| l.starts_with(&format!("web,{server},")))?;
        row.split(',').nth(17).map(String::from)
    };
    common::eventually("alive UP and gone DOWN", Duration::from_secs(20), || {
        (status("alive").as_deref() == Some("UP") && status("gone").as_deref() == Some("DOWN")).then_some(())
    });
    for _ in 0..5 {
        let _ = Command::new("curl")
            .args(["-s", "-o", "/dev/null", &format!("http://127.0.0.1:{port}/")])
            .status();
    }
    let url = format!("http://127.0.0.1:{port}/haproxy_stats");
    let common_args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ];
    let profile = dir.join("profile");
    let run = |extra: &[&str]| {
        Command::new(browser)
            .args(common_args)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium")
    };
    let dom = String::from_utf8_lossy(&run(&["--dump-dom"]).stdout).into_owned();
    assert!(dom.contains("ballast statistics"), "{dom}");
    assert!(dom.contains("<h2>web</h2>"), "{dom}");
    assert!(dom.contains("<tr class=\"up\"><td class=\"n\">alive</td><td>UP</td>"), "{dom}");
    assert!(dom.contains("<tr class=\"down\"><td class=\"n\">gone</td><td>DOWN</td>"), "{dom}");
    assert!(dom.contains("L4CON"), "last check of the dead server: {dom}");
    let shot = dir.join("stats.png");
    run(&["--window-size=1200,500", &format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 5000, "screenshot of {} bytes", png.len());
    println!("screenshot: {}", shot.display());
}
