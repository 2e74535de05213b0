//! Keywords valid in `defaults` and in proxies: modes, timeouts, `balance`, `option`,
//! `cookie`, `http-check`.
use std::time::Duration;

use super::{
    num,
    server::{server_params, ServerParams},
    time_arg, Parser,
};
use crate::haproxy::model::*;

/// Known HAProxy keywords that ballast does not implement and that change only how
/// answers look, what is logged or how the proxy runs, never who gets served or with
/// what protection: a WARNING, and the configuration loads.
pub(super) const IGNORED_PROXY: &[&str] = &[
    "errorfile",
    "errorloc",
    "errorloc302",
    "errorloc303",
    "compression",
    "capture",
    "stick-table",
    "monitor-uri",
    "fullconn",
    "description",
    "id",
    "unique-id-format",
    "unique-id-header",
    "log-format",
    "email-alert",
    "grace",
    "http-send-name-header",
    "source",
    "server-state-file-name",
    "load-server-state-from-file",
    "bind-process",
    "log-tag",
    "enabled",
];

/// Known HAProxy keywords that ballast does not implement and whose absence would change
/// who gets served, where, or with what protection: an ALERT (the configuration does
/// not load), with the reason.
pub(super) const REFUSED_PROXY: &[(&str, &str)] = &[
    ("http-after-response", "its header rules would not be applied"),
    ("tcp-response", "its rules would not be applied"),
    ("redirect", "its redirects would not be made (use 'http-request redirect')"),
    ("reqadd", "removed in HAProxy 2.1; use 'http-request add-header'"),
    ("rspadd", "removed in HAProxy 2.1; use 'http-response add-header'"),
    ("reqrep", "removed in HAProxy 2.1"),
    ("rsprep", "removed in HAProxy 2.1"),
    ("use-server", "requests would go to other servers than it names"),
    ("force-persist", "persistence would differ"),
    ("ignore-persist", "persistence would differ"),
    ("persist", "persistence would differ"),
    ("stick", "clients would not stick to their servers"),
    ("disabled", "the proxy would serve although the configuration disables it"),
    ("rate-limit", "sessions would not be rate limited"),
    ("monitor", "its 'monitor fail' rules would not be applied"),
    ("filter", "its filter would not run"),
    ("dispatch", "requests would not go to the dispatch address"),
];

