//! `mode tcp`: pick a server, connect (with retries and redispatch), then copy bytes both
//! ways until either side closes.
use std::{net::SocketAddr, sync::atomic::Ordering::Relaxed};

use tokio::net::TcpStream;

use super::state::{FrontendRt, Shared};
use tokio::io::AsyncWriteExt;

use crate::{
    haproxy::model::ProxyProtocol,
    l7::{balance::Key, proxy_protocol},
};

pub async fn serve(
    shared: &Shared,
    fe: &FrontendRt,
    mut client: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let name = fe.cfg.default_backend.as_deref().unwrap_or(&fe.cfg.name);
    let Some(be) = shared.backends.get(name) else { return };
    fe.counters.enter();
    be.counters.enter();
    let key = Key { source: Some(peer.ip()), path: None, header: None };
    let mut exclude: Option<usize> = None;
    let mut tries = be.cfg.settings.retries + 1;
    let server = loop {
        let mut cands: Vec<crate::l7::balance::Candidate> =
            be.servers.iter().map(|s| s.candidate()).collect();
        if let Some(x) = exclude {
            cands[x].usable = false;
        }
        let Some(idx) = be.balancer.lock().ok().and_then(|mut b| b.pick(&cands, &key)) else { break None };
        let s = be.servers[idx].clone();
        let Ok(permit) =
            super::queue::acquire(s.slots.as_ref(), be.queue_timeout(), &s.counters.qcur, &s.counters.qmax)
                .await
        else {
            break None;
        };
        match tokio::time::timeout(be.connect_timeout(), TcpStream::connect(s.cfg.addr)).await {
            Ok(Ok(mut conn)) => {
                let header = match s.cfg.send_proxy {
                    Some(ProxyProtocol::V1) => proxy_protocol::encode_v1(peer, local),
                    Some(ProxyProtocol::V2) => proxy_protocol::encode_v2(peer, local),
                    None => Vec::new(),
                };
                if header.is_empty() || conn.write_all(&header).await.is_ok() {
                    break Some((s, conn, permit));
                }
                s.counters.econ.fetch_add(1, Relaxed);
                tries -= 1;
                if tries == 0 {
                    break None;
                }
            }
            _ => {
                s.counters.econ.fetch_add(1, Relaxed);
                tries -= 1;
                if tries == 0 {
                    break None;
                }
                s.counters.wretr.fetch_add(1, Relaxed);
                if tries == 1 && be.cfg.settings.redispatch {
                    exclude = Some(idx);
                }
            }
        }
    };
    if let Some((s, mut conn, _permit)) = server {
        let _ = conn.set_nodelay(true);
        s.counters.enter();
        if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut client, &mut conn).await {
            s.counters.bin.fetch_add(up, Relaxed);
            s.counters.bout.fetch_add(down, Relaxed);
            fe.counters.bin.fetch_add(up, Relaxed);
            fe.counters.bout.fetch_add(down, Relaxed);
        }
        s.counters.leave();
    }
    be.counters.leave();
    fe.counters.leave();
}
