//! The admin socket of `ballast lb` (like HAProxy's stats socket): one command line in,
//! one JSON document out. `stats` reads the counters, `reload` re-reads the config file
//! and applies the difference. The client side is what `ballast stats` and `ballast
//! reload` use.
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use serde_json::json;

use crate::{config::L4Config, dataplane::Dataplane};

pub const DEFAULT_SOCKET: &str = "/run/ballast/lb.sock";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("connecting to {path}: {source} (is `ballast lb` running with this --control socket?)")]
    Connect { path: String, source: std::io::Error },
    #[error("talking to {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Sends `command` and returns the reply.
pub fn request(path: &Path, command: &str) -> Result<String, AdminError> {
    let p = path.display().to_string();
    let mut s =
        UnixStream::connect(path).map_err(|source| AdminError::Connect { path: p.clone(), source })?;
    let io = |source| AdminError::Io { path: p.clone(), source };
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(io)?;
    s.write_all(command.as_bytes()).and_then(|_| s.write_all(b"\n")).map_err(io)?;
    s.shutdown(std::net::Shutdown::Write).map_err(io)?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(io)?;
    Ok(out)
}

/// Reads one command line (bounded, so a client cannot make the daemon buffer forever).
pub fn read_command(stream: &UnixStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.take(256)).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Re-reads `path` and applies it; the JSON reply of the admin socket.
pub fn reload(dp: &Mutex<Dataplane>, path: &Path) -> serde_json::Value {
    let cfg = match L4Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("reload refused, nothing changed: {e}");
            return json!({ "ok": false, "error": e.to_string() });
        }
    };
    let mut dp = dp.lock().unwrap_or_else(|p| p.into_inner());
    match dp.apply(cfg) {
        Ok(summary) => {
            crate::neighbours::warm(dp.backend_addrs());
            log::info!("reloaded {}: {summary:?}", path.display());
            json!({ "ok": true, "summary": summary })
        }
        Err(e) => {
            log::error!("reload failed: {e}");
            json!({ "ok": false, "error": e.to_string() })
        }
    }
}

/// Serves the admin socket on a thread until the process exits.
pub fn serve(socket: &Path, dp: Arc<Mutex<Dataplane>>, config: PathBuf) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let cmd = read_command(&stream).unwrap_or_default();
            let reply = match cmd.as_str() {
                "stats" => {
                    let dp = dp.lock().unwrap_or_else(|p| p.into_inner());
                    match dp.stats() {
                        Ok(s) => {
                            serde_json::to_value(s).unwrap_or_else(|e| json!({ "error": e.to_string() }))
                        }
                        Err(e) => json!({ "error": e.to_string() }),
                    }
                }
                "reload" => reload(&dp, &config),
                other => {
                    json!({ "error": format!("unknown command {other:?}; try stats or reload") })
                }
            };
            let _ = std::io::Write::write_all(&mut stream, reply.to_string().as_bytes());
        }
    });
    Ok(())
}
