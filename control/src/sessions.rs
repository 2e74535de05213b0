//! The leader's session keeper (runs on every server, acts only while it leads): destroys
//! a session whose TTL lapsed without a renewal (after twice the TTL, as Consul's
//! `SessionTTLMultiplier`) and one whose node gossip declares failed or left (its
//! `serfHealth` check). The destroy releases or deletes the session's keys, which then
//! stay in their lock delay (`state::session`).
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    gossip::Status,
    plane::ControlPlane,
    state::{
        session::{SessionWrite, SERF_HEALTH},
        Command,
    },
};

/// Consul invalidates a session after this many TTLs without a renewal.
const TTL_MULTIPLIER: u32 = 2;

/// Why a session must go, if it must.
pub fn lapsed(
    ttl_ms: Option<u64>,
    node_checks: &[String],
    since_renewal: Duration,
    node: Option<Status>,
) -> Option<&'static str> {
    if ttl_ms.is_some_and(|t| since_renewal > Duration::from_millis(t) * TTL_MULTIPLIER) {
        return Some("TTL expired");
    }
    // Only a node gossip knows as failed or gone counts: a new leader whose gossip has
    // not heard of a node yet must not invalidate its sessions.
    if node_checks.iter().any(|c| c == SERF_HEALTH) && matches!(node, Some(Status::Failed | Status::Left)) {
        return Some("node failed");
    }
    None
}

/// Checks every `every` until the process ends.
pub async fn run(plane: Arc<ControlPlane>, every: Duration) {
    let Some(raft) = plane.raft.clone() else { return };
    let Some(store) = plane.store.clone() else { return };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if !plane.is_leader() {
            plane.session_timers.lock().unwrap_or_else(|p| p.into_inner()).clear();
            continue;
        }
        let sessions: Vec<_> = store.read(|a| a.state.sessions.by_id.values().cloned().collect());
        // A node's status: alive if any incarnation is, else the latest one's.
        let mut nodes: HashMap<String, Status> = HashMap::new();
        for m in plane.gossip.members() {
            let alive = matches!(m.status, Status::Alive | Status::Suspect);
            nodes
                .entry(m.ident.name.clone())
                .and_modify(|s| {
                    if alive {
                        *s = m.status
                    }
                })
                .or_insert(m.status);
        }
        let now = Instant::now();
        let doomed: Vec<(String, &'static str)> = {
            let mut timers = plane.session_timers.lock().unwrap_or_else(|p| p.into_inner());
            timers.retain(|id, _| sessions.iter().any(|s| &s.id == id));
            sessions
                .iter()
                .filter_map(|s| {
                    let since = now.saturating_duration_since(*timers.entry(s.id.clone()).or_insert(now));
                    lapsed(s.ttl_ms, &s.node_checks, since, nodes.get(&s.node).copied()).map(|why| (s.id.clone(), why))
                })
                .collect()
        };
        for (id, why) in doomed {
            log::info!("session {id}: {why}, invalidated");
            let write = SessionWrite::Destroy { id: id.clone() };
            if let Err(e) = raft.client_write(Command::Session { write, at_ms: crate::failover::wall_ms() }).await {
                log::warn!("session {id}: destroy failed: {e}");
                break;
            }
            plane.session_timers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lapses_after_twice_its_ttl_or_when_its_node_fails() {
        let serf = vec![SERF_HEALTH.to_string()];
        let s = Duration::from_secs;
        assert_eq!(lapsed(Some(10_000), &serf, s(19), Some(Status::Alive)), None);
        assert_eq!(lapsed(Some(10_000), &serf, s(21), Some(Status::Alive)), Some("TTL expired"));
        assert_eq!(lapsed(None, &serf, s(1000), Some(Status::Suspect)), None);
        assert_eq!(lapsed(None, &serf, s(0), Some(Status::Failed)), Some("node failed"));
        assert_eq!(lapsed(None, &serf, s(0), Some(Status::Left)), Some("node failed"));
        assert_eq!(lapsed(None, &serf, s(0), None), None, "a node gossip has not heard of yet");
        assert_eq!(lapsed(None, &[], s(0), Some(Status::Failed)), None, "no node check");
    }
}
