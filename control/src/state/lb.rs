//! The load balancer's part of the replicated state: LB devices and their VIP ranges,
//! tenants' (accounts') LB groups with their listeners, backends and VIPs, which device
//! owns each VIP in which epoch, and the events of every change. Pure: changed only by
//! [`LbState::apply`] at a Raft log index; placement decisions are made before (by the
//! leader's scheduler) and checked again here, so nothing is ever half-applied.
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::IpAddr,
};

use serde::{Deserialize, Serialize};

/// Events kept (the oldest go first).
pub const MAX_EVENTS: usize = 1000;
/// Most VIPs one group may ask for (one per device).
pub const MAX_GROUP_VIPS: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{field}: {msg}")]
pub struct LbError {
    /// The field at fault, as the API names it (`ranges[1].last`, `backends[0].port`).
    pub field: String,
    pub msg: String,
}

fn err(field: impl Into<String>, msg: impl Into<String>) -> LbError {
    LbError { field: field.into(), msg: msg.into() }
}

/// A network interface of a device and its address (`eth0`, `14.14.1.11/24`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub iface: String,
    pub addr: String,
}

impl Nic {
    /// The address without its prefix length; None when unset or not an address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.addr.split('/').next()?.parse().ok()
    }
}

/// An inclusive range of VIP addresses a device hands out (`14.14.1.100`..`14.14.1.199`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl VipRange {
    pub fn contains(&self, a: IpAddr) -> bool {
        match (self.first, self.last, a) {
            (IpAddr::V4(f), IpAddr::V4(l), IpAddr::V4(x)) => {
                (u32::from(f)..=u32::from(l)).contains(&u32::from(x))
            }
            (IpAddr::V6(f), IpAddr::V6(l), IpAddr::V6(x)) => {
                (u128::from(f)..=u128::from(l)).contains(&u128::from(x))
            }
            _ => false,
        }
    }

    fn overlaps(&self, o: &VipRange) -> bool {
        self.contains(o.first) || self.contains(o.last) || o.contains(self.first)
    }

    /// The addresses of the range, in order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> {
        let (f, l) = (self.first, self.last);
        let v4 = match (f, l) {
            (IpAddr::V4(f), IpAddr::V4(l)) => Some((u32::from(f), u32::from(l))),
            _ => None,
        };
        let v6 = match (f, l) {
            (IpAddr::V6(f), IpAddr::V6(l)) => Some((u128::from(f), u128::from(l))),
            _ => None,
        };
        v4.into_iter()
            .flat_map(|(f, l)| (f..=l).map(|x| IpAddr::from(x.to_be_bytes())))
            .chain(v6.into_iter().flat_map(|(f, l)| (f..=l).map(|x| IpAddr::from(x.to_be_bytes()))))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    #[default]
    Active,
    /// Takes no new VIPs; its VIPs move away, make-before-break.
    Draining,
}

/// An LB device as the operator declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Filled from the API path when absent.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub public: Nic,
    #[serde(default)]
    pub private: Nic,
    #[serde(default)]
    pub ranges: Vec<VipRange>,
    /// Relative capacity (placement spreads VIPs in proportion); default 100.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// A Raft voter with no data plane (serves no VIPs).
    #[serde(default)]
    pub witness: bool,
}

fn default_capacity() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    #[serde(flatten)]
    pub spec: DeviceSpec,
    pub admin: Admin,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// How a listener forwards: in the kernel (L4, like LVS) or through the proxy (L7,
/// with HAProxy's semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// L4, IPIP/IP6IP6 to the backends, which answer the client directly.
    Tunnel,
    /// L4, addresses rewritten both ways.
    Nat,
    /// L7 HTTP.
    Http,
    /// L7 HTTP with TLS offload.
    Https,
    /// L7 TCP proxying.
    Tcp,
    /// L4, LVS direct routing: to the backend's MAC on a segment the device shares with
    /// the backends, which hold the VIP on a loopback and answer the client directly.
    Dr,
}

impl Mode {
    pub fn is_l4(self) -> bool {
        matches!(self, Mode::Tunnel | Mode::Nat | Mode::Dr)
    }
}

/// `option httpchk`-style health checks of the backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// HTTP path checked (L7 http/https); None: a TCP connect.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default = "default_inter")]
    pub interval_ms: u32,
    #[serde(default = "default_rise")]
    pub rise: u32,
    #[serde(default = "default_fall")]
    pub fall: u32,
}

fn default_inter() -> u32 {
    2000
}
fn default_rise() -> u32 {
    2
}
fn default_fall() -> u32 {
    3
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub port: u16,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    pub mode: Mode,
    /// L7: HAProxy's balance algorithm (`roundrobin`, `leastconn`, `source`, ...).
    #[serde(default)]
    pub balance: Option<String>,
    /// L7 http/https: `cookie NAME insert indirect nocache` persistence.
    #[serde(default)]
    pub cookie: Option<String>,
    #[serde(default)]
    pub check: Option<HealthCheck>,
    /// L7: per-backend `maxconn` (excess requests queue).
    #[serde(default)]
    pub maxconn: Option<u32>,
    /// https: PEM files (certificate chain and key) on the devices.
    #[serde(default)]
    pub certs: Vec<String>,
}

fn default_protocol() -> Protocol {
    Protocol::Tcp
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: IpAddr,
    /// 0 = the listener's port.
    #[serde(default)]
    pub port: u16,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub backup: bool,
}

fn default_weight() -> u32 {
    1
}

/// An LB group as a tenant declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub account: String,
    pub name: String,
    pub listeners: Vec<Listener>,
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// How many VIPs, each on a different device (the seed's HA idea); default 1.
    #[serde(default = "default_vip_count")]
    pub vip_count: u32,
    /// The private address a NAT group's backends route their replies through, as
    /// keepalived's LVS-NAT users float an internal VIP beside the public one: held on the
    /// private interface of the device serving the group's VIP, and moved with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

fn default_vip_count() -> u32 {
    1
}

