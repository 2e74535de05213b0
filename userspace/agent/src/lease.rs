//! This device's lease: renewed through the leader (which grants one only after
//! confirming its quorum) every tenth of its duration (a heartbeat after a failure). The device serves VIPs only while
//! it holds one: for `duration` from the moment it *sent* the renewal that was granted,
//! and only once its state has caught up with the leader's at the grant.
use std::{sync::Arc, time::Duration};

use ballast_control::plane::{ControlPlane, LeaseGrant};
use tokio::{sync::watch, time::Instant};

/// A granted lease, as this device counts it.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// When the granted request was sent (this device's monotonic clock).
    pub sent: Instant,
    pub grant: LeaseGrant,
}

impl Lease {
    pub fn until(&self) -> Instant {
        self.sent + Duration::from_millis(self.grant.duration_ms)
    }

    /// Whether it lets the device serve at `now`, its state having applied `applied`.
    pub fn holds(&self, now: Instant, applied: u64) -> bool {
        now < self.until() && applied >= self.grant.commit_index
    }
}

/// The lease to serve under at `now`, the state having applied `applied`: the newest
/// grant once the state has caught up with it, else the previous one while it lasts (a
/// later grant only extends the time the leader counts this device as serving, so the
/// earlier one stays covered).
pub fn usable(previous: Option<Lease>, newest: Option<Lease>, now: Instant, applied: u64) -> Option<Lease> {
    newest
        .filter(|n| n.holds(now, applied))
        .or(previous.filter(|p| p.holds(now, applied)))
}

async fn renew(plane: &ControlPlane, timeout: Duration) -> Result<LeaseGrant, String> {
    let t0 = Instant::now();
    let leader = plane.leader_rpc().await.ok_or("no leader known")?;
    log::debug!("lease renewal: leader {leader} found in {} ms", t0.elapsed().as_millis());
    let body = serde_json::json!({ "device": plane.cfg.node_name });
    ballast_control::raft::network::post_json(
        &plane.client,
        &leader,
        "/v1/internal/lease",
        &body,
        timeout,
        plane.gossip.rpc_token().as_deref(),
    )
    .await
}

/// The kernel's boot id and its boot-time clock (ms): a point in time that another
/// process of the same boot can compare with its own (Rust's `Instant` cannot be saved).
fn boot_clock() -> Option<(String, u64)> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?.trim().to_string();
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return None;
    }
    Some((id, ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000))
}

/// Saves when `lease` ends, for the next run of this agent (see [`predecessor_until`]).
fn record(path: &std::path::Path, lease: &Lease) {
    let Some((boot, now)) = boot_clock() else { return };
    let left = lease.until().saturating_duration_since(Instant::now()).as_millis() as u64;
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, format!("{boot} {}\n", now + left)).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// When the lease of this agent's previous run ends, if it has not yet (same boot, its
/// end still ahead): until then the addresses that run held may stay, since nobody else
/// can have been given its VIPs; after, or without a record, they must go at once.
pub fn predecessor_until(path: &std::path::Path, lease: Duration) -> Option<Instant> {
    let text = std::fs::read_to_string(path).ok()?;
    let (boot, until) = text.trim().split_once(' ')?;
    let until: u64 = until.parse().ok()?;
    let (now_boot, now) = boot_clock()?;
    // A damaged record never stretches the window past one lease.
    let left = Duration::from_millis(until.checked_sub(now)?).min(lease);
    (boot == now_boot && !left.is_zero()).then(|| Instant::now() + left)
}

/// Where the lease's end is kept between runs.
pub fn record_path(plane: &ControlPlane) -> std::path::PathBuf {
    plane.cfg.data_dir.join("lease.until")
}

/// Keeps the lease renewed until the process ends; each grant goes to `tx`.
/// Renewals waiting for an answer at most.
const MAX_IN_FLIGHT: usize = 4;

pub async fn keep(plane: Arc<ControlPlane>, tx: watch::Sender<Option<Lease>>) {
    let every = Duration::from_millis(plane.cfg.timing.renew_every_ms());
    // Until a renewal succeeds, another one starts every heartbeat, even while earlier
    // ones still wait for their answer: one sent to a leader that just died waits for its
    // timeout, and the lease must outlast an election plus one heartbeat from the moment
    // the new leader is known (what the configuration check counts), not plus a timeout.
    let retry = Duration::from_millis(plane.cfg.timing.raft_heartbeat_ms);
    let path = record_path(&plane);
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<(Instant, Result<LeaseGrant, String>)>();
    let mut next = Instant::now();
    let mut newest: Option<Instant> = None;
    // Tries waiting for an answer: bounded (each ends within its timeouts anyway).
    let mut in_flight = 0usize;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next), if in_flight < MAX_IN_FLIGHT => {
                let sent = Instant::now();
                let (p, d) = (plane.clone(), done_tx.clone());
                in_flight += 1;
                tokio::spawn(async move {
                    let r = renew(&p, every).await;
                    let _ = d.send((sent, r));
                });
                next = sent + retry;
            }
            Some((sent, r)) = done.recv() => {
                in_flight -= 1;
                match r {
                    // The lease counts from when its request was sent: the newest one wins.
                    Ok(grant) if newest.is_none_or(|n| sent > n) => {
                        log::debug!(
                            "lease granted: {} ms from a request sent {} ms ago, at index {}",
                            grant.duration_ms,
                            sent.elapsed().as_millis(),
                            grant.commit_index
                        );
                        newest = Some(sent);
                        let lease = Lease { sent, grant };
                        record(&path, &lease);
                        tx.send_replace(Some(lease));
                        next = sent + every;
                    }
                    Ok(_) => {}
                    Err(e) => log::debug!("lease renewal: {e}"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(sent: Instant, commit_index: u64) -> Lease {
        Lease { sent, grant: LeaseGrant { duration_ms: 1000, commit_index } }
    }

    #[test]
    fn a_grant_ahead_of_the_state_keeps_the_previous_lease() {
        let t0 = Instant::now();
        let old = lease(t0, 10);
        let new = lease(t0 + Duration::from_millis(300), 12);
        // The state has applied 11: the new grant is not usable yet, the old one is.
        let u = usable(Some(old), Some(new), t0 + Duration::from_millis(400), 11).unwrap();
        assert_eq!(u.grant.commit_index, 10);
        // Caught up: the new one.
        let u = usable(Some(old), Some(new), t0 + Duration::from_millis(400), 12).unwrap();
        assert_eq!(u.grant.commit_index, 12);
        // The old one lapsed before the state caught up: nothing (fenced).
        assert!(usable(Some(old), Some(new), t0 + Duration::from_millis(1000), 11).is_none());
        // Never a lease the state has not reached, even the first one.
        assert!(usable(None, Some(new), t0 + Duration::from_millis(400), 11).is_none());
    }
}
