//! Copying bytes both ways between a client and a server (`mode tcp`, and HTTP/1 Upgrade
//! tunnels) until both sides have closed, one fails, or nothing moves for too long; and
//! how it ended, for the log's termination state.
//!
//! Inactivity is counted as HAProxy counts it by default (no `option
//! independent-streams`): bytes moving either way are activity on both sides. A wait for
//! a side (to read from it, or to write to it) ends after that side's timeout without any
//! byte moving either way, and is blamed on that side; after a half-close only the open
//! direction waits, so only its side's timeout counts.
use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use ballast_l7::termination::{Cause, Phase, Termination};

use crate::conn::BUF;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Both sides closed their half.
    Closed,
    /// A read or write on the client's side failed (reset, typically).
    ClientFailed,
    ServerFailed,
    /// Nothing moved for `timeout client` (or the client did not take bytes in time).
    ClientTimedOut,
    ServerTimedOut,
}

impl End {
    /// HAProxy's two-letter termination state for the data phase.
    pub(super) fn termination(self) -> Termination {
        let cause = match self {
            End::Closed => return Termination::NORMAL,
            End::ClientFailed => Cause::ClientAbort,
            End::ServerFailed => Cause::ServerAbort,
            End::ClientTimedOut => Cause::ClientTimeout,
            End::ServerTimedOut => Cause::ServerTimeout,
        };
        Termination::new(cause, Phase::Data)
    }
}

/// Bytes relayed: `up` from the client to the server, `down` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Relayed {
    pub up: u64,
    pub down: u64,
    pub end: End,
}

