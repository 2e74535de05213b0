//! `acl` lines, the `if`/`unless` conditions that use them (with anonymous `{ ... }`
//! ACLs), and the sample fetches both read.
use std::net::IpAddr;

use super::Parser;
use crate::haproxy::model::*;

/// ACLs HAProxy predefines (the ones ballast knows how to evaluate).
pub const PREDEFINED: &[&str] = &[
    "TRUE",
    "FALSE",
    "LOCALHOST",
    "HTTP",
    "HTTP_1.0",
    "HTTP_1.1",
    "HTTP_URL_ABS",
    "HTTP_URL_SLASH",
    "HTTP_URL_STAR",
    "METH_CONNECT",
    "METH_DELETE",
    "METH_GET",
    "METH_HEAD",
    "METH_OPTIONS",
    "METH_POST",
    "METH_PUT",
    "METH_TRACE",
];

/// A sample fetch by name, with its argument: `src`, `hdr(host)`, `req.hdr(x-id)`, ...
pub(super) fn fetch_named(word: &str) -> Result<Fetch, String> {
    let (name, arg) = match word.split_once('(') {
        Some((n, rest)) => match rest.strip_suffix(')') {
            Some(a) => (n, Some(a)),
            None => return Err(format!("'{word}': missing ')'")),
        },
        None => (word, None),
    };
    let header = |arg: Option<&str>| match arg.map(str::trim).filter(|a| !a.is_empty()) {
        Some(h) => Ok(Fetch::Hdr(h.to_ascii_lowercase())),
        None => Err(format!("'{word}': ballast needs a header name ({name}(<name>))")),
    };
    let plain = |f: Fetch| if arg.is_some() { Err(format!("'{word}' takes no argument")) } else { Ok(f) };
    match name {
        "hdr" | "req.hdr" => header(arg),
        "path" => plain(Fetch::Path),
        "url" => plain(Fetch::Url),
        "query" => plain(Fetch::Query),
        "method" => plain(Fetch::Method),
        "req.ver" | "req_ver" => plain(Fetch::ReqVer),
        "src" => plain(Fetch::Src),
        "src_port" => plain(Fetch::SrcPort),
        "dst" => plain(Fetch::Dst),
        "dst_port" => plain(Fetch::DstPort),
        "ssl_fc" => plain(Fetch::SslFc),
        "ssl_fc_sni" => plain(Fetch::SslFcSni),
        "always_true" => plain(Fetch::Always(true)),
        "always_false" => plain(Fetch::Always(false)),
        _ => Err(format!("sample fetch '{word}' is not supported by ballast")),
    }
}

/// An ACL keyword: its fetch and default match (`hdr_beg(host)` = `hdr(host) -m beg`).
fn acl_keyword(kw: &str) -> Result<(Fetch, Match), String> {
    let (base, arg) = match kw.split_once('(') {
        Some((b, rest)) => (b, Some(rest)),
        None => (kw, None),
    };
    for (suffix, m) in [
        ("_beg", Match::Begins),
        ("_end", Match::Ends),
        ("_sub", Match::Contains),
        ("_dom", Match::Dom),
        ("_dir", Match::Dir),
    ] {
        if let Some(stem) = base.strip_suffix(suffix) {
            if matches!(stem, "hdr" | "req.hdr" | "path" | "url" | "ssl_fc_sni") {
                let word = match arg {
                    Some(a) => format!("{stem}({a}"),
                    None => stem.to_string(),
                };
                return Ok((fetch_named(&word)?, m));
            }
        }
    }
    if base.ends_with("_reg") || base.ends_with("_len") || base.ends_with("_cnt") {
        return Err(format!("ACL criterion '{kw}' is not supported by ballast"));
    }
    let fetch = fetch_named(kw)?;
    let m = match fetch {
        Fetch::Src | Fetch::Dst => Match::Ip,
        Fetch::SrcPort | Fetch::DstPort => Match::Int,
        Fetch::SslFc | Fetch::Always(_) => Match::Bool,
        _ => Match::Exact,
    };
    Ok((fetch, m))
}

/// An address or network: `10.0.0.1`, `10.0.0.0/8`, `10.0.0.0/255.0.0.0`, `2001:db8::/32`.
fn net(v: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match v.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            Ok(_) => return None,
            Err(_) => {
                // A dotted mask (IPv4 only), contiguous.
                let mask: std::net::Ipv4Addr = l.parse().ok()?;
                let bits = u32::from(mask);
                if bits.leading_ones() + bits.trailing_zeros() != 32 {
                    return None;
                }
                bits.leading_ones() as u8
            }
        },
    };
    Some((ip, len))
}

