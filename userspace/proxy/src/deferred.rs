//! A plain client socket registered with the worker's poller only once it has to wait.
//! A short connection whose request was read at accept (see `Client::read_early`) and
//! whose response goes out in one write never waits: it is then never registered, which
//! saves the two `epoll_ctl` calls (add, and tokio's delete on drop) that would otherwise
//! be a fifth of its system calls. Reads always go through the poller (the request was
//! read already when there was one).
use std::{
    io::{IoSlice, Write},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

pub enum Deferred {
    /// Nonblocking, not registered yet.
    Plain(std::net::TcpStream),
    Registered(TcpStream),
    /// Registration failed: every operation reports it.
    Failed,
}

impl Deferred {
    pub fn new(s: std::net::TcpStream) -> Deferred {
        Deferred::Plain(s)
    }

    /// Registers the socket (on the current worker's runtime).
    pub fn registered(&mut self) -> std::io::Result<&mut TcpStream> {
        if let Deferred::Plain(_) = self {
            let Deferred::Plain(s) = std::mem::replace(self, Deferred::Failed) else { unreachable!() };
            *self = Deferred::Registered(TcpStream::from_std(s)?);
        }
        match self {
            Deferred::Registered(s) => Ok(s),
            _ => Err(std::io::Error::other("socket could not be registered")),
        }
    }

    /// The registered socket, for paths that always wait (TLS, `mode tcp`).
    pub fn into_registered(mut self) -> std::io::Result<TcpStream> {
        self.registered()?;
        match self {
            Deferred::Registered(s) => Ok(s),
            _ => Err(std::io::Error::other("socket could not be registered")),
        }
    }

    pub fn set_nodelay(&self, on: bool) -> std::io::Result<()> {
        match self {
            Deferred::Plain(s) => s.set_nodelay(on),
            Deferred::Registered(s) => s.set_nodelay(on),
            Deferred::Failed => Ok(()),
        }
    }

    pub fn nodelay(&self) -> std::io::Result<bool> {
        match self {
            Deferred::Plain(s) => s.nodelay(),
            Deferred::Registered(s) => s.nodelay(),
            Deferred::Failed => Ok(false),
        }
    }

    /// The socket, unregistered (to be served by another worker).
    pub fn into_std(self) -> std::io::Result<std::net::TcpStream> {
        match self {
            Deferred::Plain(s) => Ok(s),
            Deferred::Registered(s) => s.into_std(),
            Deferred::Failed => Err(std::io::Error::other("socket could not be registered")),
        }
    }

    /// Runs a write on the unregistered socket; None when it would block (then the
    /// caller registers and polls).
    fn try_plain<T>(
        &mut self,
        f: impl FnOnce(&std::net::TcpStream) -> std::io::Result<T>,
    ) -> Option<std::io::Result<T>> {
        match self {
            Deferred::Plain(s) => match f(s) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                r => Some(r),
            },
            _ => None,
        }
    }
}

impl AsyncRead for Deferred {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut().registered() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Deferred {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(r) = this.try_plain(|mut s| s.write(buf)) {
            return Poll::Ready(r);
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(r) = this.try_plain(|mut s| s.write_vectored(bufs)) {
            return Poll::Ready(r);
        }
        match this.registered() {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Deferred::Plain(s) => Poll::Ready(match s.shutdown(std::net::Shutdown::Write) {
                Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
                r => r,
            }),
            Deferred::Registered(s) => Pin::new(s).poll_shutdown(cx),
            Deferred::Failed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::Deferred;

    #[tokio::test]
    async fn writes_unregistered_then_registers_to_read() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        let mut io = Deferred::new(s);
        io.write_all(b"hello").await.unwrap();
        assert!(matches!(io, Deferred::Plain(_)), "a write that does not block needs no poller");
        let mut got = [0u8; 5];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");

        // Reading waits for the client: registered then.
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 3];
            io.read_exact(&mut b).await.unwrap();
            (b, io)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        c.write_all(b"abc").await.unwrap();
        let (b, mut io) = reader.await.unwrap();
        assert_eq!(&b, b"abc");
        assert!(matches!(io, Deferred::Registered(_)));
        io.shutdown().await.unwrap();
        assert_eq!(c.read(&mut got).await.unwrap(), 0, "shut down for writing");
    }
}
