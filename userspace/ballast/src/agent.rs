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
}

pub fn run(a: AgentArgs) -> Result<()> {
    let mut files = a.config_file;
    files.extend(a.config_dir);
    if files.is_empty() {
        bail!("give -config-file FILE or -config-dir DIR");
    }
    let cfg = ballast_control::config::load(&files, a.node.as_deref())?;
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
