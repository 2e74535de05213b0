//! Process-wide TLS counters for the runtime API's `show info`, with HAProxy's names and
//! meanings: client TLS connections open and in total (counted from the start of the
//! handshake, as HAProxy counts them, so failed handshakes count too), TLS sessions and
//! full handshakes ("key computations") per second over the last second, and the share
//! of resumed sessions. They outlive reloads, as HAProxy's process counters do.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

struct Rate {
    total: AtomicU64,
    mark: AtomicU64,
    rate: AtomicU64,
    max: AtomicU64,
}

impl Rate {
    const fn new() -> Rate {
        Rate { total: AtomicU64::new(0), mark: AtomicU64::new(0), rate: AtomicU64::new(0), max: AtomicU64::new(0) }
    }

    fn tick(&self) {
        let now = self.total.load(Relaxed);
        let r = now.saturating_sub(self.mark.swap(now, Relaxed));
        self.rate.store(r, Relaxed);
        self.max.fetch_max(r, Relaxed);
    }
}

static CURRENT: AtomicU64 = AtomicU64::new(0);
/// Every TLS connection started (CumSslConns) and its rate (SslRate).
static SESSIONS: Rate = Rate::new();
/// Full handshakes (SslFrontendKeyRate).
static FULL: Rate = Rate::new();

/// A client TLS connection, counted open until dropped.
pub struct Open(());

impl Drop for Open {
    fn drop(&mut self) {
        CURRENT.fetch_sub(1, Relaxed);
    }
}

/// Counts a client TLS connection whose handshake starts now.
pub fn open() -> Open {
    CURRENT.fetch_add(1, Relaxed);
    SESSIONS.total.fetch_add(1, Relaxed);
    Open(())
}

/// Counts a completed handshake: a full one computes keys, a resumed one does not.
pub fn handshaked(kind: Option<rustls::HandshakeKind>) {
    if kind != Some(rustls::HandshakeKind::Resumed) {
        FULL.total.fetch_add(1, Relaxed);
    }
}

/// Once a second, with the proxies' rate counters.
pub fn tick() {
    SESSIONS.tick();
    FULL.tick();
}

/// The `show info` lines HAProxy 2.6 prints about TLS, in its order. No `maxsslconn`,
/// rate limits, backend TLS or session cache here: those read 0, as in a HAProxy
/// without them.
pub fn info() -> String {
    let (rate, keys) = (SESSIONS.rate.load(Relaxed), FULL.rate.load(Relaxed));
    // HAProxy: 100 - 100 * key rate / session rate, 0 without sessions.
    let reuse = if rate == 0 { 0 } else { 100u64.saturating_sub(100 * keys.min(rate) / rate) };
    format!(
        "MaxSslConns: 0\nCurrSslConns: {}\nCumSslConns: {}\nSslRate: {rate}\nSslRateLimit: 0\nMaxSslRate: {}\n\
         SslFrontendKeyRate: {keys}\nSslFrontendMaxKeyRate: {}\nSslFrontendSessionReuse_pct: {reuse}\n\
         SslBackendKeyRate: 0\nSslBackendMaxKeyRate: 0\nSslCacheLookups: 0\nSslCacheMisses: 0\n",
        CURRENT.load(Relaxed),
        SESSIONS.total.load(Relaxed),
        SESSIONS.max.load(Relaxed),
        FULL.max.load(Relaxed),
    )
}
