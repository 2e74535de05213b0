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
use std::time::Duration;

use super::{
    model::*,
    tokenize,
    units::{bind_addr, time},
};
use global::global_kw;
use proxy::{plain_bind, proxy_kw};
use references::check_references;
use settings::settings_kw;

mod acl;
mod format;
mod global;
mod proxy;
mod references;
mod rules;
mod server;
mod settings;

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
        http_request: Vec::new(),
        http_response: Vec::new(),
        tcp_request_connection: Vec::new(),
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
