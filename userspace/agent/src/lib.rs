//! `ballast agent`: what an LB device runs. Today it runs the device's control plane
//! (gossip, the Raft store on servers, the HTTP API); the reconciler that drives the
//! device's L4 and L7 planes from the replicated state lives here next (issue 15).
use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};
use ballast_control::{api, config::AgentConfig, plane::ControlPlane};
use tokio::net::TcpListener;

/// A started agent: its API port bound, gossip joined, Raft open (servers).
pub struct Agent {
    plane: Arc<ControlPlane>,
    listener: TcpListener,
    http: SocketAddr,
}

impl Agent {
    pub async fn start(cfg: AgentConfig) -> Result<Agent> {
        let http: SocketAddr = cfg.http_addr;
        let listener =
            TcpListener::bind(http).await.with_context(|| format!("binding the HTTP API on {http}"))?;
        let plane = ControlPlane::open(cfg).await?;
        Ok(Agent { plane, listener, http })
    }

    /// Serves until `shutdown` completes, then leaves the gossip cluster and stops Raft.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let Agent { plane, listener, http } = self;
        log::info!(
            "agent {} (id {}) serving the API on {http}, server={}",
            plane.cfg.node_name,
            plane.cfg.node_id,
            plane.cfg.server
        );
        tokio::spawn(plane.clone().join_loop());
        tokio::select! {
            _ = api::serve(plane.clone(), listener) => {}
            _ = shutdown => log::info!("shutting down"),
        }
        plane.gossip.leave().await;
        if let Some(r) = &plane.raft {
            let _ = r.shutdown().await;
        }
        Ok(())
    }
}
