//! `mode tcp`: pick a server, connect (with retries and redispatch), then relay bytes both
//! ways until both sides close, one fails, or nothing moves for `timeout client` / `timeout
//! server` (`timeout tunnel` for both, if set); one `option tcplog` line per connection.
//! The client's side may be TLS (`bind ... ssl crt`): the server gets the plain bytes.
use std::{
    net::SocketAddr,
    sync::atomic::Ordering::Relaxed,
    time::{Instant, SystemTime},
};

use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use ballast_l7::termination::{Cause, Phase, Termination};

use crate::{
    conn::ClientTimeouts,
    http,
    httplog::{httplog_date, log_ms, log_retries},
    queue,
    relay::{self, End},
    state::{BackendRt, FrontendRt, ServerRt, Shared},
    upstream::{self, SendError},
};

/// What the `tcplog` line says about a connection. Timers in ms, None: step not reached.
struct Session {
    server: String,
    t_queue: Option<u128>,
    t_connect: Option<u128>,
    retries: u32,
    redispatched: bool,
    down: u64,
    termination: Termination,
}

pub async fn serve<C>(shared: &Shared, fe: &FrontendRt, mut client: C, peer: SocketAddr, local: SocketAddr)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let (accepted, start) = (SystemTime::now(), Instant::now());
    let name = fe.cfg.default_backend.as_deref().unwrap_or(&fe.cfg.name);
    let Some(be) = shared.backends.get(name) else { return };
    fe.counters.enter();
    be.counters.enter();
    let mut s = Session {
        server: "<NOSRV>".into(),
        t_queue: None,
        t_connect: None,
        retries: 0,
        redispatched: false,
        down: 0,
        termination: Termination::NORMAL,
    };
    let mut up = 0;
    if let Some((server, conn, _permit)) = connect(be, peer, local, &mut s).await {
        server.counters.enter();
        let t = &be.cfg.settings.timeouts;
        let client_idle = t.tunnel.unwrap_or(ClientTimeouts::of(&fe.cfg.settings.timeouts).client);
        let server_idle = t.tunnel.unwrap_or(be.server_timeout());
        let r = relay::relay(&mut client, conn, client_idle, server_idle).await;
        (up, s.down) = (r.up, r.down);
        s.termination = r.end.termination();
        for c in [&server.counters, &be.counters, &fe.counters] {
            c.bin.fetch_add(r.up, Relaxed);
            c.bout.fetch_add(r.down, Relaxed);
        }
        match r.end {
            End::ClientFailed | End::ClientTimedOut => {
                server.counters.cli_abrt.fetch_add(1, Relaxed);
                be.counters.cli_abrt.fetch_add(1, Relaxed);
            }
            End::ServerFailed | End::ServerTimedOut => {
                server.counters.srv_abrt.fetch_add(1, Relaxed);
                be.counters.srv_abrt.fetch_add(1, Relaxed);
            }
            End::Closed => {}
        }
        server.counters.leave();
    }
    // As HAProxy logs them: the frontend's count with this connection, the others without.
    be.counters.leave();
    let be_conns = be.counters.scur.load(Relaxed);
    let srv_conns =
        be.servers.iter().find(|x| x.cfg.name == s.server).map_or(0, |x| x.counters.scur.load(Relaxed));
    let fe_conns = fe.counters.scur.load(Relaxed);
    fe.counters.leave();
    let settings = &fe.cfg.settings;
    // HAProxy falls back to tcplog for `option httplog` in a TCP proxy; dontlognull leaves
    // out connections the client sent nothing on (as HAProxy: a server banner alone is null).
    if (settings.tcplog || settings.httplog) && !(settings.dontlognull && up == 0) {
        // %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
        log::info!(
            target: "ballast::tcplog",
            "{}:{} [{}] {} {}/{} {}/{}/{} {} {} {}/{}/{}/{}/{} 0/0",
            peer.ip(),
            peer.port(),
            httplog_date(accepted),
            fe.cfg.name,
            be.cfg.name,
            s.server,
            log_ms(s.t_queue),
            log_ms(s.t_connect),
            start.elapsed().as_millis(),
            s.down,
            s.termination,
            fe_conns,
            fe_conns,
            be_conns,
            srv_conns,
            log_retries(s.retries, s.redispatched),
        );
    }
}

/// A connection to a server, as the HTTP path makes one: a slot within `timeout queue`
/// (`sQ` when none frees up), then the connect, retried `retries` times (where, and after
/// what pause: `http::retry`); `SC` when none is possible.
async fn connect(
    be: &BackendRt,
    peer: SocketAddr,
    local: SocketAddr,
    s: &mut Session,
) -> Option<(std::sync::Arc<ServerRt>, TcpStream, queue::Slot)> {
    let mut bound = None;
    let mut tries_left = be.cfg.settings.retries;
    loop {
        let t0 = Instant::now();
        let assigned = http::assign(be, bound, peer, None, None).await;
        s.t_queue = Some(t0.elapsed().as_millis());
        let (idx, permit) = match assigned {
            Ok(x) => x,
            Err(http::Unassigned::NoServer) => {
                s.termination = Termination::new(Cause::ServerAbort, Phase::Connect);
                return None;
            }
            Err(http::Unassigned::QueueTimeout) => {
                s.termination = Termination::new(Cause::ServerTimeout, Phase::Queue);
                return None;
            }
        };
        let server = be.servers[idx].clone();
        s.server = server.cfg.name.clone();
        let t1 = Instant::now();
        // A new connection: one client's bytes, never pooled.
        if let Ok((conn, _)) = upstream::connect(be, &server, true, peer, local).await {
            s.t_connect = Some(t1.elapsed().as_millis());
            return Some((server, conn, permit));
        }
        http::count_failure(be, &server, &SendError::Connect, tries_left > 0);
        if tries_left == 0 {
            s.termination = Termination::new(Cause::ServerAbort, Phase::Connect);
            return None;
        }
        tries_left -= 1;
        s.retries += 1;
        let next = http::retry(be, idx, tries_left, peer, None, None, false).await;
        bound = Some(next.server);
        s.redispatched |= next.redispatched;
    }
}
