//! `ballast agent`: what an LB device runs. It runs the device's control plane (gossip,
//! the Raft store on servers, the HTTP API, cluster RPC, the leader's failover loop),
//! keeps the device's lease, and reconciles the device's planes (VIP addresses, XDP maps,
//! L7 listeners) with the replicated LB state.
pub mod addresses;
pub mod announce;
pub mod desired;
pub mod dns;
pub mod health;
pub mod lease;
pub mod reconcile;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use ballast_control::{
    api,
    config::AgentConfig,
    plane::ControlPlane,
    state::lb::{Admin, EventKind},
};
use tokio::{net::TcpListener, sync::watch};

/// A started agent: its API port bound, gossip joined, Raft open (servers), its cluster
/// RPC port bound (servers, and agents with a key).
pub struct Agent {
    plane: Arc<ControlPlane>,
    listener: TcpListener,
    rpc: Option<TcpListener>,
    http: SocketAddr,
}

impl Agent {
    pub async fn start(cfg: AgentConfig) -> Result<Agent> {
        let http: SocketAddr = cfg.http_addr;
        let listener =
            TcpListener::bind(http).await.with_context(|| format!("binding the HTTP API on {http}"))?;
        let plane = ControlPlane::open(cfg).await?;
        let rpc = if plane.serves_rpc() {
            let addr = plane.cfg.rpc_addr;
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding cluster RPC on {addr} (ports.server)"))?;
            Some(l)
        } else {
            None
        };
        Ok(Agent { plane, listener, rpc, http })
    }

    /// Serves until `shutdown` completes: the API, cluster RPC, the leader's failover loop,
    /// the lease, and the reconciler of this device's VIPs. Then hands the VIPs over
    /// (drains itself and waits, bounded, for them to move), withdraws, leaves the gossip
    /// cluster and stops Raft.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Agent { plane, listener, rpc, http } = self;
        log::info!(
            "agent {} (id {}) serving the API on {http}, server={}",
            plane.cfg.node_name,
            plane.cfg.node_id,
            plane.cfg.server
        );
        if let Some(l) = rpc {
            if plane.gossip.has_keys() {
                log::info!("cluster RPC on {} (authenticated by the cluster key)", plane.cfg.rpc_addr);
            } else {
                log::warn!(
                    "cluster RPC on {} WITHOUT authentication (-dev-insecure-rpc): development only",
                    plane.cfg.rpc_addr
                );
            }
            tokio::spawn(api::serve_rpc(plane.clone(), l));
        }
        tokio::spawn(plane.clone().join_loop());
        tokio::spawn(ballast_control::failover::run(plane.clone(), Duration::from_millis(100)));
        tokio::spawn(ballast_control::hooks::run(plane.clone()));
        tokio::spawn(ballast_control::sessions::run(plane.clone(), Duration::from_millis(500)));
        let (lease_tx, lease_rx) = watch::channel(None);
        tokio::spawn(lease::keep(plane.clone(), lease_tx));
        let (state_tx, state_rx) = watch::channel(reconcile::View::default());
        tokio::spawn(reconcile::watch_state(plane.clone(), state_tx));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut reconciler =
            tokio::spawn(reconcile::Reconciler::new(plane.clone()).run(state_rx.clone(), lease_rx, stop_rx));
        tokio::spawn(undrain_after_restart(plane.clone()));
        if let Some(addr) = plane.cfg.dns_addr {
            let responder = Arc::new(dns::Responder::new(plane.clone(), state_rx.clone(), &plane.cfg.domain));
            // Like Consul, an agent whose DNS port is taken still runs (its API and
            // planes matter more); the log says so.
            tokio::spawn(async move {
                if let Err(e) = dns::serve(addr, responder).await {
                    log::warn!("DNS on {addr}: {e}");
                }
            });
        }
        tokio::select! {
            _ = api::serve(plane.clone(), listener) => {}
            _ = shutdown => log::info!("shutting down"),
            // A reconciler that died (a panic) would leave addresses nobody withdraws while
            // the lease goes on being renewed: the agent stops instead (its supervisor
            // starts it again, and the new run withdraws what it may no longer hold).
            r = &mut reconciler => {
                anyhow::bail!("the reconciler stopped: {r:?}");
            }
        }
        hand_over(&plane, state_rx).await;
        let _ = stop_tx.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), reconciler).await;
        plane.gossip.leave().await;
        if let Some(r) = &plane.raft {
            let _ = r.shutdown().await;
        }
        Ok(())
    }
}

