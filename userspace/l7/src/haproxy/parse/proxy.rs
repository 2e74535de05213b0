//! Keywords of `listen`, `frontend` and `backend` sections only: `bind`, `stats`, and the
//! dispatch to the shared settings, servers and ACLs.
use std::path::PathBuf;

use super::{
    acl::{acl, condition},
    rules::{http_request, http_response, tcp_request},
    server::server,
    settings::{refused, settings_kw, IGNORED_PROXY, REFUSED_PROXY},
    time_arg, Parser,
};
use crate::haproxy::{model::*, units::bind_addr};

pub(super) fn proxy_kw(p: &mut Parser, idx: usize, w: &[String]) {
    let mut settings = std::mem::take(&mut p.proxies[idx].settings);
    let shared = settings_kw(p, &mut settings, w, false);
    p.proxies[idx].settings = settings;
    if shared {
        return;
    }
    let kind = p.proxies[idx].kind;
    let kw = w[0].as_str();
    match kw {
        "bind" if !kind.has_frontend() => p.alert("'bind' is not allowed in a backend"),
        "bind" => bind(p, idx, w),
        "server" if !kind.has_backend() => p.alert("'server' is not allowed in a frontend"),
        "server" => server(p, idx, w),
        "acl" => acl(p, idx, w),
        "use_backend" if !kind.has_frontend() => p.alert("'use_backend' is not allowed in a backend"),
        "use_backend" => {
            let (Some(name), Some(cond_kw)) = (w.get(1), w.get(2)) else {
                p.alert("'use_backend' expects a backend and 'if' or 'unless' with a condition");
                return;
            };
            if let Some(cond) = condition(p, idx, cond_kw, &w[3..]) {
                p.proxies[idx].use_backends.push(UseBackend { backend: name.clone(), cond });
            }
        }
        "default_backend" if !kind.has_frontend() => p.alert("'default_backend' is not allowed in a backend"),
        "default_backend" => match w.get(1) {
            Some(b) => p.proxies[idx].default_backend = Some(b.clone()),
            None => p.alert("'default_backend' expects a backend name"),
        },
        "stats" => stats(p, idx, w),
        "http-request" => http_request(p, idx, w),
        "http-response" => http_response(p, idx, w),
        "tcp-request" if !kind.has_frontend() => p.alert("'tcp-request' is not allowed in a backend"),
        "tcp-request" => tcp_request(p, idx, w),
        k if IGNORED_PROXY.contains(&k) => p.warn(format!("'{k}' is not supported by ballast, ignored")),
        k if REFUSED_PROXY.iter().any(|(r, _)| *r == k) => refused(p, k),
        k => p.alert(format!("unknown keyword '{k}' in '{}' section", kind.keyword())),
    }
}

