//! The L4 (XDP) configuration of one device.
//!
//! Pipeline: TOML text → [`RawConfig`] (serde, syntax errors with line:column) →
//! [`L4Config`] (validated: every error names the VIP and the field) → `plan` (the map
//! writes). Nothing reaches the kernel unless the whole file is valid.
//!
//! ```toml
//! [device]
//! tunnel_source_v4 = "10.0.0.1"      # outer source of IPIP packets (needed by IPv4 tunnel VIPs)
//! tunnel_source_v6 = "fd00::1"       # outer source of IP6IP6 packets (IPv6 tunnel VIPs)
//! max_vips = 64                      # VIPs this device can hold (1..=512); sizes the maps at load
//! max_table_size = 65537             # largest Maglev table of a VIP, a prime up to 1000003;
//!                                    # max_vips × max_table_size slots are allocated at load
//! conntrack_size = 65536             # flows in the connection table (1024..=16777216), an LRU:
//!                                    # when full the least recently used flow is forgotten
//!                                    # (its next packet is hashed again by Maglev); NAT's
//!                                    # reply table has as many entries
//!
//! [[vip]]
//! name = "web"
//! address = "198.51.100.10"          # must not be an address of the LB itself
//! port = 80                          # 0 = every port
//! protocol = "tcp"                   # tcp | udp
//! mode = "tunnel"                    # tunnel (IPIP/IP6IP6, DSR) | nat | dr (LVS direct
//!                                    # routing: backends on a segment of the LB's)
//! table_size = 65537                 # Maglev slots, a prime ≤ device.max_table_size
//! backends = [
//!   { address = "10.0.0.11", weight = 1 },
//!   { address = "10.0.0.12", weight = 2 },  # twice the share of new flows
//!   { address = "10.0.0.13", weight = 0 },  # draining: no new flows, open ones stay
//!   # nat only: { address = "10.0.0.14", port = 8080 } rewrites the port (default: the VIP's)
//! ]
//! ```
//! Weights are 0..=65535 (default 1). The maps are sized once, at load: a reload that
//! changes `max_vips` or `max_table_size` is refused, and a new `conntrack_size` takes
//! effect at the next start of `ballast lb`; the tunnel sources change on reload.
use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::Deserialize;

use crate::maglev::is_prime;

/// Largest Maglev table a VIP may have; also the stride between VIPs' tables in the map.
pub const DEFAULT_MAX_TABLE_SIZE: u32 = ballast_common::DEFAULT_RING_SIZE;
pub const DEFAULT_MAX_VIPS: u32 = 64;
pub const DEFAULT_CONNTRACK_SIZE: u32 = 65536;
/// Must match `MAX_VIPS` / `MAX_BACKENDS` in the eBPF maps.
pub const HARD_MAX_VIPS: u32 = 512;
pub const HARD_MAX_BACKENDS: u32 = 4096;
pub const MAX_WEIGHT: u32 = 65535;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0}")]
    Syntax(String),
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), msg: msg.into() }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub device: RawDevice,
    #[serde(default, rename = "vip")]
    pub vips: Vec<RawVip>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub tunnel_source_v4: Option<String>,
    pub tunnel_source_v6: Option<String>,
    pub max_vips: Option<u32>,
    pub max_table_size: Option<u32>,
    pub conntrack_size: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVip {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub port: u16,
    pub protocol: String,
    #[serde(default)]
    pub mode: Option<String>,
    pub table_size: Option<u32>,
    #[serde(default)]
    pub backends: Vec<RawBackend>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub address: String,
    pub port: Option<u16>,
    pub weight: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => ballast_common::PROTO_TCP,
            Protocol::Udp => ballast_common::PROTO_UDP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tunnel,
    Nat,
    /// LVS direct routing: to the backend's MAC on a shared segment, the packet untouched.
    Dr,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Tunnel => "tunnel",
            Mode::Nat => "nat",
            Mode::Dr => "dr",
        })
    }
}

