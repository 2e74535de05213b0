//! The L7 proxy (HAProxy's job in the seeds): listeners from an `L7Config`, HTTP/1.1 and
//! HTTP/2 to clients (our own server, `client_h2`), pooled keep-alive HTTP/1.1 to servers, `mode tcp` proxies,
//! health checks, the stats page and the runtime API.
//!
//! Reload: the new config is parsed and its new listeners bound first (any failure leaves
//! the running config untouched); then the state is swapped. Every request looks up the
//! current state, so idle keep-alive connections continue on the new config, in-flight
//! requests finish on the old one, and listeners that stay are never closed.
mod body_pump;
pub mod checks;
mod client_h1;
mod client_h2;
mod conn;
pub mod deferred;
mod http;
mod httplog;
pub mod nodelay;
pub mod queue;
mod recv_body;
mod relay;
pub mod runtime;
mod servers_state;
mod sample;
pub mod state;
pub mod stats;
pub mod tcp;
pub mod tls;
mod tls_counters;
pub mod upstream;
pub mod workers;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
};

use ballast_l7::haproxy::{model::Mode, L7Config};
pub use state::Shared;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot bind {addr} (proxy '{proxy}'): {source}")]
    Bind { proxy: String, addr: SocketAddr, source: std::io::Error },
    #[error("runtime API socket {path}: {source}")]
    Socket { path: String, source: std::io::Error },
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("proxy '{proxy}', bind {addr}: {source}")]
    Tls { proxy: String, addr: SocketAddr, source: tls::TlsError },
}

type Acceptor = Arc<RwLock<Option<tokio_rustls::TlsAcceptor>>>;

struct Listener {
    /// Which frontend this address belongs to now (a reload may move it).
    frontend: Arc<RwLock<String>>,
    /// The TLS setup of the bind line (replaced on reload: certificates are re-read).
    tls: Acceptor,
    /// One accept loop per worker.
    tasks: Vec<JoinHandle<()>>,
}

/// A running proxy.
pub struct Proxy {
    current: Arc<RwLock<Arc<Shared>>>,
    listeners: Mutex<HashMap<SocketAddr, Listener>>,
    checks: Mutex<Vec<JoinHandle<()>>>,
    /// Serialises reloads.
    reload_lock: tokio::sync::Mutex<()>,
    workers: Arc<workers::Workers>,
    /// `global maxconn`, for every listener (as of the start: a reload keeps it).
    global_limit: Option<Arc<Semaphore>>,
    global_maxconn: Option<usize>,
}

impl Proxy {
    /// `global maxconn` as started (None: no process-wide limit).
    pub fn global_maxconn(&self) -> Option<usize> {
        self.global_maxconn
    }

    pub fn current(&self) -> Arc<Shared> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts `threads` workers, binds every listener (all or nothing) and starts serving.
    pub async fn start(config: L7Config, threads: usize) -> Result<Arc<Proxy>, ProxyError> {
        let shared = state::build(&config);
        let proxy = Arc::new(Proxy {
            current: Arc::new(RwLock::new(shared.clone())),
            listeners: Mutex::new(HashMap::new()),
            checks: Mutex::new(Vec::new()),
            reload_lock: tokio::sync::Mutex::new(()),
            workers: workers::Workers::start(threads).map_err(ProxyError::Workers)?,
            global_limit: config.global.maxconn.map(|m| Arc::new(Semaphore::new(m.max(1) as usize))),
            global_maxconn: config.global.maxconn.map(|m| m.max(1) as usize),
        });
        let acceptors = tls_acceptors(&shared)?;
        let bound = bind_new(&proxy.workers, &shared, &HashMap::new())?;
        proxy.install(shared, bound, acceptors);
        Ok(proxy)
    }

    /// Swaps in `config`: binds its new addresses, closes the ones it no longer has,
    /// carries server health and admin state over, restarts health checks.
    pub async fn reload(&self, config: L7Config) -> Result<(), ProxyError> {
        let _guard = self.reload_lock.lock().await;
        let old = self.current();
        let shared = state::build(&config);
        state::carry_over(&old, &shared);
        let existing: HashMap<SocketAddr, ()> =
            self.listeners.lock().unwrap_or_else(|p| p.into_inner()).keys().map(|a| (*a, ())).collect();
        let acceptors = tls_acceptors(&shared)?;
        let bound = bind_new(&self.workers, &shared, &existing)?;
        self.install(shared, bound, acceptors);
        Ok(())
    }

