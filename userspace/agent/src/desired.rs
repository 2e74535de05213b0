//! What one device must run, as a pure function of the replicated LB state and of whether
//! its lease holds: the VIPs it serves, the L4 configuration of their L4 listeners (the
//! TOML `ballast lb` reads) and the L7 configuration of the others (a haproxy.cfg). Both
//! are text, checked by the same parsers an operator's files go through, and can be
//! shown as they are.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
};

use ballast_control::state::lb::{Backend, Group, LbState, Listener, Mode, Protocol};

/// A VIP this device serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub group: String,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub vips: BTreeMap<IpAddr, Served>,
    /// The L4 configuration (TOML) of the served VIPs' L4 listeners.
    pub l4: String,
    /// The L7 configuration (haproxy.cfg) of their L7 listeners; None when there is none.
    pub l7: Option<String>,
}

/// A proxy or VIP name for `group`'s listener on `port`: `account.name.port`.
fn listener_name(g: &Group, port: u16) -> String {
    format!("{}.{}.{port}", g.spec.account, g.spec.name)
}

fn backend_port(b: &Backend, l: &Listener) -> u16 {
    if b.port == 0 {
        l.port
    } else {
        b.port
    }
}

/// A health check of one L4 backend, as its listener's `check` asks for it (the proxy
/// checks the L7 listeners' servers itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Check {
    pub addr: SocketAddr,
    /// HTTP GET of this path; None: a TCP connect.
    pub path: Option<String>,
    pub interval_ms: u32,
    pub rise: u32,
    pub fall: u32,
}

fn check_of(b: &Backend, l: &Listener) -> Option<Check> {
    let c = l.check.as_ref()?;
    Some(Check {
        addr: SocketAddr::new(b.address, backend_port(b, l)),
        path: c.path.clone(),
        interval_ms: c.interval_ms,
        rise: c.rise,
        fall: c.fall,
    })
}

/// The checks of the L4 backends behind `vips` (those this device serves).
pub fn l4_checks(lb: &LbState, me: &str, vips: &BTreeSet<IpAddr>) -> BTreeSet<Check> {
    let mut out = BTreeSet::new();
    for (_, s) in owned(lb, me).filter(|(v, _)| vips.contains(v)) {
        let g = &lb.groups[&s.group];
        for l in g.spec.listeners.iter().filter(|l| l.mode.is_l4()) {
            out.extend(g.spec.backends.iter().filter_map(|b| check_of(b, l)));
        }
    }
    out
}

/// The device's state: `me` serves the VIPs assigned to it while `lease_holds`; none
/// otherwise (a device cut off from the quorum withdraws).
pub fn desired(lb: &LbState, me: &str, lease_holds: bool) -> Desired {
    let none = BTreeSet::new();
    if !lease_holds {
        return build(lb, me, BTreeMap::new(), &none);
    }
    build(lb, me, owned(lb, me).collect(), &none)
}

/// The state for only those of `me`'s VIPs that are in `vips` (the reconciler gains and
/// loses VIPs a step at a time). L4 backends whose check is in `down` get no traffic.
pub fn for_vips(lb: &LbState, me: &str, vips: &BTreeSet<IpAddr>, down: &BTreeSet<Check>) -> Desired {
    build(lb, me, owned(lb, me).filter(|(v, _)| vips.contains(v)).collect(), down)
}

/// The NAT gateways of the groups of `vips` (the VIPs this device holds): each is held
/// with its group's VIP, so the device that rewrites a flow's requests gets its replies.
pub fn gateways(lb: &LbState, vips: &BTreeSet<IpAddr>) -> BTreeSet<IpAddr> {
    vips.iter()
        .filter_map(|v| lb.groups.get(&lb.vips.get(v)?.group)?.spec.gateway)
        .collect()
}

fn owned<'a>(lb: &'a LbState, me: &'a str) -> impl Iterator<Item = (IpAddr, Served)> + 'a {
    lb.vips
        .iter()
        .filter(move |(_, a)| a.owner == me && lb.groups.contains_key(&a.group))
        .map(|(v, a)| (*v, Served { group: a.group.clone(), epoch: a.epoch }))
}

