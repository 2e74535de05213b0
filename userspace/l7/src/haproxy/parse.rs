//! `haproxy.cfg` → [`L7Config`], with HAProxy's diagnostics: an ALERT (error) or a WARNING
//! naming file:line. Pipeline: text → lines of words (`tokenize`) → sections and
//! directives (here) → whole-file checks (`check_references`) → `L7Config`.
//!
//! Policy for what ballast does not implement: a keyword HAProxy knows but ballast does
//! not act on is a WARNING saying it is ignored; a keyword nobody knows (a typo) or an
//! unsupported variant that would change behaviour (cookie rewrite, regex checks) is an
//! ALERT. Old configs load: `contimeout/clitimeout/srvtimeout` (gone since HAProxy 2.1)
//! are read as `timeout connect/client/server`, and a duplicate server name gets a
//! distinct one, each with a WARNING saying so.
use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use super::{
    model::*,
    tokenize,
    units::{bind_addr, server_addr, time},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Warning,
    Alert,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diag {
    pub file: String,
    pub line: usize,
    pub level: Level,
    pub msg: String,
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.level {
            Level::Warning => "WARNING",
            Level::Alert => "ALERT",
        };
        write!(f, "[{tag}] {}:{}: {}", self.file, self.line, self.msg)
    }
}

/// The result of parsing: the config when there was no ALERT, and every diagnostic.
#[derive(Debug)]
pub struct Parsed {
    pub config: Option<L7Config>,
    pub diags: Vec<Diag>,
}

impl Parsed {
    pub fn alerts(&self) -> impl Iterator<Item = &Diag> {
        self.diags.iter().filter(|d| d.level == Level::Alert)
    }
}

/// Known HAProxy keywords that ballast accepts and ignores, with a warning.
const IGNORED_PROXY: &[&str] = &[
    "http-request",
    "http-response",
    "http-after-response",
    "tcp-request",
    "tcp-response",
    "errorfile",
    "errorloc",
    "errorloc302",
    "errorloc303",
    "compression",
    "capture",
    "stick-table",
    "stick",
    "monitor-uri",
    "monitor",
    "fullconn",
    "hash-type",
    "description",
    "id",
    "unique-id-format",
    "unique-id-header",
    "log-format",
    "email-alert",
    "grace",
    "rate-limit",
    "http-send-name-header",
    "redirect",
    "reqadd",
    "rspadd",
    "reqrep",
    "rsprep",
    "source",
    "dispatch",
    "persist",
    "server-state-file-name",
    "load-server-state-from-file",
    "filter",
    "use-server",
    "force-persist",
    "ignore-persist",
    "bind-process",
    "log-tag",
    "enabled",
    "disabled",
];

