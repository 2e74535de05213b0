//! One lifecycle for every daemon of the binary (`agent`, `lb`, `proxy`, `decap`, `pass`):
//! one tokio runtime, SIGTERM and SIGINT stop gracefully, SIGHUP asks for a reload, and
//! readiness is reported one way (a log line, and `READY=1` to systemd when it started
//! the process with `Type=notify`).
use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// What the operator asked of a running daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// SIGHUP: re-read the configuration and apply the difference.
    Reload,
    /// SIGTERM or SIGINT: stop gracefully.
    Stop,
}

/// The daemon's runtime: `workers` threads (the proxy moves its traffic to threads of its
/// own and needs only one here).
/// Raises the soft limit on open files to the hard one, as HAProxy and nginx do: a
/// proxy holds two descriptors per connection, and a default soft limit of 1024 would
/// refuse connections long before any configured maxconn.
pub fn raise_open_file_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a struct this function owns.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                log::warn!("raising the open-file limit to {}: {}", r.rlim_max, std::io::Error::last_os_error());
            }
        }
    }
}

pub fn runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// The signals a daemon answers; made inside the runtime, before the daemon reports ready,
/// so no signal between the two is lost to the default action.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub fn install() -> Result<Signals> {
        let handler = |kind| signal(kind).context("installing a signal handler");
        Ok(Signals {
            term: handler(SignalKind::terminate())?,
            int: handler(SignalKind::interrupt())?,
            hup: handler(SignalKind::hangup())?,
        })
    }

    /// The next event.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.term.recv() => Event::Stop,
            _ = self.int.recv() => Event::Stop,
            _ = self.hup.recv() => Event::Reload,
        }
    }

    /// Waits for a stop; a daemon with nothing to reload says so on SIGHUP.
    pub async fn stopped(mut self, what: &str) {
        while self.next().await == Event::Reload {
            log::info!("SIGHUP: {what} has nothing to reload");
        }
    }
}

/// Reports the daemon ready: a log line, and `READY=1` on systemd's notify socket when
/// there is one (a unit with `Type=notify` waits for it).
pub fn ready(what: &str) {
    log::info!("{what} ready");
    notify_systemd("READY=1");
}

/// Tells systemd the daemon is stopping, so it does not count the exit as a failure.
pub fn stopping() {
    notify_systemd("STOPPING=1");
}

fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else { return };
    let bytes = path.as_encoded_bytes();
    // A leading '@' names a socket in the abstract namespace.
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        log::warn!("telling systemd {state}: {e}");
    }
}