/// Keywords that `defaults` and proxies share. Returns false if `w` is not one of them.
pub(super) fn settings_kw(p: &mut Parser, s: &mut ProxySettings, w: &[String], in_defaults: bool) -> bool {
    let kw = w[0].as_str();
    match kw {
        "mode" => match w.get(1).map(String::as_str) {
            Some("http") => s.mode = Mode::Http,
            Some("tcp") => s.mode = Mode::Tcp,
            other => p.alert(format!("'mode' expects http or tcp, got {other:?}")),
        },
        "balance" => balance(p, s, w),
        "hash-type" => hash_type(p, s, w),
        "retries" => s.retries = num(p, w, 1, "retries").unwrap_or(s.retries),
        "http-reuse" => match w.get(1).map(String::as_str) {
            Some("never") => s.http_reuse = HttpReuse::Never,
            Some("safe") => s.http_reuse = HttpReuse::Safe,
            Some("aggressive" | "always") => s.http_reuse = HttpReuse::Always,
            other => {
                p.alert(format!("'http-reuse' expects never, safe, aggressive or always, got {other:?}"))
            }
        },
        "maxconn" => s.maxconn = num(p, w, 1, "maxconn").or(s.maxconn),
        "log" => {
            if w.get(1).map(String::as_str) == Some("global") {
                s.log_global = true;
            } else {
                p.warn("per-proxy log targets are not supported by ballast; logs go to the global ones");
            }
        }
        "contimeout" | "clitimeout" | "srvtimeout" => {
            let new = match kw {
                "contimeout" => "connect",
                "clitimeout" => "client",
                _ => "server",
            };
            if let Some(d) = time_arg(p, w, 1, kw) {
                p.warn(format!(
                    "'{kw}' was removed in HAProxy 2.1; read as 'timeout {new} {}'",
                    w.get(1).map(String::as_str).unwrap_or("")
                ));
                set_timeout(&mut s.timeouts, new, d);
            }
        }
        "timeout" => {
            let Some(which) = w.get(1).cloned() else {
                p.alert("'timeout' expects a name and a time");
                return true;
            };
            let known = [
                "connect",
                "client",
                "server",
                "queue",
                "http-request",
                "http-keep-alive",
                "check",
                "tunnel",
            ];
            if ["client-fin", "server-fin", "tarpit"].contains(&which.as_str()) {
                p.warn(format!("'timeout {which}' is not supported by ballast, ignored"));
            } else if !known.contains(&which.as_str()) {
                p.alert(format!("unknown timeout '{which}'"));
            } else if let Some(d) = time_arg(p, w, 2, &format!("timeout {which}")) {
                set_timeout(&mut s.timeouts, &which, d);
            }
        }
        "option" | "no" => option(p, s, w),
        "cookie" => cookie(p, s, w),
        "http-check" => http_check(p, s, w),
        "default-server" => {
            let mut ds = s.default_server.clone();
            server_params(p, &w[1..], &mut ServerParams::Defaults(&mut ds));
            s.default_server = ds;
        }
        _ => {
            if in_defaults {
                match kw {
                    "bind" | "server" | "acl" | "use_backend" | "default_backend" => {
                        p.alert(format!("'{kw}' is not allowed in a 'defaults' section"))
                    }
                    "stats" => p.warn("'stats' in defaults is not supported by ballast, ignored"),
                    "http-request" | "http-response" | "tcp-request" => p.alert(format!(
                        "'{kw}' rules in a 'defaults' section are not supported (HAProxy allows them only in \
                         named defaults sections); write them in the proxies"
                    )),
                    k if IGNORED_PROXY.contains(&k) => {
                        p.warn(format!("'{k}' is not supported by ballast, ignored"))
                    }
                    k if REFUSED_PROXY.iter().any(|(r, _)| *r == k) => refused(p, k),
                    k => p.alert(format!("unknown keyword '{k}' in 'defaults' section")),
                }
                return true;
            }
            return false;
        }
    }
    true
}

pub(super) fn set_timeout(t: &mut Timeouts, which: &str, d: Duration) {
    let slot = match which {
        "connect" => &mut t.connect,
        "client" => &mut t.client,
        "server" => &mut t.server,
        "queue" => &mut t.queue,
        "http-request" => &mut t.http_request,
        "http-keep-alive" => &mut t.http_keep_alive,
        "check" => &mut t.check,
        _ => &mut t.tunnel,
    };
    *slot = Some(d);
}

pub(super) fn balance(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
    let Some(algo) = w.get(1) else {
        p.alert("'balance' expects an algorithm");
        return;
    };
    let b = match algo.as_str() {
        "roundrobin" => Balance::RoundRobin,
        "static-rr" => Balance::StaticRr,
        "leastconn" => Balance::LeastConn,
        "source" => Balance::Source,
        "uri" => {
            let mut o = crate::hashing::UriHash::default();
            let mut i = 2;
            while i < w.len() {
                match w[i].as_str() {
                    "whole" => o.whole = true,
                    "path-only" => o.path_only = true,
                    kw @ ("len" | "depth") => {
                        let Some(n) = w.get(i + 1).and_then(|v| v.parse::<u32>().ok()).filter(|&n| n > 0) else {
                            p.alert(format!("'balance uri {kw}' expects a positive integer"));
                            return;
                        };
                        if kw == "len" {
                            o.len = n
                        } else {
                            o.depth = n
                        }
                        i += 1;
                    }
                    other => {
                        p.alert(format!("'balance uri': unknown option '{other}' (len, depth, whole, path-only)"));
                        return;
                    }
                }
                i += 1;
            }
            s.uri_hash = o;
            Balance::Uri
        }
        "random" => Balance::Random(2),
        a if a.starts_with("hdr(") && a.ends_with(')') && a.len() > 5 => {
            match w.get(2).map(String::as_str) {
                None => s.hdr_domain_only = false,
                Some("use_domain_only") => s.hdr_domain_only = true,
                Some(other) => {
                    p.alert(format!("'balance {a}': unknown option '{other}' (use_domain_only)"));
                    return;
                }
            }
            Balance::Hdr(a[4..a.len() - 1].to_ascii_lowercase())
        }
        a if a.starts_with("random(") && a.ends_with(')') => match a[7..a.len() - 1].parse::<u32>() {
            Ok(n) if n >= 1 => Balance::Random(n),
            _ => {
                p.alert(format!("'balance {a}': draws must be a number of at least 1"));
                return;
            }
        },
        a => {
            p.alert(format!(
                "'balance {a}' is not supported (roundrobin, static-rr, leastconn, source, uri, hdr(<name>), random(<draws>))"
            ));
            return;
        }
    };
    s.balance = b;
}

