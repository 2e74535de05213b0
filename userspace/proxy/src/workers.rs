//! The proxy's worker threads: one single-threaded tokio runtime per core, each with its
//! own listening socket per address (SO_REUSEPORT: the kernel spreads new connections
//! over them). A client connection, the server connections it uses and their wake-ups
//! stay on one thread, as in HAProxy and nginx; a shared multi-threaded runtime moved
//! tasks between threads and woke idle workers, which cost about a tenth of the
//! keep-alive throughput here. Control work (checks, reloads, runtime API) stays on the
//! main runtime.
//!
//! SO_REUSEPORT spreads connections by a hash of their addresses, not by load: 32 clients
//! can land 12 on one worker and 20 on the other, and the busier worker's clients then
//! wait longer (the tail latency). So a connection served by a worker while another
//! serves at least two fewer (counted in live client connections) moves to that one.
//! A move costs a wake-up of the other thread, which most short connections would pay
//! for nothing: plain HTTP/1 connections move only once they stay, after a response
//! (they are kept on the accepting worker until then); connections that cannot move
//! later (TLS, `mode tcp`) are handed over when accepted, like HAProxy's listener
//! multi-queue. Sockets are accepted unregistered (mio) and registered by the worker
//! that serves them.
use std::{
    cell::Cell,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering::Relaxed},
        Arc,
    },
};

use tokio::{
    io::{unix::AsyncFd, Interest},
    net::TcpSocket,
    runtime::Handle,
};

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Which worker this thread is (0 outside the workers).
pub fn current() -> usize {
    WORKER.with(Cell::get)
}

pub struct Workers {
    handles: Vec<Handle>,
    /// Live client connections per worker.
    load: Vec<AtomicUsize>,
}

/// The worker that should serve a connection accepted by worker `me`, given each
/// worker's live connections: `me` unless another has at least two fewer (then the least
/// loaded). A move costs a wake-up of the other thread, so near-balanced loads stay put.
pub fn choose(load: impl IntoIterator<Item = usize>, me: usize) -> usize {
    let (mut mine, mut least, mut least_n) = (0, me, usize::MAX);
    for (i, n) in load.into_iter().enumerate() {
        if i == me {
            mine = n;
        }
        if n < least_n {
            (least, least_n) = (i, n);
        }
    }
    if least_n.saturating_add(1) < mine {
        least
    } else {
        me
    }
}

/// One client connection counted against the worker serving it, until dropped.
pub struct Load {
    workers: Arc<Workers>,
    worker: usize,
}

