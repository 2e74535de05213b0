//! `ballast agent`: what an LB device runs (like `consul agent` for its control plane).
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::lifecycle::{self, Signals};

#[derive(Args)]
pub struct AgentArgs {
    /// A JSON config file (repeatable; later files override earlier keys).
    #[arg(long = "config-file")]
    config_file: Vec<PathBuf>,
    /// A directory whose *.json files are read in name order.
    #[arg(long = "config-dir")]
    config_dir: Vec<PathBuf>,
    /// Node name (overrides node_name).
    #[arg(long)]
    node: Option<String>,
    /// Development only: let a server run without a cluster key (`encrypt`), its cluster
    /// RPC (Raft, join) then open to anyone who reaches the RPC port.
    #[arg(long = "dev-insecure-rpc")]
    dev_insecure_rpc: bool,
}

pub fn run(a: AgentArgs) -> Result<()> {
    let mut files = a.config_file;
    files.extend(a.config_dir);
    if files.is_empty() {
        bail!("give -config-file FILE or -config-dir DIR");
    }
    let mut cfg = ballast_control::config::load(&files, a.node.as_deref())?;
    cfg.insecure_rpc = a.dev_insecure_rpc;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    lifecycle::runtime(workers)?.block_on(async move {
        let signals = Signals::install()?;
        let watches = cfg.watches.clone();
        let api = if cfg.http_addr.ip().is_unspecified() {
            std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), cfg.http_addr.port())
        } else {
            cfg.http_addr
        };
        let agent_token = cfg.acl.as_ref().and_then(|a| a.default_token.clone());
        let agent = ballast_agent::Agent::start(cfg).await?;
        // The config's watches, each in its own loop against this agent's API (Consul's
        // agent runs its `watches` the same way), with the watch's token or the default.
        for w in watches {
            let c = ballast_control::client::ApiClient::new(&api.to_string(), w.token.clone().or(agent_token.clone()));
            tokio::spawn(async move {
                if let Err(e) = crate::api_cli::watch::watch_loop(&c, &w, false).await {
                    log::warn!("watch {:?}: {e:#}", w.what);
                }
            });
        }
        lifecycle::ready("agent");
        agent.run_until(signals.stopped("the agent")).await?;
        lifecycle::stopping();
        Ok(())
    })
}