impl GroupSpec {
    /// `account/name`, the group's key.
    pub fn id(&self) -> String {
        format!("{}/{}", self.account, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    #[serde(flatten)]
    pub spec: GroupSpec,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Which device serves a VIP, in which epoch (a VIP has one owner per epoch; a move
/// makes a new epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub group: String,
    pub owner: String,
    pub epoch: u64,
    pub modify_index: u64,
    /// Added by scale-out (beyond the group's `vip_count`): scale-in may take it back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub extra: bool,
    /// Scale-in started (ms since the Unix epoch): DNS no longer answers it; the address
    /// goes once the TTL and a drain time have passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DeviceAdded,
    DeviceChanged,
    DeviceRemoved,
    DeviceDraining,
    DeviceActive,
    GroupCreated,
    GroupChanged,
    GroupDeleted,
    VipAssigned,
    VipMoved,
    VipReleased,
    /// An overloaded device's group got an extra VIP on another device.
    ScaledOut,
    /// Scale-in began: DNS stopped answering an extra VIP.
    ScaleInStarted,
    /// The extra VIP is gone.
    ScaledIn,
    /// Most devices checking a backend see it fail: every device stops sending to it.
    BackendDown,
    BackendUp,
    /// Gossip declared a device failed; it is back.
    DeviceDown,
    DeviceUp,
    /// A failed device's lease must have lapsed: its VIPs were moved.
    LeaseLost,
}

/// A change, with the time of each phase that is known (wall clocks, ms since the Unix
/// epoch): `detected` (a failure, as the leader first saw it) and `decided` (when the
/// leader proposed the change) come with it; the leader adds `committed`, and the devices
/// add theirs (`released` by the old owner, `address_added` and `arp_sent` by the new).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub index: u64,
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub epoch: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    /// Phase name → time (ms since the Unix epoch).
    pub phases: BTreeMap<String, u64>,
}

/// A VIP move the scheduler decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub vip: IpAddr,
    pub from: String,
    pub to: String,
    /// The epoch the move expects the VIP to be in now (a stale decision is refused).
    pub epoch: u64,
}

/// A change to the LB state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbWrite {
    PutDevice(DeviceSpec),
    RemoveDevice {
        name: String,
    },
    SetAdmin {
        name: String,
        admin: Admin,
    },
    /// A new group with its VIPs already placed: (VIP, owner) for each.
    CreateGroup {
        spec: GroupSpec,
        placement: Vec<(IpAddr, String)>,
    },
    /// New listeners and backends for a group (its VIPs stay).
    UpdateGroup {
        spec: GroupSpec,
    },
    DeleteGroup {
        id: String,
    },
    /// VIPs to move (failover, drain, an operator's assignment), each to epoch + 1;
    /// `detected_ms`: when the leader first saw the failure, if one caused it.
    MoveVips {
        moves: Vec<Move>,
        reason: String,
        #[serde(default)]
        detected_ms: Option<u64>,
    },
    /// Scale-out: an extra VIP for `group` on `owner` (an address of its ranges), for
    /// the overloaded device `from`.
    AddVip {
        group: String,
        vip: IpAddr,
        owner: String,
        from: String,
        reason: String,
    },
    /// Scale-in, first step: DNS stops answering the extra `vip`.
    RetireVip {
        vip: IpAddr,
        reason: String,
    },
    /// Scale-in, last step: the retired extra `vip` goes.
    RemoveVip {
        vip: IpAddr,
    },
    /// The cluster's verdict on an L4 backend (`seen`: how many devices saw what).
    BackendHealth {
        backend: CheckKey,
        down: bool,
        seen: String,
    },
    /// A device failed (`up` false) or came back, as gossip tells the leader.
    DeviceHealth {
        name: String,
        up: bool,
    },
    /// A failed device's lease lapsed (the leader then moved its VIPs).
    LeaseLost {
        name: String,
        reason: String,
    },
    /// A webhook created or changed (its delivery cursor starts at the newest event).
    PutHook(Hook),
    DeleteHook {
        id: String,
    },
    /// The receiver of hook `id` acknowledged the events up to `event`.
    HookDelivered {
        id: String,
        event: u64,
    },
    /// An agent's timestamp for a phase of an event (`address_added`, `arp_sent`, ...).
    Phase {
        event: u64,
        phase: String,
        at_ms: u64,
    },
    /// The leader's record of the longest lease any leader may have granted (see
    /// `scheduler::lease_bound_change`).
    LeaseBound {
        ms: u64,
    },
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LbResult {
    Ok { index: u64 },
    Refused(LbError),
}

/// The LB state every agent holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbState {
    pub devices: BTreeMap<String, Device>,
    /// By `account/name`.
    pub groups: BTreeMap<String, Group>,
    pub vips: BTreeMap<IpAddr, Assignment>,
    pub events: VecDeque<Event>,
    pub next_event: u64,
    /// The index of the last change (blocking queries wait on it).
    pub modify_index: u64,
    /// Webhooks, by `account/name` (`*/name`: every event, an operator's).
    #[serde(default)]
    pub hooks: BTreeMap<String, Hook>,
    /// L4 backend checks (address, port, HTTP path) failing for every device: most of the
    /// devices that run them see them fail. Keyed by the check, so one account's check of
    /// a shared address decides nothing for another's differing check.
    #[serde(default)]
    pub backends_down: BTreeSet<CheckKey>,
    /// Devices gossip declared failed (as the leader saw it), until they are back.
    #[serde(default)]
    pub devices_down: BTreeSet<String>,
    /// The longest lease (ms) a leader may have granted: each leader raises it to its own
    /// lease before granting one, so a later leader whose `lb.lease` is shorter still
    /// waits out the longer leases before moving VIPs (0: none granted yet).
    #[serde(default)]
    pub lease_bound_ms: u64,
    /// The index of the last removal of a VIP assignment (a group deleted, a scale-out VIP
    /// scaled in): a removal leaves no assignment behind, so this keeps it in
    /// [`LbState::ownership_index`].
    #[serde(default)]
    pub released_index: u64,
}

/// One backend check as devices run it: where (address and port) and what (HTTP path;
/// None: a TCP connect).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckKey {
    pub addr: std::net::SocketAddr,
    // Always written: gossip carries it with postcard, which cannot skip fields.
    #[serde(default)]
    pub path: Option<String>,
}

impl std::fmt::Display for CheckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{} GET {p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl Listener {
    /// The check this listener runs on `b`, if it has one.
    pub fn check_key(&self, b: &Backend) -> Option<CheckKey> {
        let c = self.check.as_ref()?;
        let port = if b.port == 0 { self.port } else { b.port };
        Some(CheckKey { addr: std::net::SocketAddr::new(b.address, port), path: c.path.clone() })
    }
}

/// A webhook: events POSTed (JSON) to `url`, in order, at least once. `next` is the first
/// event id the receiver has not acknowledged (2xx) yet, replicated so that a new leader
/// goes on from there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// An account, or `*` for every event (devices' too).
    pub account: String,
    pub name: String,
    /// `http://host:port/path` (the receiver's; plain HTTP).
    pub url: String,
    /// Event kinds sent; empty: all.
    #[serde(default)]
    pub events: Vec<EventKind>,
    #[serde(default)]
    pub next: u64,
    /// Signs each delivery (`X-Ballast-Signature: sha256=<HMAC-SHA256 of the body>`);
    /// never shown by the API.
    #[serde(default)]
    pub secret: Option<String>,
}