/// Relays until the end (see the module comment). The two directions run side by side, so
/// a peer that writes before it reads never blocks the other direction; a side that
/// closes has its close passed on (a half-close) and the other direction goes on.
pub(super) async fn relay<C, S>(client: C, server: S, client_idle: Duration, server_idle: Duration) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut server_r, mut server_w) = tokio::io::split(server);
    let activity = Activity::new();
    let upward = Direction { from_client: true, read_idle: client_idle, write_idle: server_idle };
    let downward = Direction { from_client: false, read_idle: server_idle, write_idle: client_idle };
    let mut up = pin!(copy(&mut client_r, &mut server_w, &activity, upward));
    let mut down = pin!(copy(&mut server_r, &mut client_w, &activity, downward));
    let (mut up_done, mut down_done) = (None, None);
    let mut up_first = false;
    // Both directions to their end, or the first failure (which ends the other too). Each
    // goes first every other time: one that always has bytes cannot use up the task's
    // budget and starve the other.
    poll_fn(|cx| {
        up_first = !up_first;
        if up_first {
            step(up.as_mut(), &mut up_done, cx);
            step(down.as_mut(), &mut down_done, cx);
        } else {
            step(down.as_mut(), &mut down_done, cx);
            step(up.as_mut(), &mut up_done, cx);
        }
        let failed = |d: Option<Copied>| d.is_some_and(|d| d.end.is_some());
        if failed(up_done) || failed(down_done) || (up_done.is_some() && down_done.is_some()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    let end = [up_done, down_done].iter().flatten().find_map(|d| d.end).unwrap_or(End::Closed);
    Relayed { up: activity.bytes(true), down: activity.bytes(false), end }
}

/// Polls one direction unless it is done.
fn step<F: Future<Output = Copied>>(f: Pin<&mut F>, done: &mut Option<Copied>, cx: &mut Context<'_>) {
    if done.is_none() {
        if let Poll::Ready(d) = f.poll(cx) {
            *done = Some(d);
        }
    }
}

/// One direction's setting: who reads from whom, and each side's timeout.
#[derive(Clone, Copy)]
struct Direction {
    from_client: bool,
    read_idle: Duration,
    write_idle: Duration,
}

impl Direction {
    fn source(self, failed: bool) -> End {
        match (self.from_client, failed) {
            (true, true) => End::ClientFailed,
            (true, false) => End::ClientTimedOut,
            (false, true) => End::ServerFailed,
            (false, false) => End::ServerTimedOut,
        }
    }

    fn sink(self, failed: bool) -> End {
        Direction { from_client: !self.from_client, ..self }.source(failed)
    }
}

#[derive(Clone, Copy)]
struct Copied {
    /// None: the source closed and the close was passed on.
    end: Option<End>,
}

/// Copies one direction until its source closes (passing the close on) or something
/// fails. A read waits for the source's timeout and a write for the sink's, each counted
/// from the last byte that moved either way.
async fn copy<R, W>(src: &mut R, dst: &mut W, activity: &Activity, d: Direction) -> Copied
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    loop {
        let n = match activity.within(d.read_idle, src.read(&mut buf)).await {
            Some(Ok(n)) => n,
            // A TLS peer that closes without close_notify: a close like any other.
            Some(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Some(Err(_)) => return Copied { end: Some(d.source(true)) },
            None => return Copied { end: Some(d.source(false)) },
        };
        // A close is activity too: its shutdown gets the sink's whole timeout.
        activity.moved(d.from_client, n);
        if n == 0 {
            // The sink may be gone already: its own direction says so.
            let _ = activity.within(d.write_idle, dst.shutdown()).await;
            return Copied { end: None };
        }
        // Each partial write is activity: a slow reader that keeps taking bytes is not idle.
        let mut off = 0;
        while off < n {
            match activity.within(d.write_idle, dst.write(&buf[off..n])).await {
                Some(Ok(0)) | Some(Err(_)) => return Copied { end: Some(d.sink(true)) },
                Some(Ok(k)) => {
                    off += k;
                    activity.moved(d.from_client, 0);
                }
                None => return Copied { end: Some(d.sink(false)) },
            }
        }
        // Flushed: TLS may hold written bytes until then.
        match activity.within(d.write_idle, dst.flush()).await {
            Some(Ok(())) => {}
            Some(Err(_)) => return Copied { end: Some(d.sink(true)) },
            None => return Copied { end: Some(d.sink(false)) },
        }
    }
}

/// When bytes last moved, either way, and how many each way (shared by the two
/// directions, which run in one task).
struct Activity {
    start: tokio::time::Instant,
    last_ns: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_ns: AtomicU64::new(0),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
        }
    }

    fn moved(&self, from_client: bool, n: usize) {
        self.last_ns.store(self.start.elapsed().as_nanos() as u64, Relaxed);
        (if from_client { &self.up } else { &self.down }).fetch_add(n as u64, Relaxed);
    }

    fn bytes(&self, from_client: bool) -> u64 {
        (if from_client { &self.up } else { &self.down }).load(Relaxed)
    }

    /// `f`, unless nothing moves either way for `idle` first (None).
    async fn within<T>(&self, idle: Duration, f: impl Future<Output = T>) -> Option<T> {
        let mut f = pin!(f);
        // Most reads and writes are ready at once: no timer for them.
        if let Poll::Ready(v) = poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await {
            return Some(v);
        }
        loop {
            let last = self.start + Duration::from_nanos(self.last_ns.load(Relaxed));
            // A timeout too large to add (`timeout tunnel 100000d`) is no timeout.
            let Some(deadline) = last.checked_add(idle) else { return Some(f.await) };
            match tokio::time::timeout_at(deadline, f.as_mut()).await {
                Ok(v) => return Some(v),
                // The other direction moved meanwhile: wait on from its last move.
                Err(_) if self.start + Duration::from_nanos(self.last_ns.load(Relaxed)) > last => {}
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn bytes_both_ways_then_both_closes() {
        let (mut client, mut client_end) = duplex(64);
        let (mut server, mut server_end) = duplex(64);
        let peers = tokio::spawn(async move {
            client_end.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            server_end.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
            server_end.write_all(b"pong!").await.unwrap();
            let mut got = [0u8; 5];
            client_end.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"pong!");
            // The client closes first; the server still sends, then closes.
            client_end.shutdown().await.unwrap();
            let mut rest = Vec::new();
            server_end.read_to_end(&mut rest).await.unwrap();
            server_end.write_all(b"bye").await.unwrap();
            server_end.shutdown().await.unwrap();
            client_end.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"bye");
        });
        let r = relay(&mut client, &mut server, LONG, LONG).await;
        peers.await.unwrap();
        assert_eq!(r, Relayed { up: 4, down: 8, end: End::Closed });
    }

    #[tokio::test(start_paused = true)]
    async fn quiet_sides_end_on_the_shorter_timeout() {
        for (c, s, want) in [(1, 2, End::ClientTimedOut), (3, 2, End::ServerTimedOut)] {
            let (mut client, _client_end) = duplex(64);
            let (mut server, _server_end) = duplex(64);
            let r = relay(&mut client, &mut server, Duration::from_secs(c), Duration::from_secs(s)).await;
            assert_eq!(r.end, want);
        }
    }

    /// A client that does not read stalls the copy: its fault, whatever the timeouts.
    #[tokio::test(start_paused = true)]
    async fn a_client_not_reading_is_the_clients_timeout() {
        let (mut client, _client_end) = duplex(16);
        let (mut server, mut server_end) = duplex(1 << 20);
        server_end.write_all(&[7u8; 4096]).await.unwrap();
        let r = relay(&mut client, &mut server, Duration::from_secs(5), Duration::from_secs(1)).await;
        assert_eq!(r.end, End::ClientTimedOut);
    }

    /// A server that sends its whole answer before reading the upload, and a client that
    /// uploads while it reads: neither direction may wait for the other.
    #[tokio::test]
    async fn directions_do_not_wait_for_each_other() {
        const SIZE: usize = 1 << 20;
        let (mut client, client_end) = duplex(64 * 1024);
        let (mut server, mut server_end) = duplex(64 * 1024);
        let server_task = tokio::spawn(async move {
            server_end.write_all(&vec![1u8; SIZE]).await.unwrap();
            server_end.shutdown().await.unwrap();
            let mut got = Vec::new();
            server_end.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        let (mut from_proxy, mut to_proxy) = tokio::io::split(client_end);
        let writer = tokio::spawn(async move {
            to_proxy.write_all(&vec![2u8; SIZE]).await.unwrap();
            to_proxy.shutdown().await.unwrap();
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            from_proxy.read_to_end(&mut got).await.unwrap();
            got.len()
        });
        let r = relay(&mut client, &mut server, LONG, LONG).await;
        writer.await.unwrap();
        assert_eq!((reader.await.unwrap(), server_task.await.unwrap()), (SIZE, SIZE));
        assert_eq!(r, Relayed { up: SIZE as u64, down: SIZE as u64, end: End::Closed });
    }

    /// After the client's half-close only the server's timeout counts: a slow answer
    /// within it is not cut by the client's shorter one.
    #[tokio::test(start_paused = true)]
    async fn a_half_closed_client_waits_for_the_server() {
        let (mut client, mut client_end) = duplex(64);
        let (mut server, mut server_end) = duplex(64);
        let peers = tokio::spawn(async move {
            client_end.shutdown().await.unwrap();
            let mut got = Vec::new();
            server_end.read_to_end(&mut got).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            server_end.write_all(b"late").await.unwrap();
            server_end.shutdown().await.unwrap();
            client_end.read_to_end(&mut got).await.unwrap();
            got
        });
        let r = relay(&mut client, &mut server, Duration::from_secs(1), Duration::from_secs(30)).await;
        assert_eq!(peers.await.unwrap(), b"late");
        assert_eq!(r, Relayed { up: 0, down: 4, end: End::Closed });
    }

    #[tokio::test]
    async fn a_reset_is_a_failure_of_that_side() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut client, _) = l.accept().await.unwrap();
        // Closing with linger 0 sends a reset (and, with 0, does not block the drop that
        // tokio's deprecation warns about).
        #[allow(deprecated)]
        peer.set_linger(Some(Duration::ZERO)).unwrap();
        drop(peer);
        let (mut server, _server_end) = duplex(64);
        let r = relay(&mut client, &mut server, LONG, LONG).await;
        assert_eq!(r, Relayed { up: 0, down: 0, end: End::ClientFailed });
    }
}