fn build(lb: &LbState, me: &str, vips: BTreeMap<IpAddr, Served>, down: &BTreeSet<Check>) -> Desired {
    // Each group with the VIPs served here (a group's VIPs are spread, but after a
    // failover one device may hold several of one group).
    let mut groups: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
    for (vip, s) in &vips {
        groups.entry(s.group.as_str()).or_default().push(*vip);
    }
    Desired { l4: l4_toml(lb, me, &groups, down), l7: l7_cfg(lb, &groups), vips }
}

fn l4_toml(lb: &LbState, me: &str, groups: &BTreeMap<&str, Vec<IpAddr>>, down: &BTreeSet<Check>) -> String {
    let mut out =
        String::from("# The L4 listeners this device serves (written by ballast agent).\n[device]\n");
    // IPIP / IP6IP6 leave from the private side: its address is the outer source.
    if let Some(d) = lb.devices.get(me) {
        match d.spec.private.ip() {
            Some(IpAddr::V4(a)) => writeln!(out, "tunnel_source_v4 = \"{a}\"").unwrap(),
            Some(IpAddr::V6(a)) => writeln!(out, "tunnel_source_v6 = \"{a}\"").unwrap(),
            None => {}
        }
    }
    for (id, vips) in groups {
        let g = &lb.groups[*id];
        for l in g.spec.listeners.iter().filter(|l| l.mode.is_l4()) {
            // HAProxy's rule: backups get traffic only while no primary is up; a backend
            // down here keeps its place with weight 0 (no new flows; the connection table
            // keeps those it has).
            // Down here (this device's check) or down for all (most devices' checks).
            let up = |b: &Backend| {
                check_of(b, l).is_none_or(|c| !down.contains(&c))
                    && l.check_key(b).is_none_or(|k| !lb.backends_down.contains(&k))
            };
            let primary_up = g.spec.backends.iter().any(|b| !b.backup && up(b) && b.weight > 0);
            let weight = |b: &Backend| if !up(b) || (b.backup && primary_up) { 0 } else { b.weight };
            for vip in vips {
                let backends: Vec<String> = g
                    .spec
                    .backends
                    .iter()
                    .map(|b| match l.mode {
                        // A tunnel keeps the VIP's port.
                        Mode::Tunnel | Mode::Dr => format!("{{ address = \"{}\", weight = {} }}", b.address, weight(b)),
                        _ => format!(
                            "{{ address = \"{}\", port = {}, weight = {} }}",
                            b.address,
                            backend_port(b, l),
                            weight(b)
                        ),
                    })
                    .collect();
                let protocol = if l.protocol == Protocol::Udp { "udp" } else { "tcp" };
                let mode = match l.mode {
                    Mode::Nat => "nat",
                    Mode::Dr => "dr",
                    _ => "tunnel",
                };
                write!(
                    out,
                    "\n[[vip]]\nname = \"{}\"\naddress = \"{vip}\"\nport = {}\nprotocol = \"{protocol}\"\nmode = \"{mode}\"\nbackends = [{}]\n",
                    listener_name(g, l.port),
                    l.port,
                    backends.join(", ")
                )
                .unwrap();
            }
        }
    }
    out
}

