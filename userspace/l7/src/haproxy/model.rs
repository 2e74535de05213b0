//! The L7 configuration as plain data: what an `haproxy.cfg` means once parsed, with the
//! `defaults` already folded into each proxy. The proxy runs from this structure and gets
//! a new one on reload (later: from the control plane), so it holds no sockets or state.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Listen,
    Frontend,
    Backend,
}

impl ProxyKind {
    pub fn has_frontend(self) -> bool {
        matches!(self, ProxyKind::Listen | ProxyKind::Frontend)
    }

    pub fn has_backend(self) -> bool {
        matches!(self, ProxyKind::Listen | ProxyKind::Backend)
    }

    pub fn keyword(self) -> &'static str {
        match self {
            ProxyKind::Listen => "listen",
            ProxyKind::Frontend => "frontend",
            ProxyKind::Backend => "backend",
        }
    }
}

/// `balance` algorithms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    StaticRr,
    LeastConn,
    Source,
    Uri,
    Hdr(String),
    /// `random(<draws>)`: the least loaded of `draws` random picks (power of two choices).
    Random(u32),
}

impl Balance {
    /// The server follows from a hash of the request (the same request, the same server).
    pub fn hashes(&self) -> bool {
        matches!(self, Balance::Source | Balance::Uri | Balance::Hdr(_))
    }
}

/// Timeouts; `None` = not set (HAProxy warns about missing client/server/connect ones).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    pub queue: Option<Duration>,
    pub http_request: Option<Duration>,
    pub http_keep_alive: Option<Duration>,
    pub check: Option<Duration>,
    pub tunnel: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieCfg {
    pub name: String,
    /// `insert` (the only mode supported; rewrite/prefix are refused with an error).
    pub insert: bool,
    /// Do not forward the persistence cookie to the server.
    pub indirect: bool,
    /// Mark responses that carry the cookie non-cacheable.
    pub nocache: bool,
    pub httponly: bool,
    pub secure: bool,
    pub domain: Option<String>,
}

/// `option httpchk [<method> <uri> [<version>]]`, `http-check send` and `http-check expect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCheck {
    pub method: String,
    pub uri: String,
    pub version: String,
    /// `http-check send hdr <name> <value>`, in order.
    pub headers: Vec<(String, String)>,
    /// `http-check send body <string>`.
    pub body: String,
    pub expect: Expect,
}

