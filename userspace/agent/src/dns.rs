//! DNS for GSLB: UDP and TCP on `ports.dns` (8600 by default, as Consul's). What is
//! answered is `ballast_control::gslb::respond` (pure); this module holds the sockets.
use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
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

/// How long the set of serving devices is reused between queries: reading it walks the
/// gossip members, too much work for every query, and gossip itself is seconds behind.
const SERVING_TTL: Duration = Duration::from_millis(100);

/// What answering needs: the state, who serves (alive, holding a lease), the domain,
/// the rotation counter.
pub struct Responder {
    pub plane: Arc<ControlPlane>,
    pub state: watch::Receiver<View>,
    pub domain: String,
    turn: AtomicUsize,
    /// When the set was read (None: never) and the set.
    serving: Mutex<(Option<Instant>, Arc<BTreeSet<String>>)>,
}

impl Responder {
    pub fn new(plane: Arc<ControlPlane>, state: watch::Receiver<View>, domain: &str) -> Responder {
        Responder {
            plane,
            state,
            domain: domain.trim_end_matches('.').to_ascii_lowercase(),
            turn: AtomicUsize::new(0),
            serving: Mutex::new((None, Arc::default())),
        }
    }

    fn serving(&self) -> Arc<BTreeSet<String>> {
        let mut s = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        if s.0.is_none_or(|t| t.elapsed() >= SERVING_TTL) {
            *s = (Some(Instant::now()), Arc::new(self.plane.serving_devices()));
        }
        s.1.clone()
    }

    /// The answer to `query` (the bytes of a DNS message) for a transport whose
    /// answers may be `max` bytes long; None when it is not worth one.
    pub fn answer(&self, query: &[u8], max: usize) -> Option<Vec<u8>> {
        let serving = self.serving();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let view = self.state.borrow();
        gslb::respond(query, max, &view.lb, &serving, &self.domain, turn)
    }
}

/// A UDP socket bound to `addr` with SO_REUSEPORT, so that each worker thread can have
/// its own and the kernel spreads the clients over them (as bind9 does per thread).
fn udp_reuseport(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use std::os::fd::FromRawFd as _;
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket calls on a descriptor this function owns; it is handed to
    // std's UdpSocket (which closes it) right after it is made.
    let sock = unsafe {
        let fd = libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::net::UdpSocket::from_raw_fd(fd)
    };
    let one: libc::c_int = 1;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: a valid descriptor and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let (storage, len) = sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes for `addr`'s family.
    if unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    UdpSocket::from_std(sock)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// Serves DNS on `addr` (UDP and TCP) until the process ends.
pub async fn serve(addr: SocketAddr, responder: Arc<Responder>) -> std::io::Result<()> {
    // One UDP socket per worker thread (SO_REUSEPORT): a single receive loop was the
    // limit (bench/gslb.sh).
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let mut udp = Vec::with_capacity(workers);
    for _ in 0..workers {
        udp.push(udp_reuseport(addr)?);
    }
    let tcp = TcpListener::bind(addr).await?;
    log::info!("DNS on {addr} (udp x{workers}, tcp) for {}.", responder.domain);
    for udp in udp {
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
    }
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
