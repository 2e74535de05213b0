//! Runtime state of the L7 proxy: per server counters, health, admin state and weight;
//! per backend the balancer and the connection pool. Built from an `L7Config`.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use tokio::sync::Semaphore;

use ballast_l7::{
    balance::{Balancer, Candidate},
    haproxy::model::{ProxySection, Server},
    health::Health,
};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// `set server ... state`: ready, drain (no new traffic but persistence), maint (none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Admin {
    Ready = 0,
    Drain = 1,
    Maint = 2,
}

/// A session counted on a frontend's or backend's counters (see [`Counters::session`]).
pub struct Session<'a>(&'a Counters);

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// A session counted on a server until dropped; owned, since it lives on in the response
/// body that streams from the server.
pub struct ServerSession(pub Arc<ServerRt>);

impl ServerSession {
    pub fn new(server: Arc<ServerRt>) -> ServerSession {
        server.counters.enter();
        ServerSession(server)
    }
}

impl Drop for ServerSession {
    fn drop(&mut self) {
        self.0.counters.leave();
    }
}

/// Counters of a frontend, backend or server (the stats CSV's columns).
#[derive(Default)]
pub struct Counters {
    /// Current and max sessions.
    pub scur: AtomicU32,
    pub smax: AtomicU32,
    /// Total sessions (requests in HTTP mode).
    pub stot: AtomicU64,
    pub bin: AtomicU64,
    pub bout: AtomicU64,
    /// Connection errors, response errors, retries, redispatches.
    pub econ: AtomicU64,
    pub eresp: AtomicU64,
    pub wretr: AtomicU64,
    pub wredis: AtomicU64,
    /// Requests the client gave up on while they were on their way to a server (it went
    /// away or went silent mid-body): not the server's fault.
    pub cli_abrt: AtomicU64,
    /// `mode tcp` relays the server ended (it failed or went silent).
    pub srv_abrt: AtomicU64,
    /// Frontends: request errors, as HAProxy counts them: a bad request or request body,
    /// and a client that closed or went silent before its request was whole.
    pub ereq: AtomicU64,
    /// Requests denied by an `http-request deny` rule of this proxy.
    pub dreq: AtomicU64,
    /// Frontends: connections rejected by `tcp-request connection reject`.
    pub dcon: AtomicU64,
    /// Frontends: connections accepted, and requests answered by the proxy itself (the
    /// stats page). Servers and backends: connections opened to servers, and idle ones
    /// reused.
    pub conn_tot: AtomicU64,
    pub intercepted: AtomicU64,
    pub connect: AtomicU64,
    pub reuse: AtomicU64,
    /// Queue: current and max requests waiting for a server slot.
    pub qcur: AtomicU32,
    pub qmax: AtomicU32,
    /// Responses by class: 1xx..5xx, other.
    pub hrsp: [AtomicU64; 6],
    /// Sessions per second over the last second, its max, and `stot` at the last tick.
    pub rate: AtomicU32,
    pub rate_max: AtomicU32,
    pub rate_mark: AtomicU64,
}

impl Counters {
    pub fn enter(&self) {
        let now = self.scur.fetch_add(1, Relaxed) + 1;
        self.smax.fetch_max(now, Relaxed);
        self.stot.fetch_add(1, Relaxed);
    }

    pub fn leave(&self) {
        self.scur.fetch_sub(1, Relaxed);
    }

    /// Counts a session until the guard is dropped, also when the future holding it is
    /// dropped half-way (an HTTP/2 stream the client reset).
    pub fn session(&self) -> Session<'_> {
        self.enter();
        Session(self)
    }

    /// Called once a second: the sessions since the previous tick become the rate.
    pub fn tick(&self) {
        let now = self.stot.load(Relaxed);
        let then = self.rate_mark.swap(now, Relaxed);
        let r = now.saturating_sub(then).min(u32::MAX as u64) as u32;
        self.rate.store(r, Relaxed);
        self.rate_max.fetch_max(r, Relaxed);
    }

    pub fn response(&self, status: u16) {
        let i = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.hrsp[i].fetch_add(1, Relaxed);
    }
}

pub struct ServerRt {
    pub cfg: Server,
    pub counters: Counters,
    pub health: Mutex<Health>,
    pub admin: AtomicU8,
    pub weight: AtomicU32,
    /// `maxconn`: permits held for the life of a request to this server.
    pub slots: Option<Arc<Semaphore>>,
    pub last_change: Mutex<Instant>,
    /// Text of the last check ("L4OK", "L7STS 503", "L4CON Connection refused").
    pub last_check: Mutex<String>,
    pub chkfail: AtomicU64,
    pub chkdown: AtomicU64,
    /// Idle keep-alive connections to this server (the HTTP/1 path's pool), newest last,
    /// one pool per worker thread (a connection is used by the thread whose runtime
    /// registered it).
    pub idle: Box<[Mutex<Vec<Idle>>]>,
}

pub struct Idle {
    pub stream: tokio::net::TcpStream,
    pub since: Instant,
}

