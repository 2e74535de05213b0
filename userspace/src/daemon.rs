//! The long-running side of `ballast lb` / `ballast decap`: signals, the aya-log pump and
//! the control socket. Everything here is I/O glue around `Dataplane`.
use std::{
    os::{
        fd::{AsRawFd, RawFd},
        unix::net::UnixListener,
    },
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
};

use serde_json::json;

use crate::{control, dataplane::Dataplane, l4config::L4Config};

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM end the loop; SIGHUP asks for a reload.
pub fn install_signal_handlers() {
    unsafe {
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hup as *const () as libc::sighandler_t);
    }
}

pub fn stopping() -> bool {
    STOP.load(Ordering::SeqCst)
}

pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

/// Waits up to `ms` for `fd` to become readable (or for a signal).
pub fn wait_readable(fd: Option<RawFd>, ms: i32) -> bool {
    match fd {
        Some(fd) => {
            let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            unsafe { libc::poll(&mut p, 1, ms) > 0 && p.revents & libc::POLLIN != 0 }
        }
        None => {
            thread::sleep(std::time::Duration::from_millis(ms as u64));
            false
        }
    }
}

/// Re-reads `path` and applies it; the JSON reply of the control socket.
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

/// Serves the control socket on a thread until the process exits.
pub fn serve_control(socket: &Path, dp: Arc<Mutex<Dataplane>>, config: PathBuf) -> std::io::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let cmd = control::read_command(&stream).unwrap_or_default();
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

/// The fd aya-log's ring buffer signals on, if the object has one.
pub fn logger_fd(logger: &Option<aya_log::EbpfLogger<&'static dyn log::Log>>) -> Option<RawFd> {
    logger.as_ref().map(|l| l.as_raw_fd())
}
