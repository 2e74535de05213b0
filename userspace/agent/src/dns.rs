//! DNS for GSLB: UDP and TCP on `ports.dns` (8600 by default, as Consul's). What is
//! answered is `ballast_control::gslb::respond` (pure); this module holds the sockets.
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use ballast_control::{gslb, plane::ControlPlane};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, UdpSocket},
    sync::{watch, Semaphore},
};

use crate::reconcile::View;

/// Concurrent TCP clients; more wait to be accepted.
const TCP_CLIENTS: usize = 64;
/// Queries one TCP connection may ask before it is closed.
const TCP_QUERIES: usize = 100;

/// What answering needs: the state, who serves (alive, holding a lease), the domain,
/// the rotation counter.
pub struct Responder {
    pub plane: Arc<ControlPlane>,
    pub state: watch::Receiver<View>,
    pub domain: String,
    turn: AtomicUsize,
}

impl Responder {
    pub fn new(plane: Arc<ControlPlane>, state: watch::Receiver<View>, domain: &str) -> Responder {
        Responder {
            plane,
            state,
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            turn: AtomicUsize::new(0),
        }
    }

    /// The answer to `query` (the bytes of a DNS message) for a transport whose
    /// answers may be `max` bytes long; None when it is not worth one.
    pub fn answer(&self, query: &[u8], max: usize) -> Option<Vec<u8>> {
        let serving = self.plane.serving_devices();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let view = self.state.borrow();
        gslb::respond(query, max, &view.lb, &serving, &self.domain, turn)
    }
}

/// Serves DNS on `addr` (UDP and TCP) until the process ends.
pub async fn serve(addr: SocketAddr, responder: Arc<Responder>) -> std::io::Result<()> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    log::info!("DNS on {addr} (udp, tcp) for {}.", responder.domain);
    let r = responder.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = udp.recv_from(&mut buf).await else { continue };
            if let Some(out) = r.answer(&buf[..n], 512) {
                let _ = udp.send_to(&out, peer).await;
            }
        }
    });
    let slots = Arc::new(Semaphore::new(TCP_CLIENTS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return Ok(()) };
        let Ok((mut conn, _)) = tcp.accept().await else { continue };
        let r = responder.clone();
        tokio::spawn(async move {
            let _permit = permit;
            // Each message is length-prefixed (RFC 1035 4.2.2); an idle client goes after
            // 10 s, a slow reader after 10 s of a blocked write, and any connection after
            // TCP_QUERIES queries (so a few clients cannot hold every slot).
            for _ in 0..TCP_QUERIES {
                let mut len = [0u8; 2];
                match tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut len)).await {
                    Ok(Ok(_)) => {}
                    _ => return,
                }
                let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if !matches!(
                    tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut msg)).await,
                    Ok(Ok(_))
                ) {
                    return;
                }
                let Some(out) = r.answer(&msg, usize::from(u16::MAX)) else { return };
                let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                if !matches!(tokio::time::timeout(Duration::from_secs(10), conn.write_all(&framed)).await, Ok(Ok(()))) {
                    return;
                }
            }
        });
    }
}