/// `fetch [flags] values...` into an ACL named `name`.
fn acl_body(p: &mut Parser, name: &str, w: &[String]) -> Option<Acl> {
    let Some(kw) = w.first() else {
        p.alert(format!("acl '{name}': expects a criterion"));
        return None;
    };
    let (fetch, mut m) = match acl_keyword(kw) {
        Ok(x) => x,
        Err(e) => {
            p.alert(format!("acl '{name}': {e}"));
            return None;
        }
    };
    let (mut ci, mut i) = (false, 1);
    while let Some(f) = w.get(i) {
        match f.as_str() {
            "-i" => ci = true,
            "-m" => {
                m = match w.get(i + 1).map(String::as_str) {
                    Some("str") => Match::Exact,
                    Some("beg") => Match::Begins,
                    Some("end") => Match::Ends,
                    Some("sub") => Match::Contains,
                    Some("dom") => Match::Dom,
                    Some("dir") => Match::Dir,
                    Some("ip") => Match::Ip,
                    Some("int") => Match::Int,
                    Some("bool") => Match::Bool,
                    Some("found") => Match::Found,
                    other => {
                        p.alert(format!("acl '{name}': match method {other:?} is not supported by ballast"));
                        return None;
                    }
                };
                i += 1;
            }
            "--" => {
                i += 1;
                break;
            }
            flag if flag.starts_with('-')
                && flag.len() > 1
                && !flag[1..].starts_with(|c: char| c.is_ascii_digit()) =>
            {
                p.alert(format!("acl '{name}': flag '{flag}' is not supported by ballast (list the values)"));
                return None;
            }
            _ => break,
        }
        i += 1;
    }
    let values: Vec<String> = w[i.min(w.len())..].to_vec();
    let mut nets = Vec::new();
    match m {
        Match::Bool | Match::Found if !values.is_empty() => {
            p.alert(format!("acl '{name}': '{kw}' takes no value"));
            return None;
        }
        Match::Bool | Match::Found => {}
        _ if values.is_empty() => {
            p.alert(format!("acl '{name}' has no value to match"));
            return None;
        }
        Match::Ip => {
            for v in &values {
                match net(v) {
                    Some(n) => nets.push(n),
                    None => {
                        p.alert(format!("acl '{name}': '{v}' is not an address or a network"));
                        return None;
                    }
                }
            }
        }
        Match::Int => {
            for v in &values {
                let ok = match v.split_once(':') {
                    Some((a, b)) => {
                        (a.is_empty() || a.parse::<i64>().is_ok())
                            && (b.is_empty() || b.parse::<i64>().is_ok())
                    }
                    None => v.parse::<i64>().is_ok(),
                };
                if !ok {
                    p.alert(format!("acl '{name}': '{v}' is not a number or a range"));
                    return None;
                }
            }
        }
        _ => {}
    }
    Some(Acl { name: name.to_string(), fetch, method: m, case_insensitive: ci, values, nets, line: p.line })
}

pub(super) fn acl(p: &mut Parser, idx: usize, w: &[String]) {
    let Some(name) = w.get(1) else {
        p.alert("'acl' expects a name, a criterion and values");
        return;
    };
    if PREDEFINED.contains(&name.as_str()) {
        p.alert(format!("acl '{name}' would redefine one of HAProxy's predefined ACLs"));
        return;
    }
    // Several `acl` lines with one name are ORed, as in HAProxy: kept as separate entries.
    if let Some(a) = acl_body(p, name, &w[2..]) {
        p.proxies[idx].acls.push(a);
    }
}

/// `if|unless <terms>`: ACL names (or anonymous `{ ... }` ACLs), `!` to negate, ANDed,
/// `or` / `||` between groups.
pub(super) fn condition(p: &mut Parser, idx: usize, kw: &str, terms: &[String]) -> Option<Condition> {
    let negate_all = match kw {
        "if" => false,
        "unless" => true,
        other => {
            p.alert(format!("expected 'if' or 'unless', got '{other}'"));
            return None;
        }
    };
    let mut any_of = vec![Vec::new()];
    let mut i = 0;
    while i < terms.len() {
        let t = terms[i].as_str();
        match t {
            "or" | "||" => any_of.push(Vec::new()),
            "{" | "!{" => {
                let Some(end) = terms[i..].iter().position(|x| x == "}").map(|e| e + i) else {
                    p.alert("anonymous ACL: missing '}'");
                    return None;
                };
                let body = &terms[i + 1..end];
                let name = format!("{{ {} }}", body.join(" "));
                let acl = acl_body(p, &name, body)?;
                p.proxies[idx].acls.push(acl);
                any_of.last_mut().unwrap().push((t == "!{", name));
                i = end;
            }
            "}" => {
                p.alert("unexpected '}'");
                return None;
            }
            t => {
                let (neg, name) = match t.strip_prefix('!') {
                    Some(n) => (true, n),
                    None => (false, t),
                };
                any_of.last_mut().unwrap().push((neg, name.to_string()));
            }
        }
        i += 1;
    }
    if any_of.iter().any(Vec::is_empty) {
        p.alert("empty condition");
        return None;
    }
    Some(Condition { negate_all, any_of })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        assert_eq!(net("10.0.0.0/8"), Some(("10.0.0.0".parse().unwrap(), 8)));
        assert_eq!(net("10.0.0.0/255.255.0.0"), Some(("10.0.0.0".parse().unwrap(), 16)));
        assert_eq!(net("2001:db8::/32"), Some(("2001:db8::".parse().unwrap(), 32)));
        assert_eq!(net("192.0.2.7"), Some(("192.0.2.7".parse().unwrap(), 32)));
        assert_eq!(net("10.0.0.0/33"), None);
        assert_eq!(net("10.0.0.0/255.0.255.0"), None);
        assert_eq!(net("nope"), None);
    }

    #[test]
    fn keywords() {
        assert_eq!(acl_keyword("hdr_dom(Host)").unwrap(), (Fetch::Hdr("host".into()), Match::Dom));
        assert_eq!(acl_keyword("path_beg").unwrap(), (Fetch::Path, Match::Begins));
        assert_eq!(acl_keyword("src").unwrap(), (Fetch::Src, Match::Ip));
        assert_eq!(acl_keyword("dst_port").unwrap(), (Fetch::DstPort, Match::Int));
        assert_eq!(acl_keyword("ssl_fc").unwrap(), (Fetch::SslFc, Match::Bool));
        assert!(acl_keyword("path_reg").is_err());
        assert!(acl_keyword("hdr").is_err());
        assert!(acl_keyword("sc0_conn_rate").is_err());
    }
}
