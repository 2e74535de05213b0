//! Scale-out and scale-in, seed 004's answer to a device without headroom: a group whose
//! VIPs sit on an overloaded device gets an extra VIP on another device, and DNS (GSLB)
//! spreads clients over all of them; once load has stayed low, the extra VIP goes, DNS
//! first, the address only after the TTL and a drain time. Pure decisions from the LB
//! state, the devices' gossiped loads and the times conditions began (kept by the
//! leader's loop); the leader commits what they return.
//!
//! Hysteresis: a device must stay above a threshold for `sustain` before its group scales
//! out, a group scaled out is not scaled out again within `sustain`, and scale-in needs
//! the group below `low` x the thresholds for `hold_down` (much longer than `sustain`), so
//! load near a threshold does not make VIPs come and go.
use std::collections::{BTreeMap, BTreeSet};

use crate::{
    gossip::load::Load,
    scheduler,
    state::lb::{Admin, Event, EventKind, LbState, LbWrite},
};

/// `lb.scale` in the agent config (times in ms). A threshold of 0 is off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// New connections per second through a device's VIPs.
    pub conn_rate: f32,
    /// CPU busy %.
    pub cpu_pct: f32,
    /// Packets per second the device's XDP program forwards for its VIPs.
    pub pps: f32,
    /// Scale-in when below this fraction of the thresholds.
    pub low: f32,
    pub sustain_ms: u64,
    pub hold_down_ms: u64,
    /// After DNS stops answering a retiring VIP: its TTL plus the time clients may keep
    /// using it, before the address goes.
    pub drain_ms: u64,
    /// VIPs a group may have in all (its own and extra ones).
    pub max_vips: u32,
}

impl Default for Policy {
    fn default() -> Self {
        // Off unless a threshold is set: VIPs appear only where an operator asked for it.
        Policy {
            conn_rate: 0.0,
            cpu_pct: 0.0,
            pps: 0.0,
            low: 0.5,
            sustain_ms: 60_000,
            hold_down_ms: 600_000,
            drain_ms: 30_000,
            max_vips: 4,
        }
    }
}

impl Policy {
    pub fn enabled(&self) -> bool {
        self.conn_rate > 0.0 || self.cpu_pct > 0.0 || self.pps > 0.0
    }

    /// Above a threshold.
    pub fn over(&self, l: &Load) -> bool {
        (self.conn_rate > 0.0 && l.conn_rate() > self.conn_rate)
            || (self.cpu_pct > 0.0 && l.cpu_pct > self.cpu_pct)
            || (self.pps > 0.0 && l.xdp_pps as f32 > self.pps)
    }
}

/// When each condition began (ms since the Unix epoch), as the leader saw it.
#[derive(Debug, Default, Clone)]
pub struct Clocks {
    /// Device → since when it has been over a threshold.
    pub over_since: BTreeMap<String, u64>,
    /// Group (with extra VIPs) → since when it has been cold.
    pub cold_since: BTreeMap<String, u64>,
}

/// A group's new connections per second over all its VIPs, from the owners' reports.
fn group_rate(state: &LbState, loads: &BTreeMap<String, Load>, group: &str) -> f32 {
    state.group_vips(group).map(|(v, a)| vip_rate(loads, &a.owner, *v)).sum()
}

fn vip_rate(loads: &BTreeMap<String, Load>, owner: &str, vip: std::net::IpAddr) -> f32 {
    loads.get(owner).and_then(|l| l.vips.iter().find(|r| r.vip == vip)).map_or(0.0, |r| r.conn_rate)
}

/// Whether `group` is cold: its rate and its devices' CPU below `low` x the thresholds.
fn cold(state: &LbState, loads: &BTreeMap<String, Load>, p: &Policy, group: &str) -> bool {
    let rate_ok = p.conn_rate <= 0.0 || group_rate(state, loads, group) < p.low * p.conn_rate;
    let cpu_ok = p.cpu_pct <= 0.0
        || state.group_vips(group).all(|(_, a)| loads.get(&a.owner).is_none_or(|l| l.cpu_pct < p.low * p.cpu_pct));
    let pps_ok = p.pps <= 0.0
        || state.group_vips(group).all(|(_, a)| loads.get(&a.owner).is_none_or(|l| (l.xdp_pps as f32) < p.low * p.pps));
    rate_ok && cpu_ok && pps_ok
}

