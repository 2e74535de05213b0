//! `server` and `default-server` lines.
use std::collections::BTreeSet;

use super::{num, time_arg, Parser};
use crate::haproxy::{
    model::*,
    units::{server_host, ServerHost},
};

pub(super) enum ServerParams<'a> {
    Defaults(&'a mut DefaultServer),
    Server(&'a mut Server),
}

pub(super) fn server_params(p: &mut Parser, w: &[String], target: &mut ServerParams) {
    let mut i = 0;
    while i < w.len() {
        let kw = w[i].as_str();
        let next = |p: &mut Parser, what: &str| -> Option<u32> { num(p, w, i + 1, what) };
        match kw {
            "check" => match target {
                ServerParams::Defaults(d) => d.check = true,
                ServerParams::Server(s) => s.check = true,
            },
            "inter" => {
                if let Some(d) = time_arg(p, w, i + 1, "inter") {
                    match target {
                        ServerParams::Defaults(x) => x.inter = d,
                        ServerParams::Server(x) => x.inter = d,
                    }
                }
                i += 1;
            }
            "rise" | "fall" | "weight" | "maxconn" => {
                if let Some(n) = next(p, kw) {
                    if kw == "weight" && n > 256 {
                        p.alert(format!("'weight {n}': must be 0..256"));
                    } else if (kw == "rise" || kw == "fall") && n == 0 {
                        p.alert(format!("'{kw}' must be at least 1"));
                    } else {
                        let (rise, fall, weight, maxconn) = match target {
                            ServerParams::Defaults(x) => {
                                (&mut x.rise, &mut x.fall, &mut x.weight, &mut x.maxconn)
                            }
                            ServerParams::Server(x) => {
                                (&mut x.rise, &mut x.fall, &mut x.weight, &mut x.maxconn)
                            }
                        };
                        *match kw {
                            "rise" => rise,
                            "fall" => fall,
                            "weight" => weight,
                            _ => maxconn,
                        } = n;
                    }
                }
                i += 1;
            }
            "backup" | "cookie" | "send-proxy" | "send-proxy-v2" | "disabled" => match target {
                ServerParams::Defaults(_) => {
                    p.alert(format!("'{kw}' is not allowed in 'default-server' by ballast"));
                    if kw == "cookie" {
                        i += 1;
                    }
                }
                ServerParams::Server(s) => match kw {
                    "backup" => s.backup = true,
                    "disabled" => s.disabled = true,
                    "send-proxy" => s.send_proxy = Some(ProxyProtocol::V1),
                    "send-proxy-v2" => s.send_proxy = Some(ProxyProtocol::V2),
                    _ => {
                        match w.get(i + 1) {
                            Some(v) => s.cookie = Some(v.clone()),
                            None => p.alert("'cookie' expects a value"),
                        }
                        i += 1;
                    }
                },
            },
            "no-check" => match target {
                ServerParams::Defaults(d) => d.check = false,
                ServerParams::Server(s) => s.check = false,
            },
            "enabled" => {
                if let ServerParams::Server(s) = target {
                    s.disabled = false;
                }
            }
            // Ignoring any of these would change who is served or weaken security: TLS to
            // the server (traffic would leave in clear), checks sent elsewhere, states
            // tracked or driven by agents and errors, queue limits, redirects.
            "ssl" | "check-ssl" | "verify" | "ca-file" | "crt" | "sni" | "check-sni" | "alpn" | "proto" | "ciphers"
            | "ciphersuites" | "ssl-min-ver" | "ssl-max-ver" | "port" | "addr" | "track" | "redir" | "agent-check"
            | "observe" | "on-error" | "on-marked-down" | "on-marked-up" | "error-limit" | "maxqueue" | "minconn" => {
                p.alert(format!("server parameter '{kw}' is not supported by ballast"));
                if !matches!(kw, "ssl" | "check-ssl" | "agent-check") {
                    i += 1;
                }
            }
            // Timing, naming and pooling: how the proxy runs, not who is served.
            "id" => {
                match (&mut *target, w.get(i + 1).and_then(|v| v.parse::<u32>().ok())) {
                    (ServerParams::Server(s), Some(n)) if n > 0 => s.id = Some(n),
                    (ServerParams::Server(_), _) => p.alert("'id' expects a number above 0"),
                    (ServerParams::Defaults(_), _) => p.alert("'id' is not allowed in 'default-server'"),
                }
                i += 1;
            }
            "fastinter" | "downinter" | "slowstart" | "agent-port" | "agent-inter" | "pool-max-conn"
            | "pool-purge-delay" | "resolvers" | "init-addr" | "resolve-prefer" => {
                p.warn(format!("server parameter '{kw}' is not supported by ballast, ignored"));
                i += 1;
            }
            "no-ssl" | "non-stick" | "tfo" => {
                p.warn(format!("server parameter '{kw}' is not supported by ballast, ignored"))
            }
            other => p.alert(format!("unknown server parameter '{other}'")),
        }
        i += 1;
    }
}

pub(super) fn server(p: &mut Parser, idx: usize, w: &[String]) {
    let (Some(name), Some(addr)) = (w.get(1), w.get(2)) else {
        p.alert("'server' expects a name and an address");
        return;
    };
    let (addr, host) = match server_host(addr) {
        Ok(ServerHost::Ip(a)) => (a, None),
        Ok(ServerHost::Name(h, port)) => (std::net::SocketAddr::from(([0, 0, 0, 0], port)), Some(h)),
        Err(e) => {
            p.alert(format!("server '{name}': {e}"));
            return;
        }
    };
    let ds = p.proxies[idx].settings.default_server.clone();
    let mut s = Server {
        name: name.clone(),
        addr,
        host,
        file: p.file.clone(),
        id: None,
        weight: ds.weight,
        maxconn: ds.maxconn,
        check: ds.check,
        inter: ds.inter,
        rise: ds.rise,
        fall: ds.fall,
        backup: false,
        cookie: None,
        send_proxy: None,
        disabled: false,
        line: p.line,
    };
    server_params(p, &w[3..], &mut ServerParams::Server(&mut s));
    let taken: BTreeSet<String> = p.proxies[idx].servers.iter().map(|x| x.name.clone()).collect();
    if taken.contains(&s.name) {
        let fresh = (2..).map(|n| format!("{}-{n}", s.name)).find(|c| !taken.contains(c)).unwrap();
        p.warn(format!(
            "server '{}' has the same name as another server of {} '{}' (HAProxy refuses this); renamed '{fresh}'",
            s.name,
            p.proxies[idx].kind.keyword(),
            p.proxies[idx].name
        ));
        s.name = fresh;
    }
    p.proxies[idx].servers.push(s);
}
