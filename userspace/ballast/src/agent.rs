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
        let agent = ballast_agent::Agent::start(cfg).await?;
        lifecycle::ready("agent");
        agent.run_until(signals.stopped("the agent")).await?;
        lifecycle::stopping();
        Ok(())
    })
}
