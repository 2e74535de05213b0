//! The proxy's worker threads: one single-threaded tokio runtime per core, each with its
//! own listening socket per address (SO_REUSEPORT: the kernel spreads new connections
//! over them). A client connection, the server connections it uses and their wake-ups
//! stay on one thread, as in HAProxy and nginx; a shared multi-threaded runtime moved
//! tasks between threads and woke idle workers, which cost about a tenth of the
//! keep-alive throughput here. Control work (checks, reloads, runtime API) stays on the
//! main runtime.
use std::{cell::Cell, net::SocketAddr};

use tokio::{
    net::{TcpListener, TcpSocket},
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
}

impl Workers {
    /// Starts `n` worker threads (at least one); they run until the process exits.
    pub fn start(n: usize) -> std::io::Result<Workers> {
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
        Ok(Workers { handles })
    }

    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// One listening socket per worker on `addr`, each registered with its worker's
    /// runtime (all bound or none).
    pub fn bind(&self, addr: SocketAddr) -> std::io::Result<Vec<TcpListener>> {
        let mut out: Vec<TcpListener> = Vec::new();
        let mut addr = addr;
        for h in &self.handles {
            let _in_worker = h.enter();
            let s = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            s.set_reuseaddr(true)?;
            s.set_reuseport(true)?;
            s.bind(addr)?;
            let l = s.listen(8192)?;
            // Port 0: the others share the port the first one got.
            addr = l.local_addr()?;
            out.push(l);
        }
        Ok(out)
    }
}
