//! The leader's decisions about VIPs, as pure functions of the LB state and of which
//! devices gossip says are alive: where a new group's VIPs go, where a failed or
//! draining device's VIPs move, and when a lease must have lapsed so a move is safe.
//!
//! Placement spreads a group's VIPs over distinct devices, least loaded first (VIPs held
//! per unit of capacity), each VIP the lowest free address of its device's ranges. A
//! move keeps the address and makes a new epoch. Nothing pulls VIPs back to a device that
//! recovers: moves happen only away from a failed or draining device (no failback storms).
use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use crate::state::lb::{Admin, GroupSpec, LbError, LbState, Move};

fn err(field: &str, msg: impl Into<String>) -> LbError {
    LbError { field: field.into(), msg: msg.into() }
}

/// VIPs held per unit of capacity, by device.
fn loads(state: &LbState) -> BTreeMap<&str, f64> {
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    for a in state.vips.values() {
        *held.entry(a.owner.as_str()).or_default() += 1;
    }
    state
        .devices
        .values()
        .map(|d| {
            (
                d.spec.name.as_str(),
                *held.get(d.spec.name.as_str()).unwrap_or(&0) as f64 / d.spec.capacity as f64,
            )
        })
        .collect()
}

/// Devices that may take a VIP now: alive, active, not witnesses; least loaded first.
fn candidates<'a>(state: &'a LbState, alive: &BTreeSet<String>) -> Vec<&'a str> {
    let load = loads(state);
    let mut v: Vec<&str> = state
        .devices
        .values()
        .filter(|d| alive.contains(&d.spec.name) && d.admin == Admin::Active && !d.spec.witness)
        .map(|d| d.spec.name.as_str())
        .collect();
    v.sort_by(|a, b| load[a].total_cmp(&load[b]).then(a.cmp(b)));
    v
}

/// The lowest free address of a device's ranges.
pub fn free_address(state: &LbState, device: &str) -> Option<IpAddr> {
    let d = state.devices.get(device)?;
    d.spec.ranges.iter().flat_map(|r| r.addresses()).find(|a| !state.vips.contains_key(a))
}

