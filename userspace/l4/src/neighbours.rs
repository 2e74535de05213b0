//! Keeps the kernel's neighbour entries for backends resolved. The XDP program takes next
//! hop MACs from the FIB (`bpf_fib_lookup`); with no entry, a tunnel packet cannot be left
//! to the stack (its outer source is this host's own address), so the device resolves
//! backends ahead of traffic: a one-byte UDP datagram to the discard port makes the
//! kernel run ARP / neighbour discovery, and repeating it keeps entries from going stale.
use std::net::{IpAddr, SocketAddr, UdpSocket};

/// The discard service: a backend that gets the probe ignores it (or answers with ICMP).
const DISCARD_PORT: u16 = 9;

/// Sends one probe to each address; returns how many could not be sent (no route).
pub fn warm(addrs: impl IntoIterator<Item = IpAddr>) -> usize {
    let v4 = UdpSocket::bind("0.0.0.0:0").ok();
    let v6 = UdpSocket::bind("[::]:0").ok();
    let mut failed = 0;
    for a in addrs {
        let sock = if a.is_ipv4() { v4.as_ref() } else { v6.as_ref() };
        let sent = sock.map(|s| s.send_to(&[0], SocketAddr::new(a, DISCARD_PORT)).is_ok()).unwrap_or(false);
        if !sent {
            failed += 1;
        }
    }
    failed
}