/// `hash-type <map-based|consistent> [<function> [avalanche]]`: a consistent type with no
/// function named hashes with sdbm and the avalanche (HAProxy 2.6's default).
fn hash_type(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
    use crate::hashing::{HashFn, HashType};
    let consistent = match w.get(1).map(String::as_str) {
        Some("map-based") => false,
        Some("consistent") => true,
        other => {
            p.alert(format!("'hash-type' expects map-based or consistent, got {other:?}"));
            return;
        }
    };
    let function = match w.get(2).map(String::as_str) {
        None => {
            s.hash_type = HashType { consistent, function: HashFn::Sdbm, avalanche: consistent };
            return;
        }
        Some("sdbm") => HashFn::Sdbm,
        Some("djb2") => HashFn::Djb2,
        Some("wt6") => HashFn::Wt6,
        Some("crc32") => HashFn::Crc32,
        Some(other) => {
            p.alert(format!("'hash-type': unknown function '{other}' (sdbm, djb2, wt6, crc32)"));
            return;
        }
    };
    let avalanche = match w.get(3).map(String::as_str) {
        None => false,
        Some("avalanche") => true,
        Some(other) => {
            p.alert(format!("'hash-type': unknown modifier '{other}' (avalanche)"));
            return;
        }
    };
    s.hash_type = HashType { consistent, function, avalanche };
}

