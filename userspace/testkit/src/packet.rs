//! Building frames with correct checksums, and checking the checksums of frames the XDP
//! program wrote.
use std::net::IpAddr;

pub const ETH_IP: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86DD;

pub fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [b] = chunks.remainder() {
        sum += (*b as u32) << 8;
    }
    sum
}

pub fn csum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut s = 0;
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s = csum_add(s, &a.octets());
            s = csum_add(s, &b.octets());
            s += proto as u32 + len as u32;
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            s = csum_add(s, &a.octets());
            s = csum_add(s, &b.octets());
            s += (len as u32 >> 16) + (len as u32 & 0xffff) + proto as u32;
        }
        _ => panic!("mixed families"),
    }
    s
}

pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn ipv4_opts(src: &str, dst: &str, proto: u8, options: &[u8], payload: &[u8], frag: u16) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4));
    let (s, d): (std::net::Ipv4Addr, std::net::Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    let hl = 20 + options.len();
    let mut h = vec![0u8; hl];
    h[0] = 0x40 | (hl / 4) as u8;
    h[2..4].copy_from_slice(&((hl + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&s.octets());
    h[16..20].copy_from_slice(&d.octets());
    h[20..].copy_from_slice(options);
    let c = csum_fold(csum_add(0, &h));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

pub fn ipv4(src: &str, dst: &str, proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_opts(src, dst, proto, &[], payload, 0x4000)
}

pub fn ipv6(src: &str, dst: &str, nexthdr: u8, payload: &[u8]) -> Vec<u8> {
    let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = nexthdr;
    h[7] = 64;
    h[8..24].copy_from_slice(&s.octets());
    h[24..40].copy_from_slice(&d.octets());
    h.extend_from_slice(payload);
    h
}

/// A TCP segment (SYN unless `flags` says otherwise) with a valid checksum.
pub fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&1000u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    t.extend_from_slice(data);
    let c = csum_fold(csum_add(pseudo(src.parse().unwrap(), dst.parse().unwrap(), 6, t.len()), &t));
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

pub fn udp(src: &str, dst: &str, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(data);
    let mut c = csum_fold(csum_add(pseudo(src.parse().unwrap(), dst.parse().unwrap(), 17, u.len()), &u));
    if c == 0 {
        c = 0xffff;
    }
    u[6..8].copy_from_slice(&c.to_be_bytes());
    u
}

pub fn icmp4(kind: u8, code: u8, rest: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(payload);
    let c = csum_fold(csum_add(0, &m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

pub fn icmp6(src: &str, dst: &str, kind: u8, code: u8, rest: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest.to_be_bytes());
    m.extend_from_slice(payload);
    let c = csum_fold(csum_add(pseudo(src.parse().unwrap(), dst.parse().unwrap(), 58, m.len()), &m));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// A parsed IP packet: addresses, protocol, and where its L4 part starts.
#[derive(Debug)]
pub struct Ip<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub header: &'a [u8],
    pub payload: &'a [u8],
}

pub fn parse_ip(p: &[u8]) -> Ip<'_> {
    match p[0] >> 4 {
        4 => {
            let hl = (p[0] & 0xf) as usize * 4;
            let tot = u16::from_be_bytes([p[2], p[3]]) as usize;
            Ip {
                src: IpAddr::from(<[u8; 4]>::try_from(&p[12..16]).unwrap()),
                dst: IpAddr::from(<[u8; 4]>::try_from(&p[16..20]).unwrap()),
                proto: p[9],
                header: &p[..hl],
                payload: &p[hl..tot],
            }
        }
        6 => {
            let pl = u16::from_be_bytes([p[4], p[5]]) as usize;
            Ip {
                src: IpAddr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap()),
                dst: IpAddr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap()),
                proto: p[6],
                header: &p[..40],
                payload: &p[40..40 + pl],
            }
        }
        v => panic!("IP version {v}"),
    }
}

/// Checks the IPv4 header checksum and the TCP/UDP/ICMP checksum of an IP packet.
pub fn checksums_ok(p: &[u8]) -> Result<(), String> {
    let ip = parse_ip(p);
    if p[0] >> 4 == 4 && csum_fold(csum_add(0, ip.header)) != 0 {
        return Err("bad IPv4 header checksum".into());
    }
    let ok = match ip.proto {
        6 | 17 => {
            if ip.proto == 17 && p[0] >> 4 == 4 && ip.payload[6..8] == [0, 0] {
                true
            } else {
                csum_fold(csum_add(pseudo(ip.src, ip.dst, ip.proto, ip.payload.len()), ip.payload)) == 0
            }
        }
        1 => csum_fold(csum_add(0, ip.payload)) == 0,
        58 => csum_fold(csum_add(pseudo(ip.src, ip.dst, 58, ip.payload.len()), ip.payload)) == 0,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("bad L4 checksum (proto {})", ip.proto))
    }
}