/// Where a new group's VIPs go: `explicit` addresses (each served by the device whose
/// range holds it), else `spec.vip_count` addresses on as many distinct devices.
pub fn place(
    state: &LbState,
    spec: &GroupSpec,
    alive: &BTreeSet<String>,
    explicit: &[IpAddr],
) -> Result<Vec<(IpAddr, String)>, LbError> {
    let usable = candidates(state, alive);
    if !explicit.is_empty() {
        if explicit.len() != spec.vip_count as usize {
            return Err(err(
                "vips",
                format!("{} VIPs given, vip_count is {}", explicit.len(), spec.vip_count),
            ));
        }
        let mut out: Vec<(IpAddr, String)> = Vec::new();
        for (i, vip) in explicit.iter().enumerate() {
            let f = format!("vips[{i}]");
            if state.vips.contains_key(vip) {
                return Err(err(&f, format!("{vip} is taken")));
            }
            let owner =
                state.range_owner(*vip).ok_or_else(|| err(&f, format!("{vip} is in no device's range")))?;
            let name = owner.spec.name.clone();
            if !usable.contains(&name.as_str()) {
                return Err(err(&f, format!("{name}, whose range holds {vip}, cannot take a VIP now (down, draining or a witness)")));
            }
            out.push((*vip, name));
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    for d in &usable {
        if out.len() == spec.vip_count as usize {
            break;
        }
        if let Some(a) = free_address(state, d) {
            out.push((a, d.to_string()));
        }
    }
    if out.len() < spec.vip_count as usize {
        return Err(err(
            "vip_count",
            format!(
                "{} VIPs on distinct devices asked, {} devices can give one now",
                spec.vip_count,
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// Moves for the VIPs of devices that must give them up: failed ones (not in `alive`) and
/// draining ones. Each goes to the least loaded device that can take it, preferring one
/// that holds none of the group's VIPs yet; a VIP nobody can take stays where it is.
pub fn moves(state: &LbState, alive: &BTreeSet<String>) -> Vec<Move> {
    let mut out = Vec::new();
    // The state as it will be after the moves decided so far, so loads and spreading add up.
    let mut after = state.clone();
    for (vip, a) in &state.vips {
        let owner_ok = after
            .devices
            .get(&a.owner)
            .is_some_and(|d| alive.contains(&a.owner) && d.admin == Admin::Active && !d.spec.witness);
        if owner_ok {
            continue;
        }
        let holds_group = |d: &str| after.vips.values().any(|x| x.group == a.group && x.owner == d);
        let usable = candidates(&after, alive);
        let Some(to) = usable.iter().find(|d| !holds_group(d)).or(usable.first()).map(|d| d.to_string())
        else {
            continue;
        };
        out.push(Move { vip: *vip, from: a.owner.clone(), to: to.clone(), epoch: a.epoch });
        if let Some(x) = after.vips.get_mut(vip) {
            x.owner = to;
        }
    }
    out
}

/// Lease timing. A device serves its VIPs only while its lease holds: for `duration`
/// from the moment it *sent* the renewal the leader granted (its own monotonic clock).
/// The leader moves a device's VIPs only once `duration * (1 + margin) + slack` has
/// passed since the last grant it made to that device (its own monotonic clock), or,
/// when it has no record (it became leader since), since it became leader.
///
/// Why that is safe: the device's lease starts before the grant (it counts from its
/// send), and a new leader is elected only after the old one last confirmed its quorum
/// (a voter acks the old term before voting in the new one), so every lease ever granted
/// started before the moment the leader counts from. With clock rates that differ by at
/// most a factor (1 + ρ), the device's lease ends at most `duration * (1 + ρ)` after its
/// start in real time, and the leader's wait lasts at least `duration * (1 + margin) /
/// (1 + ρ)`; `margin >= (1 + ρ)^2 - 1` makes the wait the longer. Crystal oscillators
/// differ by well under 0.01%; the default margin of 5% covers ρ up to 2.4%, and the
/// slack covers the time a device takes to notice its lease lapsed and withdraw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseTiming {
    pub duration_ms: u64,
    pub margin: f64,
    pub slack_ms: u64,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming { duration_ms: 1000, margin: 0.05, slack_ms: 50 }
    }
}

impl LeaseTiming {
    /// How long after the last grant (or after becoming leader) the leader waits.
    pub fn reassign_after_ms(&self) -> u64 {
        (self.duration_ms as f64 * (1.0 + self.margin)).ceil() as u64 + self.slack_ms
    }

    /// Whether the leader may move a device's VIPs at `now_ms` (its monotonic clock):
    /// `last_grant_ms` is when it last granted that device a lease, `leader_since_ms` when
    /// it became leader.
    pub fn may_reassign(&self, now_ms: u64, last_grant_ms: Option<u64>, leader_since_ms: u64) -> bool {
        let from = last_grant_ms.unwrap_or(0).max(leader_since_ms);
        now_ms >= from + self.reassign_after_ms()
    }

    /// Whether a device's lease holds at `now_ms` (its monotonic clock), the renewal the
    /// leader granted having been sent at `sent_ms`.
    pub fn holds(&self, now_ms: u64, sent_ms: Option<u64>) -> bool {
        sent_ms.is_some_and(|s| now_ms < s + self.duration_ms)
    }
}

impl LeaseTiming {
    /// This timing with the replicated bound (`LbState::lease_bound_ms`) taken into
    /// account: waits count with the longer of this server's lease and the bound.
    pub fn bounded(&self, bound_ms: u64) -> LeaseTiming {
        LeaseTiming { duration_ms: self.duration_ms.max(bound_ms), ..*self }
    }
}

/// The new value of the replicated lease bound, if it must change. `lb.lease` is each
/// server's own setting, so a new leader may grant shorter leases than its predecessor
/// did; it still must wait out the predecessor's before moving VIPs. So the bound must
/// stay at least every lease any leader may still have granted:
/// - raised to `own` before this leader grants (`bound < own`);
/// - lowered to `own` once this leader has led (`led_for_ms`, its monotonic clock) for a
///   whole wait of the bound: every earlier term's grant has lapsed by then (none was
///   longer than the bound), and this term's are `own`.
pub fn lease_bound_change(own: &LeaseTiming, bound_ms: u64, led_for_ms: u64) -> Option<u64> {
    if bound_ms < own.duration_ms {
        return Some(own.duration_ms);
    }
    (bound_ms > own.duration_ms && led_for_ms >= own.bounded(bound_ms).reassign_after_ms()).then_some(own.duration_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::lb::{Backend, DeviceSpec, LbResult, LbWrite, Listener, Mode, Protocol, VipRange};

    fn range(a: &str, b: &str) -> VipRange {
        VipRange { first: a.parse().unwrap(), last: b.parse().unwrap() }
    }

    fn group(name: &str, vips: u32) -> GroupSpec {
        GroupSpec {
            account: "acco01".into(),
            name: name.into(),
            listeners: vec![Listener {
                port: 80,
                protocol: Protocol::Tcp,
                mode: Mode::Tunnel,
                balance: None,
                cookie: None,
                check: None,
                maxconn: None,
                certs: vec![],
            }],
            backends: vec![Backend {
                address: "172.16.0.1".parse().unwrap(),
                port: 0,
                weight: 1,
                backup: false,
            }],
            vip_count: vips,
            gateway: None,
        }
    }

    /// Seed 004's two devices plus a witness.
    fn state() -> LbState {
        let mut s = LbState::default();
        let dev = |name: &str, ranges, witness| DeviceSpec {
            name: name.into(),
            ranges,
            capacity: 100,
            witness,
            ..Default::default()
        };
        s.apply(1, 0, &LbWrite::PutDevice(dev("lb01", vec![range("14.14.1.100", "14.14.1.199")], false)));
        s.apply(2, 0, &LbWrite::PutDevice(dev("lb02", vec![range("14.14.1.200", "14.14.1.253")], false)));
        s.apply(3, 0, &LbWrite::PutDevice(dev("witness", vec![], true)));
        s
    }

    fn alive(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn create(s: &mut LbState, name: &str, vips: u32, up: &[&str], index: u64) -> Vec<(IpAddr, String)> {
        let g = group(name, vips);
        let p = place(s, &g, &alive(up), &[]).unwrap();
        assert_eq!(
            s.apply(index, 0, &LbWrite::CreateGroup { spec: g, placement: p.clone() }),
            LbResult::Ok { index }
        );
        p
    }

    #[test]
    fn placement_spreads_over_the_least_loaded_devices() {
        let mut s = state();
        let all = ["lb01", "lb02", "witness"];
        let p1 = create(&mut s, "a", 1, &all, 4);
        assert_eq!(p1, [("14.14.1.100".parse().unwrap(), "lb01".to_string())]);
        let p2 = create(&mut s, "b", 1, &all, 5);
        assert_eq!(p2, [("14.14.1.200".parse().unwrap(), "lb02".to_string())], "lb02 holds fewer");
        // Two VIPs on two devices; the lowest free address of each range.
        let p3 = create(&mut s, "c", 2, &all, 6);
        assert_eq!(p3.iter().map(|(_, d)| d.as_str()).collect::<BTreeSet<_>>(), ["lb01", "lb02"].into());
        assert!(p3.contains(&("14.14.1.101".parse().unwrap(), "lb01".to_string())));
        // Three VIPs cannot go on two devices; a witness never takes one.
        let e = place(&s, &group("d", 3), &alive(&all), &[]).unwrap_err();
        assert_eq!(e.field, "vip_count");
        // Down devices take none.
        let p = place(&s, &group("d", 1), &alive(&["lb02"]), &[]).unwrap();
        assert_eq!(p[0].1, "lb02");
        // An explicit VIP goes to the device whose range holds it.
        let p = place(&s, &group("d", 1), &alive(&all), &["14.14.1.250".parse().unwrap()]).unwrap();
        assert_eq!(p[0].1, "lb02");
        assert_eq!(
            place(&s, &group("d", 1), &alive(&all), &["14.14.1.100".parse().unwrap()]).unwrap_err().field,
            "vips[0]"
        );
        assert_eq!(
            place(&s, &group("d", 1), &alive(&["lb01"]), &["14.14.1.250".parse().unwrap()])
                .unwrap_err()
                .field,
            "vips[0]"
        );
    }

    #[test]
    fn failed_and_draining_devices_lose_their_vips_and_none_come_back() {
        let mut s = state();
        let all = ["lb01", "lb02", "witness"];
        create(&mut s, "a", 1, &all, 4); // lb01
        create(&mut s, "b", 1, &all, 5); // lb02
        create(&mut s, "c", 2, &all, 6); // both
                                         // lb01 fails: its two VIPs go to lb02, same addresses, next epoch.
        let up = ["lb02", "witness"];
        let m = moves(&s, &alive(&up));
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|m| m.from == "lb01" && m.to == "lb02" && m.epoch == 1));
        assert_eq!(
            s.apply(7, 0, &LbWrite::MoveVips { moves: m, reason: "lb01 failed".into(), detected_ms: None }),
            LbResult::Ok { index: 7 }
        );
        assert!(s.vips.values().all(|a| a.owner == "lb02"));
        // lb01 recovers: nothing moves back.
        assert!(moves(&s, &alive(&all)).is_empty());
        // Nobody to take them: nothing moves.
        assert!(moves(&s, &alive(&["witness"])).is_empty());
        // Draining lb02 moves everything to lb01.
        s.apply(8, 0, &LbWrite::SetAdmin { name: "lb02".into(), admin: Admin::Draining });
        let m = moves(&s, &alive(&all));
        assert_eq!(m.len(), 4);
        assert!(m.iter().all(|m| m.to == "lb01" && m.epoch == s.vips[&m.vip].epoch));
    }

    #[test]
    fn moves_prefer_a_device_without_the_group() {
        let mut s = state();
        let dev = DeviceSpec {
            name: "lb03".into(),
            ranges: vec![range("14.14.2.1", "14.14.2.9")],
            capacity: 100,
            ..Default::default()
        };
        s.apply(4, 0, &LbWrite::PutDevice(dev));
        let all = ["lb01", "lb02", "lb03"];
        create(&mut s, "c", 2, &all, 5); // lb01 and lb02 (alphabetical on a tie)
        create(&mut s, "x", 1, &all, 6); // lb03
        create(&mut s, "y", 1, &all, 7); // lb01 (least loaded tie: lb01 < lb02)... whichever
        let owner_of_c: Vec<String> = s.group_vips("acco01/c").map(|(_, a)| a.owner.clone()).collect();
        let failed = owner_of_c[0].clone();
        let up: Vec<&str> = all.iter().copied().filter(|d| *d != failed).collect();
        let m = moves(&s, &alive(&up));
        let c_move = m.iter().find(|m| s.vips[&m.vip].group == "acco01/c").unwrap();
        assert_ne!(c_move.to, owner_of_c[1], "the group's other VIP stays on another device");
    }

    #[test]
    fn lease_arithmetic() {
        let t = LeaseTiming { duration_ms: 1000, margin: 0.05, slack_ms: 50 };
        assert_eq!(t.reassign_after_ms(), 1100);
        assert!(!t.may_reassign(10_000, Some(9_000), 0));
        assert!(t.may_reassign(10_100, Some(9_000), 0));
        // A new leader knows no grants: it counts from its election.
        assert!(!t.may_reassign(10_000, None, 9_500));
        assert!(t.may_reassign(10_600, None, 9_500));
        // A bound longer than this server's lease lengthens its waits, a shorter one not.
        assert_eq!(t.bounded(2000).reassign_after_ms(), 2150);
        assert_eq!(t.bounded(500), t);
        // The bound: raised before granting, lowered only after a whole wait of it.
        assert_eq!(lease_bound_change(&t, 0, 0), Some(1000));
        assert_eq!(lease_bound_change(&t, 700, 50_000), Some(1000));
        assert_eq!(lease_bound_change(&t, 1000, 50_000), None);
        assert_eq!(lease_bound_change(&t, 2000, 2149), None);
        assert_eq!(lease_bound_change(&t, 2000, 2150), Some(1000));
        let mut s = LbState::default();
        assert!(matches!(s.apply(1, 0, &LbWrite::LeaseBound { ms: 0 }), LbResult::Refused(e) if e.field == "ms"));
        s.apply(2, 0, &LbWrite::LeaseBound { ms: 2000 });
        assert_eq!(s.lease_bound_ms, 2000);
        // A lease names the newest ownership change; other writes do not move it.
        let mut s = state();
        create(&mut s, "web", 1, &["lb01", "lb02"], 10);
        let owned = s.ownership_index();
        assert_eq!(owned, 10);
        s.apply(11, 0, &LbWrite::LeaseBound { ms: 3000 });
        assert_eq!((s.ownership_index(), s.modify_index), (10, 11));
        // A removal leaves no assignment, but counts: a device that has not seen a group
        // deleted must not use a lease granted after it.
        s.apply(12, 0, &LbWrite::DeleteGroup { id: "acco01/web".into() });
        assert_eq!(s.ownership_index(), 12);
        assert!(t.holds(1_999, Some(1_000)) && !t.holds(2_000, Some(1_000)) && !t.holds(5, None));
        // The margin covers clocks whose rates differ by up to 2.4%: (1 + ρ)^2 <= 1 + margin.
        let rho: f64 = 0.024;
        assert!((1.0 + rho).powi(2) <= 1.0 + t.margin);
    }
}