impl HttpCheck {
    /// `option httpchk` without arguments: `OPTIONS / HTTP/1.0`, any 2xx or 3xx.
    pub fn default_request() -> HttpCheck {
        HttpCheck {
            method: "OPTIONS".into(),
            uri: "/".into(),
            version: "HTTP/1.0".into(),
            headers: Vec::new(),
            body: String::new(),
            expect: Expect::Status2xx3xx,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Default: any 2xx or 3xx status.
    Status2xx3xx,
    /// `status 200,302` / `status 200-399`: codes and inclusive ranges.
    Status {
        ranges: Vec<(u16, u16)>,
        negate: bool,
    },
    String {
        needle: String,
        negate: bool,
    },
    /// `rstatus <regex>`: the status code (as text) matches the regular expression.
    RStatus {
        pattern: String,
        negate: bool,
    },
    /// `rstring <regex>`: the body matches the regular expression.
    RString {
        pattern: String,
        negate: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    /// Unspecified (with the port) until `host` is resolved.
    pub addr: SocketAddr,
    /// The host name written in place of an address, resolved at start and at each
    /// reload (`Parsed::resolve_hosts`), as HAProxy does with libc.
    pub host: Option<String>,
    /// The file the server line is in (for messages).
    pub file: String,
    /// `id N`: HAProxy's server id (consistent hashing keys on it); None: assigned.
    pub id: Option<u32>,
    pub weight: u32,
    /// 0 = unlimited.
    pub maxconn: u32,
    pub check: bool,
    pub inter: Duration,
    pub rise: u32,
    pub fall: u32,
    pub backup: bool,
    pub cookie: Option<String>,
    pub send_proxy: Option<ProxyProtocol>,
    pub disabled: bool,
    pub line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub addr: SocketAddr,
    /// `ssl crt PATH` (a file or a directory of PEM files); several allowed (SNI).
    pub tls_certs: Vec<PathBuf>,
    pub alpn: Vec<String>,
    pub accept_proxy: bool,
    /// `transparent`: may bind an address the host does not hold (IP_TRANSPARENT): the
    /// agent binds a VIP's listeners before it adds the VIP's address.
    pub transparent: bool,
    pub line: usize,
    /// The TLS options written on the line (`ssl-min-ver`, `no-tlsv12`, `ciphers`, ...).
    pub tls: super::tls::TlsOptions,
    /// What the listener serves (an `ssl` line): the line's options over
    /// `ssl-default-bind-*`, decided once the whole configuration is read.
    pub tls_policy: Option<super::tls::TlsPolicy>,
}

/// `acl NAME fetch [flags] values...` (also an anonymous `{ fetch [flags] values }` in a
/// condition, named `{...}` after its text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub name: String,
    pub fetch: Fetch,
    pub method: Match,
    /// `-i`.
    pub case_insensitive: bool,
    pub values: Vec<String>,
    /// The values of an `ip` match, parsed: (network, prefix length).
    pub nets: Vec<(std::net::IpAddr, u8)>,
    pub line: usize,
}

/// What an ACL, a condition or a log-format value looks at (HAProxy's sample fetches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// `hdr(<name>)` / `req.hdr(<name>)`: each comma-separated value of each occurrence,
    /// as sent (a Host header keeps its port).
    Hdr(String),
    /// The path, without the query.
    Path,
    /// The request target as sent.
    Url,
    /// The query string (after `?`), empty when there is none.
    Query,
    Method,
    /// `req.ver`: `1.0`, `1.1` or `2.0`.
    ReqVer,
    Src,
    SrcPort,
    Dst,
    DstPort,
    /// `ssl_fc`: the client connection is TLS.
    SslFc,
    /// `ssl_fc_sni`: the server name the client asked for.
    SslFcSni,
    /// `always_true` / `always_false`.
    Always(bool),
}

impl Fetch {
    /// Whether it can be read when a connection is accepted (`tcp-request connection`).
    pub fn at_connection(&self) -> bool {
        matches!(self, Fetch::Src | Fetch::SrcPort | Fetch::Dst | Fetch::DstPort | Fetch::Always(_))
    }
}

/// How an ACL compares what it fetched with its values (`-m <method>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Match {
    /// `str`: equal.
    Exact,
    /// `beg`.
    Begins,
    /// `end`.
    Ends,
    /// `sub`.
    Contains,
    /// `dom`: the value is one or more whole dot-separated labels of the subject.
    Dom,
    /// `dir`: the value is one or more whole slash-separated parts of the subject.
    Dir,
    /// `ip`: the address is in one of the networks.
    Ip,
    /// `int`: the number equals a value or is in a `low:high` range.
    Int,
    /// `bool`: the fetched value is true (non-zero); values are not allowed.
    Bool,
    /// `found`: the fetch returned something; values are not allowed.
    Found,
}

/// A rule: an action, taken when its condition (if any) holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule<A> {
    pub action: A,
    pub cond: Option<Condition>,
    pub line: usize,
}

/// `http-request <action>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestAction {
    /// Stops evaluating `http-request` rules; the request goes on.
    Allow,
    /// Answers `status` (403 by default) with HAProxy's error page.
    Deny {
        status: u16,
    },
    /// Answers `status` with the given body and headers.
    Return {
        status: u16,
        content_type: Option<String>,
        body: Option<Format>,
        headers: Vec<(String, Format)>,
    },
    Redirect(Redirect),
    SetHeader {
        name: String,
        value: Format,
    },
    AddHeader {
        name: String,
        value: Format,
    },
    DelHeader {
        name: String,
    },
    SetPath(Format),
}

/// `http-request redirect location|prefix|scheme <value> [code N] [drop-query] [append-slash]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub kind: RedirectKind,
    pub value: Format,
    pub code: u16,
    pub drop_query: bool,
    pub append_slash: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectKind {
    Location,
    Prefix,
    Scheme,
}

/// `http-response <action>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseAction {
    /// Stops evaluating `http-response` rules.
    Allow,
    SetHeader {
        name: String,
        value: Format,
    },
    AddHeader {
        name: String,
        value: Format,
    },
    DelHeader {
        name: String,
    },
}

/// `tcp-request connection accept|reject`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionAction {
    Accept,
    Reject,
}

/// A log-format string (`X-Client %[src]`): text and sample fetches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Format(pub Vec<FormatPart>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatPart {
    Text(String),
    Fetch(Fetch),
}

/// A condition: ACL names ANDed, with `!` negation per term, ORed with `or` / `||`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    pub negate_all: bool,
    /// Disjunction of conjunctions of (negated?, acl name).
    pub any_of: Vec<Vec<(bool, String)>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UseBackend {
    pub backend: String,
    pub cond: Condition,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub uri: Option<String>,
    pub realm: Option<String>,
    pub auth: Vec<(String, String)>,
    pub refresh: Option<Duration>,
    pub admin: bool,
    /// `stats show-legends`: server addresses, cookies and algorithms shown (HAProxy hides
    /// them from the page otherwise).
    pub show_legends: bool,
    /// `stats scope`: the proxies shown (empty: all); `.` is resolved to this proxy.
    pub scope: Vec<String>,
}

