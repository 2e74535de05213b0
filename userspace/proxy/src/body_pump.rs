//! The rest of a request body, forwarded from the client to the server while the proxy
//! waits for the server's response and sends it back. A server may answer before it has
//! read the whole body (413, 401, a redirect) or stream its answer as it reads (an echo,
//! a transcoder): sending the whole body first would hold the first kind's answer until
//! the body is out (or lose it when the server stops reading) and deadlock the second
//! once both directions' socket buffers are full. HAProxy forwards both ways at once too.
use std::{
    future::{poll_fn, Future},
    pin::{pin, Pin},
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    net::TcpStream,
};

use crate::conn::BUF;
use ballast_l7::{
    http1::Chunked,
    termination::{Cause, Phase, Termination},
};

/// How the body's end is found.
enum Framing {
    /// Bytes still to come.
    Length(u64),
    Chunked(Chunked),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Progress {
    Sending,
    /// The whole body went to the server.
    Sent,
    /// Writing to the server failed (it closed, typically after answering early): the
    /// rest of the body is not sent; its response may still be read.
    ServerGone,
}

/// The client's body ended early: it went away (`Closed`), sent nothing for `timeout
/// client` (`TimedOut`), or sent a body whose chunk framing is broken (`Invalid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientGone {
    Closed,
    TimedOut,
    Invalid,
}

impl ClientGone {
    /// HAProxy's termination state: `CD` for a client abort in the data phase, `cD` for
    /// a client timeout there; a body the proxy refused is `PH` while the server's
    /// response head is awaited, `PD` once it came (as HAProxy 2.6 logs them).
    pub(super) fn termination(self, response_started: bool) -> Termination {
        match self {
            ClientGone::Closed => Termination::new(Cause::ClientAbort, Phase::Data),
            ClientGone::TimedOut => Termination::new(Cause::ClientTimeout, Phase::Data),
            ClientGone::Invalid if response_started => Termination::new(Cause::Proxy, Phase::Data),
            ClientGone::Invalid => Termination::new(Cause::Proxy, Phase::Headers),
        }
    }

    /// Counted as the frontend's request error (ereq); going away is not.
    pub(super) fn is_request_error(self) -> bool {
        self == ClientGone::Invalid
    }
}

pub(super) struct BodyPump {
    framing: Framing,
    /// Bytes at the front of the client buffer that belong to the body, not yet written.
    ready: usize,
    progress: Progress,
    /// Set when bytes moved in the last poll (the inactivity timer starts again).
    moved: bool,
    /// The last poll waits for the client (else for the server to take bytes).
    waits_for_client: bool,
    /// Waiting for the client's bytes: `timeout client`; for the server: `timeout server`.
    client_timeout: Duration,
    server_timeout: Duration,
}

impl BodyPump {
    /// A body of which `left` bytes (by length) are still to come.
    pub(super) fn by_length(left: u64, client_timeout: Duration, server_timeout: Duration) -> BodyPump {
        BodyPump::new(Framing::Length(left), client_timeout, server_timeout)
    }

    /// A chunked body, `chunked` having read what was sent so far.
    pub(super) fn chunked(chunked: Chunked, client_timeout: Duration, server_timeout: Duration) -> BodyPump {
        BodyPump::new(Framing::Chunked(chunked), client_timeout, server_timeout)
    }

    fn new(framing: Framing, client_timeout: Duration, server_timeout: Duration) -> BodyPump {
        let mut p = BodyPump {
            framing,
            ready: 0,
            progress: Progress::Sending,
            moved: false,
            waits_for_client: true,
            client_timeout,
            server_timeout,
        };
        if p.complete() {
            p.progress = Progress::Sent;
        }
        p
    }

    pub(super) fn progress(&self) -> Progress {
        self.progress
    }

    /// Bytes moved in the last `poll_send`.
    pub(super) fn moved(&self) -> bool {
        self.moved
    }

