//! What every client-side path shares: the facts and timeouts of a client connection, and
//! reads and writes bounded by a timeout.
use std::{net::SocketAddr, time::Duration};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

pub(crate) const BUF: usize = 16 * 1024;

fn timed_out() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out")
}

/// `f` within `d`. Most writes (and reads of bytes already here) complete at their first
/// poll: they get no timer, and no clock read to set one.
pub(crate) async fn within<T>(
    d: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    let mut f = std::pin::pin!(f);
    if let std::task::Poll::Ready(r) =
        std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await
    {
        return r;
    }
    tokio::time::timeout(d, f).await.unwrap_or_else(|_| Err(timed_out()))
}

pub(crate) async fn read_more<R: AsyncRead + Unpin>(
    io: &mut R,
    buf: &mut BytesMut,
    d: Duration,
) -> std::io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(BUF);
    }
    within(d, io.read_buf(buf)).await
}

/// Facts about a client connection.
#[derive(Clone)]
pub struct ClientConn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub timeouts: ClientTimeouts,
    /// When the first request's head must be in: `timeouts.request` after the accept.
    pub first_deadline: tokio::time::Instant,
    pub tls: bool,
    /// The server name a TLS client asked for.
    pub sni: Option<std::sync::Arc<str>>,
}

impl ClientConn {
    /// What `ssl_fc` / `ssl_fc_sni` read: None for a plain connection.
    pub fn tls_info(&self) -> Option<Option<&str>> {
        self.tls.then_some(self.sni.as_deref())
    }
}

/// The frontend's timeouts on the client side, as HAProxy applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientTimeouts {
    /// A whole request head from its first byte; the first request's from the accept
    /// (TLS handshake and PROXY header included): `timeout http-request`, else `client`.
    pub request: Duration,
    /// Waiting for the next request on an idle keep-alive connection: `timeout
    /// http-keep-alive`, else `http-request`, else `client`.
    pub keep_alive: Duration,
    /// Each write to the client, and reads of its body: `timeout client` (30 s unset).
    pub client: Duration,
}

impl ClientTimeouts {
    pub fn of(t: &ballast_l7::haproxy::model::Timeouts) -> ClientTimeouts {
        let client = t.client.unwrap_or(Duration::from_secs(30));
        let request = t.http_request.unwrap_or(client);
        ClientTimeouts { request, keep_alive: t.http_keep_alive.unwrap_or(request), client }
    }
}
