//! The agent's configuration: a JSON (or HCL) file shaped like Consul's `config.json` (seed 002),
//! so an operator's file carries over. Pipeline: file → [`FileConfig`] (serde, unknown
//! keys rejected by name) → [`AgentConfig`] (validated, defaults filled in).
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// Consul's default HTTP API port.
pub const DEFAULT_HTTP_PORT: u16 = 8500;
/// Consul's default LAN gossip port.
pub const DEFAULT_SERF_LAN_PORT: u16 = 8301;
/// Consul's default server RPC port: ballast's cluster RPC (Raft, join, keyring).
pub const DEFAULT_SERVER_PORT: u16 = 8300;
/// Consul's DNS port.
pub const DEFAULT_DNS_PORT: u16 = 8600;

/// Consul's `gossip_lan` tuning block (durations as Go strings).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GossipLan {
    pub probe_interval: Option<String>,
    pub probe_timeout: Option<String>,
    /// Suspect → down after this many probe intervals.
    pub suspicion_mult: Option<u32>,
}

/// ballast's Raft timing (`raft` block; durations as Go strings).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaftFile {
    pub heartbeat_interval: Option<String>,
    /// The shortest election timeout; the longest is twice it.
    pub election_timeout: Option<String>,
}

/// ballast's LB settings (`lb` block).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LbFile {
    /// How long a device's lease lasts (renewed every tenth of it).
    pub lease: Option<String>,
    /// Scale-out and scale-in (`crate::scale::Policy`).
    pub scale: Option<ScaleFile>,
    /// Where webhooks may post (`crate::hook_target::Allow`): CIDRs and host names. Empty: any
    /// address but loopback, link-local, unspecified and multicast ones.
    pub hook_allow: Option<Vec<String>>,
    /// How many of the devices checking an L4 backend must see it fail for it to be down
    /// everywhere (default: more than half of them).
    pub backend_down_quorum: Option<u32>,
}

/// One of Consul's `watches` (seed 002's shape).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchFile {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub key: Option<String>,
    pub prefix: Option<String>,
    /// A user event's name (Consul's `event` watch); ballast's events are the LB's.
    pub name: Option<String>,
    pub handler_type: Option<String>,
    pub args: Option<Vec<String>>,
    /// The older form: one shell command.
    pub handler: Option<String>,
    pub http_handler_config: Option<HttpHandlerFile>,
    pub token: Option<String>,
    pub datacenter: Option<String>,
    /// Parameters of Consul's catalog watch types (service, checks, nodes), read so that
    /// the error names the type ballast does not run.
    pub service: Option<serde_json::Value>,
    pub tag: Option<serde_json::Value>,
    pub passingonly: Option<serde_json::Value>,
    pub state: Option<serde_json::Value>,
    pub node: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHandlerFile {
    pub path: Option<String>,
    pub method: Option<String>,
    pub header: Option<BTreeMap<String, Vec<String>>>,
    pub timeout: Option<String>,
    pub tls_skip_verify: Option<bool>,
}

/// A watch the agent runs: what it watches and what it calls.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSpec {
    pub what: WatchWhat,
    pub handler: WatchHandler,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WatchWhat {
    Key(String),
    KeyPrefix(String),
    Event,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WatchHandler {
    /// A program and its arguments, the JSON on its standard input.
    Args(Vec<String>),
    /// A shell command (`sh -c`), the JSON on its standard input.
    Shell(String),
    /// The JSON as the body of a request, with `X-Consul-Index`; `https://` URLs are
    /// verified against the system's roots (`SSL_CERT_FILE` overrides, as in Go) unless
    /// `tls_skip_verify`.
    Http { url: String, method: String, headers: Vec<(String, String)>, timeout: std::time::Duration, tls_skip_verify: bool },
}

fn watch_spec(i: usize, w: &WatchFile) -> Result<WatchSpec, ConfigError> {
    let bad = |k: &str, why: String| ConfigError::Invalid(format!("watches[{i}].{k}: {why}"));
    let what = match (w.kind.as_deref(), &w.key, &w.prefix) {
        (Some("key"), Some(k), _) => WatchWhat::Key(k.clone()),
        (Some("keyprefix"), _, Some(p)) => WatchWhat::KeyPrefix(p.clone()),
        (Some("event"), _, _) => WatchWhat::Event,
        (Some("key"), None, _) => return Err(bad("key", "a key watch needs \"key\"".into())),
        (Some("keyprefix"), _, None) => return Err(bad("prefix", "a keyprefix watch needs \"prefix\"".into())),
        // Not running a watch the operator declared would be wrong to ignore.
        (Some(t), _, _) => {
            return Err(bad("type", format!("{t:?} is not supported (key, keyprefix, event; ballast has no service catalog)")))
        }
        (None, _, _) => return Err(bad("type", "missing".into())),
    };
    let handler = match (w.handler_type.as_deref(), &w.args, &w.handler, &w.http_handler_config) {
        (Some("script") | None, Some(args), _, _) if !args.is_empty() => WatchHandler::Args(args.clone()),
        (None, None, Some(cmd), _) => WatchHandler::Shell(cmd.clone()),
        (Some("http"), _, _, Some(h)) => {
            let url = h.path.clone().ok_or_else(|| bad("http_handler_config.path", "missing".into()))?;
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(bad("http_handler_config.path", format!("{url:?}: an http:// or https:// URL")));
            }
            let timeout = match &h.timeout {
                Some(t) => crate::duration::parse_duration(t).map_err(|e| bad("http_handler_config.timeout", e.to_string()))?,
                None => std::time::Duration::from_secs(10),
            };
            let headers =
                h.header.iter().flatten().flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone()))).collect();
            WatchHandler::Http {
                url,
                method: h.method.clone().unwrap_or_else(|| "POST".into()),
                headers,
                timeout,
                tls_skip_verify: h.tls_skip_verify.unwrap_or(false),
            }
        }
        (Some("script"), _, _, _) => return Err(bad("args", "a script handler needs \"args\"".into())),
        (Some("http"), _, _, None) => return Err(bad("http_handler_config", "an http handler needs it".into())),
        (Some(t), _, _, _) => return Err(bad("handler_type", format!("{t:?} (script or http)"))),
        (None, _, _, _) => return Err(bad("handler_type", "no handler (args, or http_handler_config)".into())),
    };
    if w.datacenter.is_some() || w.name.is_some() {
        log::warn!("watches[{i}]: \"datacenter\" and \"name\" are accepted and not used (one datacenter; LB events)");
    }
    Ok(WatchSpec { what, handler, token: w.token.clone() })
}

/// `lb.scale`: thresholds (0 turns one off), durations as Go strings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleFile {
    /// New connections per second through a device's VIPs.
    pub conn_rate: Option<f32>,
    /// CPU busy %.
    pub cpu: Option<f32>,
    /// Packets per second through a device's XDP program.
    pub pps: Option<f32>,
    /// Scale-in below this fraction of the thresholds (0 < low < 1).
    pub low: Option<f32>,
    pub sustain: Option<String>,
    pub hold_down: Option<String>,
    pub drain: Option<String>,
    pub max_vips: Option<u32>,
}