/// A VIP's identity in the data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VipId {
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for VipId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.address {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.protocol),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.protocol),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSpec {
    pub address: IpAddr,
    /// NAT mode only: port to rewrite to (None keeps the client's destination port).
    pub port: Option<u16>,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipSpec {
    pub name: String,
    pub id: VipId,
    pub mode: Mode,
    pub table_size: u32,
    pub backends: Vec<BackendSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub tunnel_source_v4: Option<Ipv4Addr>,
    pub tunnel_source_v6: Option<Ipv6Addr>,
    /// Number of VIP table regions in the `MAGLEV` map (fixed at load).
    pub max_vips: u32,
    pub max_table_size: u32,
    pub conntrack_size: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L4Config {
    pub device: DeviceSpec,
    pub vips: Vec<VipSpec>,
}

/// The smallest MTU toward the backends that carries every IPv6 packet a client may send
/// through an IPv6 tunnel VIP: 1280 (IPv6's minimum link MTU) plus 40 bytes of IP6IP6.
pub const IPV6_TUNNEL_MIN_MTU: u32 = 1320;

impl L4Config {
    /// Interfaces (name, MTU) too small for this config's IPv6 tunnel VIPs. A packet too
    /// big for the tunnel is answered with an ICMPv6 "packet too big", but no host lowers
    /// its path MTU below 1280 (RFC 8201), so a client's 1280-byte packets could never
    /// get through such a link: the operator must know before clients stall.
    pub fn ipv6_tunnel_mtu_short<'a>(&self, mtus: &'a [(String, u32)]) -> Vec<&'a (String, u32)> {
        let v6_tunnel = self.vips.iter().any(|v| v.mode == Mode::Tunnel && v.id.address.is_ipv6());
        mtus.iter().filter(|(_, mtu)| v6_tunnel && *mtu < IPV6_TUNNEL_MIN_MTU).collect()
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        validate(raw)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Syntax(format!("{}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Syntax(m) => ConfigError::Syntax(format!("{}: {m}", path.display())),
            ConfigError::Invalid { field, msg } => {
                ConfigError::Invalid { field: format!("{}: {field}", path.display()), msg }
            }
        })
    }
}

fn parse_addr(field: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.trim().parse().map_err(|_| invalid(field, format!("{s:?} is not an IP address")))
}