    fn install(
        &self,
        shared: Arc<Shared>,
        bound: Vec<(String, Vec<std::net::TcpListener>)>,
        mut acceptors: HashMap<SocketAddr, tokio_rustls::TlsAcceptor>,
    ) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = shared.clone();
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        for t in checks.drain(..) {
            t.abort();
        }
        for be in shared.backends.values() {
            checks.extend(checks::spawn(be.clone()));
        }
        let rates = shared.clone();
        checks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                rates.tick_rates();
                tls_counters::tick();
            }
        }));
        let wanted: HashMap<SocketAddr, String> = shared
            .frontends
            .iter()
            .flat_map(|f| f.cfg.binds.iter().map(move |b| (b.addr, f.cfg.name.clone())))
            .collect();
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners.retain(|addr, l| match wanted.get(addr) {
            Some(name) => {
                *l.frontend.write().unwrap_or_else(|p| p.into_inner()) = name.clone();
                *l.tls.write().unwrap_or_else(|p| p.into_inner()) = acceptors.remove(addr);
                true
            }
            None => {
                l.tasks.iter().for_each(JoinHandle::abort);
                false
            }
        });
        for (name, socks) in bound {
            let Some(addr) = socks.first().and_then(|l| l.local_addr().ok()) else { continue };
            let frontend = Arc::new(RwLock::new(name));
            let tls: Acceptor = Arc::new(RwLock::new(acceptors.remove(&addr)));
            // Frontend maxconn is for the address, whichever worker accepts.
            let limit = Arc::new(Semaphore::new(frontend_maxconn(&shared, &frontend).max(1) as usize));
            let tasks = socks
                .into_iter()
                .zip(self.workers.handles())
                .map(|(l, worker)| {
                    worker.spawn(accept_loop(
                        self.current.clone(),
                        frontend.clone(),
                        tls.clone(),
                        limit.clone(),
                        self.global_limit.clone(),
                        l,
                        self.workers.clone(),
                    ))
                })
                .collect();
            listeners.insert(addr, Listener { frontend, tls, tasks });
        }
    }

    pub fn stop(&self) {
        for (_, l) in self.listeners.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            l.tasks.iter().for_each(JoinHandle::abort);
        }
        for t in self.checks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
    }
}

/// Reads a PROXY protocol header (v1 or v2) off the front of `stream`, consuming exactly
/// its bytes: the client's (source, destination), or None for LOCAL/UNKNOWN.
async fn read_proxy_header(
    stream: &mut tokio::net::TcpStream,
) -> std::io::Result<Option<(SocketAddr, SocketAddr)>> {
    use ballast_l7::proxy_protocol::{parse, Parse};
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 536];
    let mut last = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the PROXY header",
            ));
        }
        match parse(&buf[..n]) {
            Parse::Done { len, addrs } => {
                let mut skip = vec![0u8; len];
                stream.read_exact(&mut skip).await?;
                return Ok(addrs);
            }
            Parse::Invalid(why) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why)),
            Parse::Incomplete(_) if n == buf.len() => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "PROXY header too long"))
            }
            Parse::Incomplete(_) => {
                // More bytes are on their way; peek again once they are.
                if n == last {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                last = n;
            }
        }
    }
}

/// The TLS acceptor of every `ssl` bind line (certificates read now: a bad one refuses
/// the start or the reload).
fn tls_acceptors(shared: &Shared) -> Result<HashMap<SocketAddr, tokio_rustls::TlsAcceptor>, ProxyError> {
    let mut out = HashMap::new();
    for fe in &shared.frontends {
        for b in fe.cfg.binds.iter().filter(|b| !b.tls_certs.is_empty()) {
            let cfg = tls::server_config(&b.tls_certs, &b.alpn, b.tls_policy.as_ref())
                .map_err(|source| ProxyError::Tls { proxy: fe.cfg.name.clone(), addr: b.addr, source })?;
            out.insert(b.addr, tokio_rustls::TlsAcceptor::from(cfg));
        }
    }
    Ok(out)
}

