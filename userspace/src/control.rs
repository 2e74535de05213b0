//! The runtime control socket of `ballast lb` (like HAProxy's stats socket): one command
//! line in, one JSON document out. `stats` reads the counters, `reload` re-reads the config
//! file and applies the difference.
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::Duration,
};

pub const DEFAULT_SOCKET: &str = "/run/ballast/lb.sock";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("connecting to {path}: {source} (is `ballast lb` running with this --control socket?)")]
    Connect { path: String, source: std::io::Error },
    #[error("talking to {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Sends `command` and returns the reply.
pub fn request(path: &Path, command: &str) -> Result<String, ControlError> {
    let p = path.display().to_string();
    let mut s =
        UnixStream::connect(path).map_err(|source| ControlError::Connect { path: p.clone(), source })?;
    let io = |source| ControlError::Io { path: p.clone(), source };
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
