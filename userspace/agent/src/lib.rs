//! `ballast agent`: what an LB device runs. Today it runs the device's control plane
//! (gossip, the Raft store on servers, the HTTP API); the reconciler that drives the
//! device's L4 and L7 planes from the replicated state lives here next (issue 15).
pub mod desired;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};
use ballast_control::{api, config::AgentConfig, plane::ControlPlane};
use tokio::net::TcpListener;

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

    /// Serves until `shutdown` completes, then leaves the gossip cluster and stops Raft.
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