fn l7_cfg(lb: &LbState, groups: &BTreeMap<&str, Vec<IpAddr>>) -> Option<String> {
    let mut sections = String::new();
    for (id, vips) in groups {
        let g = &lb.groups[*id];
        for l in g.spec.listeners.iter().filter(|l| !l.mode.is_l4()) {
            let mode = if l.mode == Mode::Tcp { "tcp" } else { "http" };
            writeln!(sections, "\nlisten {}\n    mode {mode}", listener_name(g, l.port)).unwrap();
            for vip in vips {
                let addr = match vip {
                    IpAddr::V4(a) => format!("{a}:{}", l.port),
                    IpAddr::V6(a) => format!("[{a}]:{}", l.port),
                };
                let tls: String = l.certs.iter().map(|c| format!(" crt {c}")).collect();
                let ssl =
                    if l.mode == Mode::Https { format!(" ssl{tls} alpn h2,http/1.1") } else { String::new() };
                writeln!(sections, "    bind {addr} transparent{ssl}").unwrap();
            }
            writeln!(sections, "    balance {}", l.balance.as_deref().unwrap_or("roundrobin")).unwrap();
            if mode == "http" {
                writeln!(sections, "    option forwardfor").unwrap();
            }
            if let Some(c) = &l.cookie {
                writeln!(sections, "    cookie {c} insert indirect nocache").unwrap();
            }
            if let Some(p) = l.check.as_ref().and_then(|c| c.path.as_deref()) {
                writeln!(sections, "    option httpchk GET {p}").unwrap();
            }
            for (i, b) in g.spec.backends.iter().enumerate() {
                let addr = match b.address {
                    IpAddr::V4(a) => format!("{a}:{}", backend_port(b, l)),
                    IpAddr::V6(a) => format!("[{a}]:{}", backend_port(b, l)),
                };
                let mut line = format!("    server b{i} {addr} weight {}", b.weight);
                if let Some(m) = l.maxconn {
                    write!(line, " maxconn {m}").unwrap();
                }
                if let Some(c) = &l.check {
                    write!(line, " check inter {}ms rise {} fall {}", c.interval_ms, c.rise, c.fall).unwrap();
                }
                if l.cookie.is_some() {
                    write!(line, " cookie b{i}").unwrap();
                }
                if b.backup {
                    line.push_str(" backup");
                }
                writeln!(sections, "{line}").unwrap();
            }
        }
    }
    if sections.is_empty() {
        return None;
    }
    Some(format!(
        "# The L7 listeners this device serves (written by ballast agent).\nglobal\n    maxconn 100000\n\n\
         defaults\n    timeout connect 5s\n    timeout client 50s\n    timeout server 50s\n    timeout queue 10s\n    \
         retries 3\n    option redispatch\n{sections}"
    ))
}

#[cfg(test)]
mod tests {
    use ballast_control::state::lb::{DeviceSpec, GroupSpec, HealthCheck, LbWrite, Nic, VipRange};

    use super::*;

    fn listener(port: u16, mode: Mode) -> Listener {
        Listener {
            port,
            protocol: Protocol::Tcp,
            mode,
            balance: None,
            cookie: (mode == Mode::Http).then(|| "SRV".into()),
            check: None,
            maxconn: (mode == Mode::Http).then_some(32),
            certs: vec![],
        }
    }

    /// Seed 004: LB01 and LB02, an L4 and an L7 group on LB01, one group on both.
    fn state() -> LbState {
        let mut s = LbState::default();
        let dev = |name: &str, first: &str, last: &str, private: &str| DeviceSpec {
            name: name.into(),
            private: Nic { iface: "eth1".into(), addr: private.into() },
            ranges: vec![VipRange { first: first.parse().unwrap(), last: last.parse().unwrap() }],
            capacity: 100,
            ..Default::default()
        };
        s.apply(1, 0, &LbWrite::PutDevice(dev("lb01", "14.14.1.100", "14.14.1.199", "172.16.0.11/24")));
        s.apply(2, 0, &LbWrite::PutDevice(dev("lb02", "14.14.1.200", "14.14.1.253", "172.16.0.12/24")));
        let g = |account: &str, name: &str, listeners, vips| GroupSpec {
            account: account.into(),
            name: name.into(),
            listeners,
            backends: vec![
                Backend { address: "172.16.0.1".parse().unwrap(), port: 0, weight: 1, backup: false },
                Backend { address: "172.16.0.2".parse().unwrap(), port: 8080, weight: 2, backup: false },
                Backend { address: "172.16.0.3".parse().unwrap(), port: 0, weight: 1, backup: true },
            ],
            vip_count: vips,
            gateway: None,
        };
        let place = |v: &[(&str, &str)]| v.iter().map(|(a, d)| (a.parse().unwrap(), d.to_string())).collect();
        s.apply(
            3,
            0,
            &LbWrite::CreateGroup {
                spec: g("acco01", "l4", vec![listener(8080, Mode::Tunnel)], 1),
                placement: place(&[("14.14.1.100", "lb01")]),
            },
        );
        s.apply(
            4,
            0,
            &LbWrite::CreateGroup {
                spec: g("acco02", "web", vec![listener(80, Mode::Http)], 1),
                placement: place(&[("14.14.1.101", "lb01")]),
            },
        );
        s.apply(
            5,
            0,
            &LbWrite::CreateGroup {
                spec: g("acco03", "ha", vec![listener(443, Mode::Tcp)], 2),
                placement: place(&[("14.14.1.102", "lb01"), ("14.14.1.200", "lb02")]),
            },
        );
        s
    }

