//! Evaluating ACLs, conditions and log-format strings against what a request (or, for
//! `tcp-request connection`, a connection) offers, as HAProxy evaluates them.
use std::net::{IpAddr, SocketAddr};

use crate::haproxy::model::{Acl, Condition, Fetch, Format, FormatPart, Match, ProxySection};

/// What ACLs, conditions and log-formats read. A connection offers only its addresses;
/// everything else is then absent.
pub trait Sample {
    /// Calls `f` on each occurrence of header `name` (lower case), value as sent, until
    /// `f` returns true; whether one did.
    fn any_header(&self, name: &str, f: &mut dyn FnMut(&str) -> bool) -> bool;
    fn method(&self) -> Option<&str>;
    /// The path, without the query.
    fn path(&self) -> Option<&str>;
    /// The request target as sent.
    fn url(&self) -> Option<&str>;
    /// `1.0`, `1.1` or `2.0`.
    fn version(&self) -> Option<&str>;
    fn src(&self) -> Option<SocketAddr>;
    fn dst(&self) -> Option<SocketAddr>;
    /// Whether the client connection is TLS, and the SNI it sent.
    fn tls(&self) -> Option<Option<&str>>;
}

/// A connection before any request: its addresses.
pub struct Connection {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl Sample for Connection {
    fn any_header(&self, _: &str, _: &mut dyn FnMut(&str) -> bool) -> bool {
        false
    }
    fn method(&self) -> Option<&str> {
        None
    }
    fn path(&self) -> Option<&str> {
        None
    }
    fn url(&self) -> Option<&str> {
        None
    }
    fn version(&self) -> Option<&str> {
        None
    }
    fn src(&self) -> Option<SocketAddr> {
        Some(self.src)
    }
    fn dst(&self) -> Option<SocketAddr> {
        Some(self.dst)
    }
    fn tls(&self) -> Option<Option<&str>> {
        None
    }
}

/// The query of a target (after `?`), empty when there is none.
pub fn query_of(url: &str) -> &str {
    url.split_once('?').map_or("", |(_, q)| q)
}

fn eq(ci: bool, a: &str, b: &str) -> bool {
    if ci {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// `pattern` occurs in `subject` as whole words: bounded by the string's ends or by one of
/// `delims` (HAProxy's `dom` uses `/ ? . :`, `dir` uses `/ ?`).
fn word_match(ci: bool, subject: &str, pattern: &str, delims: &[char]) -> bool {
    let pattern = pattern.trim_matches(|c| delims.contains(&c));
    if pattern.is_empty() {
        return false;
    }
    let (s, p) = if ci {
        (subject.to_ascii_lowercase(), pattern.to_ascii_lowercase())
    } else {
        (subject.to_string(), pattern.to_string())
    };
    let bounded = |at: usize| {
        let before = s[..at].chars().next_back().is_none_or(|c| delims.contains(&c));
        let after = s[at + p.len()..].chars().next().is_none_or(|c| delims.contains(&c));
        before && after
    };
    s.match_indices(&p).any(|(at, _)| bounded(at))
}

fn in_net(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len as u32) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - len as u32) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        // An IPv4-mapped IPv6 address matches IPv4 networks, as HAProxy does.
        (IpAddr::V6(a), IpAddr::V4(_)) => {
            a.to_ipv4_mapped().is_some_and(|a| in_net(IpAddr::V4(a), (net, len)))
        }
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

fn int_match(v: i64, range: &str) -> bool {
    match range.split_once(':') {
        Some((lo, hi)) => {
            lo.parse::<i64>().map_or(lo.is_empty(), |lo| v >= lo)
                && hi.parse::<i64>().map_or(hi.is_empty(), |hi| v <= hi)
        }
        None => range.parse::<i64>() == Ok(v),
    }
}

/// Whether one fetched string matches the ACL.
fn string_matches(acl: &Acl, subject: &str) -> bool {
    let ci = acl.case_insensitive;
    match acl.method {
        Match::Exact => acl.values.iter().any(|v| eq(ci, subject, v)),
        Match::Begins => acl.values.iter().any(|v| {
            subject.len() >= v.len() && subject.is_char_boundary(v.len()) && eq(ci, &subject[..v.len()], v)
        }),
        Match::Ends => acl.values.iter().any(|v| {
            let at = subject.len().wrapping_sub(v.len());
            subject.len() >= v.len() && subject.is_char_boundary(at) && eq(ci, &subject[at..], v)
        }),
        Match::Contains => {
            let s = if ci { subject.to_ascii_lowercase() } else { subject.to_string() };
            acl.values.iter().any(|v| {
                if ci {
                    s.contains(&v.to_ascii_lowercase())
                } else {
                    s.contains(v.as_str())
                }
            })
        }
        Match::Dom => acl.values.iter().any(|v| word_match(ci, subject, v, &['/', '?', '.', ':'])),
        Match::Dir => acl.values.iter().any(|v| word_match(ci, subject, v, &['/', '?'])),
        Match::Ip => subject.parse::<IpAddr>().is_ok_and(|ip| acl.nets.iter().any(|n| in_net(ip, *n))),
        Match::Int => subject.parse::<i64>().is_ok_and(|n| acl.values.iter().any(|v| int_match(n, v))),
        Match::Bool => !subject.is_empty() && subject != "0",
        Match::Found => true,
    }
}

/// Whether one ACL line holds for `req`.
pub fn acl_true(acl: &Acl, req: &dyn Sample) -> bool {
    let m = acl.method;
    match &acl.fetch {
        Fetch::Always(b) => *b,
        Fetch::Hdr(name) => {
            req.any_header(name, &mut |v| v.split(',').map(str::trim).any(|part| string_matches(acl, part)))
        }
        Fetch::Src | Fetch::Dst => {
            let a = if acl.fetch == Fetch::Src { req.src() } else { req.dst() };
            let Some(a) = a else { return false };
            match m {
                Match::Ip => acl.nets.iter().any(|n| in_net(a.ip(), *n)),
                Match::Found => true,
                _ => string_matches(acl, &a.ip().to_string()),
            }
        }
        Fetch::SrcPort | Fetch::DstPort => {
            let a = if acl.fetch == Fetch::SrcPort { req.src() } else { req.dst() };
            a.is_some_and(|a| string_matches(acl, &a.port().to_string()))
        }
        Fetch::SslFc => {
            let tls = req.tls().is_some();
            match m {
                Match::Bool | Match::Found => tls,
                _ => string_matches(acl, if tls { "1" } else { "0" }),
            }
        }
        Fetch::SslFcSni => req.tls().flatten().is_some_and(|s| string_matches(acl, s)),
        Fetch::Path => req.path().is_some_and(|s| string_matches(acl, s)),
        Fetch::Url => req.url().is_some_and(|s| string_matches(acl, s)),
        Fetch::Query => req.url().is_some_and(|u| u.contains('?') && string_matches(acl, query_of(u))),
        Fetch::Method => req.method().is_some_and(|s| string_matches(acl, s)),
        Fetch::ReqVer => req.version().is_some_and(|s| string_matches(acl, s)),
    }
}

/// HAProxy's predefined ACLs; None for a name that is not one.
fn predefined(name: &str, req: &dyn Sample) -> Option<bool> {
    let url = || req.url().unwrap_or("");
    Some(match name {
        "TRUE" | "HTTP" => true,
        "FALSE" => false,
        "LOCALHOST" => req.src().is_some_and(|a| {
            in_net(a.ip(), ("127.0.0.0".parse().unwrap(), 8))
                || a.ip() == IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
        }),
        "HTTP_1.0" => req.version() == Some("1.0"),
        "HTTP_1.1" => req.version() == Some("1.1"),
        "HTTP_URL_ABS" => url().split_once("://").is_some_and(|(s, _)| !s.contains(['/', ':'])),
        "HTTP_URL_SLASH" => url().starts_with('/'),
        "HTTP_URL_STAR" => url() == "*",
        m => match m.strip_prefix("METH_") {
            Some(meth) => req.method() == Some(meth),
            None => return None,
        },
    })
}

/// An ACL name is true if any of its lines is (lines with the same name are ORed); the
/// predefined names when the proxy defines none by that name.
fn named_true(proxy: &ProxySection, name: &str, req: &dyn Sample) -> bool {
    let mut lines = proxy.acls.iter().filter(|a| a.name == name).peekable();
    if lines.peek().is_none() {
        return predefined(name, req).unwrap_or(false);
    }
    lines.any(|a| acl_true(a, req))
}

pub fn condition_true(proxy: &ProxySection, cond: &Condition, req: &dyn Sample) -> bool {
    let any =
        cond.any_of.iter().any(|all| all.iter().all(|(neg, name)| named_true(proxy, name, req) != *neg));
    any != cond.negate_all
}

/// Whether a rule's optional condition lets it apply.
pub fn applies(proxy: &ProxySection, cond: Option<&Condition>, req: &dyn Sample) -> bool {
    cond.is_none_or(|c| condition_true(proxy, c, req))
}

/// One sample as text, as a log-format prints it (empty when absent). A header gives its
/// last value, as HAProxy's `req.hdr(<name>)` does.
pub fn fetch_text(f: &Fetch, req: &dyn Sample) -> String {
    match f {
        Fetch::Hdr(name) => {
            let mut last = String::new();
            req.any_header(name, &mut |v| {
                last = v.rsplit(',').next().unwrap_or("").trim().to_string();
                false
            });
            last
        }
        Fetch::Path => req.path().unwrap_or("").to_string(),
        Fetch::Url => req.url().unwrap_or("").to_string(),
        Fetch::Query => query_of(req.url().unwrap_or("")).to_string(),
        Fetch::Method => req.method().unwrap_or("").to_string(),
        Fetch::ReqVer => req.version().unwrap_or("").to_string(),
        Fetch::Src => req.src().map(|a| a.ip().to_string()).unwrap_or_default(),
        Fetch::SrcPort => req.src().map(|a| a.port().to_string()).unwrap_or_default(),
        Fetch::Dst => req.dst().map(|a| a.ip().to_string()).unwrap_or_default(),
        Fetch::DstPort => req.dst().map(|a| a.port().to_string()).unwrap_or_default(),
        Fetch::SslFc => if req.tls().is_some() { "1" } else { "0" }.to_string(),
        Fetch::SslFcSni => req.tls().flatten().unwrap_or("").to_string(),
        Fetch::Always(b) => if *b { "1" } else { "0" }.to_string(),
    }
}

pub fn render(format: &Format, req: &dyn Sample) -> String {
    let mut out = String::new();
    for part in &format.0 {
        match part {
            FormatPart::Text(t) => out.push_str(t),
            FormatPart::Fetch(f) => out.push_str(&fetch_text(f, req)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_networks() {
        let dom = ['/', '?', '.', ':'];
        assert!(word_match(false, "www.dom.test", "dom.test", &dom));
        assert!(!word_match(false, "wwwdom.test", "dom.test", &dom), "whole labels only");
        assert!(word_match(false, "dom.test:8080", "dom.test", &dom));
        assert!(word_match(true, "WWW.Dom.Test", "dom.test", &dom));
        assert!(!word_match(false, "WWW.Dom.Test", "dom.test", &dom));
        assert!(word_match(false, "/a/b/c", "b", &['/', '?']));
        assert!(!word_match(false, "/a/bc", "b", &['/', '?']));
        assert!(in_net("10.1.2.3".parse().unwrap(), ("10.0.0.0".parse().unwrap(), 8)));
        assert!(!in_net("11.1.2.3".parse().unwrap(), ("10.0.0.0".parse().unwrap(), 8)));
        assert!(in_net("::ffff:10.1.2.3".parse().unwrap(), ("10.0.0.0".parse().unwrap(), 8)));
        assert!(in_net("2001:db8::1".parse().unwrap(), ("2001:db8::".parse().unwrap(), 32)));
        assert!(in_net("1.2.3.4".parse().unwrap(), ("0.0.0.0".parse().unwrap(), 0)));
        assert!(
            int_match(80, "80")
                && int_match(8080, "1024:")
                && int_match(22, ":1023")
                && !int_match(80, "81:90")
        );
    }
}