impl Load {
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Counts the connection on worker `to` instead.
    pub fn move_to(&mut self, to: usize) {
        if to != self.worker {
            self.workers.load[to].fetch_add(1, Relaxed);
            self.workers.load[self.worker].fetch_sub(1, Relaxed);
            self.worker = to;
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.workers.load[self.worker].fetch_sub(1, Relaxed);
    }
}

impl Workers {
    /// Starts `n` worker threads (at least one); they run until the process exits.
    pub fn start(n: usize) -> std::io::Result<Arc<Workers>> {
        let mut handles = Vec::new();
        for i in 0..n.max(1) {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new().name(format!("ballast-w{i}")).spawn(move || {
                WORKER.with(|w| w.set(i));
                match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(std::future::pending::<()>());
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
            handles.push(rx.recv().map_err(std::io::Error::other)??);
        }
        let load = handles.iter().map(|_| AtomicUsize::new(0)).collect();
        Ok(Arc::new(Workers { handles, load }))
    }

    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Live client connections per worker.
    pub fn loads(&self) -> Vec<usize> {
        self.load.iter().map(|l| l.load(Relaxed)).collect()
    }

    /// Places a connection worker `me` accepted (see [`choose`]) and counts it there.
    pub fn place(self: &Arc<Self>, me: usize) -> Load {
        let me = me.min(self.load.len() - 1);
        let worker = choose(self.load.iter().map(|l| l.load(Relaxed)), me);
        self.load[worker].fetch_add(1, Relaxed);
        Load { workers: self.clone(), worker }
    }

    /// Counts a connection on worker `me`, where it stays for now.
    pub fn keep(self: &Arc<Self>, me: usize) -> Load {
        let worker = me.min(self.load.len() - 1);
        self.load[worker].fetch_add(1, Relaxed);
        Load { workers: self.clone(), worker }
    }

    /// The worker a connection served by `me` had better move to, if any (see [`choose`]).
    pub fn better(&self, me: usize) -> Option<usize> {
        let to = choose(self.load.iter().map(|l| l.load(Relaxed)), me);
        (to != me).then_some(to)
    }

    /// One listening socket per worker on `addr` (all bound or none), not yet registered
    /// with any runtime: [`Accept::new`] does that on the worker.
    /// `transparent`: the address need not be local (IP_TRANSPARENT, as HAProxy's bind
    /// option).
    pub fn bind(&self, addr: SocketAddr, transparent: bool) -> std::io::Result<Vec<std::net::TcpListener>> {
        let mut out = Vec::new();
        let mut addr = addr;
        for h in &self.handles {
            let _in_worker = h.enter();
            let s = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            s.set_reuseaddr(true)?;
            s.set_reuseport(true)?;
            if transparent {
                set_transparent(&s, addr.is_ipv6())?;
            }
            s.bind(addr)?;
            let l = s.listen(8192)?;
            // Port 0: the others share the port the first one got.
            addr = l.local_addr()?;
            out.push(l.into_std()?);
        }
        Ok(out)
    }
}

fn set_transparent(s: &TcpSocket, v6: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let opt = |level: libc::c_int, name: libc::c_int| -> std::io::Result<()> {
        let on: libc::c_int = 1;
        // SAFETY: a valid socket and a c_int option of the right size.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                level,
                name,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // As HAProxy: IP_TRANSPARENT (needs CAP_NET_ADMIN), else IP_FREEBIND.
    let transparent = if v6 {
        opt(libc::SOL_IPV6, libc::IPV6_TRANSPARENT)
    } else {
        opt(libc::SOL_IP, libc::IP_TRANSPARENT)
    };
    transparent.or_else(|_| opt(libc::SOL_IP, libc::IP_FREEBIND))
}

/// A listening socket polled by the current worker's runtime; accepted sockets are left
/// unregistered (nonblocking, close-on-exec).
pub struct Accept(AsyncFd<mio::net::TcpListener>);

impl Accept {
    /// Must run on the worker that will accept.
    pub fn new(l: std::net::TcpListener) -> std::io::Result<Accept> {
        l.set_nonblocking(true)?;
        // SAFETY: the listener owns its fd, which stays the same and open for as long as
        // the AsyncFd holds it (it deregisters before dropping, and so closing, it).
        unsafe { AsyncFd::register_with_interest(mio::net::TcpListener::from_std(l), Interest::READABLE) }
            .map(Accept)
            .map_err(|e| e.into_parts().1)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    /// Accepts the next connection once `slots` grants it its slots (None: stop). The
    /// slots are taken only when a connection is waiting on this socket: with a socket per
    /// worker, a worker idle in accept must not hold a slot another worker's client needs.
    pub async fn accept_with<T, F, Fut>(
        &self,
        mut slots: F,
    ) -> std::io::Result<Option<(std::net::TcpStream, SocketAddr, T)>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        loop {
            let mut ready = self.0.readable().await?;
            let Some(held) = slots().await else { return Ok(None) };
            if let Ok(r) = ready.try_io(|l| l.get_ref().accept()) {
                // mio's socket is a plain nonblocking fd, registered nowhere.
                return r.map(|(s, peer)| {
                    Some((std::net::TcpStream::from(std::os::fd::OwnedFd::from(s)), peer, held))
                });
            }
            // The waiting connection went away meanwhile: its slots go back.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{choose, Workers};

    #[test]
    fn placed_connections_spread_and_are_uncounted_when_dropped() {
        let w = Workers::start(2).unwrap();
        // Every connection accepted by worker 0: worker 1 gets one whenever it has two
        // fewer, so they end up within two of each other.
        let held: Vec<_> = (0..10).map(|_| w.place(0)).collect();
        assert_eq!(w.loads(), vec![6, 4]);
        assert_eq!(held.iter().filter(|l| l.worker() == 1).count(), 4);
        drop(held);
        assert_eq!(w.loads(), vec![0, 0]);
    }

    #[test]
    fn kept_connections_move_once_another_has_two_fewer() {
        let w = Workers::start(2).unwrap();
        let mut held: Vec<_> = (0..3).map(|_| w.keep(0)).collect();
        assert_eq!(w.loads(), vec![3, 0]);
        assert_eq!(w.better(1), None);
        let to = w.better(0).unwrap();
        held[0].move_to(to);
        assert_eq!((held[0].worker(), w.loads()), (1, vec![2, 1]));
        assert_eq!(w.better(0), None, "one apart stays");
        held[1].move_to(0);
        assert_eq!(w.loads(), vec![2, 1], "a move to where it is changes nothing");
        drop(held);
        assert_eq!(w.loads(), vec![0, 0]);
    }

    #[test]
    fn stays_unless_another_has_two_fewer() {
        assert_eq!(choose([0, 0], 0), 0);
        assert_eq!(choose([1, 0], 0), 0);
        assert_eq!(choose([2, 0], 0), 1);
        assert_eq!(choose([5, 4], 0), 0);
        assert_eq!(choose([3, 7], 1), 0);
        assert_eq!(choose([9, 4, 2], 0), 2);
        assert_eq!(choose([9], 0), 0);
        assert_eq!(choose([], 0), 0);
    }
}
