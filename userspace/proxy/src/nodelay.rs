//! TCP_NODELAY on client connections, set only when it can matter. Nagle's algorithm
//! holds back a small segment only while earlier data is unacknowledged, so a
//! connection's first write always leaves at once; most short connections (one request,
//! one response in one write, close) never need the option and skip its setsockopt.
//! It is set before a connection's second write (a body that follows its head, the next
//! keep-alive response, a tunnel), and up front for TLS and HTTP/2, whose handshakes and
//! frames take several writes.
use std::{
    io::IoSlice,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use super::deferred::Deferred;

/// A client stream that can have TCP_NODELAY set.
pub trait NoDelay {
    fn set_nodelay(&mut self);
}

impl NoDelay for tokio_rustls::server::TlsStream<TcpStream> {
    /// Already set before the handshake.
    fn set_nodelay(&mut self) {}
}

/// A plain TCP client stream that sets TCP_NODELAY before its second write.
pub struct Lazy {
    io: Deferred,
    writes: u8,
}

impl Lazy {
    pub fn new(io: Deferred) -> Lazy {
        Lazy { io, writes: 0 }
    }

    /// A connection that has written before (it moved between workers): the option is
    /// set before its next write.
    pub fn written(io: Deferred) -> Lazy {
        Lazy { io, writes: 1 }
    }

    pub fn into_inner(self) -> Deferred {
        self.io
    }

    /// `writes`: 0 before the first write, 1 after it, 2 once the option is set.
    fn before_write(&mut self) {
        if self.writes == 1 {
            self.set_nodelay();
        }
    }

    fn wrote(&mut self, r: &Poll<std::io::Result<usize>>) {
        if self.writes == 0 && matches!(r, Poll::Ready(Ok(n)) if *n > 0) {
            self.writes = 1;
        }
    }
}

impl NoDelay for Lazy {
    fn set_nodelay(&mut self) {
        if self.writes != 2 {
            let _ = self.io.set_nodelay(true);
            self.writes = 2;
        }
    }
}

impl AsyncRead for Lazy {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lazy {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.before_write();
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.before_write();
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::{Deferred, Lazy, NoDelay};

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        (l.accept().await.unwrap().0, c)
    }

    #[tokio::test]
    async fn set_before_the_second_write_only() {
        let (s, _c) = pair().await;
        let mut io = Lazy::new(Deferred::Registered(s));
        assert!(!io.io.nodelay().unwrap());
        io.write_all(b"first").await.unwrap();
        assert!(!io.io.nodelay().unwrap(), "one write needs no TCP_NODELAY");
        io.write_all(b"second").await.unwrap();
        assert!(io.io.nodelay().unwrap());

        let (s, _c) = pair().await;
        let mut io = Lazy::new(Deferred::Registered(s));
        io.set_nodelay();
        assert!(io.io.nodelay().unwrap(), "asked for up front (HTTP/2)");
    }
}