/// Binds the addresses of `shared` that are not listening yet (a socket per worker).
fn bind_new(
    workers: &workers::Workers,
    shared: &Shared,
    existing: &HashMap<SocketAddr, ()>,
) -> Result<Vec<(String, Vec<std::net::TcpListener>)>, ProxyError> {
    let mut out = Vec::new();
    for fe in &shared.frontends {
        for b in &fe.cfg.binds {
            if existing.contains_key(&b.addr) {
                continue;
            }
            let l = workers.bind(b.addr, b.transparent).map_err(|source| ProxyError::Bind {
                proxy: fe.cfg.name.clone(),
                addr: b.addr,
                source,
            })?;
            out.push((fe.cfg.name.clone(), l));
        }
    }
    Ok(out)
}

/// The frontend's maxconn, from the config at bind time.
fn frontend_maxconn(shared: &Shared, frontend: &RwLock<String>) -> u32 {
    let name = frontend.read().unwrap_or_else(|p| p.into_inner()).clone();
    shared.frontend(&name).map(|f| f.maxconn).unwrap_or(state::DEFAULT_FRONTEND_MAXCONN)
}

async fn accept_loop(
    current: Arc<RwLock<Arc<Shared>>>,
    frontend: Arc<RwLock<String>>,
    tls: Acceptor,
    limit: Arc<Semaphore>,
    global_limit: Option<Arc<Semaphore>>,
    listener: std::net::TcpListener,
    workers: Arc<workers::Workers>,
) {
    let listener = match workers::Accept::new(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error!("cannot poll a listening socket: {e}");
            return;
        }
    };
    let Ok(bound_addr) = listener.local_addr() else { return };
    let me = workers::current();
    loop {
        // Nothing is accepted while the frontend, or the whole process, is at its maxconn:
        // the connection waits in the kernel's backlog, as with HAProxy.
        let slots = || async {
            let frontend = limit.clone().acquire_owned().await.ok()?;
            let global = match &global_limit {
                Some(g) => Some(g.clone().acquire_owned().await.ok()?),
                None => None,
            };
            Some(Slots { _frontend: frontend, _global: global })
        };
        let (stream, peer, permit) = match listener.accept_with(slots).await {
            Ok(Some(x)) => x,
            Ok(None) => return,
            Err(e) => {
                log::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Only a wildcard bind needs asking which address the client reached.
        let local = if bound_addr.ip().is_unspecified() {
            stream.local_addr().unwrap_or(bound_addr)
        } else {
            bound_addr
        };
        let shared = current.read().unwrap_or_else(|p| p.into_inner()).clone();
        let name = frontend.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(fe) = shared.frontend(&name) else { continue };
        fe.counters.conn_tot.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // `tcp-request connection reject`: closed before anything is read.
        if !fe.cfg.tcp_request_connection.is_empty() && !connection_accepted(&fe.cfg, peer, local) {
            fe.counters.dcon.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        let accept_proxy = fe.cfg.binds.iter().any(|b| b.addr == bound_addr && b.accept_proxy);
        // The frontend's timeouts now (a reload may have changed them).
        let timeouts = conn::ClientTimeouts::of(&fe.cfg.settings.timeouts);
        let acceptor = tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        let client = Client {
            current: current.clone(),
            shared,
            fe,
            acceptor,
            accept_proxy,
            timeouts,
            peer,
            local,
            workers: workers.clone(),
        };
        let early = client.read_early(&stream);
        // Plain HTTP/1 connections move between workers later, if they stay (workers.rs);
        // the others (TLS, `mode tcp`, HTTP/2 by prior knowledge) are placed now.
        let h2 = !early.is_empty() && H2_PREFACE.starts_with(&early[..early.len().min(H2_PREFACE.len())]);
        let load = if client.acceptor.is_none() && client.fe.cfg.settings.mode == Mode::Http && !h2 {
            workers.keep(me)
        } else {
            workers.place(me)
        };
        // Served by the chosen worker, whose poller registers the socket if it must wait.
        workers.handles()[load.worker()]
            .spawn(async move { client.serve(deferred::Deferred::new(stream), early, permit, load).await });
    }
}

/// An accepted client connection and what serving it needs.
struct Client {
    current: Arc<RwLock<Arc<Shared>>>,
    shared: Arc<Shared>,
    fe: Arc<state::FrontendRt>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    accept_proxy: bool,
    timeouts: conn::ClientTimeouts,
    peer: SocketAddr,
    local: SocketAddr,
    workers: Arc<workers::Workers>,
}

impl Client {
    /// What a plain HTTP client sent before its connection was accepted (most send their
    /// request right after connecting, so it is often here already): read at once, it
    /// saves the wait for the socket's first readiness event. Empty when nothing came
    /// yet, and for connections that start with a PROXY header or a TLS handshake.
    fn read_early(&self, stream: &std::net::TcpStream) -> bytes::BytesMut {
        if self.accept_proxy || self.acceptor.is_some() || self.fe.cfg.settings.mode != Mode::Http {
            return bytes::BytesMut::new();
        }
        // Read into the stack (hot, no fresh heap pages to zero), then copied: requests are
        // small. The socket is nonblocking: nothing there is WouldBlock.
        let mut first = [0u8; 4096];
        let n = std::io::Read::read(&mut &*stream, &mut first).unwrap_or(0);
        let mut buf = bytes::BytesMut::with_capacity(conn::BUF);
        buf.extend_from_slice(&first[..n]);
        buf
    }

    /// Serves the connection on the current worker; the frontend's maxconn slot and the
    /// worker's count are held until it ends. `early`: bytes already read from it.
    async fn serve(
        self,
        mut stream: deferred::Deferred,
        early: bytes::BytesMut,
        permit: Slots,
        load: workers::Load,
    ) {
        let Client { current, shared, fe, acceptor, accept_proxy, timeouts, mut peer, local, workers } = self;
        let first_deadline = tokio::time::Instant::now() + timeouts.request;
        if accept_proxy {
            let Ok(s) = stream.registered() else { return };
            match tokio::time::timeout_at(first_deadline, read_proxy_header(s)).await {
                Ok(Ok(Some((src, _dst)))) => peer = src,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    log::warn!("{}: PROXY header from {peer}: {e}; connection closed", fe.cfg.name);
                    return;
                }
                Err(_) => return,
            }
        }
        if fe.cfg.settings.mode == Mode::Tcp {
            // Boxed here and below: a spawned future is copied whole, and most connections
            // take the plain HTTP/1 branch, so only that one is kept inline.
            let Ok(stream) = stream.into_registered() else { return };
            let _ = stream.set_nodelay(true);
            match acceptor {
                None => Box::pin(tcp::serve(&shared, &fe, stream, peer, local)).await,
                // TLS offload for any protocol over TCP (stunnel's job in the seeds): the
                // server gets the plain bytes.
                Some(acceptor) => {
                    Box::pin(async {
                        let _open = tls_counters::open();
                        // `timeout http-request` is HTTP's: a TCP handshake gets `timeout client`.
                        match tokio::time::timeout(timeouts.client, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                tls_counters::handshaked(tls.get_ref().1.handshake_kind());
                                tcp::serve(&shared, &fe, tls, peer, local).await
                            }
                            Ok(Err(e)) => log::debug!("TLS handshake from {peer}: {e}"),
                            Err(_) => log::debug!("TLS handshake from {peer}: timed out"),
                        }
                    })
                    .await
                }
            }
            return;
        }
        let name = fe.cfg.name.clone();
        match acceptor {
            None => {
                let conn = conn::ClientConn { peer, local, timeouts, first_deadline, tls: false, sni: None };
                let io = nodelay::Lazy::new(stream);
                let leave = || workers.better(load.worker()).is_some();
                if let Some((io, buf)) =
                    serve_http(current.clone(), name.clone(), io, early, conn.clone(), leave).await
                {
                    Moving { current, frontend: name, conn, workers, _permit: permit, load }.go(io, buf);
                }
            }
            Some(acceptor) => {
                let Ok(stream) = stream.into_registered() else { return };
                let _ = stream.set_nodelay(true);
                Box::pin(async move {
                    let _open = tls_counters::open();
                    // A client that never finishes its handshake holds a slot: bound it.
                    match tokio::time::timeout_at(first_deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            tls_counters::handshaked(tls.get_ref().1.handshake_kind());
                            let sni = tls.get_ref().1.server_name().map(std::sync::Arc::from);
                            let conn =
                                conn::ClientConn { peer, local, timeouts, first_deadline, tls: true, sni };
                            serve_http(current, name, tls, early, conn, || false).await;
                        }
                        Ok(Err(e)) => log::debug!("TLS handshake from {peer}: {e}"),
                        Err(_) => log::debug!("TLS handshake from {peer}: timed out"),
                    }
                })
                .await
            }
        }
    }
}

