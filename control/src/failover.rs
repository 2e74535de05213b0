//! The leader's loop that moves VIPs (runs on every server, acts only while it leads):
//! away from a device gossip declares failed, once that device's lease must have lapsed
//! (so it has withdrawn: never two owners), and away from a draining device at once (it
//! is alive and releases them itself). The scheduler decides where; Raft commits; each
//! move is an event with its `detected`, `decided` and `committed` times.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    plane::ControlPlane,
    scale, scheduler,
    state::{
        lb::{LbResult, LbWrite, Move},
        Command, Outcome,
    },
};

pub(crate) use crate::wall::wall_ms;

/// Checks every `every` until the process ends.
pub async fn run(plane: Arc<ControlPlane>, every: Duration) {
    let Some(raft) = plane.raft.clone() else { return };
    let Some(store) = plane.store.clone() else { return };
    let base = Instant::now();
    let ms = |t: Instant| t.saturating_duration_since(base).as_millis() as u64;
    // When each device was first seen down (wall clock, for the events).
    let mut down_since: HashMap<String, u64> = HashMap::new();
    // Scale-out and scale-in, once a second (loads are reported that often).
    let mut clocks = scale::Clocks::default();
    let mut last_scale = Instant::now();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if !plane.is_leader() {
            down_since.clear();
            clocks = scale::Clocks::default();
            continue;
        }
        // Decisions read the state: not before this leader has applied an entry of its own
        // term (its first, a no-op), so that what it reads (owners, the lease bound) holds
        // everything an earlier leader committed.
        let m = raft.metrics().borrow().clone();
        if m.last_applied.is_none_or(|l| l.leader_id.term != m.current_term) {
            continue;
        }
        if last_scale.elapsed() >= Duration::from_secs(1) {
            last_scale = Instant::now();
            scale_step(&plane, &raft, &store, &mut clocks).await;
        }
        let term = m.current_term;
        let now = Instant::now();
        let (since, grants) = {
            let mut book = plane.leases.lock().unwrap_or_else(|p| p.into_inner());
            book.note_term(term, now);
            (
                book.leader_since.map(ms).unwrap_or(0),
                book.grants.iter().map(|(d, t)| (d.clone(), ms(*t))).collect::<HashMap<_, _>>(),
            )
        };
        let lb = store.read(|a| a.state.lb.clone());
        let timing = plane.lease.bounded(lb.lease_bound_ms);
        if let Some(ms) = scheduler::lease_bound_change(&plane.lease, lb.lease_bound_ms, ms(now).saturating_sub(since))
            .filter(|b| *b < lb.lease_bound_ms)
        {
            let write = LbWrite::LeaseBound { ms };
            if let Err(e) = raft.client_write(Command::Lb { write, at_ms: wall_ms() }).await {
                log::warn!("lowering the lease bound to {ms} ms: {e}");
            }
        }
        let alive = plane.alive_devices();
        down_since.retain(|d, _| !alive.contains(d));
        for d in lb.devices.keys().filter(|d| !alive.contains(*d)) {
            down_since.entry(d.clone()).or_insert_with(wall_ms);
        }
        // Device down and up as events (for webhooks), once each, after the moves of
        // this round so that recording them never delays a failover.
        let health: Vec<LbWrite> = lb
            .devices
            .keys()
            .filter(|d| alive.contains(*d) == lb.devices_down.contains(*d))
            .map(|d| LbWrite::DeviceHealth { name: d.clone(), up: alive.contains(d) })
            .collect();
        // Moves the leases allow now, by the device they leave.
        let mut by_from: BTreeMap<String, Vec<Move>> = BTreeMap::new();
        for m in scheduler::moves(&lb, &alive) {
            let allowed = alive.contains(&m.from)
                || timing.may_reassign(ms(now), grants.get(&m.from).copied(), since);
            if allowed {
                by_from.entry(m.from.clone()).or_default().push(m);
            }
        }
        for (from, moves) in by_from {
            let failed = !alive.contains(&from);
            let reason = if failed { format!("{from} failed") } else { format!("{from} draining") };
            let detected_ms = failed.then(|| down_since.get(&from).copied()).flatten();
            let write = LbWrite::MoveVips { moves: moves.clone(), reason: reason.clone(), detected_ms };
            match raft.client_write(Command::Lb { write, at_ms: wall_ms() }).await {
                Ok(r) => {
                    if let Outcome::Lb(LbResult::Refused(e)) = &r.data {
                        log::warn!("moving {}'s VIPs: {e}", from);
                        continue;
                    }
                    log::info!(
                        "{reason}: {} VIP(s) moved: {:?}",
                        moves.len(),
                        moves.iter().map(|m| (m.vip, &m.to)).collect::<Vec<_>>()
                    );
                    if failed {
                        let reason = format!("its lease lapsed; {} VIP(s) moved", moves.len());
                        let write = LbWrite::LeaseLost { name: from.clone(), reason };
                        let _ = raft.client_write(Command::Lb { write, at_ms: wall_ms() }).await;
                    }
                    // The events of this commit get its time.
                    let committed = wall_ms();
                    let ids: Vec<u64> = store.read(|a| {
                        a.state.lb.events.iter().filter(|e| e.index == r.log_id.index).map(|e| e.id).collect()
                    });
                    for id in ids {
                        let write = LbWrite::Phase { event: id, phase: "committed".into(), at_ms: committed };
                        let _ = raft.client_write(Command::Lb { write, at_ms: committed }).await;
                    }
                }
                Err(e) => log::warn!("moving {from}'s VIPs: {e}"),
            }
        }
        for write in health {
            let _ = raft.client_write(Command::Lb { write, at_ms: wall_ms() }).await;
        }
    }
}

/// One round of decisions on the loads gossip carries (shared backend health, then
/// scale-out and scale-in), committed one by one.
async fn scale_step(
    plane: &ControlPlane,
    raft: &crate::raft::Raft,
    store: &crate::raft::state_machine::StoreView,
    clocks: &mut scale::Clocks,
) {
    let lb = store.read(|a| a.state.lb.clone());
    let alive = plane.alive_devices();
    let loads: BTreeMap<String, crate::gossip::load::Load> = plane
        .gossip
        .alive()
        .filter_map(|m| Some((m.ident.name.clone(), m.load?)))
        .filter(|(name, _)| lb.devices.contains_key(name))
        .collect();
    let now = wall_ms();
    let policy = plane.cfg.scale;
    let mut writes = crate::backend_health::verdicts(&lb, &loads, plane.cfg.down_quorum);
    if policy.enabled() {
        scale::observe(clocks, &lb, &loads, &policy, now);
        writes.extend(scale::decide(&lb, &loads, &alive, clocks, &policy, now));
    } else {
        writes.extend(scale::removals(&lb, &policy, now));
    }
    for write in writes {
        // A group that just retired a VIP starts its hold-down again before the next.
        if let LbWrite::RetireVip { vip, .. } = &write {
            if let Some(a) = lb.vips.get(vip) {
                clocks.cold_since.remove(&a.group);
            }
        }
        let what = format!("{write:?}");
        match raft.client_write(Command::Lb { write, at_ms: wall_ms() }).await {
            Ok(r) => match &r.data {
                Outcome::Lb(LbResult::Refused(e)) => log::warn!("scale: {what}: {e}"),
                _ => log::info!("scale: {what}"),
            },
            Err(e) => log::warn!("scale: {what}: {e}"),
        }
    }
}