/// Raft and lease timing in force (milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub raft_heartbeat_ms: u64,
    pub raft_election_min_ms: u64,
    pub lease_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { raft_heartbeat_ms: 150, raft_election_min_ms: 300, lease_ms: 2000 }
    }
}

impl Timing {
    pub fn raft_election_max_ms(&self) -> u64 {
        self.raft_election_min_ms * 2
    }

    /// How often a device renews its lease (after a failure: every heartbeat).
    pub fn renew_every_ms(&self) -> u64 {
        self.lease_ms / 10
    }

    /// The lease must outlast, from the last renewal, a renewal interval (the leader may
    /// die just before the next one), an election and a retry (every heartbeat), or every
    /// device loses its VIPs whenever the leader changes. openraft 0.9's followers start an
    /// election only after its leader lease (`election_max`) plus a random timeout (up to
    /// `election_max` again) of silence, checked on ticks every 1.5 heartbeats: measured,
    /// the survivors named a dead leader for 1.9 s with a 600 ms `election_timeout`. A
    /// second election round (a lost vote) is not covered.
    fn check(&self) -> Result<(), ConfigError> {
        if self.raft_heartbeat_ms == 0 || self.raft_heartbeat_ms * 2 > self.raft_election_min_ms {
            return Err(ConfigError::Invalid(format!(
                "raft.heartbeat_interval ({} ms) must be above 0 and at most half of raft.election_timeout ({} ms)",
                self.raft_heartbeat_ms, self.raft_election_min_ms
            )));
        }
        let need = self.renew_every_ms() + 2 * self.raft_election_max_ms() + self.raft_heartbeat_ms * 5 / 2;
        if self.lease_ms < need {
            return Err(ConfigError::Invalid(format!(
                "lb.lease ({} ms) must outlast a Raft election after a renewal: at least {need} ms with \
                 raft.election_timeout {} ms (a renewal interval, then 4x that + 2.5 heartbeats), or every device \
                 would drop its VIPs whenever the leader changes",
                self.lease_ms, self.raft_election_min_ms
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    /// -1 (Consul: no HTTP API) is refused: the API is how ballast is driven.
    pub http: Option<i32>,
    pub serf_lan: Option<u16>,
    pub server: Option<u16>,
    /// -1 turns DNS off, as in Consul.
    pub dns: Option<i32>,
    // Consul's other listeners; ballast has none of them (warned when enabled).
    pub https: Option<i32>,
    pub grpc: Option<i32>,
    pub grpc_tls: Option<i32>,
    pub serf_wan: Option<i32>,
    pub sidecar_min_port: Option<i32>,
    pub sidecar_max_port: Option<i32>,
    pub expose_min_port: Option<i32>,
    pub expose_max_port: Option<i32>,
}

/// Consul's `addresses` block: per-listener bind addresses over `client_addr`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Addresses {
    pub http: Option<String>,
    pub dns: Option<String>,
    pub https: Option<String>,
    pub grpc: Option<String>,
    pub grpc_tls: Option<String>,
}

/// Consul's `performance` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Performance {
    /// Scales Raft's timing (1 = fastest, Consul's default 5); here it scales ballast's
    /// Raft and lease defaults.
    pub raft_multiplier: Option<u32>,
    pub leave_drain_time: Option<serde_json::Value>,
    pub rpc_hold_timeout: Option<serde_json::Value>,
}

/// Consul's `acl` block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclFile {
    pub enabled: Option<bool>,
    pub default_policy: Option<String>,
    pub down_policy: Option<String>,
    pub enable_token_persistence: Option<bool>,
    pub tokens: Option<AclTokens>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclTokens {
    pub initial_management: Option<String>,
    /// The pre-1.11 name of `initial_management`.
    pub master: Option<String>,
    pub agent: Option<String>,
    pub default: Option<String>,
}

/// ACL settings in force.
#[derive(Debug, Clone)]
pub struct AclConfig {
    /// `default_policy = "allow"`: what no rule matches is allowed.
    pub default_allow: bool,
    /// A management secret known from the config (like Consul's initial_management).
    pub initial_management: Option<String>,
    /// Used for requests that carry no token.
    pub default_token: Option<String>,
}

/// The file as written. Keys Consul has that ballast accepts but has no use for are kept
/// (so seed files load); anything else is an error naming the key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub node_name: Option<String>,
    pub node_id: Option<String>,
    pub datacenter: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub server: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    pub bootstrap: Option<bool>,
    pub bind_addr: Option<IpAddr>,
    pub advertise_addr: Option<IpAddr>,
    pub client_addr: Option<IpAddr>,
    pub ports: Option<Ports>,
    pub retry_join: Option<Vec<String>>,
    pub start_join: Option<Vec<String>>,
    pub encrypt: Option<String>,
    /// Raft snapshot every this many log entries.
    pub snapshot_threshold: Option<u64>,
    pub acl: Option<AclFile>,
    pub gossip_lan: Option<GossipLan>,
    pub raft: Option<RaftFile>,
    pub lb: Option<LbFile>,
    // Accepted for compatibility with Consul files; not used by ballast.
    pub domain: Option<String>,
    pub enable_script_checks: Option<bool>,
    pub dns_config: Option<serde_json::Value>,
    pub enable_syslog: Option<bool>,
    pub leave_on_terminate: Option<bool>,
    pub log_level: Option<String>,
    pub rejoin_after_leave: Option<bool>,
    pub ui: Option<bool>,
    /// Consul's `watches`: run by the agent like `ballast watch`.
    pub watches: Option<Vec<WatchFile>>,
    pub addresses: Option<Addresses>,
    /// How often to retry `retry_join` until joined (Consul's default is 30 s; ballast's 1 s).
    pub retry_interval: Option<String>,
    pub performance: Option<Performance>,
    /// Prometheus is always on (`/metrics`); push sinks are warned about.
    pub telemetry: Option<serde_json::Map<String, serde_json::Value>>,
    // Consul keys accepted with a warning naming them: they configure what ballast does
    // not have (see [`UNUSED_KEYS`]).
    pub log_file: Option<serde_json::Value>,
    pub log_json: Option<serde_json::Value>,
    pub log_rotate_bytes: Option<serde_json::Value>,
    pub log_rotate_duration: Option<serde_json::Value>,
    pub log_rotate_max_files: Option<serde_json::Value>,
    pub disable_update_check: Option<serde_json::Value>,
    pub primary_datacenter: Option<serde_json::Value>,
    pub autopilot: Option<serde_json::Value>,
    pub connect: Option<serde_json::Value>,
    pub service: Option<serde_json::Value>,
    pub services: Option<serde_json::Value>,
    pub check: Option<serde_json::Value>,
    pub checks: Option<serde_json::Value>,
    pub node_meta: Option<serde_json::Value>,
    pub recursors: Option<serde_json::Value>,
    pub ui_config: Option<serde_json::Value>,
    pub limits: Option<serde_json::Value>,
    pub disable_remote_exec: Option<serde_json::Value>,
    pub enable_local_script_checks: Option<serde_json::Value>,
    pub raft_protocol: Option<serde_json::Value>,
    pub skip_leave_on_interrupt: Option<serde_json::Value>,
    pub retry_max: Option<serde_json::Value>,
    pub disable_host_node_id: Option<serde_json::Value>,
    pub encrypt_verify_incoming: Option<serde_json::Value>,
    pub encrypt_verify_outgoing: Option<serde_json::Value>,
    pub tls: Option<serde_json::Value>,
    pub auto_encrypt: Option<serde_json::Value>,
    pub verify_incoming: Option<serde_json::Value>,
    pub verify_outgoing: Option<serde_json::Value>,
    pub verify_server_hostname: Option<serde_json::Value>,
    pub ca_file: Option<serde_json::Value>,
    pub cert_file: Option<serde_json::Value>,
    pub key_file: Option<serde_json::Value>,
}

/// Consul keys a file may carry that configure something ballast does not have, and
/// what ballast does instead: loading them with a warning is safe (none of them would
/// leave something open or serve someone it should not).
pub const UNUSED_KEYS: &[(&str, &str)] = &[
    ("log_file", "logs go to standard error (journald in the appliance)"),
    ("log_json", "logs go to standard error as text"),
    ("log_rotate_bytes", "no log file"),
    ("log_rotate_duration", "no log file"),
    ("log_rotate_max_files", "no log file"),
    ("disable_update_check", "ballast never checks for updates"),
    ("primary_datacenter", "one datacenter; ACLs live in it"),
    ("autopilot", "no autopilot: servers join and leave through the Raft membership"),
    ("connect", "no service mesh (Connect)"),
    ("service", "no service catalog: LB groups are ballast's services (`ballast group`)"),
    ("services", "no service catalog: LB groups are ballast's services (`ballast group`)"),
    ("check", "no catalog health checks: listeners' checks are ballast's (`--check`)"),
    ("checks", "no catalog health checks: listeners' checks are ballast's (`--check`)"),
    ("node_meta", "no catalog"),
    ("recursors", "ballast's DNS answers only its own domain"),
    ("ui_config", "the UI is always at /ui/"),
    ("limits", "no per-client rate limits"),
    ("disable_remote_exec", "no remote exec"),
    ("enable_local_script_checks", "no script checks"),
    ("raft_protocol", "one Raft protocol"),
    ("skip_leave_on_interrupt", "an interrupted agent hands its VIPs over"),
    ("retry_max", "join retries until it succeeds"),
    ("disable_host_node_id", "node ids come from node_id or the node name"),
    ("encrypt_verify_incoming", "gossip is always encrypted and verified when a key is set"),
    ("encrypt_verify_outgoing", "gossip is always encrypted and verified when a key is set"),
    ("tls", "no TLS listeners: cluster RPC is authenticated by the gossip key (encrypt), the API is HTTP"),
    ("auto_encrypt", "no TLS listeners"),
    ("verify_incoming", "no TLS listeners: cluster RPC is authenticated by the gossip key (encrypt)"),
    ("verify_outgoing", "no TLS listeners"),
    ("verify_server_hostname", "no TLS listeners"),
    ("ca_file", "no TLS listeners"),
    ("cert_file", "no TLS listeners"),
    ("key_file", "no TLS listeners"),
];

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// Raft node id: from `node_id` if it is a number, else a hash of the node name.
    pub node_id: u64,
    pub datacenter: String,
    pub data_dir: PathBuf,
    pub server: bool,
    pub bootstrap_expect: u32,
    /// Where the HTTP API listens (`client_addr`, `ports.http`).
    pub http_addr: SocketAddr,
    /// The address other agents reach this one's API at.
    pub advertise_http: SocketAddr,
    /// Where cluster RPC (Raft, join, keyring) listens: the cluster address (`bind_addr`,
    /// `ports.server`), never the API's listener.
    pub rpc_addr: SocketAddr,
    /// The address other agents reach this one's cluster RPC at.
    pub advertise_rpc: SocketAddr,
    /// Development only (the `-dev-insecure-rpc` flag): a server may run without a
    /// cluster key, its cluster RPC then open to anyone who reaches the RPC port.
    pub insecure_rpc: bool,
    /// Where gossip (UDP) listens, and the address others reach it at.
    pub gossip_bind: SocketAddr,
    pub advertise_gossip: SocketAddr,
    /// Other agents' gossip addresses to join through (`host:port`).
    pub join: Vec<String>,
    /// The gossip key (base64), checked.
    pub encrypt: Option<String>,
    pub gossip_timing: crate::gossip::Timing,
    pub timing: Timing,
    pub snapshot_threshold: u64,
    /// None when ACLs are off (everything allowed, like Consul without `acl.enabled`).
    pub acl: Option<AclConfig>,
    /// Where DNS (GSLB) answers (`client_addr`, `ports.dns`; 8600 by default); None: off.
    pub dns_addr: Option<SocketAddr>,
    /// The DNS domain groups are named under (`domain`; `ballast` by default).
    pub domain: String,
    /// Scale-out and scale-in (`lb.scale`).
    pub scale: crate::scale::Policy,
    /// Consul's `watches`, which the agent runs.
    pub watches: Vec<WatchSpec>,
    /// `lb.hook_allow`: where webhooks may post.
    pub hook_allow: Vec<crate::hook_target::Allow>,
    /// `lb.backend_down_quorum`.
    pub down_quorum: crate::backend_health::DownQuorum,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {msg}")]
    Parse { path: String, msg: String },
    #[error("{0}")]
    Invalid(String),
}

/// `lb.scale`, checked: thresholds not negative, `low` between 0 and 1, a hold-down at
/// least `sustain` (hysteresis), a drain at least the DNS TTL.
fn scale_policy(f: &ScaleFile) -> Result<crate::scale::Policy, ConfigError> {
    let mut p = crate::scale::Policy::default();
    let bad = |k: &str, why: String| ConfigError::Invalid(format!("lb.scale.{k}: {why}"));
    let ms = |k: &str, v: &Option<String>| -> Result<Option<u64>, ConfigError> {
        v.as_deref()
            .map(crate::duration::parse_duration)
            .transpose()
            .map(|d| d.map(|d| d.as_millis() as u64))
            .map_err(|e| bad(k, e.to_string()))
    };
    if let Some(v) = f.conn_rate {
        p.conn_rate = v;
    }
    if let Some(v) = f.cpu {
        p.cpu_pct = v;
    }
    if let Some(v) = f.pps {
        p.pps = v;
    }
    if let Some(v) = f.low {
        p.low = v;
    }
    if let Some(v) = ms("sustain", &f.sustain)? {
        p.sustain_ms = v;
    }
    if let Some(v) = ms("hold_down", &f.hold_down)? {
        p.hold_down_ms = v;
    }
    if let Some(v) = ms("drain", &f.drain)? {
        p.drain_ms = v;
    }
    if let Some(v) = f.max_vips {
        p.max_vips = v;
    }
    if !(p.conn_rate >= 0.0 && p.conn_rate.is_finite()) {
        return Err(bad("conn_rate", format!("{} (want a rate >= 0; 0 is off)", p.conn_rate)));
    }
    if !(p.pps >= 0.0 && p.pps.is_finite()) {
        return Err(bad("pps", format!("{} (want a rate >= 0; 0 is off)", p.pps)));
    }
    if !(0.0..=100.0).contains(&p.cpu_pct) {
        return Err(bad("cpu", format!("{} (want a percentage; 0 is off)", p.cpu_pct)));
    }
    if !(p.low > 0.0 && p.low < 1.0) {
        return Err(bad("low", format!("{} (want a fraction between 0 and 1)", p.low)));
    }
    if p.hold_down_ms < p.sustain_ms {
        return Err(bad("hold_down", "shorter than sustain: VIPs would come and go".into()));
    }
    if p.drain_ms < u64::from(crate::gslb::TTL) * 1000 {
        return Err(bad("drain", format!("shorter than the DNS TTL ({} s)", crate::gslb::TTL)));
    }
    if p.max_vips < 1 {
        return Err(bad("max_vips", "at least 1".into()));
    }
    Ok(p)
}

/// Labels of letters, digits, '-' and '_', 1 to 63 bytes each, 253 in all.
fn dns_name_check(name: &str) -> Result<(), ()> {
    let ok = name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then_some(()).ok_or(())
}

/// FNV-1a: a stable node id from a node name.
pub fn node_id_from_name(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Raft ids must not be 0 in our API (0 means "no leader").
    h.max(1)
}

impl FileConfig {
    /// JSON, or HCL when the file name ends in `.hcl` (as Consul decides).
    pub fn parse(text: &str, path: &str) -> Result<FileConfig, ConfigError> {
        let err = |msg: String| ConfigError::Parse { path: path.into(), msg };
        if !path.ends_with(".hcl") {
            return serde_json::from_str(text).map_err(|e| err(e.to_string()));
        }
        let mut v: serde_json::Value = hcl::from_str(text).map_err(|e| err(format!("HCL: {e}")))?;
        // One `watches { ... }` block reads as an object; Consul takes it as a list of one.
        if let Some(w) = v.get_mut("watches").filter(|w| w.is_object()) {
            *w = serde_json::Value::Array(vec![w.take()]);
        }
        serde_json::from_value(v).map_err(|e| err(e.to_string()))
    }

    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let p = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
        FileConfig::parse(&text, &p)
    }