pub(super) fn option(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
    let (negate, w) = if w[0] == "no" { (true, &w[1..]) } else { (false, w) };
    if w.first().map(String::as_str) != Some("option") {
        p.alert("'no' must be followed by 'option'");
        return;
    }
    let Some(name) = w.get(1).map(String::as_str) else {
        p.alert("'option' expects a name");
        return;
    };
    match name {
        // One log format or the other: the last one said wins, as in HAProxy.
        "httplog" => {
            s.httplog = !negate;
            s.tcplog &= negate;
        }
        "tcplog" => {
            s.tcplog = !negate;
            s.httplog &= negate;
        }
        "dontlognull" => s.dontlognull = !negate,
        "http-ignore-probes" => s.ignore_probes = !negate,
        "redispatch" => s.redispatch = !negate,
        "forwardfor" => {
            if negate {
                s.forwardfor = None;
                return;
            }
            let mut header = "X-Forwarded-For".to_string();
            let mut i = 2;
            while i < w.len() {
                match w[i].as_str() {
                    "header" => {
                        header = w.get(i + 1).cloned().unwrap_or(header);
                        i += 2;
                    }
                    "except" | "if-none" => {
                        p.warn(format!("'option forwardfor {}' is not supported by ballast, ignored", w[i]));
                        i += if w[i] == "except" { 2 } else { 1 };
                    }
                    other => {
                        p.alert(format!("'option forwardfor': unknown argument '{other}'"));
                        return;
                    }
                }
            }
            s.forwardfor = Some(header);
        }
        "httpchk" => {
            if negate {
                s.httpchk = None;
                return;
            }
            let c = s.httpchk.get_or_insert_with(HttpCheck::default_request);
            match w.len() {
                2 => {}
                3 => c.uri = w[2].clone(),
                _ => {
                    c.method = w[2].clone();
                    c.uri = w[3].clone();
                    c.version = w.get(4).cloned().unwrap_or_else(|| "HTTP/1.0".into());
                }
            }
        }
        "http-keep-alive" | "http-server-close" | "httpclose" | "http-tunnel" | "forceclose" => {
            if name != "http-keep-alive" {
                p.warn(format!(
                    "'option {name}' is not supported by ballast; connections are kept alive on both sides"
                ));
            }
        }
        "abortonclose"
        | "log-health-checks"
        | "tcp-check"
        | "allbackups"
        | "splice-auto"
        | "splice-request"
        | "splice-response"
        | "tcpka"
        | "clitcpka"
        | "srvtcpka"
        | "log-separate-errors"
        | "checkcache"
        | "contstats"
        | "http-use-htx"
        | "http-buffer-request"
        | "accept-invalid-http-request"
        | "accept-invalid-http-response"
        | "httplog-clf"
        | "nolinger"
        | "originalto"
        | "persist"
        | "prefer-last-server"
        | "socket-stats"
        | "transparent"
        | "independent-streams"
        | "independant-streams" => p.warn(format!("'option {name}' is not supported by ballast, ignored")),
        other => p.alert(format!("unknown option '{other}'")),
    }
}

pub(super) fn cookie(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
    let Some(name) = w.get(1).cloned() else {
        p.alert("'cookie' expects a name");
        return;
    };
    let mut c = CookieCfg {
        name,
        insert: false,
        indirect: false,
        nocache: false,
        httponly: false,
        secure: false,
        domain: None,
    };
    let mut i = 2;
    while i < w.len() {
        match w[i].as_str() {
            "insert" => c.insert = true,
            "indirect" => c.indirect = true,
            "nocache" => c.nocache = true,
            "httponly" => c.httponly = true,
            "secure" => c.secure = true,
            "domain" => {
                c.domain = w.get(i + 1).cloned();
                i += 1;
            }
            "rewrite" | "prefix" => {
                p.alert(format!("'cookie ... {}' is not supported by ballast (use insert)", w[i]));
                return;
            }
            "postonly" | "preserve" | "dynamic" => {
                p.warn(format!("'cookie ... {}' is not supported by ballast, ignored", w[i]))
            }
            "maxidle" | "maxlife" | "attr" => {
                p.warn(format!("'cookie ... {}' is not supported by ballast, ignored", w[i]));
                i += 1;
            }
            other => {
                p.alert(format!("'cookie': unknown argument '{other}'"));
                return;
            }
        }
        i += 1;
    }
    if !c.insert {
        p.alert("'cookie' without 'insert' (rewrite/prefix modes) is not supported by ballast");
        return;
    }
    s.cookie = Some(c);
}

pub(super) fn http_check(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
    match w.get(1).map(String::as_str) {
        Some("expect") => http_check_expect(p, s, &w[2..]),
        Some("send") => http_check_send(p, s, &w[2..]),
        Some("comment") => {}
        Some("send-state") => p.warn("'http-check send-state' is not supported by ballast (no X-Haproxy-Server-State header), ignored"),
        // Each changes which servers pass, so which get traffic.
        Some(other @ ("disable-on-404" | "connect" | "set-var" | "unset-var")) => {
            p.alert(format!("'http-check {other}' is not supported by ballast"))
        }
        Some(other) => p.alert(format!("unknown 'http-check' action '{other}'")),
        None => p.alert("'http-check' expects an action"),
    }
}

