//! Active health checks: every `inter`, a TCP connect or, with `option httpchk`, an HTTP
//! request judged by `http-check expect`; results feed the rise/fall state machine.
use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::state::{BackendRt, ServerRt};
use ballast_l7::{
    haproxy::model::{Expect, HttpCheck},
    health::Transition,
};

/// The check's request: the configured line, headers (`http-check send hdr`, which may
/// replace Host) and body.
fn check_request(chk: &HttpCheck, addr: std::net::SocketAddr) -> String {
    let mut req = format!("{} {} {}\r\n", chk.method, chk.uri, chk.version);
    let has = |name: &str| chk.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in &chk.headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if !has("user-agent") {
        req.push_str("User-Agent: ballast-check\r\n");
    }
    if !chk.body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", chk.body.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(&chk.body);
    req
}

/// One check; Ok(description) when it passed, Err(description) when it failed.
pub async fn check_once(
    server: &ServerRt,
    httpchk: Option<&HttpCheck>,
    timeout: Duration,
) -> Result<String, String> {
    let addr = server.cfg.addr;
    let conn = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
    let mut s = match conn {
        Err(_) => return Err("L4TOUT".into()),
        Ok(Err(e)) => return Err(format!("L4CON {e}")),
        Ok(Ok(s)) => s,
    };
    let Some(chk) = httpchk else { return Ok("L4OK".into()) };
    let req = check_request(chk, addr);
    let io = async {
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        // Enough to see the status line and the start of the body.
        while buf.len() < 16384 {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = match tokio::time::timeout(timeout, io).await {
        Err(_) => return Err("L7TOUT".into()),
        Ok(Err(e)) => return Err(format!("L7RSP {e}")),
        Ok(Ok(b)) => b,
    };
    let text = String::from_utf8_lossy(&buf);
    let status: Option<u16> =
        text.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok());
    let Some(code) = status else { return Err("L7RSP invalid response".into()) };
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let ok = match &chk.expect {
        Expect::Status2xx3xx => (200..400).contains(&code),
        Expect::Status { ranges, negate } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code)) != *negate
        }
        Expect::String { needle, negate } => body.contains(needle.as_str()) != *negate,
        // Checked when the configuration was read: a pattern that does not compile never
        // gets here; should one, the check fails rather than passes.
        Expect::RStatus { pattern, negate } => {
            regex::Regex::new(pattern).is_ok_and(|r| r.is_match(&code.to_string()) != *negate)
        }
        Expect::RString { pattern, negate } => regex::Regex::new(pattern).is_ok_and(|r| r.is_match(body) != *negate),
    };
    if ok {
        Ok(format!("L7OK {code}"))
    } else {
        Err(format!("L7STS {code}"))
    }
}

/// Runs the checks of every `check` server of `be` until the task is dropped.
pub fn spawn(be: Arc<BackendRt>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for server in be.servers.iter().filter(|s| s.cfg.check).cloned() {
        let be = be.clone();
        tasks.push(tokio::spawn(async move {
            let timeout = be
                .cfg
                .settings
                .timeouts
                .check
                .unwrap_or(server.cfg.inter)
                .min(server.cfg.inter.max(Duration::from_millis(100)));
            loop {
                let r = check_once(&server, be.cfg.settings.httpchk.as_ref(), timeout).await;
                let ok = r.is_ok();
                let text = match &r {
                    Ok(t) | Err(t) => t.clone(),
                };
                if !ok {
                    server.chkfail.fetch_add(1, Relaxed);
                }
                *server.last_check.lock().unwrap_or_else(|p| p.into_inner()) = text.clone();
                let change = server.health.lock().unwrap_or_else(|p| p.into_inner()).observe(ok);
                if let Some(t) = change {
                    *server.last_change.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    let up = be.up_servers();
                    match t {
                        Transition::WentDown => {
                            server.chkdown.fetch_add(1, Relaxed);
                            log::warn!(
                                "Server {}/{} is DOWN, reason: {text}. {up} active servers left.",
                                be.cfg.name,
                                server.cfg.name
                            );
                        }
                        Transition::WentUp => {
                            log::warn!(
                                "Server {}/{} is UP, reason: {text}. {up} active servers online.",
                                be.cfg.name,
                                server.cfg.name
                            )
                        }
                    }
                }
                tokio::time::sleep(server.cfg.inter).await;
            }
        }));
    }
    tasks
}
