//! Where a webhook may post and how its deliveries are signed: pure checks, shared by
//! the config (`lb.hook_allow`), the API (a hook's URL when it is written) and the
//! delivery loop (each delivery, after the name is resolved).
use std::net::IpAddr;

/// An entry of `lb.hook_allow`: a network (`10.0.0.0/8`, `2001:db8::/32`, an address) or
/// a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    Net(IpAddr, u8),
    Name(String),
}

impl Allow {
    pub fn parse(s: &str) -> Result<Allow, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let len = match len {
                None => max,
                Some(l) => l.parse::<u8>().ok().filter(|l| *l <= max).ok_or_else(|| format!("{s:?}: bad prefix length"))?,
            };
            return Ok(Allow::Net(ip, len));
        }
        let name_ok = len.is_none()
            && !s.is_empty()
            && s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if name_ok {
            Ok(Allow::Name(s.to_ascii_lowercase()))
        } else {
            Err(format!("{s:?} is neither a network (address/len) nor a host name"))
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let Allow::Net(net, len) = self else { return false };
        let (a, b, bits) = match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(*n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(*n), u128::from(i), 128),
            _ => return false,
        };
        let shift = bits - *len as u32;
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

/// Addresses a webhook never posts to, whatever the allowlist: this host (the agent's own
/// API listens there), link-local (cloud metadata services), unspecified, multicast.
pub fn forbidden(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(a) => a.is_loopback() || a.is_link_local() || a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_loopback() || a.is_unspecified() || a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The host of an `http://host[:port]/...` URL (brackets of an IPv6 literal removed).
pub fn url_host(url: &str) -> Option<&str> {
    let authority = url.strip_prefix("http://")?.split('/').next()?;
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split_once(']').map(|(h, _)| h);
    }
    Some(authority.rsplit_once(':').map_or(authority, |(h, _)| h))
}

/// Whether a hook may post to `url` (checked when it is written and at each delivery): an
/// address inside one of the allowlist's networks, or, when the allowlist is empty, any
/// address that is not forbidden; a host name only when the allowlist names it, and then
/// its addresses are checked at each delivery.
pub fn target_allowed(url: &str, allow: &[Allow]) -> Result<(), String> {
    let host = url_host(url).ok_or_else(|| format!("{url:?}: no host"))?;
    match host.parse::<IpAddr>() {
        // Listed explicitly: the operator's choice, even for this host.
        Ok(ip) if allow.iter().any(|a| a.contains(ip)) => Ok(()),
        Ok(ip) if forbidden(ip) => Err(format!(
            "{ip} is a loopback, link-local, unspecified or multicast address (list it in lb.hook_allow to allow it)"
        )),
        Ok(_) if allow.is_empty() => Ok(()),
        Ok(ip) => Err(format!("{ip} is outside lb.hook_allow")),
        Err(_) if allow.iter().any(|a| *a == Allow::Name(host.to_ascii_lowercase())) => Ok(()),
        Err(_) => Err(format!("host name {host:?} is not in lb.hook_allow (give an address, or list the name)")),
    }
}

/// `X-Ballast-Signature`'s value: `sha256=` and the hex HMAC-SHA256 of the body.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_targets_are_checked_against_the_allowlist() {
        let allow: Vec<Allow> = ["10.99.0.0/16", "hooks.example.com", "127.0.0.1"].iter().map(|s| Allow::parse(s).unwrap()).collect();
        assert!(Allow::parse("10.0.0.0/33").is_err() && Allow::parse("a b").is_err());
        for (url, ok) in [
            ("http://10.99.3.4:9000/e", true),
            ("http://10.98.3.4:9000/e", false),
            ("http://hooks.example.com/e", true),
            ("http://other.example.com/e", false),
            ("http://127.0.0.1:8500/v1/kv/x", true),
            ("http://127.0.0.2:8500/v1/kv/x", false),
        ] {
            assert_eq!(target_allowed(url, &allow).is_ok(), ok, "{url} with an allowlist");
        }
        // No allowlist: addresses anywhere but this host, link-local, unspecified,
        // multicast; no names.
        for (url, ok) in [
            ("http://10.98.3.4:9000/e", true),
            ("http://[2001:db8::1]:9000/e", true),
            ("http://127.0.0.1:8500/v1/kv/x", false),
            ("http://[::1]:8500/", false),
            ("http://[::ffff:127.0.0.1]:8500/", false),
            ("http://169.254.169.254/latest/meta-data", false),
            ("http://[fe80::1]/", false),
            ("http://0.0.0.0:8500/", false),
            ("http://224.0.0.1/", false),
            ("http://hooks.example.com/e", false),
        ] {
            assert_eq!(target_allowed(url, &[]).is_ok(), ok, "{url} without an allowlist");
        }
    }

    #[test]
    fn signatures_are_hmac_sha256() {
        assert_eq!(
            signature("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