const IGNORED_GLOBAL: &[&str] = &[
    "chroot",
    "pidfile",
    "ulimit-n",
    "node",
    "description",
    "ca-base",
    "crt-base",
    "ssl-default-bind-ciphers",
    "ssl-default-bind-ciphersuites",
    "ssl-default-bind-options",
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

const IGNORED_SECTIONS: &[&str] =
    &["userlist", "peers", "resolvers", "cache", "program", "http-errors", "ring", "mailers"];

enum Section {
    None,
    Global,
    Defaults,
    Proxy(usize),
    Ignored,
}

struct Parser {
    file: String,
    diags: Vec<Diag>,
    global: Global,
    defaults: ProxySettings,
    proxies: Vec<ProxySection>,
    line: usize,
}

impl Parser {
    fn warn(&mut self, msg: impl Into<String>) {
        self.diags.push(Diag {
            file: self.file.clone(),
            line: self.line,
            level: Level::Warning,
            msg: msg.into(),
        });
    }

    fn alert(&mut self, msg: impl Into<String>) {
        self.diags.push(Diag {
            file: self.file.clone(),
            line: self.line,
            level: Level::Alert,
            msg: msg.into(),
        });
    }

    fn alert_at(&mut self, file: &str, line: usize, msg: impl Into<String>) {
        self.diags.push(Diag { file: file.into(), line, level: Level::Alert, msg: msg.into() });
    }

    fn warn_at(&mut self, file: &str, line: usize, msg: impl Into<String>) {
        self.diags.push(Diag { file: file.into(), line, level: Level::Warning, msg: msg.into() });
    }
}

pub fn parse(file: &str, text: &str) -> Parsed {
    parse_files(&[(file.to_string(), text.to_string())])
}

/// Several files read as one configuration, in order (as `haproxy -f a -f b`).
pub fn parse_files(files: &[(String, String)]) -> Parsed {
    let mut p = Parser {
        file: String::new(),
        diags: Vec::new(),
        global: Global::default(),
        defaults: ProxySettings::default(),
        proxies: Vec::new(),
        line: 0,
    };
    let mut section = Section::None;
    for (file, text) in files {
        p.file = file.clone();
        parse_text(&mut p, text, &mut section);
    }
    check_references(&mut p);
    let config = if p.diags.iter().any(|d| d.level == Level::Alert) {
        None
    } else {
        Some(L7Config { global: p.global, proxies: p.proxies })
    };
    Parsed { config, diags: p.diags }
}

fn parse_text(p: &mut Parser, text: &str, section: &mut Section) {
    for (i, raw) in text.lines().enumerate() {
        p.line = i + 1;
        let words = match tokenize::words(raw) {
            Ok(w) => w,
            Err(e) => {
                p.alert(format!("parsing line: {e}"));
                continue;
            }
        };
        let Some(kw) = words.first() else { continue };
        let kw = kw.as_str();
        match kw {
            "global" => {
                *section = Section::Global;
                continue;
            }
            "defaults" => {
                // A new defaults section starts from scratch, as in HAProxy.
                p.defaults = ProxySettings::default();
                *section = Section::Defaults;
                continue;
            }
            "listen" | "frontend" | "backend" => {
                *section = new_proxy(p, &words);
                continue;
            }
            s if IGNORED_SECTIONS.contains(&s) => {
                p.warn(format!("section '{s}' is not supported by ballast; its contents are ignored"));
                *section = Section::Ignored;
                continue;
            }
            _ => {}
        }
        match *section {
            Section::None => p.alert(format!("unknown keyword '{kw}' out of section")),
            Section::Ignored => {}
            Section::Global => global_kw(p, &words),
            Section::Defaults => {
                let mut s = std::mem::take(&mut p.defaults);
                settings_kw(p, &mut s, &words, true);
                p.defaults = s;
            }
            Section::Proxy(idx) => proxy_kw(p, idx, &words),
        }
    }
}

fn new_proxy(p: &mut Parser, words: &[String]) -> Section {
    let kind = match words[0].as_str() {
        "listen" => ProxyKind::Listen,
        "frontend" => ProxyKind::Frontend,
        _ => ProxyKind::Backend,
    };
    let Some(name) = words.get(1).cloned() else {
        p.alert(format!("'{}' needs a name", kind.keyword()));
        return Section::Ignored;
    };
    let clash = p.proxies.iter().find(|x| {
        x.name == name
            && ((x.kind.has_frontend() && kind.has_frontend())
                || (x.kind.has_backend() && kind.has_backend()))
    });
    if let Some(other) = clash {
        let line = other.line;
        p.alert(format!(
            "{} '{name}' has the same name as the proxy declared at line {line}",
            kind.keyword()
        ));
    }
    let mut proxy = ProxySection {
        name,
        kind,
        file: p.file.clone(),
        line: p.line,
        settings: p.defaults.clone(),
        binds: Vec::new(),
        servers: Vec::new(),
        acls: Vec::new(),
        use_backends: Vec::new(),
        default_backend: None,
        stats: None,
    };
    // Old syntax: `listen NAME ADDR:PORT`.
    if let Some(addr) = words.get(2) {
        if kind == ProxyKind::Backend {
            p.alert("a backend has no address");
        } else {
            for a in addr.split(',') {
                match bind_addr(a) {
                    Ok(addr) => proxy.binds.push(plain_bind(addr, p.line)),
                    Err(e) => p.alert(format!("'{}' address: {e}", kind.keyword())),
                }
            }
        }
    }
    p.proxies.push(proxy);
    Section::Proxy(p.proxies.len() - 1)
}

fn plain_bind(addr: std::net::SocketAddr, line: usize) -> Bind {
    Bind { addr, tls_certs: Vec::new(), alpn: Vec::new(), accept_proxy: false, line }
}

fn num<T: std::str::FromStr>(p: &mut Parser, words: &[String], i: usize, what: &str) -> Option<T> {
    match words.get(i).map(|w| w.parse::<T>()) {
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            p.alert(format!("'{what}': {:?} is not a valid number", words[i]));
            None
        }
        None => {
            p.alert(format!("'{what}' expects a value"));
            None
        }
    }
}