/// The settings `defaults` carries into proxies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySettings {
    pub mode: Mode,
    pub balance: Balance,
    /// `hash-type` and the options of `balance uri` / `balance hdr(...) use_domain_only`.
    pub hash_type: crate::hashing::HashType,
    pub uri_hash: crate::hashing::UriHash,
    pub hdr_domain_only: bool,
    pub timeouts: Timeouts,
    pub retries: u32,
    pub redispatch: bool,
    pub forwardfor: Option<String>,
    pub httplog: bool,
    /// `option tcplog` (a `mode tcp` proxy also logs this way with `option httplog`).
    pub tcplog: bool,
    pub dontlognull: bool,
    /// `option http-ignore-probes`: a connection that sends nothing (a browser's
    /// pre-connect) closes silently: no 408, no log, no request error.
    pub ignore_probes: bool,
    /// A frontend's concurrent connections; None: the global `maxconn` (HAProxy's
    /// `proxy_adjust_all_maxconn`), else 2000.
    pub maxconn: Option<u32>,
    pub httpchk: Option<HttpCheck>,
    pub cookie: Option<CookieCfg>,
    pub log_global: bool,
    pub http_reuse: HttpReuse,
    /// `default-server` parameters: inter, rise, fall, weight, maxconn, check.
    pub default_server: DefaultServer,
}

/// `http-reuse`: which requests may go on an idle server connection another client
/// connection used before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpReuse {
    /// Never: a new server connection per request (not shared, not kept).
    Never,
    /// HAProxy's default: a client connection's first request must not fail because a
    /// reused connection was closed under it, since the client cannot retry it. ballast
    /// sends such a request on a new connection unless it is idempotent (an idempotent
    /// one that meets a closed connection is sent again on a new one, unseen). Each
    /// HTTP/2 stream counts as a first request.
    Safe,
    /// Any request, with ballast's resend of idempotent ones. `aggressive` is read as
    /// `always` (HAProxy's lets a first request reuse only connections already reused).
    Always,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultServer {
    pub inter: Duration,
    pub rise: u32,
    pub fall: u32,
    pub weight: u32,
    pub maxconn: u32,
    pub check: bool,
}

impl Default for DefaultServer {
    fn default() -> Self {
        // HAProxy's defaults: inter 2s, rise 2, fall 3, weight 1.
        DefaultServer { inter: Duration::from_secs(2), rise: 2, fall: 3, weight: 1, maxconn: 0, check: false }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            mode: Mode::Tcp,
            balance: Balance::RoundRobin,
            hash_type: Default::default(),
            uri_hash: Default::default(),
            hdr_domain_only: false,
            timeouts: Timeouts::default(),
            retries: 3,
            redispatch: false,
            forwardfor: None,
            httplog: false,
            tcplog: false,
            dontlognull: false,
            ignore_probes: false,
            maxconn: None,
            httpchk: None,
            cookie: None,
            log_global: false,
            http_reuse: HttpReuse::Safe,
            default_server: DefaultServer::default(),
        }
    }
}

/// A `listen`, `frontend` or `backend` section (HAProxy's "proxies").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySection {
    pub name: String,
    pub kind: ProxyKind,
    /// Where it was declared, for diagnostics.
    pub file: String,
    pub line: usize,
    pub settings: ProxySettings,
    pub binds: Vec<Bind>,
    pub servers: Vec<Server>,
    pub acls: Vec<Acl>,
    /// `http-request` rules, in order.
    pub http_request: Vec<Rule<RequestAction>>,
    /// `http-response` rules, in order.
    pub http_response: Vec<Rule<ResponseAction>>,
    /// `tcp-request connection` rules, in order.
    pub tcp_request_connection: Vec<Rule<ConnectionAction>>,
    pub use_backends: Vec<UseBackend>,
    pub default_backend: Option<String>,
    pub stats: Option<Stats>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Global {
    /// Concurrent connections of the whole process, and every frontend's default.
    pub maxconn: Option<u32>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub daemon: bool,
    pub nbthread: Option<u32>,
    /// `log ADDR FACILITY [LEVEL]` lines.
    pub logs: Vec<String>,
    /// `stats socket PATH`: the runtime API.
    pub stats_socket: Option<PathBuf>,
    /// `ssl-default-bind-options`, `-ciphers`, `-ciphersuites`, `-curves`.
    pub ssl_default_bind: super::tls::TlsOptions,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L7Config {
    pub global: Global,
    pub proxies: Vec<ProxySection>,
}

impl L7Config {
    pub fn proxy(&self, name: &str) -> Option<&ProxySection> {
        self.proxies.iter().find(|p| p.name == name)
    }
}