/// The marker of a drain this agent asked for itself on a graceful stop.
fn drained_marker(plane: &ControlPlane) -> std::path::PathBuf {
    plane.cfg.data_dir.join("drained-on-stop")
}

async fn set_admin(plane: &ControlPlane, admin: &str) -> Result<(), String> {
    let leader = plane.leader_rpc().await.ok_or("no leader known")?;
    let body = serde_json::json!({ "device": plane.cfg.node_name, "admin": admin });
    let _: serde_json::Value = ballast_control::raft::network::post_json(
        &plane.client,
        &leader,
        "/v1/internal/lb/admin",
        &body,
        Duration::from_secs(5),
        plane.gossip.rpc_token().as_deref(),
    )
    .await?;
    Ok(())
}

/// A graceful stop hands the VIPs over first: the device drains itself, the leader moves
/// its VIPs, and it waits (at most 10 s) until none is left here.
async fn hand_over(plane: &ControlPlane, mut state: watch::Receiver<reconcile::View>) {
    let me = plane.cfg.node_name.clone();
    let owns = |v: &reconcile::View| v.lb.vips.values().any(|a| a.owner == me);
    if !owns(&state.borrow()) {
        return;
    }
    // The leader may be the device that just stopped (or another one stopping): retried
    // across an election, which takes a few heartbeats.
    let mut tries = 0;
    while let Err(e) = set_admin(plane, "draining").await {
        tries += 1;
        if tries == 25 {
            log::warn!("handing the VIPs over: {e}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::fs::write(drained_marker(plane), b"");
    // Done once no VIP is ours and each move away from here has its `released` phase
    // recorded (the new owner waits for it before it takes the VIP).
    let unreleased = |v: &reconcile::View| {
        v.lb.events.iter().any(|e| {
            e.kind == EventKind::VipMoved
                && e.from.as_deref() == Some(me.as_str())
                && !e.phases.contains_key("released")
                && e.vip.is_some_and(|vip| v.lb.vips.get(&vip).is_some_and(|a| Some(a.epoch) == e.epoch))
        })
    };
    // With no other device able to take them (none alive and active), the VIPs stay
    // here until this agent's lease lapses: waiting for a hand-over would only delay
    // the stop.
    let stuck = |v: &reconcile::View| {
        let draining = v.lb.devices.get(&me).is_some_and(|d| d.admin == Admin::Draining);
        let alive = plane.alive_devices();
        draining && owns(v) && !ballast_control::scheduler::moves(&v.lb, &alive).iter().any(|m| m.from == me)
    };
    let moved = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let done = {
                let v = state.borrow_and_update();
                if stuck(&v) {
                    log::warn!("no other device can take this device's VIPs; withdrawing them");
                    return;
                }
                !owns(&v) && !unreleased(&v)
            };
            if done || state.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    match moved {
        Ok(()) => log::info!("VIPs handed over"),
        Err(_) => log::warn!("VIPs not all handed over within 10 s; withdrawing anyway"),
    }
}

/// After a graceful stop drained this device, its return makes it active again.
async fn undrain_after_restart(plane: Arc<ControlPlane>) {
    let marker = drained_marker(&plane);
    if !marker.exists() {
        return;
    }
    for _ in 0..600 {
        if set_admin(&plane, "active").await.is_ok() {
            let _ = std::fs::remove_file(&marker);
            log::info!("active again after a graceful stop");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