/// Updates the clocks with what the loads show at `now`.
pub fn observe(c: &mut Clocks, state: &LbState, loads: &BTreeMap<String, Load>, p: &Policy, now: u64) {
    c.over_since.retain(|d, _| loads.get(d).is_some_and(|l| p.over(l)));
    for (d, l) in loads {
        if p.over(l) {
            c.over_since.entry(d.clone()).or_insert(now);
        }
    }
    let with_extra: BTreeSet<&str> =
        state.vips.values().filter(|a| a.extra && a.retiring_ms.is_none()).map(|a| a.group.as_str()).collect();
    c.cold_since.retain(|g, _| with_extra.contains(g.as_str()) && cold(state, loads, p, g));
    for g in with_extra {
        if cold(state, loads, p, g) {
            c.cold_since.entry(g.to_string()).or_insert(now);
        }
    }
}

/// What to commit now: remove retired VIPs whose drain is over, retire an extra VIP of
/// each group cold for `hold_down`, and give the busiest group of each device over a
/// threshold for `sustain` an extra VIP on the least loaded device that has none of it.
pub fn decide(
    state: &LbState,
    loads: &BTreeMap<String, Load>,
    alive: &BTreeSet<String>,
    c: &Clocks,
    p: &Policy,
    now: u64,
) -> Vec<LbWrite> {
    let mut out = removals(state, p, now);
    for (g, since) in &c.cold_since {
        if now < since.saturating_add(p.hold_down_ms) {
            continue;
        }
        // The quietest extra VIP goes first.
        let quietest = state
            .group_vips(g)
            .filter(|(_, a)| a.extra && a.retiring_ms.is_none())
            .min_by(|x, y| vip_rate(loads, &x.1.owner, *x.0).total_cmp(&vip_rate(loads, &y.1.owner, *y.0)));
        // Its traffic goes to the group's other VIPs: none of their owners may end up over
        // the threshold, or the next scale-out would undo this (a flap).
        let Some((vip, a)) = quietest else { continue };
        let moved = vip_rate(loads, &a.owner, *vip);
        let others: Vec<&str> =
            state.group_vips(g).filter(|(v, x)| *v != vip && x.retiring_ms.is_none()).map(|(_, x)| x.owner.as_str()).collect();
        let share = moved / others.len().max(1) as f32;
        let overloads = p.conn_rate > 0.0
            && others.iter().any(|o| loads.get(*o).map_or(0.0, |l| l.conn_rate()) + share > p.conn_rate);
        if overloads {
            continue;
        }
        let reason = format!("{g} below {}% of the thresholds for {} s", (p.low * 100.0) as u32, p.hold_down_ms / 1000);
        out.push(LbWrite::RetireVip { vip: *vip, reason });
    }
    let mut taken: BTreeSet<String> = BTreeSet::new();
    for (dev, since) in &c.over_since {
        if now < since.saturating_add(p.sustain_ms) || !state.devices.contains_key(dev) {
            continue;
        }
        // After a scale-out, clients move over as their DNS answers expire: the device's
        // load is measured again for `sustain` before another of its groups scales out.
        if recent_scale_out(state, |e| e.from.as_deref() == Some(dev.as_str()), p, now) {
            continue;
        }
        let Some(load) = loads.get(dev) else { continue };
        // The device's groups, busiest VIP first.
        let mut mine: Vec<(f32, &str)> = state
            .vips
            .iter()
            .filter(|(_, a)| &a.owner == dev)
            .map(|(v, a)| (vip_rate(loads, dev, *v), a.group.as_str()))
            .collect();
        mine.sort_by(|x, y| y.0.total_cmp(&x.0));
        for (_, g) in mine {
            if taken.contains(g) || recent_scale_out(state, |e| e.group.as_deref() == Some(g), p, now) {
                continue;
            }
            // A NAT gateway's group has one VIP: its replies come back through one device.
            if state.groups.get(g).is_some_and(|g| g.spec.gateway.is_some()) {
                continue;
            }
            let serving = state.group_vips(g).filter(|(_, a)| a.retiring_ms.is_none()).count() as u32;
            if serving >= p.max_vips {
                continue;
            }
            let holds = |d: &str| state.group_vips(g).any(|(_, a)| a.owner == d);
            let target = state
                .devices
                .values()
                .filter(|d| alive.contains(&d.spec.name) && d.admin == Admin::Active && !d.spec.witness)
                .filter(|d| !holds(&d.spec.name) && !c.over_since.contains_key(&d.spec.name))
                .filter_map(|d| Some((d, scheduler::free_address(state, &d.spec.name)?)))
                .min_by(|(x, _), (y, _)| {
                    let rate = |n: &str| loads.get(n).map_or(0.0, |l| l.conn_rate());
                    rate(&x.spec.name).total_cmp(&rate(&y.spec.name)).then(x.spec.name.cmp(&y.spec.name))
                });
            let Some((to, vip)) = target else { continue };
            let reason = format!(
                "{dev} overloaded for {} s ({:.0} new conn/s, CPU {:.0}%)",
                p.sustain_ms / 1000,
                load.conn_rate(),
                load.cpu_pct
            );
            let (group, owner, from) = (g.to_string(), to.spec.name.clone(), dev.clone());
            out.push(LbWrite::AddVip { group, vip, owner, from, reason });
            taken.insert(g.to_string());
            break;
        }
    }
    out
}

