//! The `global` section's keywords.
use std::path::PathBuf;

use super::{num, Parser};

pub(super) const IGNORED_GLOBAL: &[&str] = &[
    "chroot",
    "pidfile",
    "ulimit-n",
    "node",
    "description",
    "ca-base",
    "crt-base",
    "ssl-default-server-ciphers",
    "ssl-default-server-ciphersuites",
    "ssl-default-server-options",
    "ssl-dh-param-file",
    "spread-checks",
    "hard-stop-after",
    "uid",
    "gid",
    "nbproc",
    "cpu-map",
    "log-send-hostname",
    "log-tag",
    "server-state-file",
    "server-state-base",
    "maxsslconn",
    "maxconnrate",
    "master-worker",
    "localpeer",
    "setenv",
    "presetenv",
    "resetenv",
    "unsetenv",
    "h1-case-adjust",
    "insecure-fork-wanted",
    "expose-experimental-directives",
];

pub(super) fn global_kw(p: &mut Parser, w: &[String]) {
    let kw = w[0].as_str();
    match kw {
        "log" => p.global.logs.push(w[1..].join(" ")),
        "maxconn" => p.global.maxconn = num(p, w, 1, "maxconn"),
        "user" => p.global.user = w.get(1).cloned(),
        "group" => p.global.group = w.get(1).cloned(),
        "daemon" => p.global.daemon = true,
        "nbthread" => p.global.nbthread = num(p, w, 1, "nbthread"),
        "stats" if w.get(1).map(String::as_str) == Some("socket") => match w.get(2) {
            Some(path) => p.global.stats_socket = Some(PathBuf::from(path)),
            None => p.alert("'stats socket' expects a path"),
        },
        "stats" => {
            p.warn(format!("'stats {}' in global is not supported by ballast, ignored", w[1..].join(" ")))
        }
        "ssl-default-bind-options" => ssl_default_bind_options(p, &w[1..]),
        "ssl-default-bind-ciphers" | "ssl-default-bind-ciphersuites" | "ssl-default-bind-curves" => {
            let which = kw.trim_start_matches("ssl-default-bind-");
            match w.get(1) {
                Some(v) => {
                    if let Err(e) = p.global.ssl_default_bind.with_value(which, v) {
                        p.alert(e);
                    }
                }
                None => p.alert(format!("'{kw}' expects a value")),
            }
        }
        "debug" | "quiet" => p.warn(format!("'{kw}' is deprecated in HAProxy and ignored by ballast")),
        k if IGNORED_GLOBAL.contains(&k) || k.starts_with("tune.") || k.starts_with("ssl-") => {
            p.warn(format!("'{k}' is not supported by ballast, ignored"))
        }
        k => p.alert(format!("unknown keyword '{k}' in 'global' section")),
    }
}

/// `ssl-default-bind-options`: the TLS options every `bind ... ssl` line starts from.
fn ssl_default_bind_options(p: &mut Parser, w: &[String]) {
    let mut i = 0;
    while i < w.len() {
        let word = w[i].as_str();
        if p.global.ssl_default_bind.flag(word) {
        } else if matches!(word, "ssl-min-ver" | "ssl-max-ver") {
            match w.get(i + 1) {
                Some(v) => {
                    if let Err(e) = p.global.ssl_default_bind.with_value(word, v) {
                        p.alert(e);
                    }
                }
                None => p.alert(format!("'{word}' expects a version")),
            }
            i += 1;
        } else if matches!(word, "no-ca-names" | "allow-0rtt") {
            p.warn(format!("ssl-default-bind-options '{word}' is not supported by ballast, ignored"));
        } else {
            p.alert(format!("unknown ssl-default-bind-options option '{word}'"));
        }
        i += 1;
    }
}