/// A plain HTTP/1 connection on its way to another worker (see workers.rs), with what
/// serving it needs there.
struct Moving {
    current: Arc<RwLock<Arc<Shared>>>,
    frontend: String,
    conn: conn::ClientConn,
    workers: Arc<workers::Workers>,
    /// The frontend's and the process's maxconn slots, held until the connection ends.
    _permit: Slots,
    load: workers::Load,
}

/// A connection's `maxconn` slots: its frontend's, and the process's (`global maxconn`).
struct Slots {
    _frontend: OwnedSemaphorePermit,
    _global: Option<OwnedSemaphorePermit>,
}

impl Moving {
    /// Hands the connection to the least loaded worker (or back to this one, if the loads
    /// evened out meanwhile); its unread bytes go with it.
    fn go(mut self, io: nodelay::Lazy, buf: bytes::BytesMut) {
        let to = self.workers.better(self.load.worker()).unwrap_or(self.load.worker());
        let stream = match io.into_inner().into_std() {
            Ok(s) => s,
            Err(e) => return log::debug!("connection from {}: cannot move it: {e}", self.conn.peer),
        };
        self.load.move_to(to);
        self.workers.handles()[to].clone().spawn(self.resume(stream, buf));
    }

    // Boxed: the future spawns (through `go`) another of its own kind.
    fn resume(
        self,
        stream: std::net::TcpStream,
        buf: bytes::BytesMut,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let io = nodelay::Lazy::written(deferred::Deferred::new(stream));
            let leave = || self.workers.better(self.load.worker()).is_some();
            let left = client_h1::serve(
                self.current.clone(),
                self.frontend.clone(),
                io,
                buf,
                self.conn.clone(),
                false,
                leave,
            )
            .await;
            if let Some((io, buf)) = left {
                self.go(io, buf);
            }
        })
    }
}