pub fn validate(raw: RawConfig) -> Result<L4Config, ConfigError> {
    let d = raw.device;
    let tunnel_source_v4 = match &d.tunnel_source_v4 {
        None => None,
        Some(s) => match parse_addr("device.tunnel_source_v4", s)? {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => return Err(invalid("device.tunnel_source_v4", "must be an IPv4 address")),
        },
    };
    let tunnel_source_v6 = match &d.tunnel_source_v6 {
        None => None,
        Some(s) => match parse_addr("device.tunnel_source_v6", s)? {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => return Err(invalid("device.tunnel_source_v6", "must be an IPv6 address")),
        },
    };
    let max_vips = d.max_vips.unwrap_or(DEFAULT_MAX_VIPS);
    if max_vips == 0 || max_vips > HARD_MAX_VIPS {
        return Err(invalid("device.max_vips", format!("must be 1..={HARD_MAX_VIPS}")));
    }
    let max_table_size = d.max_table_size.unwrap_or(DEFAULT_MAX_TABLE_SIZE);
    if !is_prime(max_table_size) || max_table_size > 1_000_003 {
        return Err(invalid("device.max_table_size", "must be a prime up to 1000003"));
    }
    if (max_vips as u64) * (max_table_size as u64) > u32::MAX as u64 / 4 {
        return Err(invalid("device.max_vips", "max_vips × max_table_size is too large for one map"));
    }
    let conntrack_size = d.conntrack_size.unwrap_or(DEFAULT_CONNTRACK_SIZE);
    if !(1024..=16 << 20).contains(&conntrack_size) {
        return Err(invalid("device.conntrack_size", "must be 1024..=16777216"));
    }
    let device = DeviceSpec { tunnel_source_v4, tunnel_source_v6, max_vips, max_table_size, conntrack_size };

    if raw.vips.len() > max_vips as usize {
        return Err(invalid("vip", format!("{} VIPs, device.max_vips is {max_vips}", raw.vips.len())));
    }
    let mut names = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut total_backends = 0usize;
    let mut vips = Vec::with_capacity(raw.vips.len());
    for (i, v) in raw.vips.into_iter().enumerate() {
        let at = format!("vip[{i}] ({:?})", v.name);
        if v.name.trim().is_empty() {
            return Err(invalid(format!("vip[{i}].name"), "must not be empty"));
        }
        if !names.insert(v.name.clone()) {
            return Err(invalid(format!("{at}.name"), "duplicate VIP name"));
        }
        let address = parse_addr(&format!("{at}.address"), &v.address)?;
        let protocol = match v.protocol.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(invalid(format!("{at}.protocol"), format!("{other:?}: expected tcp or udp")))
            }
        };
        let mode = match v.mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("tunnel") => Mode::Tunnel,
            Some("nat") => Mode::Nat,
            Some("dr") => Mode::Dr,
            Some(other) => {
                return Err(invalid(format!("{at}.mode"), format!("{other:?}: expected tunnel, nat or dr")))
            }
        };
        let id = VipId { address, port: v.port, protocol };
        if !ids.insert(id) {
            return Err(invalid(at.to_string(), format!("{id} is configured twice")));
        }
        let table_size = v.table_size.unwrap_or(max_table_size);
        if !is_prime(table_size) || table_size > max_table_size {
            return Err(invalid(
                format!("{at}.table_size"),
                format!(
                    "{table_size}: must be a prime no larger than device.max_table_size ({max_table_size})"
                ),
            ));
        }
        if mode == Mode::Tunnel {
            match address {
                IpAddr::V4(_) if tunnel_source_v4.is_none() => {
                    return Err(invalid(
                        format!("{at}.mode"),
                        "tunnel mode for IPv4 needs device.tunnel_source_v4",
                    ))
                }
                IpAddr::V6(_) if tunnel_source_v6.is_none() => {
                    return Err(invalid(
                        format!("{at}.mode"),
                        "tunnel mode for IPv6 needs device.tunnel_source_v6",
                    ))
                }
                _ => {}
            }
        }
        let mut seen = BTreeSet::new();
        let mut backends = Vec::with_capacity(v.backends.len());
        for (j, b) in v.backends.into_iter().enumerate() {
            let bat = format!("{at}.backends[{j}]");
            let baddr = parse_addr(&format!("{bat}.address"), &b.address)?;
            if baddr.is_ipv4() != address.is_ipv4() {
                return Err(invalid(format!("{bat}.address"), "must be the same address family as the VIP"));
            }
            if baddr.is_unspecified() || baddr.is_multicast() {
                return Err(invalid(format!("{bat}.address"), "must be a unicast address"));
            }
            if let Some(p) = b.port {
                if mode != Mode::Nat {
                    return Err(invalid(
                        format!("{bat}.port"),
                        "only nat mode can change the port; tunnel and dr modes keep the VIP's",
                    ));
                }
                if v.port == 0 {
                    return Err(invalid(
                        format!("{bat}.port"),
                        "a VIP on every port (port 0) keeps the client's port",
                    ));
                }
                if p == 0 {
                    return Err(invalid(format!("{bat}.port"), "must be 1..=65535"));
                }
            }
            let weight = b.weight.unwrap_or(1);
            if weight > MAX_WEIGHT {
                return Err(invalid(format!("{bat}.weight"), format!("{weight}: must be 0..={MAX_WEIGHT}")));
            }
            if !seen.insert((baddr, b.port)) {
                return Err(invalid(bat.to_string(), "duplicate backend"));
            }
            backends.push(BackendSpec { address: baddr, port: b.port, weight });
        }
        total_backends += backends.len();
        if total_backends > HARD_MAX_BACKENDS as usize {
            return Err(invalid(
                format!("{at}.backends"),
                format!("more than {HARD_MAX_BACKENDS} backends in all"),
            ));
        }
        vips.push(VipSpec { name: v.name, id, mode, table_size, backends });
    }
    Ok(L4Config { device, vips })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[device]
tunnel_source_v4 = "10.0.0.1"
tunnel_source_v6 = "fd00::1"

[[vip]]
name = "web"
address = "198.51.100.10"
port = 80
protocol = "tcp"
backends = [{ address = "10.0.0.11" }, { address = "10.0.0.12", weight = 3 }]

