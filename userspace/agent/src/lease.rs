//! This device's lease: renewed through the leader (which grants one only after
//! confirming its quorum) every fifth of its duration. The device serves VIPs only while
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

async fn renew(plane: &ControlPlane, timeout: Duration) -> Result<LeaseGrant, String> {
    let leader = plane.leader_rpc().await.ok_or("no leader known")?;
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

/// Keeps the lease renewed until the process ends; each grant goes to `tx`.
pub async fn keep(plane: Arc<ControlPlane>, tx: watch::Sender<Option<Lease>>) {
    let every = Duration::from_millis(plane.cfg.timing.renew_every_ms());
    loop {
        let sent = Instant::now();
        match renew(&plane, every).await {
            Ok(grant) => {
                tx.send_replace(Some(Lease { sent, grant }));
            }
            Err(e) => log::debug!("lease renewal: {e}"),
        }
        tokio::time::sleep_until(sent + every).await;
    }
}