    /// Later files override earlier ones key by key, like Consul's `-config-dir`.
    pub fn merge(mut self, mut over: FileConfig) -> FileConfig {
        // Watches add up across files, as in Consul; every other key is replaced.
        let watches = match (self.watches.take(), over.watches.take()) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Some(a)
            }
            (a, b) => b.or(a),
        };
        let mut merged = self.pick_over(over);
        merged.watches = watches;
        merged
    }

    fn pick_over(self, over: FileConfig) -> FileConfig {
        macro_rules! pick {
            ($($f:ident),*) => { FileConfig { $($f: over.$f.or(self.$f),)* } };
        }
        pick!(
            node_name,
            node_id,
            datacenter,
            data_dir,
            server,
            bootstrap_expect,
            bootstrap,
            bind_addr,
            advertise_addr,
            client_addr,
            ports,
            retry_join,
            start_join,
            encrypt,
            snapshot_threshold,
            acl,
            gossip_lan,
            raft,
            lb,
            domain,
            enable_script_checks,
            dns_config,
            enable_syslog,
            leave_on_terminate,
            log_level,
            rejoin_after_leave,
            ui,
            watches,
            addresses,
            retry_interval,
            performance,
            telemetry,
            log_file,
            log_json,
            log_rotate_bytes,
            log_rotate_duration,
            log_rotate_max_files,
            disable_update_check,
            primary_datacenter,
            autopilot,
            connect,
            service,
            services,
            check,
            checks,
            node_meta,
            recursors,
            ui_config,
            limits,
            disable_remote_exec,
            enable_local_script_checks,
            raft_protocol,
            skip_leave_on_interrupt,
            retry_max,
            disable_host_node_id,
            encrypt_verify_incoming,
            encrypt_verify_outgoing,
            tls,
            auto_encrypt,
            verify_incoming,
            verify_outgoing,
            verify_server_hostname,
            ca_file,
            cert_file,
            key_file
        )
    }

    /// What the file asks for that ballast loads without doing, one line per key, naming
    /// it. Logged at start; errors are for what would be wrong to ignore (see `resolve`).
    pub fn warnings(&self) -> Vec<String> {
        let present = self.unused_values();
        let mut out: Vec<String> = UNUSED_KEYS
            .iter()
            .filter(|(k, _)| present.get(k).is_some_and(|v| v.is_some()))
            .map(|(k, why)| format!("{k}: accepted, not used ({why})"))
            .collect();
        if let Some(p) = &self.ports {
            for (name, v) in [
                ("https", p.https),
                ("grpc", p.grpc),
                ("grpc_tls", p.grpc_tls),
                ("serf_wan", p.serf_wan),
                ("sidecar_min_port", p.sidecar_min_port),
                ("sidecar_max_port", p.sidecar_max_port),
                ("expose_min_port", p.expose_min_port),
                ("expose_max_port", p.expose_max_port),
            ] {
                if v.is_some_and(|v| v > 0) {
                    out.push(format!("ports.{name}: accepted, not used (ballast has no such listener)"));
                }
            }
        }
        if let Some(a) = &self.addresses {
            for (name, v) in [("https", &a.https), ("grpc", &a.grpc), ("grpc_tls", &a.grpc_tls)] {
                if v.is_some() {
                    out.push(format!("addresses.{name}: accepted, not used (ballast has no such listener)"));
                }
            }
        }
        if let Some(p) = &self.performance {
            for (name, v) in [("leave_drain_time", &p.leave_drain_time), ("rpc_hold_timeout", &p.rpc_hold_timeout)] {
                if v.is_some() {
                    out.push(format!("performance.{name}: accepted, not used"));
                }
            }
            if let Some(m) = p.raft_multiplier.filter(|m| *m > 1) {
                out.push(format!(
                    "performance.raft_multiplier = {m}: ballast's Raft and lease timing are {m}x its defaults, so a VIP takes about {m}x as long to move after a device failure"
                ));
            }
        }
        for (k, _) in self.telemetry.iter().flatten() {
            let pull_only = ["prometheus_retention_time", "disable_hostname", "disable_compat_1.9"];
            if !pull_only.contains(&k.as_str()) {
                out.push(format!("telemetry.{k}: accepted, not used (metrics are not pushed; scrape /metrics)"));
            }
        }
        out
    }

    fn unused_values(&self) -> BTreeMap<&'static str, Option<&serde_json::Value>> {
        macro_rules! vals {
            ($($f:ident),*) => { BTreeMap::from([$((stringify!($f), self.$f.as_ref()),)*]) };
        }
        vals!(
            log_file,
            log_json,
            log_rotate_bytes,
            log_rotate_duration,
            log_rotate_max_files,
            disable_update_check,
            primary_datacenter,
            autopilot,
            connect,
            service,
            services,
            check,
            checks,
            node_meta,
            recursors,
            ui_config,
            limits,
            disable_remote_exec,
            enable_local_script_checks,
            raft_protocol,
            skip_leave_on_interrupt,
            retry_max,
            disable_host_node_id,
            encrypt_verify_incoming,
            encrypt_verify_outgoing,
            tls,
            auto_encrypt,
            verify_incoming,
            verify_outgoing,
            verify_server_hostname,
            ca_file,
            cert_file,
            key_file
        )
    }

    /// Validates and fills in defaults. `node` overrides `node_name` (the `-node` flag).
    pub fn resolve(self, node: Option<&str>) -> Result<AgentConfig, ConfigError> {
        let node_name = node
            .map(String::from)
            .or(self.node_name)
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|s| s.trim().to_string()))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ConfigError::Invalid("node_name: not set and no hostname".into()))?;
        let node_id = match &self.node_id {
            Some(s) => match s.parse::<u64>() {
                Ok(0) => return Err(ConfigError::Invalid("node_id: must not be 0".into())),
                Ok(n) => n,
                Err(_) => node_id_from_name(s),
            },
            None => node_id_from_name(&node_name),
        };
        let data_dir = self.data_dir.ok_or_else(|| ConfigError::Invalid("data_dir: required".into()))?;
        let server = self.server.unwrap_or(false);
        let bootstrap_expect = match (self.bootstrap_expect, self.bootstrap) {
            (Some(_), Some(true)) => {
                return Err(ConfigError::Invalid(
                    "bootstrap and bootstrap_expect are mutually exclusive".into(),
                ))
            }
            (Some(0), _) => return Err(ConfigError::Invalid("bootstrap_expect: must be at least 1".into())),
            (Some(n), _) => n,
            (None, Some(true)) => 1,
            (None, _) => 0,
        };
        if bootstrap_expect > 0 && !server {
            return Err(ConfigError::Invalid(
                "bootstrap_expect: only servers bootstrap (set \"server\": true)".into(),
            ));
        }
        if bootstrap_expect == 2 {
            log::warn!("bootstrap_expect = 2: a cluster of two servers cannot lose either; use 3 or 5");
        }
        let ports = self.ports.unwrap_or_default();
        let http_port = match ports.http {
            None => DEFAULT_HTTP_PORT,
            Some(p) => u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "ports.http: {p}: ballast needs its HTTP API (the CLI, the agents and the UI use it); give it a port"
                ))
            })?,
        };
        let serf_port = ports.serf_lan.unwrap_or(DEFAULT_SERF_LAN_PORT);
        let server_port = ports.server.unwrap_or(DEFAULT_SERVER_PORT);
        let dns_port = match ports.dns {
            None => Some(DEFAULT_DNS_PORT),
            Some(-1) => None,
            Some(p) => Some(u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                ConfigError::Invalid(format!("ports.dns: {p} (want a port, or -1 for no DNS)"))
            })?),
        };
        let domain = self.domain.clone().unwrap_or_else(|| "ballast".into()).trim_end_matches('.').to_string();
        if domain.is_empty() || dns_name_check(&domain).is_err() {
            return Err(ConfigError::Invalid(format!("domain: {domain:?} is not a DNS name")));
        }
        let bind = self.bind_addr.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let client = self.client_addr.unwrap_or(bind);
        // `addresses.http`/`addresses.dns` put one listener elsewhere than client_addr.
        let listen_addr = |name: &str, v: Option<&String>| -> Result<IpAddr, ConfigError> {
            match v.map(|s| s.trim()) {
                None => Ok(client),
                Some(s) => s.parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "addresses.{name}: {s:?} is not one IP address (lists and go-sockaddr templates are not supported)"
                    ))
                }),
            }
        };
        let addrs = self.addresses.unwrap_or_default();
        let http_ip = listen_addr("http", addrs.http.as_ref())?;
        let dns_ip = listen_addr("dns", addrs.dns.as_ref())?;
        let advertise = self.advertise_addr.unwrap_or(if bind.is_unspecified() { client } else { bind });
        if advertise.is_unspecified() {
            return Err(ConfigError::Invalid(
                "advertise_addr: needed when bind_addr and client_addr are both 0.0.0.0".into(),
            ));
        }
        let mut join = Vec::new();
        for j in self.start_join.into_iter().flatten().chain(self.retry_join.into_iter().flatten()) {
            let j = j.trim().to_string();
            if j.is_empty() {
                return Err(ConfigError::Invalid("retry_join: empty address".into()));
            }
            let with_port = if j.parse::<SocketAddr>().is_ok()
                || j.rsplit_once(':').is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
            {
                j
            } else {
                format!("{j}:{serf_port}")
            };
            if !join.contains(&with_port) {
                join.push(with_port);
            }
        }
        if let Some(k) = &self.encrypt {
            crate::gossip::keyring::decode_key(k)
                .map_err(|e| ConfigError::Invalid(format!("encrypt: {e}")))?;
        }
        let mut gossip_timing = crate::gossip::Timing::default();
        if let Some(r) = &self.retry_interval {
            gossip_timing.join_retry = crate::duration::parse_duration(r)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| ConfigError::Invalid(format!("retry_interval: {r:?} (want a duration such as \"30s\")")))?;
        }
        if let Some(g) = &self.gossip_lan {
            let dur = |name: &str, v: &Option<String>| -> Result<Option<std::time::Duration>, ConfigError> {
                v.as_deref()
                    .map(crate::duration::parse_duration)
                    .transpose()
                    .map_err(|e| ConfigError::Invalid(format!("gossip_lan.{name}: {e}")))
            };
            if let Some(d) = dur("probe_interval", &g.probe_interval)? {
                gossip_timing.probe_period = d;
            }
            if let Some(d) = dur("probe_timeout", &g.probe_timeout)? {
                gossip_timing.probe_rtt = d;
            }
            if gossip_timing.probe_rtt >= gossip_timing.probe_period || gossip_timing.probe_rtt.is_zero() {
                return Err(ConfigError::Invalid(
                    "gossip_lan.probe_timeout: must be above 0 and below probe_interval".into(),
                ));
            }
            gossip_timing.suspect_to_down = gossip_timing
                .probe_period
                .checked_mul(g.suspicion_mult.unwrap_or(2).max(1))
                .filter(|d| *d <= std::time::Duration::from_secs(3600))
                .ok_or_else(|| ConfigError::Invalid("gossip_lan.suspicion_mult: too large".into()))?;
        }
        let multiplier = match self.performance.as_ref().and_then(|p| p.raft_multiplier) {
            None => 1,
            Some(m @ 1..=10) => m as u64,
            Some(m) => {
                return Err(ConfigError::Invalid(format!("performance.raft_multiplier: {m} (Consul allows 1 to 10)")))
            }
        };
        let d = Timing::default();
        let mut timing = Timing {
            raft_heartbeat_ms: d.raft_heartbeat_ms * multiplier,
            raft_election_min_ms: d.raft_election_min_ms * multiplier,
            lease_ms: d.lease_ms * multiplier,
        };
        let ms = |name: &str, v: Option<&String>| -> Result<Option<u64>, ConfigError> {
            v.map(|v| crate::duration::parse_duration(v))
                .transpose()
                .map(|d| d.map(|d| d.as_millis() as u64))
                .map_err(|e| ConfigError::Invalid(format!("{name}: {e}")))
        };
        if let Some(r) = &self.raft {
            if let Some(v) = ms("raft.heartbeat_interval", r.heartbeat_interval.as_ref())? {
                timing.raft_heartbeat_ms = v;
            }
            if let Some(v) = ms("raft.election_timeout", r.election_timeout.as_ref())? {
                timing.raft_election_min_ms = v;
            }
        }
        if let Some(v) = ms("lb.lease", self.lb.as_ref().and_then(|l| l.lease.as_ref()))? {
            timing.lease_ms = v;
        }
        timing.check()?;
        let watches = self
            .watches
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, w)| watch_spec(i, w))
            .collect::<Result<Vec<_>, _>>()?;
        let hook_allow = self
            .lb
            .as_ref()
            .and_then(|l| l.hook_allow.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| {
                crate::hook_target::Allow::parse(s).map_err(|e| ConfigError::Invalid(format!("lb.hook_allow[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let down_quorum = match self.lb.as_ref().and_then(|l| l.backend_down_quorum) {
            None => crate::backend_health::DownQuorum::Majority,
            Some(0) => return Err(ConfigError::Invalid("lb.backend_down_quorum: at least 1".into())),
            Some(k) => crate::backend_health::DownQuorum::AtLeast(k),
        };
        let scale = match self.lb.as_ref().and_then(|l| l.scale.as_ref()) {
            Some(f) => scale_policy(f)?,
            None => crate::scale::Policy::default(),
        };
        let acl = match self.acl {
            Some(a) if a.enabled.unwrap_or(false) => {
                let default_allow = match a.default_policy.as_deref().unwrap_or("allow") {
                    "allow" => true,
                    "deny" => false,
                    other => {
                        return Err(ConfigError::Invalid(format!(
                            "acl.default_policy: {other:?} (want \"allow\" or \"deny\")"
                        )))
                    }
                };
                let tokens = a.tokens.unwrap_or_default();
                Some(AclConfig {
                    default_allow,
                    initial_management: tokens.initial_management.or(tokens.master).filter(|t| !t.is_empty()),
                    default_token: tokens.default.filter(|t| !t.is_empty()),
                })
            }
            _ => None,
        };
        Ok(AgentConfig {
            node_name,
            node_id,
            datacenter: self.datacenter.unwrap_or_else(|| "dc1".into()),
            data_dir,
            server,
            bootstrap_expect,
            http_addr: SocketAddr::new(http_ip, http_port),
            advertise_http: SocketAddr::new(advertise, http_port),
            rpc_addr: SocketAddr::new(bind, server_port),
            advertise_rpc: SocketAddr::new(advertise, server_port),
            insecure_rpc: false,
            gossip_bind: SocketAddr::new(bind, serf_port),
            advertise_gossip: SocketAddr::new(advertise, serf_port),
            join,
            encrypt: self.encrypt,
            gossip_timing,
            timing,
            snapshot_threshold: self.snapshot_threshold.unwrap_or(1024).max(16),
            acl,
            dns_addr: dns_port.map(|p| SocketAddr::new(dns_ip, p)),
            domain,
            scale,
            watches,
            hook_allow,
            down_quorum,
        })
    }
}

/// Loads and merges the files given (`-config-file` / every `*.json` and `*.hcl` of `-config-dir`).
pub fn load(files: &[PathBuf], node: Option<&str>) -> Result<AgentConfig, ConfigError> {
    let mut merged = FileConfig::default();
    let mut all = Vec::new();
    for f in files {
        if f.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(f)
                .map_err(|source| ConfigError::Read { path: f.display().to_string(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "hcl"))
                .collect();
            inside.sort();
            all.extend(inside);
        } else {
            all.push(f.clone());
        }
    }
    for f in &all {
        merged = merged.merge(FileConfig::load(f)?);
    }
    for w in merged.warnings() {
        log::warn!("config: {w}");
    }
    merged.resolve(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = r#"{
    "bootstrap_expect": 3,
    "client_addr": "0.0.0.0",
    "bind_addr": "192.168.122.150",
    "datacenter": "KE-DC",
    "data_dir": "/var/lib/consul",
    "domain": "consul",
    "enable_script_checks": true,
    "dns_config": { "enable_truncate": true, "only_passing": true },
    "enable_syslog": true,
    "encrypt": "op+bPRe2ZDynNu2m7V8o1BdFp0L1swlvxzDqOiRWwP0=",
    "leave_on_terminate": true,
    "log_level": "INFO",
    "rejoin_after_leave": true,
    "retry_join": [ "consul01", "consul02", "consul03" ],
    "server": true,
    "start_join": [ "consul01", "consul02", "consul03" ],
    "ui": true
}"#;

    #[test]
    fn seed_config_loads() {
        let c = FileConfig::parse(SEED, "config.json").unwrap().resolve(Some("consul01")).unwrap();
        assert_eq!(c.node_name, "consul01");
        assert_eq!(c.datacenter, "KE-DC");
        assert!(c.server);
        assert_eq!(c.bootstrap_expect, 3);
        assert_eq!(c.http_addr, "0.0.0.0:8500".parse().unwrap());
        assert_eq!(c.advertise_http, "192.168.122.150:8500".parse().unwrap());
        assert_eq!(c.join, vec!["consul01:8301", "consul02:8301", "consul03:8301"]);
        assert_eq!(c.gossip_bind, "192.168.122.150:8301".parse().unwrap());
        assert!(c.encrypt.is_some());
    }

    #[test]
    fn raft_and_lease_timing() {
        let t = |extra: &str| {
            FileConfig::parse(&format!(r#"{{"data_dir": "/x" {extra}}}"#), "c.json").unwrap().resolve(Some("n"))
        };
        assert_eq!(t("").unwrap().timing, Timing::default());
        let fast = t(r#", "raft": {"heartbeat_interval": "50ms", "election_timeout": "100ms"}, "lb": {"lease": "700ms"}"#)
            .unwrap()
            .timing;
        assert_eq!(fast, Timing { raft_heartbeat_ms: 50, raft_election_min_ms: 100, lease_ms: 700 });
        assert_eq!((fast.raft_election_max_ms(), fast.renew_every_ms()), (200, 70));
        // The old default (600 ms elections) with a 2 s lease: too short, as measured.
        assert!(t(r#", "raft": {"election_timeout": "600ms"}"#).is_err());
        // A lease shorter than an election: every device would lose its VIPs on a leader change.
        let e = t(r#", "lb": {"lease": "1s"}"#).unwrap_err();
        assert!(e.to_string().contains("lb.lease") && e.to_string().contains("1675 ms"), "{e}");
        let e = t(r#", "raft": {"heartbeat_interval": "400ms"}"#).unwrap_err();
        assert!(e.to_string().contains("raft.heartbeat_interval"), "{e}");
        let e = t(r#", "lb": {"lease": "soon"}"#).unwrap_err();
        assert!(e.to_string().contains("lb.lease"), "{e}");
    }

    #[test]
    fn watches_as_seed_002_writes_them() {
        let cfg = |w: &str| {
            FileConfig::parse(&format!(r#"{{"data_dir": "/tmp/x", "node_name": "n", "watches": [{w}]}}"#), "t")
                .map_err(|e| e.to_string())?
                .resolve(None)
                .map_err(|e| e.to_string())
        };
        let c = cfg(r#"{"type": "key", "key": "foo/bar/baz", "handler_type": "script",
                        "args": ["/usr/bin/my-service-handler.sh", "-redis"]}"#)
        .unwrap();
        assert_eq!(
            c.watches,
            [WatchSpec {
                what: WatchWhat::Key("foo/bar/baz".into()),
                handler: WatchHandler::Args(vec!["/usr/bin/my-service-handler.sh".into(), "-redis".into()]),
                token: None
            }]
        );
        let c = cfg(r#"{"type": "keyprefix", "prefix": "app/", "handler_type": "http",
                        "http_handler_config": {"path": "http://localhost:8000/watch", "method": "POST",
                        "header": {"x-foo": ["bar", "baz"]}, "timeout": "10s", "tls_skip_verify": false}}"#)
        .unwrap();
        let WatchHandler::Http { headers, method, .. } = &c.watches[0].handler else { panic!() };
        assert_eq!((method.as_str(), headers.len()), ("POST", 2));
        let c = cfg(r#"{"type": "key", "key": "k", "handler_type": "http",
                        "http_handler_config": {"path": "https://hooks.example:8443/w", "tls_skip_verify": true}}"#)
        .unwrap();
        assert!(matches!(&c.watches[0].handler, WatchHandler::Http { tls_skip_verify: true, .. }));
        // What would be wrong to ignore is an error naming the key.
        for (w, key) in [
            (r#"{"type": "service", "service": "redis", "args": ["x"]}"#, "watches[0].type"),
            (r#"{"type": "key", "args": ["x"]}"#, "watches[0].key"),
            (r#"{"type": "key", "key": "k", "handler_type": "http",
                 "http_handler_config": {"path": "ftp://localhost:8000/watch"}}"#, "watches[0].http_handler_config.path"),
            (r#"{"type": "key", "key": "k"}"#, "watches[0].handler_type"),
        ] {
            let e = cfg(w).unwrap_err();
            assert!(e.contains(key), "{w}: {e}");
        }
        // Watches from several files add up.
        let a = FileConfig::parse(r#"{"watches": [{"type": "event", "handler": "a"}]}"#, "a").unwrap();
        let b = FileConfig::parse(r#"{"data_dir": "/tmp/x", "node_name": "n", "watches": [{"type": "event", "handler": "b"}]}"#, "b").unwrap();
        assert_eq!(a.merge(b).resolve(None).unwrap().watches.len(), 2);
    }

    #[test]
    fn hook_allowlist_and_backend_quorum_are_read_and_checked() {
        let cfg = |lb: &str| {
            FileConfig::parse(&format!(r#"{{"data_dir": "/tmp/x", "node_name": "n", "lb": {lb}}}"#), "t")
                .map_err(|e| e.to_string())?
                .resolve(None)
                .map_err(|e| e.to_string())
        };
        let c = cfg(r#"{"hook_allow": ["10.99.0.0/16", "iaas.example"], "backend_down_quorum": 2}"#).unwrap();
        assert_eq!(c.hook_allow.len(), 2);
        assert_eq!(c.down_quorum, crate::backend_health::DownQuorum::AtLeast(2));
        assert_eq!(cfg("{}").unwrap().down_quorum, crate::backend_health::DownQuorum::Majority);
        assert!(cfg(r#"{"hook_allow": ["10.0.0.0/40"]}"#).unwrap_err().contains("lb.hook_allow[0]"));
        assert!(cfg(r#"{"backend_down_quorum": 0}"#).unwrap_err().contains("lb.backend_down_quorum"));
    }

    #[test]
    fn scale_policy_is_read_and_checked() {
        let cfg = |extra: &str| {
            FileConfig::parse(&format!(r#"{{"data_dir": "/tmp/x", "node_name": "n", "lb": {{"scale": {extra}}}}}"#), "t")
                .map_err(|e| e.to_string())?
                .resolve(None)
                .map_err(|e| e.to_string())
        };
        let p = cfg(r#"{"conn_rate": 20, "cpu": 0, "sustain": "2s", "hold_down": "6s", "drain": "5s", "max_vips": 2}"#)
            .unwrap()
            .scale;
        assert_eq!((p.conn_rate, p.cpu_pct, p.sustain_ms, p.hold_down_ms, p.drain_ms, p.max_vips), (20.0, 0.0, 2000, 6000, 5000, 2));
        for (bad, key) in [
            (r#"{"low": 1.5}"#, "lb.scale.low"),
            (r#"{"sustain": "10s", "hold_down": "5s"}"#, "lb.scale.hold_down"),
            (r#"{"drain": "1s"}"#, "lb.scale.drain"),
            (r#"{"conn_rate": -3}"#, "lb.scale.conn_rate"),
            (r#"{"cpu": 300}"#, "lb.scale.cpu"),
            (r#"{"sustain": "soon"}"#, "lb.scale.sustain"),
        ] {
            let e = cfg(bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
        }
        assert!(cfg(r#"{"thresholds": 1}"#).is_err(), "unknown keys are errors");
    }

    #[test]
    fn errors_name_the_key() {
        let e = FileConfig::parse(r#"{"data_dir": "/x", "bootstrap_expectt": 3}"#, "c.json").unwrap_err();
        assert!(e.to_string().contains("bootstrap_expectt"), "{e}");
        let e = FileConfig::parse(r#"{"data_dir": "/x", "encrypt": "c2hvcnQ="}"#, "c.json")
            .unwrap()
            .resolve(Some("n"))
            .unwrap_err();
        assert!(e.to_string().contains("encrypt"), "{e}");
        let e = FileConfig::parse(r#"{"server": "yes"}"#, "c.json").unwrap_err();
        assert!(e.to_string().contains("c.json"), "{e}");
        let e = FileConfig::parse(r#"{"bootstrap_expect": 3}"#, "c.json")
            .unwrap()
            .resolve(Some("n"))
            .unwrap_err();
        assert!(e.to_string().contains("data_dir"), "{e}");
        let e = FileConfig::parse(r#"{"bootstrap_expect": 3, "data_dir": "/x"}"#, "c.json")
            .unwrap()
            .resolve(Some("n"))
            .unwrap_err();
        assert!(e.to_string().contains("server"), "{e}");
    }

    #[test]
    fn acl_block() {
        let c = FileConfig::parse(
            r#"{"data_dir": "/a", "acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": "root"}}}"#,
            "a",
        )
        .unwrap()
        .resolve(Some("n"))
        .unwrap();
        let acl = c.acl.unwrap();
        assert!(!acl.default_allow);
        assert_eq!(acl.initial_management.as_deref(), Some("root"));
        let e = FileConfig::parse(
            r#"{"data_dir": "/a", "acl": {"enabled": true, "default_policy": "maybe"}}"#,
            "a",
        )
        .unwrap()
        .resolve(Some("n"))
        .unwrap_err();
        assert!(e.to_string().contains("acl.default_policy"), "{e}");
        assert!(FileConfig::parse(r#"{"acl": {"enabld": true}}"#, "a")
            .unwrap_err()
            .to_string()
            .contains("enabld"));
    }

    #[test]
    fn later_files_override() {
        let a = FileConfig::parse(r#"{"data_dir": "/a", "server": true}"#, "a").unwrap();
        let b = FileConfig::parse(r#"{"data_dir": "/b", "ports": {"http": 9500}}"#, "b").unwrap();
        let c = a.merge(b).resolve(Some("n")).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert!(c.server);
        assert_eq!(c.http_addr.port(), 9500);
        assert_eq!(c.node_id, node_id_from_name("n"));
    }

    fn consul_file(name: &str) -> (FileConfig, AgentConfig) {
        let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/consul")).join(name);
        let f = FileConfig::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let again = FileConfig::load(&path).unwrap();
        (f, again.resolve(Some("n")).unwrap_or_else(|e| panic!("{name}: {e}")))
    }

    /// Files in the shapes Consul's docs give (server and TLS in HCL, a client in JSON,
    /// telemetry) load, with a warning naming each key that configures what ballast does
    /// not have, and the keys that mean something here honoured.
    #[test]
    fn consul_deployment_files_load_with_warnings() {
        let (f, c) = consul_file("server.hcl");
        let w = f.warnings().join("\n");
        for key in ["log_file:", "log_rotate_duration:", "disable_update_check:", "autopilot:", "ui_config:"] {
            assert!(w.contains(key), "no warning for {key} in:\n{w}");
        }
        assert!(!w.contains("raft_multiplier"), "multiplier 1 is the default: {w}");
        assert!(c.server && c.bootstrap_expect == 3 && c.acl.as_ref().is_some_and(|a| !a.default_allow));
        assert_eq!(c.gossip_timing.join_retry, std::time::Duration::from_secs(15));
        assert_eq!(c.join.len(), 2);

        let (f, c) = consul_file("client.json");
        let w = f.warnings().join("\n");
        for key in ["ports.grpc:", "service:", "node_meta:", "recursors:", "enable_local_script_checks:"] {
            assert!(w.contains(key), "no warning for {key} in:\n{w}");
        }
        assert!(!w.contains("ports.https"), "https = -1 is off: {w}");
        assert_eq!(c.http_addr, "0.0.0.0:8500".parse().unwrap(), "addresses.http over client_addr");
        assert_eq!(c.dns_addr, Some("127.0.0.1:8600".parse().unwrap()));
        assert!(!c.server);

        let (f, c) = consul_file("telemetry.hcl");
        let w = f.warnings().join("\n");
        assert!(w.contains("telemetry.statsd_address:"), "{w}");
        assert!(!w.contains("prometheus_retention_time") && !w.contains("disable_hostname"), "{w}");
        assert_eq!(c.dns_addr, None, "ports.dns = -1");

        let (f, c) = consul_file("tls.hcl");
        let w = f.warnings().join("\n");
        for key in ["tls:", "auto_encrypt:", "ports.https:", "connect:"] {
            assert!(w.contains(key), "no warning for {key} in:\n{w}");
        }
        assert!(w.contains("authenticated by the gossip key"), "{w}");
        assert_eq!(c.watches.len(), 1, "one watches block is a list of one");
        assert_eq!(c.watches[0].what, WatchWhat::KeyPrefix("lb/".into()));
    }

    #[test]
    fn consul_keys_that_would_be_wrong_to_ignore_are_errors() {
        let bad = |text: &str, path: &str, want: &str| {
            let e = FileConfig::parse(text, path).and_then(|f| f.resolve(Some("n"))).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        };
        bad(r#"{"data_dir": "/a", "ports": {"http": -1}}"#, "a.json", "ports.http");
        bad(r#"{"data_dir": "/a", "addresses": {"http": "{{ GetPrivateIP }}"}}"#, "a.json", "addresses.http");
        bad(r#"{"data_dir": "/a", "performance": {"raft_multiplier": 11}}"#, "a.json", "raft_multiplier");
        bad(r#"{"data_dir": "/a", "retry_interval": "soon"}"#, "a.json", "retry_interval");
        bad(r#"{"data_dir": "/a", "telemetri": {}}"#, "a.json", "telemetri");
        bad("data_dir = \"/a\"\nports { htp = 1 }\n", "a.hcl", "htp");
        bad("data_dir = \"/a\"\nports {", "a.hcl", "HCL");
    }

    #[test]
    fn raft_multiplier_scales_raft_and_lease_timing() {
        let c = FileConfig::parse("data_dir = \"/a\"\nperformance { raft_multiplier = 5 }\n", "a.hcl").unwrap();
        assert!(c.warnings().join(" ").contains("raft_multiplier = 5"));
        let t = c.resolve(Some("n")).unwrap().timing;
        let d = Timing::default();
        assert_eq!(t, Timing {
            raft_heartbeat_ms: d.raft_heartbeat_ms * 5,
            raft_election_min_ms: d.raft_election_min_ms * 5,
            lease_ms: d.lease_ms * 5
        });
    }

    #[test]
    fn every_unused_key_is_read() {
        let f = FileConfig::default();
        let read = f.unused_values();
        for (k, _) in UNUSED_KEYS {
            assert!(read.contains_key(k), "{k} is listed in UNUSED_KEYS but not read");
        }
        assert_eq!(read.len(), UNUSED_KEYS.len());
    }
}