    #[test]
    fn each_device_serves_its_vips_and_parses_what_it_renders() {
        let s = state();
        let d = desired(&s, "lb01", true);
        let vips: Vec<String> = d.vips.keys().map(|v| v.to_string()).collect();
        assert_eq!(vips, ["14.14.1.100", "14.14.1.101", "14.14.1.102"]);
        let l4 = ballast_l4::config::L4Config::parse(&d.l4).expect("valid L4 config");
        assert_eq!(l4.vips.len(), 1);
        let weights: Vec<u32> = l4.vips[0].backends.iter().map(|b| b.weight).collect();
        assert_eq!(weights, [1, 2, 0], "a backup gets no slot while a primary is up");
        assert_eq!(l4.device.tunnel_source_v4, Some("172.16.0.11".parse().unwrap()));
        let l7 = d.l7.expect("L7 listeners");
        let parsed = ballast_l7::haproxy::parse("agent.cfg", &l7);
        assert_eq!(parsed.alerts().count(), 0, "{:?}\n{l7}", parsed.diags);
        let c = parsed.config.unwrap();
        let web = c.proxy("acco02.web.80").unwrap();
        assert_eq!(web.binds[0].addr.to_string(), "14.14.1.101:80");
        assert_eq!(web.servers[1].addr.to_string(), "172.16.0.2:8080");
        assert_eq!(web.servers[0].maxconn, 32);
        assert!(web.servers[2].backup);
        assert!(web.settings.cookie.is_some());
        let ha = c.proxy("acco03.ha.443").unwrap();
        assert_eq!(ha.binds.len(), 1, "lb01 serves one of the two VIPs");

        let d2 = desired(&s, "lb02", true);
        assert_eq!(d2.vips.keys().map(|v| v.to_string()).collect::<Vec<_>>(), ["14.14.1.200"]);
        assert_eq!(ballast_l4::config::L4Config::parse(&d2.l4).unwrap().vips.len(), 0);
    }

