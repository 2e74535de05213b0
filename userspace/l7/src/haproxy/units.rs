//! HAProxy's value syntaxes: times ("5000" = ms, "5s", "1m", "100ms", "2h", "1d", "10us")
//! and addresses ("*:8080", "1.2.3.4:80", "[::1]:80", ":80", "ipv6@:80").
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

pub fn time(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a time (e.g. 5000, 5s, 100ms)"))?;
    let d = match unit {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        "d" => Duration::from_secs(n.saturating_mul(86400)),
        _ => return Err(format!("{s:?}: unknown time unit {unit:?} (us, ms, s, m, h, d)")),
    };
    Ok(d)
}

/// A `bind` address: `*:PORT` and `:PORT` listen on every IPv4 address, like HAProxy.
pub fn bind_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.strip_prefix("ipv4@").unwrap_or(s);
    let (s, v6_any) = match s.strip_prefix("ipv6@") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    let (host, port) = split_host_port(s)?;
    let ip = match host {
        "" | "*" if v6_any => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h => h.parse().map_err(|_| format!("{h:?} is not an IP address"))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// A server's address as written: an IP address, or a host name resolved at start.
pub enum ServerHost {
    Ip(SocketAddr),
    Name(String, u16),
}

pub fn server_host(s: &str) -> Result<ServerHost, String> {
    let (host, port) = split_host_port(s)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerHost::Ip(SocketAddr::new(ip, port)));
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(format!("{host:?} is neither an IP address nor a host name"));
    }
    Ok(ServerHost::Name(host.to_string(), port))
}

fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(|| format!("{s:?}: expected [IPv6]:PORT"))?;
        (h, p)
    } else {
        s.rsplit_once(':').ok_or_else(|| format!("{s:?}: expected ADDRESS:PORT"))?
    };
    if host.contains(':') && !s.starts_with('[') {
        return Err(format!("{s:?}: write IPv6 addresses as [ADDRESS]:PORT"));
    }
    let port: u16 = port.parse().map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time("5000"), Ok(Duration::from_millis(5000)));
        assert_eq!(time("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(time("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(time("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(time("1d"), Ok(Duration::from_secs(86400)));
        assert!(time("5x").is_err() && time("s").is_err() && time("").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(bind_addr("*:8080").unwrap(), "0.0.0.0:8080".parse().unwrap());
        assert_eq!(bind_addr(":80").unwrap(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(bind_addr("ipv6@:80").unwrap(), "[::]:80".parse().unwrap());
        assert_eq!(bind_addr("14.14.1.100:8080").unwrap(), "14.14.1.100:8080".parse().unwrap());
        assert_eq!(bind_addr("[::1]:443").unwrap(), "[::1]:443".parse().unwrap());
        assert!(matches!(server_host("192.168.56.254:80"), Ok(ServerHost::Ip(a)) if a == "192.168.56.254:80".parse().unwrap()));
        assert!(matches!(server_host("web1.internal:80"), Ok(ServerHost::Name(h, 80)) if h == "web1.internal"));
        assert!(server_host("10.0.0.1").is_err());
        assert!(server_host("10.0.0.1:99999").is_err());
        assert!(server_host("bad host!:80").is_err());
        assert!(bind_addr("::1:80").is_err());
    }
}
