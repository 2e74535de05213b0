//! Copying bytes both ways between a client and a server (`mode tcp`, and HTTP/1 Upgrade
//! tunnels) until both sides have closed, one fails, or nothing moves for too long; and
//! how it ended, for the log's termination state.
//!
//! Inactivity is counted as HAProxy counts it by default (no `option
//! independent-streams`): bytes moving either way are activity on both sides, so the
//! relay ends when nothing has moved for the shorter of the two timeouts, blamed on the
//! side that stalled a write, or on that shorter timeout's side when both were quiet.
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::h1::BUF;

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
    pub(super) fn termination(self) -> &'static str {
        match self {
            End::Closed => "--",
            End::ClientFailed => "CD",
            End::ServerFailed => "SD",
            End::ClientTimedOut => "cD",
            End::ServerTimedOut => "sD",
        }
    }
}

/// Bytes relayed: `up` from the client to the server, `down` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Relayed {
    pub up: u64,
    pub down: u64,
    pub end: End,
}

/// Relays until the end (see the module comment). A side that closes has its close passed
/// on (a half-close); the other direction goes on.
pub(super) async fn relay<C, S>(
    client: &mut C,
    server: &mut S,
    client_idle: Duration,
    server_idle: Duration,
) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let idle = client_idle.min(server_idle);
    let quiet = if client_idle <= server_idle { End::ClientTimedOut } else { End::ServerTimedOut };
    let (mut a, mut b) = (vec![0u8; BUF], vec![0u8; BUF]);
    let mut done = Relayed { up: 0, down: 0, end: End::Closed };
    let (mut client_open, mut server_open) = (true, true);
    while client_open || server_open {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = client.read(&mut a), if client_open => (true, r),
                r = server.read(&mut b), if server_open => (false, r),
            }
        })
        .await;
        let Ok((from_client, read)) = step else {
            done.end = quiet;
            break;
        };
        let failed = |from_client| if from_client { End::ClientFailed } else { End::ServerFailed };
        let n = match read {
            Ok(n) => n,
            Err(_) => {
                done.end = failed(from_client);
                break;
            }
        };
        if n == 0 {
            if from_client {
                client_open = false;
            } else {
                server_open = false;
            }
        }
        // The bytes (or the close) go to the other side; a stall there is that side's.
        let (sent, stalled) = if from_client {
            (pass(&mut *server, &a[..n], idle).await, End::ServerTimedOut)
        } else {
            (pass(&mut *client, &b[..n], idle).await, End::ClientTimedOut)
        };
        match sent {
            Ok(Ok(())) => {}
            // A close passed on to a side that is already gone ends nothing.
            Ok(Err(_)) if n == 0 => {}
            Ok(Err(_)) => {
                done.end = failed(!from_client);
                break;
            }
            Err(_) => {
                done.end = stalled;
                break;
            }
        }
        if from_client {
            done.up += n as u64;
        } else {
            done.down += n as u64;
        }
    }
    done
}

/// Writes `bytes` to `to` within `idle`; no bytes: passes the close on.
async fn pass<W: AsyncWrite + Unpin>(
    to: &mut W,
    bytes: &[u8],
    idle: Duration,
) -> Result<std::io::Result<()>, tokio::time::error::Elapsed> {
    if bytes.is_empty() {
        tokio::time::timeout(idle, to.shutdown()).await
    } else {
        tokio::time::timeout(idle, to.write_all(bytes)).await
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