/// `http-check send [meth <m>] [uri <u>] [ver <v>] [hdr <name> <value>]* [body <string>]`.
fn http_check_send(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
    let c = s.httpchk.get_or_insert_with(HttpCheck::default_request);
    let mut i = 0;
    while i < w.len() {
        let value = |n: usize| w.get(i + n).cloned();
        let (kw, took) = (w[i].as_str(), match w[i].as_str() {
            "hdr" => 3,
            _ => 2,
        });
        let Some(v) = value(1) else {
            p.alert(format!("'http-check send {kw}' expects a value"));
            return;
        };
        match kw {
            "meth" => c.method = v,
            "uri" => c.uri = v,
            "ver" => c.version = v,
            "body" => c.body = v,
            "comment" => {}
            "hdr" => {
                let Some(val) = value(2) else {
                    p.alert("'http-check send hdr' expects a name and a value");
                    return;
                };
                c.headers.push((v, val));
            }
            other => {
                // uri-lf, body-lf: log-format strings ballast does not evaluate.
                p.alert(format!("'http-check send {other}' is not supported by ballast"));
                return;
            }
        }
        i += took;
    }
}

/// `http-check expect [options] [!] <match> <pattern>`.
fn http_check_expect(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
    let mut i = 0;
    // Options before the match: those that only label or log the result are ignored (a
    // warning); those that change what the result means are refused.
    while let Some(kw) = w.get(i).map(String::as_str) {
        match kw {
            "comment" => {}
            "min-recv" | "on-success" | "on-error" => {
                p.warn(format!("'http-check expect {kw}' is not supported by ballast, ignored"))
            }
            "ok-status" | "error-status" | "tout-status" | "status-code" => {
                p.alert(format!("'http-check expect {kw}' is not supported by ballast"));
                return;
            }
            _ => break,
        }
        i += 2;
    }
    let (negate, rest) = match w.get(i).map(String::as_str) {
        Some("!") => (true, &w[(i + 1).min(w.len())..]),
        _ => (false, &w[i.min(w.len())..]),
    };
    let (Some(kind), Some(_)) = (rest.first(), rest.get(1)) else {
        p.alert("'http-check expect' expects 'status <codes>' or 'string <text>'");
        return;
    };
    let expect = match kind.as_str() {
        "status" => {
            let mut ranges = Vec::new();
            for c in rest[1].split(',') {
                let (lo, hi) = c.split_once('-').unwrap_or((c, c));
                match (lo.parse::<u16>(), hi.parse::<u16>()) {
                    (Ok(lo), Ok(hi)) if (100..600).contains(&lo) && (lo..600).contains(&hi) => ranges.push((lo, hi)),
                    _ => {
                        p.alert(format!("'http-check expect status': {c:?} is not an HTTP status or range"));
                        return;
                    }
                }
            }
            Expect::Status { ranges, negate }
        }
        "string" => Expect::String { needle: rest[1..].join(" "), negate },
        "rstatus" | "rstring" => {
            let pattern = rest[1..].join(" ");
            // Rust's regex syntax, not PCRE's: what it cannot express (backreferences,
            // lookaround) is refused rather than matched differently.
            if let Err(e) = regex::Regex::new(&pattern) {
                p.alert(format!("'http-check expect {kind}': {pattern:?} is not a regular expression ballast can run: {e}"));
                return;
            }
            if kind == "rstatus" {
                Expect::RStatus { pattern, negate }
            } else {
                Expect::RString { pattern, negate }
            }
        }
        other => {
            p.alert(format!("'http-check expect {other}' is not supported by ballast (status, string, rstatus, rstring)"));
            return;
        }
    };
    s.httpchk.get_or_insert_with(HttpCheck::default_request).expect = expect;
}

/// The ALERT for a keyword in [`REFUSED_PROXY`].
pub(super) fn refused(p: &mut Parser, kw: &str) {
    let why = REFUSED_PROXY.iter().find(|(k, _)| *k == kw).map_or("", |(_, w)| *w);
    p.alert(format!("'{kw}' is not supported by ballast: {why}"));
}