fn time_arg(p: &mut Parser, words: &[String], i: usize, what: &str) -> Option<Duration> {
    match words.get(i).map(|w| time(w)) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            p.alert(format!("'{what}': {e}"));
            None
        }
        None => {
            p.alert(format!("'{what}' expects a time"));
            None
        }
    }
}

fn global_kw(p: &mut Parser, w: &[String]) {
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
        "debug" | "quiet" => p.warn(format!("'{kw}' is deprecated in HAProxy and ignored by ballast")),
        k if IGNORED_GLOBAL.contains(&k) || k.starts_with("tune.") || k.starts_with("ssl-") => {
            p.warn(format!("'{k}' is not supported by ballast, ignored"))
        }
        k => p.alert(format!("unknown keyword '{k}' in 'global' section")),
    }
}

/// Keywords that `defaults` and proxies share. Returns false if `w` is not one of them.
fn settings_kw(p: &mut Parser, s: &mut ProxySettings, w: &[String], in_defaults: bool) -> bool {
    let kw = w[0].as_str();
    match kw {
        "mode" => match w.get(1).map(String::as_str) {
            Some("http") => s.mode = Mode::Http,
            Some("tcp") => s.mode = Mode::Tcp,
            other => p.alert(format!("'mode' expects http or tcp, got {other:?}")),
        },
        "balance" => balance(p, s, w),
        "retries" => s.retries = num(p, w, 1, "retries").unwrap_or(s.retries),
        "http-reuse" => match w.get(1).map(String::as_str) {
            Some("never") => s.http_reuse = HttpReuse::Never,
            Some("safe") => s.http_reuse = HttpReuse::Safe,
            Some("aggressive" | "always") => s.http_reuse = HttpReuse::Always,
            other => {
                p.alert(format!("'http-reuse' expects never, safe, aggressive or always, got {other:?}"))
            }
        },
        "maxconn" => s.maxconn = num(p, w, 1, "maxconn").unwrap_or(s.maxconn),
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
                    k if IGNORED_PROXY.contains(&k) => {
                        p.warn(format!("'{k}' is not supported by ballast, ignored"))
                    }
                    k => p.alert(format!("unknown keyword '{k}' in 'defaults' section")),
                }
                return true;
            }
            return false;
        }
    }
    true
}