pub(super) fn bind(p: &mut Parser, idx: usize, w: &[String]) {
    let Some(addrs) = w.get(1) else {
        p.alert("'bind' expects an address");
        return;
    };
    let mut template = plain_bind("0.0.0.0:0".parse().unwrap(), p.line);
    let mut ssl = false;
    let mut i = 2;
    while i < w.len() {
        match w[i].as_str() {
            "ssl" => ssl = true,
            "crt" => {
                match w.get(i + 1) {
                    Some(path) => template.tls_certs.push(PathBuf::from(path)),
                    None => p.alert("'crt' expects a path"),
                }
                i += 1;
            }
            "alpn" => {
                match w.get(i + 1) {
                    Some(list) => template.alpn = list.split(',').map(String::from).collect(),
                    None => p.alert("'alpn' expects a list"),
                }
                i += 1;
            }
            "accept-proxy" => template.accept_proxy = true,
            w_tls if template.tls.flag(w_tls) => {}
            "ssl-min-ver" | "ssl-max-ver" | "ciphers" | "ciphersuites" | "curves" | "ecdhe" => {
                match w.get(i + 1) {
                    Some(v) => {
                        if let Err(e) = template.tls.with_value(&w[i], v) {
                            p.alert(e);
                        }
                    }
                    None => p.alert(format!("'{}' expects a value", w[i])),
                }
                i += 1;
            }
            "verify" => {
                match w.get(i + 1).map(String::as_str) {
                    Some("none") => {}
                    Some(v @ ("required" | "optional")) => p.alert(format!(
                        "'verify {v}' (client certificates) is not supported by ballast: clients would not be verified"
                    )),
                    other => p.alert(format!("'verify' expects none, optional or required, got {other:?}")),
                }
                i += 1;
            }
            "crt-list" => {
                p.alert("'crt-list' is not supported by ballast: list the certificates with 'crt' (a file or a directory)");
                i += 1;
            }
            "name" | "process" | "thread" | "interface" | "mss" | "backlog" | "maxconn" | "ca-file"
            | "level" | "mode" | "user" | "group" | "id" | "nice" => {
                p.warn(format!("bind parameter '{}' is not supported by ballast, ignored", w[i]));
                i += 1;
            }
            "transparent" => template.transparent = true,
            "v4v6" | "v6only" | "defer-accept" | "tfo" | "allow-0rtt" => {
                p.warn(format!("bind parameter '{}' is not supported by ballast, ignored", w[i]))
            }
            other => p.alert(format!("unknown bind parameter '{other}'")),
        }
        i += 1;
    }
    if ssl && template.tls_certs.is_empty() {
        p.alert("'bind ... ssl' needs at least one 'crt <path>'");
    }
    if !ssl && !template.tls_certs.is_empty() {
        p.warn("'crt' without 'ssl' has no effect");
        template.tls_certs.clear();
    }
    for a in addrs.split(',') {
        match bind_addr(a) {
            Ok(addr) => {
                let mut b = template.clone();
                b.addr = addr;
                p.proxies[idx].binds.push(b);
            }
            Err(e) => p.alert(format!("'bind': {e}")),
        }
    }
}

pub(super) fn plain_bind(addr: std::net::SocketAddr, line: usize) -> Bind {
    Bind {
        addr,
        tls_certs: Vec::new(),
        alpn: Vec::new(),
        accept_proxy: false,
        transparent: false,
        line,
        tls: Default::default(),
        tls_policy: None,
    }
}

pub(super) fn stats(p: &mut Parser, idx: usize, w: &[String]) {
    let st = p.proxies[idx].stats.get_or_insert_with(Stats::default);
    match w.get(1).map(String::as_str) {
        Some("enable") => {
            st.uri.get_or_insert_with(|| "/haproxy?stats".to_string());
        }
        Some("uri") => match w.get(2) {
            Some(u) => st.uri = Some(u.clone()),
            None => p.alert("'stats uri' expects a path"),
        },
        Some("realm") => st.realm = Some(w[2..].join(" ")),
        Some("auth") => match w.get(2).and_then(|a| a.split_once(':')) {
            Some((u, pw)) => st.auth.push((u.to_string(), pw.to_string())),
            None => p.alert("'stats auth' expects user:password"),
        },
        Some("refresh") => {
            let d = time_arg(p, w, 2, "stats refresh");
            if let Some(st) = p.proxies[idx].stats.as_mut() {
                st.refresh = d;
            }
        }
        Some("admin") => st.admin = true,
        Some("show-legends") => st.show_legends = true,
        Some("scope") => match w.get(2) {
            Some(s) if s == "." => {
                let me = p.proxies[idx].name.clone();
                if let Some(st) = p.proxies[idx].stats.as_mut() {
                    st.scope.push(me);
                }
            }
            Some(s) => st.scope.push(s.clone()),
            None => p.alert("'stats scope' expects a proxy name or '.'"),
        },
        // Access rules for the page: ignoring them would serve it to whoever they refuse.
        Some("http-request") => p.alert("'stats http-request' is not supported by ballast (use 'stats auth')"),
        Some("hide-version") | Some("show-node") | Some("show-desc") | Some("bind-process") | Some("show-modules") => {
            let what = w[1].clone();
            p.warn(format!("'stats {what}' is not supported by ballast, ignored"))
        }
        other => p.alert(format!("unknown 'stats' keyword {other:?}")),
    }
}