impl Hook {
    pub fn id(&self) -> String {
        format!("{}/{}", self.account, self.name)
    }

    /// Whether `e` goes to this hook: the account's groups' events (`*`: all), of the
    /// kinds asked.
    pub fn wants(&self, e: &Event) -> bool {
        let account_ok = self.account == "*"
            || e.group.as_deref().and_then(|g| g.split('/').next()).is_some_and(|a| a == self.account);
        account_ok && (self.events.is_empty() || self.events.contains(&e.kind))
    }

    pub fn validate(&self) -> Result<(), LbError> {
        if self.account != "*" {
            check_name("account", &self.account)?;
        }
        check_name("name", &self.name)?;
        let rest = self.url.strip_prefix("http://").ok_or_else(|| err("url", "an http:// URL"))?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() || authority.contains('@') || rest.contains(char::is_whitespace) {
            return Err(err("url", format!("{:?} has no host:port", self.url)));
        }
        Ok(())
    }
}

/// Names of devices, accounts and groups: DNS labels, so `<group>.<account>.<domain>`
/// resolves (lower-case letters, digits, `-`, 1 to 63 characters).
pub fn check_name(field: &str, s: &str) -> Result<(), LbError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!("{s:?} is not a name (lower-case letters, digits and '-', 1 to 63 characters)"),
        ))
    }
}

