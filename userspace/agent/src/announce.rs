//! Telling the segment that a VIP is here now: a gratuitous ARP (IPv4) or an unsolicited
//! neighbour advertisement (IPv6) from the interface that holds it, so routers and hosts
//! update their caches at once instead of when their entry expires.
use std::{io, net::IpAddr};

fn mac_of(iface: &str) -> io::Result<[u8; 6]> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))?;
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() != 6 {
        return Err(io::Error::other(format!("{iface}: no MAC address")));
    }
    for (i, p) in parts.iter().enumerate() {
        mac[i] =
            u8::from_str_radix(p, 16).map_err(|_| io::Error::other(format!("{iface}: bad MAC {text}")))?;
    }
    Ok(mac)
}

fn index_of(iface: &str) -> io::Result<u32> {
    let name = std::ffi::CString::new(iface).map_err(|_| io::Error::other("bad interface name"))?;
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// An Ethernet frame carrying a gratuitous ARP request for `vip` from `mac`.
pub fn garp_frame(mac: [u8; 6], vip: std::net::Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&vip.octets());
    f
}

/// An unsolicited neighbour advertisement's ICMPv6 message for `vip` (the kernel adds the
/// checksum): override set, the target link-layer address option.
pub fn na_message(mac: [u8; 6], vip: std::net::Ipv6Addr) -> Vec<u8> {
    let mut m = Vec::with_capacity(32);
    m.extend_from_slice(&[136, 0, 0, 0]);
    m.extend_from_slice(&0x2000_0000u32.to_be_bytes());
    m.extend_from_slice(&vip.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(&mac);
    m
}

fn send_garp(iface: &str, vip: std::net::Ipv4Addr) -> io::Result<()> {
    let (mac, index) = (mac_of(iface)?, index_of(iface)?);
    let frame = garp_frame(mac, vip);
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ARP as u16).to_be() as i32);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
        sa.sll_ifindex = index as i32;
        sa.sll_halen = 6;
        sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let n = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n < 0 {
            return Err(err);
        }
    }
    Ok(())
}

fn send_na(iface: &str, vip: std::net::Ipv6Addr) -> io::Result<()> {
    let (mac, index) = (mac_of(iface)?, index_of(iface)?);
    let msg = na_message(mac, vip);
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // Neighbour discovery needs a hop limit of 255 (RFC 4861 §7.1.2).
        let hops: libc::c_int = 255;
        let set =
            |opt| libc::setsockopt(fd, libc::IPPROTO_IPV6, opt, (&hops as *const libc::c_int).cast(), 4);
        set(libc::IPV6_MULTICAST_HOPS);
        let idx = index as libc::c_int;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            (&idx as *const libc::c_int).cast(),
            4,
        );
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as u16;
        sa.sin6_addr.s6_addr = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
        sa.sin6_scope_id = index;
        let n = libc::sendto(
            fd,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&sa as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as u32,
        );
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// One announcement of `vip` on `iface`.
pub fn announce(iface: &str, vip: IpAddr) -> io::Result<()> {
    match vip {
        IpAddr::V4(a) => send_garp(iface, a),
        IpAddr::V6(a) => send_na(iface, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = garp_frame(mac, "14.14.1.100".parse().unwrap());
        assert_eq!(f.len(), 42);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[28..32], &[14, 14, 1, 100], "sender IP");
        assert_eq!(&f[38..42], &[14, 14, 1, 100], "target IP: the same (gratuitous)");
        let m = na_message(mac, "2001:db8::1".parse().unwrap());
        assert_eq!((m[0], m[4] & 0x20, m.len()), (136, 0x20, 32));
    }
}