    #[test]
    fn l4_backends_failing_their_check_leave_the_maps_and_backups_take_over() {
        let mut s = state();
        let check = HealthCheck { path: None, interval_ms: 1000, rise: 2, fall: 3 };
        let mut spec = s.groups["acco01/l4"].spec.clone();
        spec.listeners[0].check = Some(check);
        s.apply(10, 0, &LbWrite::UpdateGroup { spec });
        let vips: BTreeSet<IpAddr> = ["14.14.1.100".parse().unwrap()].into();
        let checks = l4_checks(&s, "lb01", &vips);
        let addrs: Vec<String> = checks.iter().map(|c| c.addr.to_string()).collect();
        // A tunnel's check goes to the listener's port unless the backend names one.
        assert_eq!(addrs, ["172.16.0.1:8080", "172.16.0.2:8080", "172.16.0.3:8080"]);
        assert!(l4_checks(&s, "lb02", &vips).is_empty(), "not lb02's VIP");
        let weights_in = |s: &LbState, down: &BTreeSet<Check>| -> Vec<u32> {
            let l4 = ballast_l4::config::L4Config::parse(&for_vips(s, "lb01", &vips, down).l4).unwrap();
            l4.vips[0].backends.iter().map(|b| b.weight).collect()
        };
        let weights = |down: &BTreeSet<Check>| weights_in(&s, down);
        let pick = |which: &[usize]| -> BTreeSet<Check> {
            let all: Vec<&Check> = checks.iter().collect();
            which.iter().map(|i| all[*i].clone()).collect()
        };
        assert_eq!(weights(&pick(&[])), [1, 2, 0]);
        assert_eq!(weights(&pick(&[0])), [0, 2, 0]);
        assert_eq!(weights(&pick(&[0, 1])), [0, 0, 1], "every primary down: the backup");
        assert_eq!(weights(&pick(&[0, 1, 2])), [0, 0, 0], "nothing up: nothing served");
        // The cluster's verdict counts even where this device's own check passes.
        let mut s2 = s.clone();
        let key = ballast_control::state::lb::CheckKey { addr: "172.16.0.1:8080".parse().unwrap(), path: None };
        s2.apply(11, 0, &LbWrite::BackendHealth { backend: key, down: true, seen: "2 of 3".into() });
        assert_eq!(weights_in(&s2, &pick(&[])), [0, 2, 0]);
        // Another account's differing check of the same address decides nothing here.
        let mut s3 = s.clone();
        let other = ballast_control::state::lb::CheckKey { addr: "172.16.0.1:8080".parse().unwrap(), path: Some("/nonexistent".into()) };
        s3.apply(11, 0, &LbWrite::BackendHealth { backend: other, down: true, seen: "3 of 3".into() });
        assert_eq!(weights_in(&s3, &pick(&[])), [1, 2, 0]);
    }

    #[test]
    fn a_nat_gateway_goes_with_its_groups_vip_and_the_lease() {
        let mut s = state();
        let mut spec = s.groups["acco01/l4"].spec.clone();
        spec.listeners[0].mode = Mode::Nat;
        spec.gateway = Some("172.16.0.254".parse().unwrap());
        assert!(matches!(s.apply(10, 0, &LbWrite::UpdateGroup { spec }), ballast_control::state::lb::LbResult::Ok { .. }));
        let gw: IpAddr = "172.16.0.254".parse().unwrap();
        let served = |s: &LbState, dev: &str, lease: bool| gateways(s, &desired(s, dev, lease).vips.keys().copied().collect());
        assert_eq!(served(&s, "lb01", true), [gw].into());
        assert!(served(&s, "lb01", false).is_empty(), "no lease, no gateway");
        assert!(served(&s, "lb02", true).is_empty());
        let only_other: BTreeSet<IpAddr> = ["14.14.1.101".parse().unwrap()].into();
        assert!(gateways(&s, &only_other).is_empty(), "held with its VIP only");
        let moves = ballast_control::scheduler::moves(&s, &["lb02".to_string()].into());
        s.apply(11, 0, &LbWrite::MoveVips { moves, reason: "lb01 failed".into(), detected_ms: None });
        assert_eq!(served(&s, "lb02", true), [gw].into());
        assert!(served(&s, "lb01", true).is_empty());
    }

    #[test]
    fn no_lease_no_vips_and_a_move_follows() {
        let mut s = state();
        let d = desired(&s, "lb01", false);
        assert!(d.vips.is_empty() && d.l7.is_none());
        assert!(ballast_l4::config::L4Config::parse(&d.l4).unwrap().vips.is_empty());
        // lb01's VIPs move to lb02: lb02 now binds both VIPs of acco03/ha.
        let moves = ballast_control::scheduler::moves(&s, &["lb02".to_string()].into());
        s.apply(6, 0, &LbWrite::MoveVips { moves, reason: "lb01 failed".into(), detected_ms: None });
        let d2 = desired(&s, "lb02", true);
        assert_eq!(d2.vips.len(), 4);
        assert!(d2.vips.values().all(|v| v.epoch >= 1));
        let c = ballast_l7::haproxy::parse("agent.cfg", d2.l7.as_deref().unwrap()).config.unwrap();
        assert_eq!(c.proxy("acco03.ha.443").unwrap().binds.len(), 2);
        assert!(desired(&s, "lb01", true).vips.is_empty());
    }
}