/// Idle connections kept per server, and for how long.
const MAX_IDLE: usize = 256;
/// Pools per server: workers beyond this share one (still correct, just not local).
const POOL_SLOTS: usize = 16;

fn pool_slot() -> usize {
    super::workers::current() % POOL_SLOTS
}
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl ServerRt {
    pub fn admin(&self) -> Admin {
        match self.admin.load(Relaxed) {
            1 => Admin::Drain,
            2 => Admin::Maint,
            _ => Admin::Ready,
        }
    }

    /// An idle connection still open (the server has not closed or written to it).
    pub fn take_idle(&self) -> Option<tokio::net::TcpStream> {
        let mut idle = self.idle[pool_slot()].lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while let Some(c) = idle.pop() {
            if now.saturating_duration_since(c.since) > IDLE_TIMEOUT {
                continue;
            }
            let mut probe = [0u8; 1];
            match c.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(c.stream),
                _ => continue,
            }
        }
        None
    }

    pub fn put_idle(&self, stream: tokio::net::TcpStream) {
        let mut idle = self.idle[pool_slot()].lock().unwrap_or_else(|p| p.into_inner());
        // Expired connections are at the front (oldest first): let them go.
        let now = Instant::now();
        let expired =
            idle.iter().take_while(|c| now.saturating_duration_since(c.since) > IDLE_TIMEOUT).count();
        idle.drain(..expired);
        if idle.len() >= MAX_IDLE {
            // The oldest is the likeliest to have been closed by the server.
            idle.remove(0);
        }
        idle.push(Idle { stream, since: now });
    }

    pub fn is_up(&self) -> bool {
        !self.cfg.disabled
            && self.admin() != Admin::Maint
            && self.health.lock().map(|h| h.is_up()).unwrap_or(true)
    }

    /// May take new (non-persistent) traffic.
    pub fn usable(&self) -> bool {
        self.is_up() && self.admin() == Admin::Ready && self.weight.load(Relaxed) > 0
    }

    pub fn candidate(&self) -> Candidate {
        Candidate {
            usable: self.usable(),
            backup: self.cfg.backup,
            weight: self.weight.load(Relaxed),
            static_weight: self.cfg.weight,
            active: self.counters.scur.load(Relaxed),
        }
    }

    /// The status column: UP, DOWN, MAINT, DRAIN, "UP 1/3", "no check".
    pub fn status(&self) -> String {
        if self.cfg.disabled || self.admin() == Admin::Maint {
            return "MAINT".into();
        }
        let h = self.health.lock().map(|h| h.status()).unwrap_or_default();
        if self.admin() == Admin::Drain && h == "UP" {
            return "DRAIN".into();
        }
        if !self.cfg.check {
            return if self.admin() == Admin::Drain { "DRAIN".into() } else { "no check".into() };
        }
        h
    }
}

pub struct BackendRt {
    pub cfg: ProxySection,
    pub servers: Vec<Arc<ServerRt>>,
    pub balancer: Mutex<Balancer>,
    /// Its `qcur`/`qmax` are the backend-wide queue's.
    pub counters: Counters,
    /// Notified whenever a server's slot is released: wakes the backend's queue.
    pub freed: Arc<tokio::sync::Notify>,
}

impl BackendRt {
    pub fn connect_timeout(&self) -> Duration {
        self.cfg.settings.timeouts.connect.unwrap_or(Duration::from_secs(30))
    }

    pub fn server_timeout(&self) -> Duration {
        self.cfg.settings.timeouts.server.unwrap_or(Duration::from_secs(30))
    }

    /// HAProxy: `timeout queue` or, when unset, `timeout connect`.
    pub fn queue_timeout(&self) -> Duration {
        self.cfg.settings.timeouts.queue.unwrap_or_else(|| self.connect_timeout())
    }

    pub fn up_servers(&self) -> usize {
        self.servers.iter().filter(|s| s.is_up()).count()
    }
}

pub struct FrontendRt {
    pub cfg: ProxySection,
    pub counters: Counters,
    /// Its concurrent connections: its own `maxconn`, else the global one, else
    /// `ideal_maxconn`.
    pub maxconn: u32,
}

/// A fallback when a frontend's own limit cannot be found (it went in a reload).
pub const DEFAULT_FRONTEND_MAXCONN: u32 = 2000;

/// HAProxy's `global maxconn` when the configuration sets none (its
/// compute_ideal_maxconn): half of the file descriptors left once the listeners, the
/// health checks and three per thread (poller, wake-up pipe) are set aside, and at least
/// 100. Each connection takes two descriptors, the client's and the server's.
pub fn ideal_maxconn(nofile: u64, listeners: usize, checks: usize, threads: usize) -> u32 {
    let reserved = (listeners + checks + 3 * threads) as u64;
    (nofile.saturating_sub(reserved) / 2).clamp(100, u32::MAX as u64) as u32
}

