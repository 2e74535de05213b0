//! Shared backend health: each device checks the L4 backends of the VIPs it serves and
//! gossips the results; a backend is down for every device when most of the devices that
//! check it (more than half) see it fail, or, with `lb.backend_down_quorum = K`, when K of
//! them do (all of them when fewer than K check it), and up again when fewer do. The leader
//! commits each verdict through Raft, so every device's maps and DNS follow the same one
//! (Consul's idea of combining checks into one status, with the devices as voters). A
//! device's own failing check still drops the backend from its own maps at once.
use std::collections::BTreeMap;

use crate::{
    gossip::load::Load,
    state::lb::{CheckKey, LbState, LbWrite},
};

/// How many of the M devices checking a backend must see it fail for it to be down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DownQuorum {
    /// More than half of them.
    #[default]
    Majority,
    /// K of them (or all, when fewer than K check it).
    AtLeast(u32),
}

impl DownQuorum {
    fn down(self, failing: u32, checking: u32) -> bool {
        match self {
            DownQuorum::Majority => failing * 2 > checking,
            DownQuorum::AtLeast(k) => failing >= k.min(checking).max(1),
        }
    }
}

/// The verdicts that differ from the state's, from the devices' reports.
pub fn verdicts(state: &LbState, loads: &BTreeMap<String, Load>, quorum: DownQuorum) -> Vec<LbWrite> {
    // Backend → (devices checking it, devices seeing it fail).
    // One vote per device and check (a device that ran one check twice counts once, as
    // failing if either failed).
    let mut seen: BTreeMap<CheckKey, (u32, u32)> = BTreeMap::new();
    for l in loads.values() {
        let mut mine: BTreeMap<&CheckKey, bool> = BTreeMap::new();
        for c in &l.checks {
            *mine.entry(&c.backend).or_insert(true) &= c.up;
        }
        for (backend, up) in mine {
            let e = seen.entry(backend.clone()).or_default();
            e.0 += 1;
            e.1 += u32::from(!up);
        }
    }
    let mut out = Vec::new();
    for (backend, (m, d)) in &seen {
        let down = quorum.down(*d, *m);
        if down != state.backends_down.contains(backend) {
            let seen = format!("{d} of {m} device(s) checking it see it fail");
            out.push(LbWrite::BackendHealth { backend: backend.clone(), down, seen });
        }
    }
    for backend in state.backends_down.iter().filter(|b| !seen.contains_key(*b)) {
        let seen = "no device checks it now".to_string();
        out.push(LbWrite::BackendHealth { backend: backend.clone(), down: false, seen });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::load::CheckResult;

    fn loads(reports: &[(&str, &[(&str, bool)])]) -> BTreeMap<String, Load> {
        reports
            .iter()
            .map(|(d, checks)| {
                let checks = checks
                    .iter()
                    .map(|(b, up)| CheckResult { backend: CheckKey { addr: b.parse().unwrap(), path: None }, up: *up })
                    .collect();
                (d.to_string(), Load { checks, ..Load::default() })
            })
            .collect()
    }

    fn kinds(w: &[LbWrite]) -> Vec<(String, bool)> {
        w.iter()
            .map(|w| match w {
                LbWrite::BackendHealth { backend, down, .. } => (backend.to_string(), *down),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn most_of_the_devices_that_check_a_backend_decide() {
        let mut s = LbState::default();
        let a = "10.10.0.21:80";
        // One device checks it and sees it fail: down.
        let w = verdicts(&s, &loads(&[("lb1", &[(a, false)]), ("lb2", &[])]), DownQuorum::Majority);
        assert_eq!(kinds(&w), [(a.to_string(), true)]);
        // Two check it, one sees it fail: not a majority.
        assert!(verdicts(&s, &loads(&[("lb1", &[(a, false)]), ("lb2", &[(a, true)])]), DownQuorum::Majority).is_empty());
        // Three, two fail: down; applied, the same reports change nothing.
        let three = loads(&[("lb1", &[(a, false)]), ("lb2", &[(a, false)]), ("lb3", &[(a, true)])]);
        let w = verdicts(&s, &three, DownQuorum::Majority);
        assert_eq!(kinds(&w), [(a.to_string(), true)]);
        s.apply(1, 0, &w[0]);
        assert!(s.backends_down.contains(&CheckKey { addr: a.parse().unwrap(), path: None }));
        assert!(verdicts(&s, &three, DownQuorum::Majority).is_empty());
        // Most pass again: up. Nobody checks it any more: up.
        let w = verdicts(&s, &loads(&[("lb1", &[(a, true)]), ("lb2", &[(a, true)]), ("lb3", &[(a, false)])]), DownQuorum::Majority);
        assert_eq!(kinds(&w), [(a.to_string(), false)]);
        assert_eq!(kinds(&verdicts(&s, &loads(&[("lb1", &[])]), DownQuorum::Majority)), [(a.to_string(), false)]);
    }

    #[test]
    fn k_of_m_devices_when_configured() {
        let s = LbState::default();
        let a = "10.10.0.21:80";
        let three = |fails: usize| {
            let r: Vec<(&str, bool)> = (0..3).map(|i| (a, i >= fails)).collect();
            loads(&[("lb1", &r[0..1]), ("lb2", &r[1..2]), ("lb3", &r[2..3])])
        };
        // K = 1: one device seeing it fail is enough; K = 3: all three must.
        assert_eq!(kinds(&verdicts(&s, &three(1), DownQuorum::AtLeast(1))), [(a.to_string(), true)]);
        assert!(verdicts(&s, &three(2), DownQuorum::AtLeast(3)).is_empty());
        assert_eq!(kinds(&verdicts(&s, &three(3), DownQuorum::AtLeast(3))), [(a.to_string(), true)]);
        // Fewer devices check it than K: all of them must see it fail.
        let one = loads(&[("lb1", &[(a, false)])]);
        assert_eq!(kinds(&verdicts(&s, &one, DownQuorum::AtLeast(2))), [(a.to_string(), true)]);
    }
}
