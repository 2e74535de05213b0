//! A packet capture on one interface of a namespace (an `AF_PACKET` socket, like tcpdump's),
//! and what tests read from it on a shared segment: who claimed an IPv4 address by ARP and
//! who sent IPv4 packets from it, by source MAC, in the order the wire saw them. Bounded:
//! it keeps at most `max` frames and stops when dropped.
use std::{
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// One captured frame: when (wall clock, ms since the epoch, comparable with the times the
/// agents record on this machine) and its bytes (the first 128).
#[derive(Debug, Clone)]
pub struct Frame {
    pub at_ms: u64,
    pub bytes: Vec<u8>,
}

/// What a frame says about an IPv4 address on the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// An ARP packet (request, reply or gratuitous) whose sender is `ip` at `mac`.
    Arp { mac: [u8; 6], ip: Ipv4Addr, reply: bool },
    /// An IPv4 packet from `ip` sent by `mac`.
    Ipv4 { mac: [u8; 6], ip: Ipv4Addr },
}

impl Frame {
    pub fn claim(&self) -> Option<Claim> {
        let b = &self.bytes;
        if b.len() < 34 {
            return None;
        }
        let mac: [u8; 6] = b[6..12].try_into().ok()?;
        match u16::from_be_bytes([b[12], b[13]]) {
            0x0806 if b.len() >= 42 => Some(Claim::Arp {
                mac: b[22..28].try_into().ok()?,
                ip: Ipv4Addr::new(b[28], b[29], b[30], b[31]),
                reply: u16::from_be_bytes([b[20], b[21]]) == 2,
            }),
            0x0800 => Some(Claim::Ipv4 { mac, ip: Ipv4Addr::new(b[26], b[27], b[28], b[29]) }),
            _ => None,
        }
    }
}

pub struct Capture {
    frames: Arc<Mutex<Vec<Frame>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Capture {
    /// Starts capturing every frame on `iface` of namespace `ns` (received and sent),
    /// keeping at most `max`. Returns once the socket is open.
    pub fn start(ns: &str, iface: &str, max: usize) -> Capture {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (f, s, name) = (frames.clone(), stop.clone(), iface.to_string());
        let thread = crate::spawn_in(ns, move || {
            let fd = match open(&name) {
                Ok(fd) => {
                    let _ = ready_tx.send(Ok(()));
                    fd
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n <= 0 {
                    continue;
                }
                let mut v = f.lock().unwrap();
                if v.len() < max {
                    v.push(Frame { at_ms: now_ms(), bytes: buf[..(n as usize).min(128)].to_vec() });
                }
            }
            unsafe { libc::close(fd) };
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("capture thread")
            .unwrap_or_else(|e| panic!("capture on {iface} in {ns}: {e}"));
        Capture { frames, stop, thread: Some(thread) }
    }

    /// The frames captured so far.
    pub fn frames(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    /// (time, claim) of every frame claiming `ip`, in capture order.
    pub fn claims_of(&self, ip: Ipv4Addr) -> Vec<(u64, Claim)> {
        self.frames()
            .iter()
            .filter_map(|f| f.claim().map(|c| (f.at_ms, c)))
            .filter(|(_, c)| match c {
                Claim::Arp { ip: a, .. } | Claim::Ipv4 { ip: a, .. } => *a == ip,
            })
            .collect()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open(iface: &str) -> Result<i32, String> {
    let c = std::ffi::CString::new(iface).map_err(|e| e.to_string())?;
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(format!("no interface {iface}"));
    }
    let proto = (libc::ETH_P_ALL as u16).to_be();
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto;
    sa.sll_ifindex = index as i32;
    let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
    let ok = unsafe {
        libc::bind(fd, (&sa as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
            == 0
            && libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            ) == 0
    };
    if !ok {
        let e = std::io::Error::last_os_error();
        unsafe { libc::close(fd) };
        return Err(e.to_string());
    }
    Ok(fd)
}

/// Sends one raw frame on `iface` of the current namespace.
pub fn send_frame(iface: &str, frame: &[u8]) -> Result<(), String> {
    let c = std::ffi::CString::new(iface).map_err(|e| e.to_string())?;
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(format!("no interface {iface}"));
    }
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = index as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&frame[..6]);
    let n = unsafe {
        libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    let e = std::io::Error::last_os_error();
    unsafe { libc::close(fd) };
    if n < 0 {
        return Err(e.to_string());
    }
    Ok(())
}

/// A broadcast ARP request "who has `target`? tell `ip` at `mac`".
pub fn arp_request(mac: [u8; 6], ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}