/// The soft limit on open files now (`ballast` raises it to the hard limit at start, as
/// HAProxy does).
fn open_file_limit() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        1024
    }
}

pub struct Shared {
    pub frontends: Vec<Arc<FrontendRt>>,
    pub backends: HashMap<String, Arc<BackendRt>>,
    /// Declaration order, for stats.
    pub order: Vec<String>,
    /// The stats' proxy id of the first proxy: 2 with a `stats socket` (HAProxy's CLI
    /// proxy takes id 1), else 1.
    pub first_iid: usize,
    pub started: Instant,
}

impl Shared {
    /// Updates every rate counter (frontends, backends, servers); run once a second.
    pub fn tick_rates(&self) {
        for f in &self.frontends {
            f.counters.tick();
        }
        for b in self.backends.values() {
            b.counters.tick();
            for s in &b.servers {
                s.counters.tick();
            }
        }
    }

    pub fn frontend(&self, name: &str) -> Option<Arc<FrontendRt>> {
        self.frontends.iter().find(|f| f.cfg.name == name).cloned()
    }

    pub fn server(&self, backend: &str, server: &str) -> Option<Arc<ServerRt>> {
        self.backends.get(backend)?.servers.iter().find(|s| s.cfg.name == server).cloned()
    }
}

/// After a reload, a server that is still there (same backend, name and address) keeps
/// its health and admin state, and its runtime weight if its configured one is unchanged.
pub fn carry_over(old: &Shared, new: &Shared) {
    for (name, be) in &new.backends {
        for s in &be.servers {
            let Some(o) = old.server(name, &s.cfg.name) else { continue };
            if o.cfg.addr != s.cfg.addr {
                continue;
            }
            let h = *o.health.lock().unwrap_or_else(|p| p.into_inner());
            let mut nh = s.health.lock().unwrap_or_else(|p| p.into_inner());
            if h.rise == nh.rise && h.fall == nh.fall {
                *nh = h;
            }
            s.admin.store(o.admin.load(Relaxed), Relaxed);
            if o.cfg.weight == s.cfg.weight {
                s.weight.store(o.weight.load(Relaxed), Relaxed);
            }
            *s.last_check.lock().unwrap_or_else(|p| p.into_inner()) =
                o.last_check.lock().unwrap_or_else(|p| p.into_inner()).clone();
        }
    }
}

pub fn build(config: &ballast_l7::haproxy::L7Config) -> Arc<Shared> {
    let mut backends = HashMap::new();
    let mut frontends = Vec::new();
    let default_maxconn = config.global.maxconn.unwrap_or_else(|| {
        let listeners = config.proxies.iter().map(|p| p.binds.len()).sum();
        let checks = config.proxies.iter().flat_map(|p| &p.servers).filter(|s| s.check).count();
        let threads = config
            .global
            .nbthread
            .map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n as usize);
        ideal_maxconn(open_file_limit(), listeners, checks, threads)
    });
    for p in &config.proxies {
        if p.kind.has_frontend() {
            let maxconn = p.settings.maxconn.unwrap_or(default_maxconn);
            frontends.push(Arc::new(FrontendRt { cfg: p.clone(), counters: Counters::default(), maxconn }));
        }
        if p.kind.has_backend() {
            let servers = p
                .servers
                .iter()
                .map(|s| {
                    Arc::new(ServerRt {
                        cfg: s.clone(),
                        counters: Counters::default(),
                        health: Mutex::new(Health::new(s.rise, s.fall)),
                        admin: AtomicU8::new(Admin::Ready as u8),
                        weight: AtomicU32::new(s.weight),
                        slots: (s.maxconn > 0).then(|| Arc::new(Semaphore::new(s.maxconn as usize))),
                        last_change: Mutex::new(Instant::now()),
                        last_check: Mutex::new(String::new()),
                        chkfail: AtomicU64::new(0),
                        chkdown: AtomicU64::new(0),
                        idle: (0..POOL_SLOTS).map(|_| Mutex::new(Vec::new())).collect(),
                    })
                })
                .collect();
            backends.insert(
                p.name.clone(),
                Arc::new(BackendRt {
                    cfg: p.clone(),
                    servers,
                    balancer: Mutex::new(Balancer::with_hashing(
                        p.settings.balance.clone(),
                        ballast_l7::balance::Hashing {
                            kind: p.settings.hash_type,
                            uri: p.settings.uri_hash,
                            domain_only: p.settings.hdr_domain_only,
                            ids: ballast_l7::hashing::server_ids(
                                &p.servers.iter().map(|s| s.id).collect::<Vec<_>>(),
                            ),
                        },
                    )),
                    counters: Counters::default(),
                    freed: Arc::new(tokio::sync::Notify::new()),
                }),
            );
        }
    }
    Arc::new(Shared {
        frontends,
        backends,
        order: config.proxies.iter().map(|p| p.name.clone()).collect(),
        first_iid: if config.global.stats_socket.is_some() { 2 } else { 1 },
        started: Instant::now(),
    })
}