use ballast_l7::{http2::PREFACE as H2_PREFACE, rules::connection_accepted};

/// An HTTP connection: HTTP/2 (the client's first bytes are the preface) goes to the
/// HTTP/2 server, everything else to the HTTP/1 path. The bytes read to decide (`buf`: those read
/// before) are replayed. Returns
/// the connection when the HTTP/1 path hands it back (`leave`, see [`client_h1::serve`]).
async fn serve_http<S>(
    current: Arc<RwLock<Arc<Shared>>>,
    frontend: String,
    mut io: S,
    mut buf: bytes::BytesMut,
    conn: conn::ClientConn,
    leave: impl FnMut() -> bool,
) -> Option<(S, bytes::BytesMut)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + nodelay::NoDelay + Unpin + Send + 'static,
{
    loop {
        let n = buf.len().min(H2_PREFACE.len());
        if n > 0 && (buf[..n] != H2_PREFACE[..n] || n == H2_PREFACE.len()) {
            break;
        }
        let left = conn.first_deadline.saturating_duration_since(tokio::time::Instant::now());
        match conn::read_more(&mut io, &mut buf, left).await {
            Ok(0) | Err(_) => break, // the HTTP/1 path meets the same end, and logs it
            Ok(_) => {}
        }
    }
    if !buf.starts_with(H2_PREFACE) {
        return client_h1::serve(current, frontend, io, buf, conn, true, leave).await;
    }
    io.set_nodelay();
    let tls = conn.tls.then(|| conn.sni.clone());
    let conn::ClientConn { peer, local, timeouts, .. } = conn;
    client_h2::serve(io, buf, client_h2::ConnInfo { current, frontend, peer, local, timeouts, tls }).await;
    None
}