    /// How long a wait may last: `timeout client` while waiting for the client's bytes,
    /// else `timeout server`.
    pub(super) fn timeout(&self, for_client: bool) -> Duration {
        if for_client {
            self.client_timeout
        } else {
            self.server_timeout
        }
    }

    /// The last `poll_send` waits for the client's bytes (not for the server to take some).
    pub(super) fn waits_for_client(&self) -> bool {
        self.progress == Progress::Sending && self.waits_for_client
    }

    /// All of the body has been read from the client (some may not be written yet).
    fn complete(&self) -> bool {
        match &self.framing {
            Framing::Length(left) => *left == 0,
            Framing::Chunked(c) => c.done(),
        }
    }

    /// Moves body bytes from the client to the server until one of them would wait.
    /// Ready when nothing is left to do (the body is sent, or the server stopped taking
    /// it: see `state`). `moved` says whether bytes moved.
    pub(super) fn poll_send<S: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut S,
        buf: &mut BytesMut,
        up: &mut TcpStream,
    ) -> Poll<Result<(), ClientGone>> {
        self.moved = false;
        loop {
            if self.progress != Progress::Sending {
                return Poll::Ready(Ok(()));
            }
            if self.ready > 0 {
                match Pin::new(&mut *up).poll_write(cx, &buf[..self.ready]) {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        buf.advance(n);
                        self.ready -= n;
                        self.moved = true;
                        if self.ready == 0 && self.complete() {
                            self.progress = Progress::Sent;
                        }
                    }
                    Poll::Ready(_) => self.progress = Progress::ServerGone,
                    Poll::Pending => {
                        self.waits_for_client = false;
                        return Poll::Pending;
                    }
                }
                continue;
            }
            if !buf.is_empty() && !self.complete() {
                self.ready = match &mut self.framing {
                    Framing::Length(left) => {
                        let k = (*left).min(buf.len() as u64);
                        *left -= k;
                        k as usize
                    }
                    Framing::Chunked(c) => c.feed(buf, None).map_err(|_| ClientGone::Invalid)?,
                };
                if self.ready > 0 {
                    continue;
                }
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(BUF);
            }
            // A read future polled once and dropped: it holds no state between polls.
            match pin!(client.read_buf(buf)).poll(cx) {
                Poll::Ready(Ok(n)) if n > 0 => self.moved = true,
                Poll::Ready(_) => return Poll::Ready(Err(ClientGone::Closed)),
                Poll::Pending => {
                    self.waits_for_client = true;
                    return Poll::Pending;
                }
            }
        }
    }

    /// Reads what the server sends into `sbuf` (`Ok(Ok(0))`: it closed), sending the body
    /// meanwhile. Nothing moving either way for `timeout client` (while waiting for the
    /// client's bytes) or `timeout server` (else) ends the wait: a client timeout as
    /// `ClientGone`, a server one as a `TimedOut` error.
    pub(super) async fn read_server<S: AsyncRead + Unpin>(
        &mut self,
        up: &mut TcpStream,
        sbuf: &mut BytesMut,
        client: &mut S,
        buf: &mut BytesMut,
    ) -> Result<std::io::Result<usize>, ClientGone> {
        let read = self.wait(up, sbuf, client, buf, false).await?;
        Ok(read.unwrap_or(Ok(0)))
    }

    /// After a complete early answer from a server that keeps the connection: sends the
    /// rest of the body (the server reads it), as HAProxy does. Anything the server sends
    /// meanwhile stops it (and is left in `sbuf`); the client failing stops it too, and
    /// says how (the state tells whether the body all went).
    pub(super) async fn send_rest<S: AsyncRead + Unpin>(
        &mut self,
        up: &mut TcpStream,
        sbuf: &mut BytesMut,
        client: &mut S,
        buf: &mut BytesMut,
    ) -> Result<(), ClientGone> {
        self.wait(up, sbuf, client, buf, true).await.map(|_| ())
    }

    /// `read_server`, or with `until_sent` also done (None) when the body is all sent.
    async fn wait<S: AsyncRead + Unpin>(
        &mut self,
        up: &mut TcpStream,
        sbuf: &mut BytesMut,
        client: &mut S,
        buf: &mut BytesMut,
        until_sent: bool,
    ) -> Result<Option<std::io::Result<usize>>, ClientGone> {
        if sbuf.capacity() - sbuf.len() < 1024 {
            sbuf.reserve(BUF);
        }
        let mut timer = pin!(tokio::time::sleep(self.server_timeout));
        // Whom the timer waits for, once set.
        let mut armed_for: Option<bool> = None;
        poll_fn(|cx| {
            let sent = self.poll_send(cx, client, buf, up);
            // What the server said comes first, even when the client failed meanwhile (a
            // 413 then a bad chunk): the failure shows again at the next poll.
            if let Poll::Ready(r) = pin!(up.read_buf(sbuf)).poll(cx) {
                return Poll::Ready(Ok(Some(r)));
            }
            if until_sent && self.progress != Progress::Sending {
                return Poll::Ready(Ok(None));
            }
            let for_client = match sent {
                Poll::Ready(Err(gone)) => return Poll::Ready(Err(gone)),
                Poll::Ready(Ok(())) => false,
                Poll::Pending => self.waits_for_client,
            };
            if self.moved || armed_for != Some(for_client) {
                armed_for = Some(for_client);
                timer.as_mut().reset(tokio::time::Instant::now() + self.timeout(for_client));
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) if for_client => Poll::Ready(Err(ClientGone::TimedOut)),
                Poll::Ready(()) => Poll::Ready(Ok(Some(Err(std::io::ErrorKind::TimedOut.into())))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (b, _) = l.accept().await.unwrap();
        (a, b)
    }

    const T: Duration = Duration::from_secs(5);

    /// A pump between a client and a server on loopback: the test plays `client_side` and
    /// `server`, the pump the proxy's ends of both.
    struct Rig {
        client_side: TcpStream,
        client: TcpStream,
        up: TcpStream,
        server: TcpStream,
        buf: BytesMut,
        sbuf: BytesMut,
        pump: BodyPump,
    }

    impl Rig {
        async fn new(pump: BodyPump) -> Rig {
            let (client_side, client) = pair().await;
            let (up, server) = pair().await;
            Rig { client_side, client, up, server, buf: BytesMut::new(), sbuf: BytesMut::new(), pump }
        }

        async fn read_server(&mut self) -> Result<std::io::Result<usize>, ClientGone> {
            let Rig { client, up, buf, sbuf, pump, .. } = self;
            pump.read_server(up, sbuf, client, buf).await
        }
    }

    /// The server answers while the body is still coming: the answer is read at once and
    /// the body keeps flowing to it.
    #[tokio::test]
    async fn answer_read_while_body_flows() {
        let mut r = Rig::new(BodyPump::by_length(10, T, T)).await;
        r.server.write_all(b"early").await.unwrap();
        r.client_side.write_all(b"0123").await.unwrap();
        let n = r.read_server().await.unwrap().unwrap();
        assert_eq!(&r.sbuf[..n], b"early");
        r.client_side.write_all(b"456789next").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            let _ = tokio::time::timeout(Duration::from_millis(50), r.read_server()).await;
            let mut b = [0u8; 64];
            if let Ok(Ok(k)) = tokio::time::timeout(Duration::from_millis(50), r.server.read(&mut b)).await {
                got.extend_from_slice(&b[..k]);
            }
        }
        assert_eq!(got, b"0123456789");
        assert_eq!(r.pump.progress(), Progress::Sent);
        // What follows the body stays for the next request.
        assert_eq!(&r.buf[..], b"next");
    }

    #[tokio::test]
    async fn chunked_body_ends_at_its_last_chunk() {
        let mut r = Rig::new(BodyPump::chunked(Chunked::default(), T, T)).await;
        r.client_side.write_all(b"3\r\nabc\r\n0\r\n\r\nGET").await.unwrap();
        r.server.write_all(b"x").await.unwrap();
        // The server's byte may come first: read until the body is out.
        while r.pump.progress() == Progress::Sending {
            r.read_server().await.unwrap().unwrap();
            r.server.write_all(b"x").await.unwrap();
        }
        let mut b = vec![0u8; 13];
        r.server.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(&r.buf[..], b"GET");
    }

    #[test]
    fn termination_states_are_haproxys() {
        let states = |started| {
            [ClientGone::Closed, ClientGone::TimedOut, ClientGone::Invalid]
                .map(|g| g.termination(started).http().to_string())
        };
        assert_eq!(states(false), ["CD--", "cD--", "PH--"]);
        assert_eq!(states(true), ["CD--", "cD--", "PD--"]);
        assert!(ClientGone::Invalid.is_request_error());
        assert!(!ClientGone::Closed.is_request_error() && !ClientGone::TimedOut.is_request_error());
    }

    #[tokio::test]
    async fn client_closing_mid_body_is_reported() {
        let mut r = Rig::new(BodyPump::by_length(10, T, T)).await;
        r.client_side.shutdown().await.unwrap();
        assert!(matches!(r.read_server().await, Err(ClientGone::Closed)));
    }

    #[tokio::test]
    async fn bad_chunk_is_the_clients_fault() {
        let mut r = Rig::new(BodyPump::chunked(Chunked::default(), T, T)).await;
        r.client_side.write_all(b"zz\r\n").await.unwrap();
        assert!(matches!(r.read_server().await, Err(ClientGone::Invalid)));
    }

    #[tokio::test]
    async fn server_closing_stops_the_body_not_the_read() {
        let mut r = Rig::new(BodyPump::by_length(u64::MAX, T, T)).await;
        r.server.write_all(b"413").await.unwrap();
        r.server.shutdown().await.unwrap();
        // Closed with the body unread: the proxy's next writes meet a reset.
        let (_, server) = pair().await;
        drop(std::mem::replace(&mut r.server, server));
        let chunk = vec![7u8; 64 * 1024];
        let mut read = Vec::new();
        for _ in 0..200 {
            let _ = r.client_side.write_all(&chunk).await;
            match r.read_server().await.unwrap() {
                Ok(0) | Err(_) => break,
                Ok(_) => read = r.sbuf.to_vec(),
            }
        }
        assert_eq!(read, b"413");
    }

    /// The server's answer is read even when the client fails at the same time; the
    /// failure shows at the next read.
    #[tokio::test]
    async fn server_answer_comes_before_a_client_failure() {
        let mut r = Rig::new(BodyPump::chunked(Chunked::default(), T, T)).await;
        r.server.write_all(b"413").await.unwrap();
        r.client_side.write_all(b"zz\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(r.read_server().await.unwrap().unwrap(), 3);
        assert!(matches!(r.read_server().await, Err(ClientGone::Invalid)));
    }

    /// After a complete early answer: the rest of the body goes, then `send_rest` returns.
    #[tokio::test]
    async fn rest_of_the_body_is_sent_after_an_early_answer() {
        let mut r = Rig::new(BodyPump::by_length(6, T, T)).await;
        r.client_side.write_all(b"abcdefGET").await.unwrap();
        let Rig { client, up, buf, sbuf, pump, .. } = &mut r;
        assert_eq!(pump.send_rest(up, sbuf, client, buf).await, Ok(()));
        assert_eq!(pump.progress(), Progress::Sent);
        let mut b = [0u8; 6];
        r.server.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"abcdef");
        assert_eq!(&r.buf[..], b"GET");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_client_times_out_as_the_clients_fault() {
        let mut r = Rig::new(BodyPump::by_length(10, Duration::from_secs(3), T)).await;
        assert!(matches!(r.read_server().await, Err(ClientGone::TimedOut)));
    }
}