impl DeviceSpec {
    pub fn validate(&self) -> Result<(), LbError> {
        check_name("name", &self.name)?;
        if self.capacity == 0 || self.capacity > 1_000_000 {
            return Err(err("capacity", "must be from 1 to 1000000"));
        }
        for (i, r) in self.ranges.iter().enumerate() {
            if r.first.is_ipv4() != r.last.is_ipv4() {
                return Err(err(format!("ranges[{i}]"), "first and last must be of one family"));
            }
            if !r.contains(r.first) || !r.contains(r.last) {
                return Err(err(format!("ranges[{i}].last"), "must not come before first"));
            }
            for (j, o) in self.ranges.iter().enumerate().take(i) {
                if r.overlaps(o) {
                    return Err(err(format!("ranges[{i}]"), format!("overlaps ranges[{j}]")));
                }
            }
        }
        if self.witness && !self.ranges.is_empty() {
            return Err(err("ranges", "a witness serves no VIPs"));
        }
        for (field, nic) in [("public", &self.public), ("private", &self.private)] {
            if !nic.addr.is_empty() {
                let (ip, len) = nic.addr.split_once('/').unwrap_or((&nic.addr, ""));
                let ok = ip.parse::<IpAddr>().is_ok()
                    && (len.is_empty() || len.parse::<u8>().is_ok_and(|l| l <= 128));
                if !ok {
                    return Err(err(
                        format!("{field}.addr"),
                        format!("{:?} is not an address/prefix", nic.addr),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl GroupSpec {
    pub fn validate(&self) -> Result<(), LbError> {
        check_name("account", &self.account)?;
        check_name("name", &self.name)?;
        if self.listeners.is_empty() {
            return Err(err("listeners", "a group needs at least one listener"));
        }
        if self.vip_count == 0 || self.vip_count > MAX_GROUP_VIPS {
            return Err(err("vip_count", format!("must be from 1 to {MAX_GROUP_VIPS}")));
        }
        for (i, l) in self.listeners.iter().enumerate() {
            let f = |x: &str| format!("listeners[{i}].{x}");
            if l.port == 0 {
                return Err(err(f("port"), "must be from 1 to 65535"));
            }
            if self.listeners[..i].iter().any(|o| o.port == l.port && o.protocol == l.protocol) {
                return Err(err(f("port"), format!("{} is listed twice", l.port)));
            }
            if l.protocol == Protocol::Udp && !l.mode.is_l4() {
                return Err(err(f("protocol"), "udp needs an L4 mode (tunnel, nat or dr)"));
            }
            if l.mode.is_l4() && (l.balance.is_some() || l.cookie.is_some() || l.maxconn.is_some()) {
                return Err(err(f("mode"), "balance, cookie and maxconn are L7 settings (http, https, tcp)"));
            }
            if l.cookie.is_some() && !matches!(l.mode, Mode::Http | Mode::Https) {
                return Err(err(f("cookie"), "cookie persistence needs mode http or https"));
            }
            if let Some(c) = &l.cookie {
                if c.is_empty() || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                    return Err(err(f("cookie"), format!("{c:?} is not a cookie name")));
                }
            }
            if let Some(b) = &l.balance {
                const KNOWN: [&str; 6] = ["roundrobin", "static-rr", "leastconn", "source", "uri", "random"];
                if !KNOWN.contains(&b.as_str()) {
                    return Err(err(f("balance"), format!("{b:?} is not one of {}", KNOWN.join(", "))));
                }
            }
            if (l.mode == Mode::Https) != !l.certs.is_empty() {
                return Err(err(f("certs"), "https needs certificates, and only https takes them"));
            }
            if l.maxconn == Some(0) {
                return Err(err(f("maxconn"), "must be at least 1"));
            }
            if let Some(c) = &l.check {
                if c.interval_ms < 100 || c.rise == 0 || c.fall == 0 {
                    return Err(err(
                        f("check"),
                        "interval_ms must be at least 100, rise and fall at least 1",
                    ));
                }
                if c.path.as_deref().is_some_and(|p| !p.starts_with('/')) {
                    return Err(err(f("check.path"), "must start with '/'"));
                }
            }
        }
        if let Some(gw) = self.gateway {
            if !self.listeners.iter().any(|l| l.mode == Mode::Nat) {
                return Err(err("gateway", "only a group with a nat listener routes its replies through the LB"));
            }
            if self.vip_count != 1 {
                return Err(err("gateway", "replies come back through one gateway: a group with one has one VIP"));
            }
            let broadcast = matches!(gw, IpAddr::V4(a) if a.is_broadcast());
            if gw.is_unspecified() || gw.is_loopback() || gw.is_multicast() || broadcast {
                return Err(err("gateway", format!("{gw} is not a unicast address")));
            }
            if let Some(i) = self.backends.iter().position(|b| b.address == gw) {
                return Err(err("gateway", format!("{gw} is backends[{i}]'s address")));
            }
        }
        for (i, b) in self.backends.iter().enumerate() {
            if b.weight > 256 {
                return Err(err(format!("backends[{i}].weight"), "must be from 0 to 256"));
            }
            if b.address.is_unspecified() || b.address.is_multicast() {
                return Err(err(
                    format!("backends[{i}].address"),
                    format!("{} is not a host address", b.address),
                ));
            }
            if let Some(l) =
                self.listeners.iter().find(|l| matches!(l.mode, Mode::Tunnel | Mode::Dr) && b.port != 0 && b.port != l.port)
            {
                return Err(err(
                    format!("backends[{i}].port"),
                    format!(
                        "a {} listener keeps the VIP's port ({}): leave the port out",
                        if l.mode == Mode::Dr { "dr" } else { "tunnel" },
                        l.port
                    ),
                ));
            }
            if self.backends[..i].iter().any(|o| o.address == b.address && o.port == b.port) {
                return Err(err(format!("backends[{i}]"), "listed twice"));
            }
        }
        Ok(())
    }
}

impl LbState {
    /// The device whose range holds `vip`.
    pub fn range_owner(&self, vip: IpAddr) -> Option<&Device> {
        self.devices.values().find(|d| d.spec.ranges.iter().any(|r| r.contains(vip)))
    }

    /// VIPs of a group, in address order.
    pub fn group_vips<'a>(&'a self, id: &'a str) -> impl Iterator<Item = (&'a IpAddr, &'a Assignment)> + 'a {
        self.vips.iter().filter(move |(_, a)| a.group == id)
    }

    fn event(&mut self, index: u64, at_ms: u64, kind: EventKind, f: impl FnOnce(&mut Event)) -> u64 {
        let id = self.next_event;
        self.next_event += 1;
        let mut e = Event {
            id,
            index,
            kind,
            device: None,
            group: None,
            vip: None,
            from: None,
            epoch: None,
            reason: None,
            phases: BTreeMap::from([("decided".to_string(), at_ms)]),
        };
        f(&mut e);
        self.events.push_back(e);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        id
    }

    /// The index of the newest change of VIP ownership (an assignment, a move, a scale-in
    /// mark): what a lease must have seen. A device whose view is older might still serve
    /// a VIP that has gone to another device; changes of anything else (events and their
    /// phases, backends, hooks) do not make it serve what it must not.
    pub fn ownership_index(&self) -> u64 {
        self.vips.values().map(|a| a.modify_index).max().unwrap_or(0).max(self.released_index)
    }

    /// Applies `w` at `index`; `at_ms` is the wall-clock time the leader proposed it at.
    pub fn apply(&mut self, index: u64, at_ms: u64, w: &LbWrite) -> LbResult {
        match self.try_apply(index, at_ms, w) {
            Ok(()) => {
                self.modify_index = index;
                LbResult::Ok { index }
            }
            Err(e) => LbResult::Refused(e),
        }
    }

    fn try_apply(&mut self, index: u64, at_ms: u64, w: &LbWrite) -> Result<(), LbError> {
        match w {
            LbWrite::PutDevice(spec) => {
                spec.validate()?;
                for d in self.devices.values().filter(|d| d.spec.name != spec.name) {
                    for (i, r) in spec.ranges.iter().enumerate() {
                        if let Some(o) = d.spec.ranges.iter().find(|o| o.overlaps(r)) {
                            return Err(err(
                                format!("ranges[{i}]"),
                                format!("overlaps {}..{} of device {}", o.first, o.last, d.spec.name),
                            ));
                        }
                    }
                }
                // A range that shrinks may not leave an assigned VIP outside every range.
                if let Some(old) = self.devices.get(&spec.name) {
                    for (vip, a) in &self.vips {
                        let was = old.spec.ranges.iter().any(|r| r.contains(*vip));
                        if was && !spec.ranges.iter().any(|r| r.contains(*vip)) {
                            return Err(err(
                                "ranges",
                                format!("{vip} (group {}) would fall out of the ranges", a.group),
                            ));
                        }
                    }
                }
                for g in self.groups.values() {
                    let Some(gw) = g.spec.gateway else { continue };
                    if spec.ranges.iter().any(|r| r.contains(gw)) {
                        return Err(err("ranges", format!("{gw} is group {}'s NAT gateway", g.spec.id())));
                    }
                    if [&spec.public, &spec.private].iter().any(|n| n.ip() == Some(gw)) {
                        return Err(err("private.addr", format!("{gw} is group {}'s NAT gateway", g.spec.id())));
                    }
                }
                if spec.witness && self.vips.values().any(|a| a.owner == spec.name) {
                    return Err(err("witness", "the device still serves VIPs"));
                }
                let kind = match self.devices.get_mut(&spec.name) {
                    Some(d) => {
                        d.spec = spec.clone();
                        d.modify_index = index;
                        EventKind::DeviceChanged
                    }
                    None => {
                        let d = Device {
                            spec: spec.clone(),
                            admin: Admin::Active,
                            create_index: index,
                            modify_index: index,
                        };
                        self.devices.insert(spec.name.clone(), d);
                        EventKind::DeviceAdded
                    }
                };
                self.event(index, at_ms, kind, |e| e.device = Some(spec.name.clone()));
            }
            LbWrite::RemoveDevice { name } => {
                if !self.devices.contains_key(name) {
                    return Err(err("name", format!("no device {name}")));
                }
                if let Some((vip, a)) = self.vips.iter().find(|(_, a)| &a.owner == name) {
                    return Err(err(
                        "name",
                        format!("{name} still serves {vip} (group {}); drain it first", a.group),
                    ));
                }
                if let Some((vip, a)) = self
                    .vips
                    .iter()
                    .find(|(v, _)| self.devices[name].spec.ranges.iter().any(|r| r.contains(**v)))
                {
                    return Err(err("name", format!("{vip} of its ranges is assigned (group {})", a.group)));
                }
                self.devices.remove(name);
                self.event(index, at_ms, EventKind::DeviceRemoved, |e| e.device = Some(name.clone()));
            }
            LbWrite::SetAdmin { name, admin } => {
                let d = self.devices.get_mut(name).ok_or_else(|| err("name", format!("no device {name}")))?;
                d.admin = *admin;
                d.modify_index = index;
                let kind = if *admin == Admin::Draining {
                    EventKind::DeviceDraining
                } else {
                    EventKind::DeviceActive
                };
                self.event(index, at_ms, kind, |e| e.device = Some(name.clone()));
            }
            LbWrite::CreateGroup { spec, placement } => {
                spec.validate()?;
                let id = spec.id();
                if self.groups.contains_key(&id) {
                    return Err(err("name", format!("group {id} exists")));
                }
                self.check_gateway(&id, spec)?;
                if placement.len() != spec.vip_count as usize {
                    return Err(err(
                        "vip_count",
                        format!("{} VIPs asked, {} placed", spec.vip_count, placement.len()),
                    ));
                }
                self.check_placement(placement)?;
                self.groups.insert(
                    id.clone(),
                    Group { spec: spec.clone(), create_index: index, modify_index: index },
                );
                self.event(index, at_ms, EventKind::GroupCreated, |e| e.group = Some(id.clone()));
                for (vip, owner) in placement {
                    self.vips.insert(
                        *vip,
                        Assignment {
                            group: id.clone(),
                            owner: owner.clone(),
                            epoch: 1,
                            modify_index: index,
                            extra: false,
                            retiring_ms: None,
                        },
                    );
                    self.event(index, at_ms, EventKind::VipAssigned, |e| {
                        e.group = Some(id.clone());
                        e.vip = Some(*vip);
                        e.device = Some(owner.clone());
                        e.epoch = Some(1);
                    });
                }
            }
            LbWrite::UpdateGroup { spec } => {
                spec.validate()?;
                let id = spec.id();
                let g = self.groups.get(&id).ok_or_else(|| err("name", format!("no group {id}")))?;
                if g.spec.vip_count != spec.vip_count {
                    return Err(err("vip_count", "changes through VIP assignment, not an update"));
                }
                self.check_gateway(&id, spec)?;
                let g = self.groups.get_mut(&id).expect("found above");
                let old_gateway = g.spec.gateway.filter(|old| spec.gateway != Some(*old));
                g.spec = spec.clone();
                g.modify_index = index;
                self.event(index, at_ms, EventKind::GroupChanged, |e| e.group = Some(id.clone()));
                if let Some(old) = old_gateway {
                    self.release_gateway(index, at_ms, &id, old);
                }
            }
            LbWrite::DeleteGroup { id } => {
                let Some(gone) = self.groups.remove(id) else {
                    return Err(err("name", format!("no group {id}")));
                };
                if let Some(gw) = gone.spec.gateway {
                    self.release_gateway(index, at_ms, id, gw);
                }
                let released: Vec<IpAddr> = self.group_vips(id).map(|(v, _)| *v).collect();
                for vip in released {
                    self.vips.remove(&vip);
                    self.released_index = index;
                    self.event(index, at_ms, EventKind::VipReleased, |e| {
                        e.group = Some(id.clone());
                        e.vip = Some(vip);
                    });
                }
                self.event(index, at_ms, EventKind::GroupDeleted, |e| e.group = Some(id.clone()));
            }
            LbWrite::AddVip { group, vip, owner, from, reason } => {
                if !self.groups.contains_key(group) {
                    return Err(err("group", format!("no group {group}")));
                }
                self.check_placement(&[(*vip, owner.clone())])?;
                if self.range_owner(*vip).map(|d| d.spec.name.as_str()) != Some(owner.as_str()) {
                    return Err(err("vip", format!("{vip} is not in {owner}'s ranges")));
                }
                if self.group_vips(group).any(|(_, a)| &a.owner == owner) {
                    return Err(err("owner", format!("{owner} already holds one of {group}'s VIPs")));
                }
                if self.groups[group].spec.gateway.is_some() {
                    return Err(err("group", format!("{group}'s NAT replies come back through one gateway: one VIP")));
                }
                let a = Assignment {
                    group: group.clone(),
                    owner: owner.clone(),
                    epoch: 1,
                    modify_index: index,
                    extra: true,
                    retiring_ms: None,
                };
                self.vips.insert(*vip, a);
                self.event(index, at_ms, EventKind::ScaledOut, |e| {
                    e.group = Some(group.clone());
                    e.vip = Some(*vip);
                    e.device = Some(owner.clone());
                    e.from = Some(from.clone());
                    e.epoch = Some(1);
                    e.reason = Some(reason.clone());
                });
            }
            LbWrite::RetireVip { vip, reason } => {
                let a = self.vips.get_mut(vip).ok_or_else(|| err("vip", format!("{vip} is not assigned")))?;
                if !a.extra {
                    return Err(err("vip", format!("{vip} is one of its group's own VIPs, not a scale-out's")));
                }
                if a.retiring_ms.is_some() {
                    return Err(err("vip", format!("{vip} is already retiring")));
                }
                a.retiring_ms = Some(at_ms);
                a.modify_index = index;
                let (group, owner) = (a.group.clone(), a.owner.clone());
                self.event(index, at_ms, EventKind::ScaleInStarted, |e| {
                    e.group = Some(group);
                    e.vip = Some(*vip);
                    e.device = Some(owner);
                    e.reason = Some(reason.clone());
                });
            }
            LbWrite::RemoveVip { vip } => {
                let a = self.vips.get(vip).ok_or_else(|| err("vip", format!("{vip} is not assigned")))?;
                if a.retiring_ms.is_none() {
                    return Err(err("vip", format!("{vip} is not retiring (DNS must stop answering it first)")));
                }
                let a = self.vips.remove(vip).expect("checked");
                self.released_index = index;
                self.event(index, at_ms, EventKind::ScaledIn, |e| {
                    e.group = Some(a.group.clone());
                    e.vip = Some(*vip);
                    e.device = Some(a.owner.clone());
                });
            }
            LbWrite::BackendHealth { backend, down, seen } => {
                let changed =
                    if *down { self.backends_down.insert(backend.clone()) } else { self.backends_down.remove(backend) };
                if !changed {
                    return Err(err("backend", format!("{backend} is already {}", if *down { "down" } else { "up" })));
                }
                let kind = if *down { EventKind::BackendDown } else { EventKind::BackendUp };
                // One event per group that runs this check, so each account hears of it.
                let groups: Vec<String> = self
                    .groups
                    .values()
                    .filter(|g| {
                        g.spec.listeners.iter().any(|l| {
                            l.mode.is_l4() && g.spec.backends.iter().any(|b| l.check_key(b).as_ref() == Some(backend))
                        })
                    })
                    .map(|g| g.spec.id())
                    .collect();
                let reason = format!("{backend}: {seen}");
                if groups.is_empty() {
                    self.event(index, at_ms, kind, |e| e.reason = Some(reason.clone()));
                }
                for g in groups {
                    self.event(index, at_ms, kind, |e| {
                        e.group = Some(g);
                        e.reason = Some(reason.clone());
                    });
                }
            }
            LbWrite::DeviceHealth { name, up } => {
                if !self.devices.contains_key(name) {
                    return Err(err("name", format!("no device {name}")));
                }
                let changed = if *up { self.devices_down.remove(name) } else { self.devices_down.insert(name.clone()) };
                if !changed {
                    return Err(err("name", format!("{name} is already {}", if *up { "up" } else { "down" })));
                }
                let kind = if *up { EventKind::DeviceUp } else { EventKind::DeviceDown };
                self.event(index, at_ms, kind, |e| e.device = Some(name.clone()));
            }
            LbWrite::LeaseBound { ms } => {
                if *ms == 0 {
                    return Err(err("ms", "a lease bound of 0"));
                }
                self.lease_bound_ms = *ms;
            }
            LbWrite::LeaseLost { name, reason } => {
                self.event(index, at_ms, EventKind::LeaseLost, |e| {
                    e.device = Some(name.clone());
                    e.reason = Some(reason.clone());
                });
            }
            LbWrite::PutHook(h) => {
                h.validate()?;
                let mut h = h.clone();
                // A new hook gets the events from now on; a changed one keeps its place, and
                // its secret unless one is given ("" removes it).
                let old = self.hooks.get(&h.id());
                h.next = old.map_or(self.next_event, |o| o.next);
                h.secret = match h.secret.take() {
                    None => old.and_then(|o| o.secret.clone()),
                    Some(s) if s.is_empty() => None,
                    Some(s) => Some(s),
                };
                self.hooks.insert(h.id(), h);
            }
            LbWrite::DeleteHook { id } => {
                if self.hooks.remove(id).is_none() {
                    return Err(err("name", format!("no hook {id}")));
                }
            }
            LbWrite::HookDelivered { id, event } => {
                let h = self.hooks.get_mut(id).ok_or_else(|| err("name", format!("no hook {id}")))?;
                h.next = h.next.max(event.saturating_add(1));
            }
            LbWrite::MoveVips { moves, reason, detected_ms } => {
                for (i, m) in moves.iter().enumerate() {
                    let a = self.vips.get(&m.vip).ok_or_else(|| {
                        err(format!("moves[{i}].vip"), format!("{} is not assigned", m.vip))
                    })?;
                    if a.epoch != m.epoch || a.owner != m.from {
                        return Err(err(
                            format!("moves[{i}]"),
                            format!(
                                "{} is in epoch {} on {}, not {} on {}",
                                m.vip, a.epoch, a.owner, m.epoch, m.from
                            ),
                        ));
                    }
                    self.check_owner(&format!("moves[{i}].to"), &m.to)?;
                }
                for m in moves {
                    let a = self.vips.get_mut(&m.vip).expect("checked above");
                    a.owner = m.to.clone();
                    a.epoch += 1;
                    a.modify_index = index;
                    let (group, epoch) = (a.group.clone(), a.epoch);
                    self.event(index, at_ms, EventKind::VipMoved, |e| {
                        e.group = Some(group);
                        e.vip = Some(m.vip);
                        e.from = Some(m.from.clone());
                        e.device = Some(m.to.clone());
                        e.epoch = Some(epoch);
                        e.reason = Some(reason.clone());
                        if let Some(d) = detected_ms {
                            e.phases.insert("detected".into(), *d);
                        }
                    });
                }
            }
            LbWrite::Phase { event, phase, at_ms } => {
                if phase.is_empty() || phase.len() > 32 {
                    return Err(err("phase", "must be 1 to 32 characters"));
                }
                let e = self
                    .events
                    .iter_mut()
                    .find(|e| e.id == *event)
                    .ok_or_else(|| err("event", format!("no event {event}")))?;
                e.phases.entry(phase.clone()).or_insert(*at_ms);
            }
        }
        Ok(())
    }

    /// A group's gateway is nobody else's address: no VIP range holds it, no other group
    /// has it, it is no device's own; and its group has one VIP (scale-out's included).
    fn check_gateway(&self, id: &str, spec: &GroupSpec) -> Result<(), LbError> {
        let Some(gw) = spec.gateway else { return Ok(()) };
        if self.group_vips(id).count() > 1 {
            return Err(err("gateway", format!("{id} has more than one VIP (scaled out): its replies cannot come back through one gateway")));
        }
        if let Some(d) = self.range_owner(gw) {
            return Err(err("gateway", format!("{gw} is in {}'s VIP ranges", d.spec.name)));
        }
        if let Some(g) = self.groups.values().find(|g| g.spec.id() != id && g.spec.gateway == Some(gw)) {
            return Err(err("gateway", format!("{gw} is group {}'s gateway", g.spec.id())));
        }
        if let Some(d) = self.devices.values().find(|d| d.spec.public.ip() == Some(gw) || d.spec.private.ip() == Some(gw)) {
            return Err(err("gateway", format!("{gw} is {}'s own address", d.spec.name)));
        }
        Ok(())
    }

    /// A gateway no longer held for `group`: a fencing change as a VIP's release is (a
    /// device whose view lags may still hold it, so whoever takes it next waits a lease).
    fn release_gateway(&mut self, index: u64, at_ms: u64, group: &str, gw: IpAddr) {
        self.released_index = index;
        self.event(index, at_ms, EventKind::VipReleased, |e| {
            e.group = Some(group.to_string());
            e.vip = Some(gw);
            e.reason = Some("NAT gateway".into());
        });
    }

    /// A device that may take a VIP: known, active, not a witness.
    fn check_owner(&self, field: &str, owner: &str) -> Result<(), LbError> {
        let d = self.devices.get(owner).ok_or_else(|| err(field, format!("no device {owner}")))?;
        if d.spec.witness {
            return Err(err(field, format!("{owner} is a witness and serves no VIPs")));
        }
        if d.admin == Admin::Draining {
            return Err(err(field, format!("{owner} is draining")));
        }
        Ok(())
    }

    /// Each VIP free and inside some device's range, each owner able to take it, no two
    /// VIPs on one device (a group's VIPs are spread for availability).
    fn check_placement(&self, placement: &[(IpAddr, String)]) -> Result<(), LbError> {
        for (i, (vip, owner)) in placement.iter().enumerate() {
            let f = format!("vips[{i}]");
            if self.vips.contains_key(vip) || placement[..i].iter().any(|(v, _)| v == vip) {
                return Err(err(&f, format!("{vip} is taken")));
            }
            if self.range_owner(*vip).is_none() {
                return Err(err(&f, format!("{vip} is in no device's range")));
            }
            self.check_owner(&f, owner)?;
            if placement[..i].iter().any(|(_, o)| o == owner) {
                return Err(err(&f, format!("{owner} already holds one of this group's VIPs")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(a: &str, b: &str) -> VipRange {
        VipRange { first: a.parse().unwrap(), last: b.parse().unwrap() }
    }

    pub(crate) fn device(name: &str, ranges: Vec<VipRange>) -> DeviceSpec {
        DeviceSpec { name: name.into(), ranges, capacity: 100, ..Default::default() }
    }

    pub(crate) fn group(account: &str, name: &str) -> GroupSpec {
        GroupSpec {
            account: account.into(),
            name: name.into(),
            listeners: vec![Listener {
                port: 80,
                protocol: Protocol::Tcp,
                mode: Mode::Http,
                balance: Some("roundrobin".into()),
                cookie: Some("SRV".into()),
                check: None,
                maxconn: Some(32),
                certs: vec![],
            }],
            backends: vec![Backend {
                address: "172.16.0.1".parse().unwrap(),
                port: 80,
                weight: 1,
                backup: false,
            }],
            vip_count: 1,
            gateway: None,
        }
    }

    fn seed() -> LbState {
        let mut s = LbState::default();
        assert_eq!(
            s.apply(1, 0, &LbWrite::PutDevice(device("lb01", vec![range("14.14.1.100", "14.14.1.199")]))),
            LbResult::Ok { index: 1 }
        );
        assert_eq!(
            s.apply(2, 0, &LbWrite::PutDevice(device("lb02", vec![range("14.14.1.200", "14.14.1.253")]))),
            LbResult::Ok { index: 2 }
        );
        s
    }

    fn refused(r: LbResult) -> String {
        match r {
            LbResult::Refused(e) => e.to_string(),
            ok => panic!("expected a refusal, got {ok:?}"),
        }
    }

    #[test]
    fn ranges_do_not_overlap_and_names_are_checked() {
        let mut s = seed();
        let before = s.clone();
        let e = refused(s.apply(
            3,
            0,
            &LbWrite::PutDevice(device("lb03", vec![range("14.14.1.150", "14.14.1.160")])),
        ));
        assert!(e.starts_with("ranges[0]: overlaps 14.14.1.100..14.14.1.199 of device lb01"), "{e}");
        let e = refused(s.apply(3, 0, &LbWrite::PutDevice(device("LB03", vec![]))));
        assert!(e.starts_with("name: "), "{e}");
        let e =
            refused(s.apply(3, 0, &LbWrite::PutDevice(device("lb03", vec![range("10.0.0.9", "10.0.0.1")]))));
        assert_eq!(e, "ranges[0].last: must not come before first");
        let e = refused(s.apply(
            3,
            0,
            &LbWrite::PutDevice(device("lb03", vec![range("10.0.0.1", "2001:db8::1")])),
        ));
        assert!(e.starts_with("ranges[0]: "), "{e}");
        let e = refused(s.apply(
            3,
            0,
            &LbWrite::PutDevice(device(
                "lb03",
                vec![range("10.0.0.1", "10.0.0.9"), range("10.0.0.5", "10.0.0.20")],
            )),
        ));
        assert_eq!(e, "ranges[1]: overlaps ranges[0]");
        assert_eq!(s, before, "nothing applied");
        // IPv6 ranges too.
        assert!(matches!(
            s.apply(3, 0, &LbWrite::PutDevice(device("lb03", vec![range("2001:db8::100", "2001:db8::1ff")]))),
            LbResult::Ok { .. }
        ));
    }

    #[test]
    fn groups_place_move_and_release() {
        let mut s = seed();
        let g = group("acco01", "web");
        let vip: IpAddr = "14.14.1.100".parse().unwrap();
        let create = LbWrite::CreateGroup { spec: g.clone(), placement: vec![(vip, "lb01".into())] };
        assert_eq!(s.apply(3, 10, &create), LbResult::Ok { index: 3 });
        assert_eq!(s.vips[&vip].epoch, 1);
        assert!(refused(s.apply(4, 0, &create)).starts_with("name: group acco01/web exists"));
        // Another group may not take the same VIP, nor one outside every range.
        let taken =
            LbWrite::CreateGroup { spec: group("acco02", "web"), placement: vec![(vip, "lb01".into())] };
        assert!(refused(s.apply(4, 0, &taken)).contains("is taken"));
        let outside = LbWrite::CreateGroup {
            spec: group("acco02", "web"),
            placement: vec![("14.14.1.254".parse().unwrap(), "lb01".into())],
        };
        assert!(refused(s.apply(4, 0, &outside)).contains("in no device's range"));
        // A move names the epoch it saw: a stale one is refused.
        let mv = |epoch| LbWrite::MoveVips {
            moves: vec![Move { vip, from: "lb01".into(), to: "lb02".into(), epoch }],
            reason: "lb01 failed".into(),
            detected_ms: Some(15),
        };
        assert!(refused(s.apply(4, 0, &mv(2))).contains("is in epoch 1 on lb01"));
        assert_eq!(s.apply(4, 20, &mv(1)), LbResult::Ok { index: 4 });
        assert_eq!((s.vips[&vip].owner.as_str(), s.vips[&vip].epoch), ("lb02", 2));
        let moved = s.events.iter().find(|e| e.kind == EventKind::VipMoved).unwrap();
        assert_eq!(
            (moved.from.as_deref(), moved.epoch, moved.phases["decided"], moved.phases["detected"]),
            (Some("lb01"), Some(2), 20, 15)
        );
        assert_eq!(
            s.apply(5, 0, &LbWrite::Phase { event: moved.id, phase: "arp_sent".into(), at_ms: 25 }),
            LbResult::Ok { index: 5 }
        );
        // A device with VIPs cannot go; draining refuses new VIPs.
        assert!(
            refused(s.apply(6, 0, &LbWrite::RemoveDevice { name: "lb02".into() })).contains("still serves")
        );
        s.apply(6, 0, &LbWrite::SetAdmin { name: "lb01".into(), admin: Admin::Draining });
        let on_draining = LbWrite::CreateGroup {
            spec: group("acco02", "web"),
            placement: vec![("14.14.1.101".parse().unwrap(), "lb01".into())],
        };
        assert!(refused(s.apply(7, 0, &on_draining)).contains("lb01 is draining"));
        // Deleting the group releases its VIPs.
        assert_eq!(
            s.apply(7, 0, &LbWrite::DeleteGroup { id: "acco01/web".into() }),
            LbResult::Ok { index: 7 }
        );
        assert!(s.vips.is_empty());
        assert_eq!(s.modify_index, 7);
    }

    /// `acco01/NAME` with one NAT listener.
    fn nat_group(name: &str) -> GroupSpec {
        let mut g = group("acco01", name);
        g.listeners[0] = Listener { mode: Mode::Nat, balance: None, cookie: None, maxconn: None, ..g.listeners[0].clone() };
        g
    }

    /// Scale-out's second VIP for acco01/db, on lb02.
    fn scale_out_db() -> LbWrite {
        LbWrite::AddVip {
            group: "acco01/db".into(),
            vip: "14.14.1.200".parse().unwrap(),
            owner: "lb02".into(),
            from: "lb01".into(),
            reason: "test".into(),
        }
    }

    #[test]
    fn a_nat_gateway_is_checked_and_keeps_its_group_to_one_vip() {
        let nat = |name: &str, gw: &str| {
            let mut g = nat_group(name);
            g.gateway = Some(gw.parse().unwrap());
            g
        };
        nat("db", "172.16.0.254").validate().unwrap();
        let mut http = group("acco01", "web");
        http.gateway = Some("172.16.0.254".parse().unwrap());
        assert!(http.validate().unwrap_err().msg.contains("nat listener"), "{:?}", http.validate());
        let mut two = nat("db", "172.16.0.254");
        two.vip_count = 2;
        assert_eq!(two.validate().unwrap_err().field, "gateway");
        assert_eq!(nat("db", "0.0.0.0").validate().unwrap_err().field, "gateway");

        let mut s = seed();
        let mut lb01 = device("lb01", vec![range("14.14.1.100", "14.14.1.199")]);
        lb01.private.addr = "172.16.0.11/24".into();
        s.apply(3, 0, &LbWrite::PutDevice(lb01));
        let create = |g: GroupSpec, vip: &str| LbWrite::CreateGroup { spec: g, placement: vec![(vip.parse().unwrap(), "lb01".into())] };
        assert!(refused(s.apply(4, 0, &create(nat("db", "14.14.1.150"), "14.14.1.100"))).contains("VIP ranges"));
        assert!(refused(s.apply(4, 0, &create(nat("db", "172.16.0.11"), "14.14.1.100"))).contains("lb01's own address"));
        assert_eq!(s.apply(4, 0, &create(nat("db", "172.16.0.254"), "14.14.1.100")), LbResult::Ok { index: 4 });
        assert!(refused(s.apply(5, 0, &create(nat("db2", "172.16.0.254"), "14.14.1.101"))).contains("acco01/db's gateway"));
        // Its own gateway again on an update is no conflict.
        let mut update = nat("db", "172.16.0.254");
        update.backends[0].weight = 2;
        assert_eq!(s.apply(5, 0, &LbWrite::UpdateGroup { spec: update }), LbResult::Ok { index: 5 });
        // Scale-out would put a second VIP on another device, whose NAT replies the gateway's
        // holder could not rewrite.
        assert!(refused(s.apply(6, 0, &scale_out_db())).contains("one gateway"));
        // A device's new range or address may not take it over.
        let mut wider = device("lb01", vec![range("14.14.1.100", "14.14.1.199")]);
        wider.private.addr = "172.16.0.254/24".into();
        assert!(refused(s.apply(6, 0, &LbWrite::PutDevice(wider))).contains("NAT gateway"));
        let mut on_backend = nat("db3", "172.16.0.1");
        on_backend.backends[0].address = "172.16.0.1".parse().unwrap();
        assert!(on_backend.validate().unwrap_err().msg.contains("backends[0]"));
        // A gateway given up is released as a VIP is: whoever takes it next waits.
        let mut moved = nat("db", "172.16.0.253");
        moved.backends[0].weight = 2;
        assert_eq!(s.apply(6, 0, &LbWrite::UpdateGroup { spec: moved }), LbResult::Ok { index: 6 });
        assert_eq!(s.released_index, 6);
        let ev = s.events.iter().rev().find(|e| e.kind == EventKind::VipReleased).unwrap();
        assert_eq!((ev.vip, ev.reason.as_deref()), (Some("172.16.0.254".parse().unwrap()), Some("NAT gateway")));
        assert_eq!(s.apply(7, 0, &LbWrite::DeleteGroup { id: "acco01/db".into() }), LbResult::Ok { index: 7 });
        assert!(s.events.iter().any(|e| e.index == 7 && e.vip == Some("172.16.0.253".parse().unwrap())));
    }

    #[test]
    fn a_scaled_out_group_gets_no_gateway() {
        let mut s = seed();
        let mut g = nat_group("db");
        let create = LbWrite::CreateGroup { spec: g.clone(), placement: vec![("14.14.1.100".parse().unwrap(), "lb01".into())] };
        assert_eq!(s.apply(3, 0, &create), LbResult::Ok { index: 3 });
        assert_eq!(s.apply(4, 0, &scale_out_db()), LbResult::Ok { index: 4 });
        g.gateway = Some("172.16.0.254".parse().unwrap());
        assert!(refused(s.apply(5, 0, &LbWrite::UpdateGroup { spec: g })).contains("more than one VIP"));
    }

    #[test]
    fn group_validation_names_the_field() {
        let mut g = group("acco01", "web");
        g.listeners[0].mode = Mode::Nat;
        assert_eq!(g.validate().unwrap_err().field, "listeners[0].mode");
        let mut g = group("acco01", "web");
        g.backends[0].weight = 300;
        assert_eq!(g.validate().unwrap_err().field, "backends[0].weight");
        let mut g = group("acco01", "web");
        g.listeners[0].port = 0;
        assert_eq!(g.validate().unwrap_err().field, "listeners[0].port");
        let mut g = group("acco01", "web");
        g.listeners[0].mode = Mode::Https;
        assert_eq!(g.validate().unwrap_err().field, "listeners[0].certs");
        let mut g = group("acco01", "web");
        g.listeners[0].protocol = Protocol::Udp;
        assert_eq!(g.validate().unwrap_err().field, "listeners[0].protocol");
        let mut g = group("Acco01", "web");
        assert_eq!(g.validate().unwrap_err().field, "account");
        g.account = "acco01".into();
        g.vip_count = 0;
        assert_eq!(g.validate().unwrap_err().field, "vip_count");
        let mut g = group("acco01", "web");
        g.backends.push(g.backends[0].clone());
        assert_eq!(g.validate().unwrap_err().field, "backends[1]");
        // Direct routing, like a tunnel, cannot rewrite the port.
        let mut g = group("acco01", "web");
        g.listeners[0] = Listener { mode: Mode::Dr, balance: None, cookie: None, maxconn: None, ..g.listeners[0].clone() };
        g.validate().unwrap();
        g.backends[0].port = 8080;
        let e = g.validate().unwrap_err();
        assert_eq!(e.field, "backends[0].port");
        assert!(e.to_string().contains("a dr listener keeps the VIP's port"), "{e}");
    }
}