/// Retired VIPs whose drain is over: removed whether or not scaling is on (a leader with
/// scaling off must not leave them held).
pub fn removals(state: &LbState, p: &Policy, now: u64) -> Vec<LbWrite> {
    state
        .vips
        .iter()
        .filter(|(_, a)| a.retiring_ms.is_some_and(|t| now >= t.saturating_add(p.drain_ms)))
        .map(|(vip, _)| LbWrite::RemoveVip { vip: *vip })
        .collect()
}

/// A scale-out event that `which` picks within the last `sustain` (its decided time).
fn recent_scale_out(state: &LbState, which: impl Fn(&Event) -> bool, p: &Policy, now: u64) -> bool {
    state.events.iter().rev().any(|e| {
        e.kind == EventKind::ScaledOut
            && which(e)
            && e.phases.get("decided").is_some_and(|t| now < t.saturating_add(p.sustain_ms))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        gossip::load::VipRate,
        state::lb::{Backend, DeviceSpec, GroupSpec, Listener, Mode, Protocol, VipRange},
    };

    fn state() -> LbState {
        let mut s = LbState::default();
        for (i, (name, first, last)) in
            [("lb1", "14.14.1.100", "14.14.1.199"), ("lb2", "14.14.1.200", "14.14.1.253"), ("lb3", "14.14.2.1", "14.14.2.9")]
                .iter()
                .enumerate()
        {
            let spec = DeviceSpec {
                name: (*name).into(),
                ranges: vec![VipRange { first: first.parse().unwrap(), last: last.parse().unwrap() }],
                capacity: 100,
                ..Default::default()
            };
            s.apply(i as u64 + 1, 0, &LbWrite::PutDevice(spec));
        }
        for (i, name) in ["hot", "calm"].iter().enumerate() {
            let spec = GroupSpec {
                account: "acco".into(),
                name: (*name).into(),
                listeners: vec![Listener {
                    port: 80,
                    protocol: Protocol::Tcp,
                    mode: Mode::Http,
                    balance: None,
                    cookie: None,
                    check: None,
                    maxconn: None,
                    certs: vec![],
                }],
                backends: vec![Backend { address: "172.16.0.1".parse().unwrap(), port: 0, weight: 1, backup: false }],
                vip_count: 1,
                gateway: None,
            };
            let vip = format!("14.14.1.10{i}").parse().unwrap();
            s.apply(10 + i as u64, 0, &LbWrite::CreateGroup { spec, placement: vec![(vip, "lb1".into())] });
        }
        s
    }

    fn policy() -> Policy {
        Policy {
            conn_rate: 100.0,
            cpu_pct: 0.0,
            pps: 0.0,
            low: 0.5,
            sustain_ms: 10_000,
            hold_down_ms: 60_000,
            drain_ms: 20_000,
            max_vips: 2,
        }
    }

    fn loads(lb1: &[(&str, f32)], lb2: f32) -> BTreeMap<String, Load> {
        let vips = |v: &[(&str, f32)]| v.iter().map(|(a, r)| VipRate { vip: a.parse().unwrap(), conn_rate: *r }).collect();
        BTreeMap::from([
            ("lb1".to_string(), Load { vips: vips(lb1), ..Load::default() }),
            ("lb2".to_string(), Load { vips: vips(&[("14.14.1.250", lb2)]), ..Load::default() }),
            ("lb3".to_string(), Load::default()),
        ])
    }

    fn all() -> BTreeSet<String> {
        ["lb1", "lb2", "lb3"].iter().map(|s| s.to_string()).collect()
    }

    fn apply(s: &mut LbState, at: u64, w: &[LbWrite]) {
        for (i, w) in w.iter().enumerate() {
            assert!(matches!(s.apply(100 + at + i as u64, at, w), crate::state::lb::LbResult::Ok { .. }), "{w:?}");
        }
    }

    #[test]
    fn an_overloaded_device_gives_its_busiest_group_a_vip_elsewhere_then_it_goes() {
        let mut s = state();
        let p = policy();
        let mut c = Clocks::default();
        let hot = loads(&[("14.14.1.100", 150.0), ("14.14.1.101", 5.0)], 30.0);
        // Over, but not for `sustain` yet: nothing.
        observe(&mut c, &s, &hot, &p, 1_000);
        assert!(decide(&s, &hot, &all(), &c, &p, 5_000).is_empty());
        // Sustained: the busiest group (hot) gets a VIP on the least loaded device (lb3).
        observe(&mut c, &s, &hot, &p, 11_000);
        let w = decide(&s, &hot, &all(), &c, &p, 11_000);
        assert_eq!(w.len(), 1, "{w:?}");
        let LbWrite::AddVip { group, vip, owner, .. } = &w[0] else { panic!("{w:?}") };
        assert_eq!((group.as_str(), vip.to_string().as_str(), owner.as_str()), ("acco/hot", "14.14.2.1", "lb3"));
        apply(&mut s, 11_000, &w);
        // Still over right after (the report is older than the new VIP): the device
        // waits `sustain` before another of its groups scales out.
        assert!(decide(&s, &hot, &all(), &c, &p, 12_000).is_empty());
        // Still over after that: the hot group has max_vips (2); the calm one is next.
        let w = decide(&s, &hot, &all(), &c, &p, 21_000);
        assert!(matches!(&w[..], [LbWrite::AddVip { group, .. }] if group == "acco/calm"), "{w:?}");

        // Load drops: cold for hold_down, then retire (DNS first), then remove after drain.
        let calm = loads(&[("14.14.1.100", 10.0), ("14.14.1.101", 1.0)], 0.0);
        observe(&mut c, &s, &calm, &p, 20_000);
        assert!(c.over_since.is_empty());
        assert!(decide(&s, &calm, &all(), &c, &p, 50_000).is_empty(), "hold-down");
        // Load back above `low` in between resets the hold-down.
        let warm = loads(&[("14.14.1.100", 60.0)], 0.0);
        observe(&mut c, &s, &warm, &p, 60_000);
        observe(&mut c, &s, &calm, &p, 70_000);
        assert!(decide(&s, &calm, &all(), &c, &p, 100_000).is_empty(), "hold-down restarted at 70 s");
        let w = decide(&s, &calm, &all(), &c, &p, 130_000);
        assert!(matches!(&w[..], [LbWrite::RetireVip { vip, .. }] if vip.to_string() == "14.14.2.1"), "{w:?}");
        apply(&mut s, 130_000, &w);
        observe(&mut c, &s, &calm, &p, 131_000);
        assert!(decide(&s, &calm, &all(), &c, &p, 140_000).is_empty(), "draining");
        let w = decide(&s, &calm, &all(), &c, &p, 150_000);
        assert!(matches!(&w[..], [LbWrite::RemoveVip { .. }]), "{w:?}");
        apply(&mut s, 150_000, &w);
        assert_eq!(s.group_vips("acco/hot").count(), 1, "the group's own VIP stays");
    }

    #[test]
    fn no_scale_in_that_would_push_the_remaining_owner_over() {
        let mut s = state();
        let p = policy();
        let w = LbWrite::AddVip {
            group: "acco/hot".into(),
            vip: "14.14.2.1".parse().unwrap(),
            owner: "lb3".into(),
            from: "lb1".into(),
            reason: "test".into(),
        };
        apply(&mut s, 0, &[w]);
        // The group is cold on its own (45 < 50), but lb1 carries 70 more: taking the
        // extra VIP's 45 back would put lb1 at 115, over 100. No retire.
        let l = loads(&[("14.14.1.100", 0.0), ("14.14.1.101", 70.0)], 0.0);
        let mut l = l;
        l.get_mut("lb3").unwrap().vips = vec![VipRate { vip: "14.14.2.1".parse().unwrap(), conn_rate: 45.0 }];
        let mut c = Clocks::default();
        observe(&mut c, &s, &l, &p, 0);
        assert!(c.cold_since.contains_key("acco/hot"));
        assert!(decide(&s, &l, &all(), &c, &p, 1_000_000).is_empty());
        // Scaling off: a retired VIP is still removed once drained.
        let mut s2 = s.clone();
        s2.apply(900, 0, &LbWrite::RetireVip { vip: "14.14.2.1".parse().unwrap(), reason: "x".into() });
        let off = Policy { conn_rate: 0.0, cpu_pct: 0.0, ..p };
        assert!(!off.enabled() && !Policy::default().enabled(), "off unless asked for");
        assert!(matches!(&removals(&s2, &off, 30_000)[..], [LbWrite::RemoveVip { .. }]));
    }

    #[test]
    fn no_target_no_scale_out_and_own_vips_never_retire() {
        let s = state();
        let p = policy();
        let mut c = Clocks::default();
        let hot = loads(&[("14.14.1.100", 500.0)], 0.0);
        observe(&mut c, &s, &hot, &p, 0);
        // Only lb1 alive: nowhere to go.
        let only = ["lb1".to_string()].into();
        assert!(decide(&s, &hot, &only, &c, &p, 20_000).is_empty());
        // Scale-in never touches a group's own VIPs.
        let calm = loads(&[], 0.0);
        let mut c = Clocks::default();
        observe(&mut c, &s, &calm, &p, 0);
        assert!(c.cold_since.is_empty());
        assert!(decide(&s, &calm, &all(), &c, &p, 10_000_000).is_empty());
        let mut s2 = s.clone();
        let r = s2.apply(500, 0, &LbWrite::RetireVip { vip: "14.14.1.100".parse().unwrap(), reason: "x".into() });
        assert!(matches!(r, crate::state::lb::LbResult::Refused(_)), "{r:?}");
    }

    #[test]
    fn xdp_packet_rate_is_a_threshold_too() {
        let p = Policy { conn_rate: 0.0, pps: 50_000.0, ..policy() };
        assert!(p.enabled());
        let load = |pps: u64| Load { xdp_pps: pps, ..Load::default() };
        assert!(p.over(&load(60_000)) && !p.over(&load(40_000)));
        assert!(!Policy { pps: 0.0, conn_rate: 0.0, ..p }.enabled());
    }
}
