//! The PROXY protocol (HAProxy's spec, v1 text and v2 binary): parsing what a load
//! balancer in front sends (`bind ... accept-proxy`) and encoding what ballast sends to
//! servers (`server ... send-proxy | send-proxy-v2`). Pure: bytes in, bytes out.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
/// The longest v1 header the spec allows, CRLF included.
pub const V1_MAX: usize = 107;

#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    /// Need more bytes (at least this many in all, when known).
    Incomplete(usize),
    /// Not a valid PROXY header.
    Invalid(&'static str),
    /// The header is `len` bytes; `addrs` is None for `UNKNOWN` / `LOCAL` (keep the socket's).
    Done { len: usize, addrs: Option<(SocketAddr, SocketAddr)> },
}

pub fn parse(buf: &[u8]) -> Parse {
    if buf.is_empty() {
        return Parse::Incomplete(1);
    }
    if buf[0] == b'P' {
        return parse_v1(buf);
    }
    if buf[0] == V2_SIGNATURE[0] {
        return parse_v2(buf);
    }
    Parse::Invalid("not a PROXY protocol header")
}

fn parse_v1(buf: &[u8]) -> Parse {
    let prefix = b"PROXY ";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Parse::Invalid("not a PROXY protocol header");
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parse::Invalid("v1 header longer than 107 bytes")
        } else {
            Parse::Incomplete(buf.len() + 1)
        };
    };
    if end + 2 > V1_MAX {
        return Parse::Invalid("v1 header longer than 107 bytes");
    }
    let Ok(line) = std::str::from_utf8(&buf[..end]) else { return Parse::Invalid("v1 header is not text") };
    let parts: Vec<&str> = line.split(' ').collect();
    let len = end + 2;
    match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Parse::Done { len, addrs: None },
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let (Ok(s), Ok(d)) = (src.parse::<IpAddr>(), dst.parse::<IpAddr>()) else {
                return Parse::Invalid("v1: bad address");
            };
            if (*fam == "TCP4") != (s.is_ipv4() && d.is_ipv4()) || s.is_ipv4() != d.is_ipv4() {
                return Parse::Invalid("v1: address family mismatch");
            }
            let (Ok(sp), Ok(dp)) = (sport.parse::<u16>(), dport.parse::<u16>()) else {
                return Parse::Invalid("v1: bad port");
            };
            Parse::Done { len, addrs: Some((SocketAddr::new(s, sp), SocketAddr::new(d, dp))) }
        }
        _ => Parse::Invalid("v1: malformed header"),
    }
}

fn parse_v2(buf: &[u8]) -> Parse {
    let n = buf.len().min(12);
    if buf[..n] != V2_SIGNATURE[..n] {
        return Parse::Invalid("not a PROXY protocol header");
    }
    if buf.len() < 16 {
        return Parse::Incomplete(16);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Parse::Invalid("v2: unsupported version");
    }
    let fam = buf[13];
    let body = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let len = 16 + body;
    if buf.len() < len {
        return Parse::Incomplete(len);
    }
    let a = &buf[16..len];
    match ver_cmd & 0x0f {
        0 => return Parse::Done { len, addrs: None }, // LOCAL: health checks of the LB itself
        1 => {}
        _ => return Parse::Invalid("v2: unknown command"),
    }
    match fam {
        0x11 | 0x12 if a.len() >= 12 => {
            let s = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let d = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
            let sp = u16::from_be_bytes([a[8], a[9]]);
            let dp = u16::from_be_bytes([a[10], a[11]]);
            Parse::Done { len, addrs: Some((SocketAddr::new(s.into(), sp), SocketAddr::new(d.into(), dp))) }
        }
        0x21 | 0x22 if a.len() >= 36 => {
            let s = Ipv6Addr::from(<[u8; 16]>::try_from(&a[0..16]).unwrap());
            let d = Ipv6Addr::from(<[u8; 16]>::try_from(&a[16..32]).unwrap());
            let sp = u16::from_be_bytes([a[32], a[33]]);
            let dp = u16::from_be_bytes([a[34], a[35]]);
            Parse::Done { len, addrs: Some((SocketAddr::new(s.into(), sp), SocketAddr::new(d.into(), dp))) }
        }
        0x00 => Parse::Done { len, addrs: None },
        0x11 | 0x12 | 0x21 | 0x22 => Parse::Invalid("v2: address block too short"),
        _ => Parse::Done { len, addrs: None }, // unix sockets etc.: keep the socket's address
    }
}

/// Maps an IPv4-mapped IPv6 address back to IPv4, so both ends have one family.
fn unmap(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), a.port()),
            None => a,
        },
        _ => a,
    }
}

pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (s, d) = (unmap(src), unmap(dst));
    if s.is_ipv4() != d.is_ipv4() {
        return b"PROXY UNKNOWN\r\n".to_vec();
    }
    let fam = if s.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {fam} {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port()).into_bytes()
}

pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (s, d) = (unmap(src), unmap(dst));
    let mut out = V2_SIGNATURE.to_vec();
    out.push(0x21); // version 2, PROXY
    match (s, d) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        _ => {
            out.push(0x00);
            out.extend_from_slice(&0u16.to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_round_trip_and_spec_examples() {
        let h = encode_v1(sa("203.0.113.7:56324"), sa("198.51.100.10:443"));
        assert_eq!(h, b"PROXY TCP4 203.0.113.7 198.51.100.10 56324 443\r\n");
        let mut buf = h.clone();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&buf),
            Parse::Done { len: h.len(), addrs: Some((sa("203.0.113.7:56324"), sa("198.51.100.10:443"))) }
        );
        let h6 = encode_v1(sa("[2001:db8::1]:1000"), sa("[2001:db8::2]:80"));
        assert_eq!(h6, b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 80\r\n");
        assert!(matches!(parse(&h6), Parse::Done { addrs: Some(_), .. }));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Parse::Done { len: 15, addrs: None });
        assert_eq!(
            encode_v1(sa("[::ffff:10.0.0.1]:1"), sa("10.0.0.2:2")),
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n"
        );
    }

    #[test]
    fn v2_round_trip() {
        for (s, d) in [("203.0.113.7:56324", "198.51.100.10:443"), ("[2001:db8::1]:1000", "[2001:db8::2]:80")]
        {
            let h = encode_v2(sa(s), sa(d));
            assert_eq!(parse(&h), Parse::Done { len: h.len(), addrs: Some((sa(s), sa(d))) });
            for cut in 0..h.len() {
                assert!(matches!(parse(&h[..cut]), Parse::Incomplete(_)), "cut at {cut}");
            }
        }
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Parse::Done { len: 16, addrs: None });
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Parse::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n"), Parse::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), Parse::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 1.2.3.4\r\n"), Parse::Invalid(_)));
        assert!(matches!(parse(&[b'P'; 200]), Parse::Invalid(_)));
        assert_eq!(parse(b"PROXY TCP4 1.2"), Parse::Incomplete(15));
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert!(matches!(parse(&v2), Parse::Invalid(_)));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(matches!(parse(&short), Parse::Invalid(_)));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 7;
        for _ in 0..20000 {
            let mut b = Vec::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 60) as usize;
            let seed = if x.is_multiple_of(2) { V2_SIGNATURE.to_vec() } else { b"PROXY TCP4 ".to_vec() };
            b.extend_from_slice(&seed[..(x as usize % seed.len())]);
            for i in 0..n {
                b.push((x >> (i % 56)) as u8);
            }
            let _ = parse(&b);
        }
    }
}