[[vip]]
name = "dns"
address = "2001:db8:100::10"
port = 53
protocol = "udp"
mode = "nat"
table_size = 251
backends = [{ address = "fd00::11", port = 5353 }]
"#;

    #[test]
    fn parses_a_good_file() {
        let c = L4Config::parse(GOOD).unwrap();
        assert_eq!(c.vips.len(), 2);
        assert_eq!(c.vips[0].mode, Mode::Tunnel);
        assert_eq!(c.vips[0].table_size, 65537);
        assert_eq!(c.vips[0].backends[1].weight, 3);
        assert_eq!(c.vips[1].mode, Mode::Nat);
        assert_eq!(c.vips[1].backends[0].port, Some(5353));
        assert_eq!(c.device.tunnel_source_v4, Some("10.0.0.1".parse().unwrap()));
    }

    fn err(text: &str) -> String {
        L4Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let bad_addr = GOOD.replace("10.0.0.12", "10.0.0.x");
        assert_eq!(err(&bad_addr), r#"vip[0] ("web").backends[1].address: "10.0.0.x" is not an IP address"#);
        let bad_proto = GOOD.replace("\"udp\"", "\"sctp\"");
        assert!(err(&bad_proto).starts_with(r#"vip[1] ("dns").protocol"#));
        let bad_table = GOOD.replace("251", "250");
        assert!(err(&bad_table).starts_with(r#"vip[1] ("dns").table_size: 250"#));
        let mixed = GOOD.replace("fd00::11", "10.0.0.5");
        assert!(err(&mixed).contains("same address family"));
        let tunnel_port =
            GOOD.replace(r#"{ address = "10.0.0.11" }"#, r#"{ address = "10.0.0.11", port = 8080 }"#);
        assert!(err(&tunnel_port).contains("only nat mode"));
        let no_src = GOOD.replace("tunnel_source_v4 = \"10.0.0.1\"\n", "");
        assert!(err(&no_src).contains("needs device.tunnel_source_v4"));
        let dup = GOOD.replace("\"dns\"", "\"web\"");
        assert!(err(&dup).contains("duplicate VIP name"));
        let weight = GOOD.replace("weight = 3", "weight = 70000");
        assert!(err(&weight).contains("weight: 70000"));
    }

    #[test]
    fn dr_mode_keeps_the_port_and_needs_no_tunnel_source() {
        let dr = GOOD.replacen("backends = [{ address = \"10.0.0.11\" }", "mode = \"dr\"\nbackends = [{ address = \"10.0.0.11\" }", 1)
            .replace("tunnel_source_v4 = \"10.0.0.1\"\n", "");
        let c = L4Config::parse(&dr).unwrap();
        assert_eq!(c.vips[0].mode, Mode::Dr);
        let port = dr.replace(r#"{ address = "10.0.0.11" }"#, r#"{ address = "10.0.0.11", port = 8080 }"#);
        assert!(err(&port).contains("tunnel and dr modes keep the VIP's"), "{}", err(&port));
        assert!(err(&GOOD.replace("\"nat\"", "\"lvs\"")).contains("expected tunnel, nat or dr"));
    }

    #[test]
    fn syntax_and_unknown_fields_report_position() {
        let e = err("[[vip]]\nname = \"x\"\naddress = \"198.51.100.1\"\nprotocol = \"tcp\"\nbackend = []\n");
        assert!(e.contains("unknown field `backend`"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        let e = err("[[vip]\n");
        assert!(e.contains("line 1"), "{e}");
        let e = err("[[vip]]\nname = \"x\"\naddress = \"198.51.100.1\"\nport = 70000\nprotocol = \"tcp\"\n");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn empty_config_is_valid() {
        let c = L4Config::parse("").unwrap();
        assert!(c.vips.is_empty());
        assert_eq!(c.device.max_vips, DEFAULT_MAX_VIPS);
    }

    #[test]
    fn mutated_input_never_panics() {
        let base = GOOD.as_bytes().to_vec();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5000 {
            let mut b = base.clone();
            for _ in 0..1 + rnd() % 8 {
                let at = rnd() as usize % b.len().max(1);
                if b.is_empty() {
                    break;
                }
                match rnd() % 3 {
                    0 => b[at] = rnd() as u8,
                    1 => {
                        b.remove(at);
                    }
                    _ => b.insert(at, b"[]=\"{},.0123456789abcxyz\n"[rnd() as usize % 25]),
                }
            }
            let _ = L4Config::parse(&String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn ipv6_tunnels_need_1320_bytes_toward_the_backends() {
        let mtus = vec![("eth0".to_string(), 1500), ("eth1".to_string(), 1300)];
        let v6 = "[[vip]]\nname = \"t6\"\naddress = \"2001:db8::10\"\nport = 80\nprotocol = \"tcp\"\nbackends = [{ address = \"fd00::11\" }]\n";
        let c = L4Config::parse(&format!("[device]\ntunnel_source_v6 = \"fd00::1\"\n\n{v6}")).unwrap();
        assert_eq!(c.ipv6_tunnel_mtu_short(&mtus), [&("eth1".to_string(), 1300)]);
        let nat = L4Config::parse(&format!("[device]\n\n{}", v6.replace("protocol = \"tcp\"", "protocol = \"tcp\"\nmode = \"nat\""))).unwrap();
        assert!(nat.ipv6_tunnel_mtu_short(&mtus).is_empty(), "NAT adds no header");
    }
}