fn set_timeout(t: &mut Timeouts, which: &str, d: Duration) {
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

fn balance(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
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
            if w.len() > 2 {
                p.warn(format!(
                    "'balance uri' options {:?} are not supported by ballast; the whole path is hashed",
                    &w[2..]
                ));
            }
            Balance::Uri
        }
        "random" => Balance::Random(2),
        a if a.starts_with("hdr(") && a.ends_with(')') && a.len() > 5 => {
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

fn option(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
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
            let (method, uri, version) = match w.len() {
                2 => ("OPTIONS".to_string(), "/".to_string(), "HTTP/1.0".to_string()),
                3 => ("OPTIONS".to_string(), w[2].clone(), "HTTP/1.0".to_string()),
                _ => (w[2].clone(), w[3].clone(), w.get(4).cloned().unwrap_or_else(|| "HTTP/1.0".into())),
            };
            let expect = s.httpchk.as_ref().map(|c| c.expect.clone()).unwrap_or(Expect::Status2xx3xx);
            s.httpchk = Some(HttpCheck { method, uri, version, expect });
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

fn cookie(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
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

fn http_check(p: &mut Parser, s: &mut ProxySettings, w: &[String]) {
    match w.get(1).map(String::as_str) {
        Some("expect") => {
            let (negate, rest) = match w.get(2).map(String::as_str) {
                Some("!") => (true, &w[3..]),
                _ => (false, &w[2.min(w.len())..]),
            };
            let (Some(kind), Some(_)) = (rest.first(), rest.get(1)) else {
                p.alert("'http-check expect' expects 'status <codes>' or 'string <text>'");
                return;
            };
            let expect = match kind.as_str() {
                "status" => {
                    let mut codes = Vec::new();
                    for c in rest[1].split(',') {
                        match c.parse::<u16>() {
                            Ok(n) if (100..600).contains(&n) => codes.push(n),
                            _ => {
                                p.alert(format!("'http-check expect status': {c:?} is not an HTTP status"));
                                return;
                            }
                        }
                    }
                    Expect::Status { codes, negate }
                }
                "string" => Expect::String { needle: rest[1..].join(" "), negate },
                other => {
                    p.alert(format!(
                        "'http-check expect {other}' is not supported by ballast (status, string)"
                    ));
                    return;
                }
            };
            match &mut s.httpchk {
                Some(c) => c.expect = expect,
                None => {
                    s.httpchk = Some(HttpCheck {
                        method: "OPTIONS".into(),
                        uri: "/".into(),
                        version: "HTTP/1.0".into(),
                        expect,
                    })
                }
            }
        }
        Some(other) => p.warn(format!("'http-check {other}' is not supported by ballast, ignored")),
        None => p.alert("'http-check' expects an action"),
    }
}

enum ServerParams<'a> {
    Defaults(&'a mut DefaultServer),
    Server(&'a mut Server),
}

fn server_params(p: &mut Parser, w: &[String], target: &mut ServerParams) {
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
            "fastinter" | "downinter" | "port" | "addr" | "maxqueue" | "minconn" | "slowstart" | "id"
            | "observe" | "error-limit" | "on-error" | "on-marked-down" | "on-marked-up" | "agent-port"
            | "agent-inter" | "check-sni" | "sni" | "ca-file" | "crt" | "verify" | "alpn" | "proto"
            | "pool-max-conn" | "pool-purge-delay" | "resolvers" | "init-addr" | "redir" | "track" => {
                p.warn(format!("server parameter '{kw}' is not supported by ballast, ignored"));
                i += 1;
            }
            "ssl" | "no-ssl" | "check-ssl" | "agent-check" | "non-stick" | "no-check" | "tfo"
            | "resolve-prefer" | "enabled" => {
                p.warn(format!("server parameter '{kw}' is not supported by ballast, ignored"))
            }
            other => p.alert(format!("unknown server parameter '{other}'")),
        }
        i += 1;
    }
}

fn proxy_kw(p: &mut Parser, idx: usize, w: &[String]) {
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
            if let Some(cond) = condition(p, cond_kw, &w[3..]) {
                p.proxies[idx].use_backends.push(UseBackend { backend: name.clone(), cond });
            }
        }
        "default_backend" if !kind.has_frontend() => p.alert("'default_backend' is not allowed in a backend"),
        "default_backend" => match w.get(1) {
            Some(b) => p.proxies[idx].default_backend = Some(b.clone()),
            None => p.alert("'default_backend' expects a backend name"),
        },
        "stats" => stats(p, idx, w),
        k if IGNORED_PROXY.contains(&k) => p.warn(format!("'{k}' is not supported by ballast, ignored")),
        k => p.alert(format!("unknown keyword '{k}' in '{}' section", kind.keyword())),
    }
}

fn bind(p: &mut Parser, idx: usize, w: &[String]) {
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
            "name" | "process" | "thread" | "interface" | "mss" | "backlog" | "maxconn" | "ciphers"
            | "ciphersuites" | "ssl-min-ver" | "ssl-max-ver" | "curves" | "ecdhe" | "ca-file" | "verify"
            | "crt-list" | "level" | "mode" | "user" | "group" | "id" | "nice" => {
                p.warn(format!("bind parameter '{}' is not supported by ballast, ignored", w[i]));
                i += 1;
            }
            "v4v6"
            | "v6only"
            | "transparent"
            | "defer-accept"
            | "tfo"
            | "no-sslv3"
            | "no-tlsv10"
            | "no-tlsv11"
            | "no-tlsv12"
            | "no-tlsv13"
            | "force-tlsv12"
            | "force-tlsv13"
            | "strict-sni"
            | "prefer-client-ciphers"
            | "allow-0rtt"
            | "no-tls-tickets" => {
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

fn server(p: &mut Parser, idx: usize, w: &[String]) {
    let (Some(name), Some(addr)) = (w.get(1), w.get(2)) else {
        p.alert("'server' expects a name and an address");
        return;
    };
    let addr = match server_addr(addr) {
        Ok(a) => a,
        Err(e) => {
            p.alert(format!("server '{name}': {e}"));
            return;
        }
    };
    let ds = p.proxies[idx].settings.default_server.clone();
    let mut s = Server {
        name: name.clone(),
        addr,
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

fn acl(p: &mut Parser, idx: usize, w: &[String]) {
    let (Some(name), Some(crit)) = (w.get(1), w.get(2)) else {
        p.alert("'acl' expects a name, a criterion and values");
        return;
    };
    let (mut criterion, mut ci, mut i) = (None, false, 3);
    let base = match crit.as_str() {
        "hdr(host)" | "hdr(Host)" => Some((true, Match::Exact)),
        "hdr_beg(host)" => Some((true, Match::Begins)),
        "hdr_end(host)" | "hdr_dom(host)" => Some((true, Match::Ends)),
        "hdr_sub(host)" => Some((true, Match::Contains)),
        "path" => Some((false, Match::Exact)),
        "path_beg" => Some((false, Match::Begins)),
        "path_end" => Some((false, Match::Ends)),
        "path_sub" => Some((false, Match::Contains)),
        _ => None,
    };
    let Some((is_host, mut m)) = base else {
        p.alert(format!("acl '{name}': criterion '{crit}' is not supported by ballast (hdr(host), hdr_beg/end/sub(host), path, path_beg/end/sub)"));
        return;
    };
    while let Some(f) = w.get(i) {
        match f.as_str() {
            "-i" => ci = true,
            "-m" => {
                m = match w.get(i + 1).map(String::as_str) {
                    Some("str") => Match::Exact,
                    Some("beg") => Match::Begins,
                    Some("end") | Some("dom") => Match::Ends,
                    Some("sub") => Match::Contains,
                    other => {
                        p.alert(format!("acl '{name}': match method {other:?} is not supported"));
                        return;
                    }
                };
                i += 1;
            }
            "--" => {
                i += 1;
                break;
            }
            _ => break,
        }
        i += 1;
    }
    criterion.get_or_insert(if is_host { AclCriterion::Host(m) } else { AclCriterion::Path(m) });
    let values: Vec<String> = w[i.min(w.len())..].to_vec();
    if values.is_empty() {
        p.alert(format!("acl '{name}' has no value to match"));
        return;
    }
    // Several `acl` lines with one name are ORed, as in HAProxy: kept as separate entries.
    p.proxies[idx].acls.push(Acl {
        name: name.clone(),
        criterion: criterion.unwrap(),
        case_insensitive: ci || is_host,
        values,
    });
}

fn condition(p: &mut Parser, kw: &str, terms: &[String]) -> Option<Condition> {
    let negate_all = match kw {
        "if" => false,
        "unless" => true,
        other => {
            p.alert(format!("expected 'if' or 'unless', got '{other}'"));
            return None;
        }
    };
    let mut any_of = vec![Vec::new()];
    for t in terms {
        match t.as_str() {
            "or" | "||" => any_of.push(Vec::new()),
            "{" | "}" => {
                p.alert("anonymous ACLs ({ ... }) are not supported by ballast; name them with 'acl'");
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
    }
    if any_of.iter().any(Vec::is_empty) {
        p.alert("empty condition");
        return None;
    }
    Some(Condition { negate_all, any_of })
}

fn stats(p: &mut Parser, idx: usize, w: &[String]) {
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
        Some("hide-version") | Some("show-legends") | Some("show-node") | Some("show-desc")
        | Some("scope") | Some("http-request") | Some("bind-process") | Some("show-modules") => {
            let what = w[1].clone();
            p.warn(format!("'stats {what}' is not supported by ballast, ignored"))
        }
        other => p.alert(format!("unknown 'stats' keyword {other:?}")),
    }
}

/// Whole-file checks: targets of use_backend/default_backend, ACL names, binds, timeouts.
fn check_references(p: &mut Parser) {
    let proxies = p.proxies.clone();
    for px in &proxies {
        let backend_ok = |name: &str| proxies.iter().any(|b| b.name == name && b.kind.has_backend());
        for ub in &px.use_backends {
            if !backend_ok(&ub.backend) {
                p.alert_at(
                    &px.file,
                    px.line,
                    format!(
                        "{} '{}': use_backend '{}' names no backend",
                        px.kind.keyword(),
                        px.name,
                        ub.backend
                    ),
                );
            }
            for term in ub.cond.any_of.iter().flatten() {
                if !px.acls.iter().any(|a| a.name == term.1) {
                    p.alert_at(
                        &px.file,
                        px.line,
                        format!(
                            "{} '{}': condition uses unknown acl '{}'",
                            px.kind.keyword(),
                            px.name,
                            term.1
                        ),
                    );
                }
            }
        }
        if let Some(db) = &px.default_backend {
            if !backend_ok(db) {
                p.alert_at(
                    &px.file,
                    px.line,
                    format!("{} '{}': default_backend '{db}' names no backend", px.kind.keyword(), px.name),
                );
            }
        }
        if px.kind.has_frontend() && px.binds.is_empty() {
            p.warn_at(
                &px.file,
                px.line,
                format!(
                    "{} '{}' has no 'bind' directive: it will not accept connections",
                    px.kind.keyword(),
                    px.name
                ),
            );
        }
        let t = &px.settings.timeouts;
        let mut missing = Vec::new();
        if px.kind.has_frontend() && t.client.is_none() {
            missing.push("client");
        }
        if px.kind.has_backend() && t.connect.is_none() {
            missing.push("connect");
        }
        if px.kind.has_backend() && t.server.is_none() {
            missing.push("server");
        }
        if !missing.is_empty() && px.stats.is_none() {
            p.warn_at(
                &px.file,
                px.line,
                format!(
                    "{} '{}': missing timeouts ({}); ballast uses 30s",
                    px.kind.keyword(),
                    px.name,
                    missing.join(", ")
                ),
            );
        }
        if let Some(c) = &px.settings.cookie {
            if px.kind.has_backend() {
                for s in px.servers.iter().filter(|s| s.cookie.is_none()) {
                    p.warn_at(
                        &px.file,
                        s.line,
                        format!(
                            "server '{}' has no 'cookie' value: cookie '{}' is never set for it",
                            s.name, c.name
                        ),
                    );
                }
            }
        }
        // A frontend's mode must match its backends'.
        for target in px.use_backends.iter().map(|u| &u.backend).chain(px.default_backend.as_ref()) {
            if let Some(b) = proxies.iter().find(|b| &b.name == target && b.kind.has_backend()) {
                if b.settings.mode != px.settings.mode {
                    p.alert_at(
                        &px.file,
                        px.line,
                        format!(
                            "{} '{}' (mode {:?}) cannot use backend '{}' (mode {:?})",
                            px.kind.keyword(),
                            px.name,
                            px.settings.mode,
                            b.name,
                            b.settings.mode
                        ),
                    );
                }
            }
        }
    }
}
