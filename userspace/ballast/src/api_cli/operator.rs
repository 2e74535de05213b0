//! `ballast operator raft list-peers`, like `consul operator`.
use anyhow::{Context as _, Result};
use ballast_control::client::ApiClient;
use bytes::Bytes;
use clap::Subcommand;
use hyper::Method;

use super::{expect_ok, runtime, ApiArgs};

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Raft operations.
    Raft {
        #[command(subcommand)]
        command: RaftCommand,
    },
}

#[derive(Subcommand)]
pub enum RaftCommand {
    /// The Raft servers, their addresses, who leads and who votes.
    ListPeers {
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub fn run(cmd: OperatorCommand) -> Result<()> {
    let OperatorCommand::Raft { command: RaftCommand::ListPeers { api } } = cmd;
    runtime()?.block_on(async move {
        let c = ApiClient::new(&api.http_addr, api.token);
        let r = c
            .call(Method::GET, "/v1/operator/raft/configuration", Bytes::new())
            .await
            .map_err(anyhow::Error::msg)?;
        expect_ok(&r)?;
        let v: serde_json::Value = serde_json::from_slice(&r.body).context("raft configuration reply")?;
        println!("{:<20} {:<22} {:<24} {:<9} {:<6}", "Node", "ID", "Address", "State", "Voter");
        for s in v["Servers"].as_array().into_iter().flatten() {
            println!(
                "{:<20} {:<22} {:<24} {:<9} {:<6}",
                s["Node"].as_str().unwrap_or("?"),
                s["ID"].as_str().unwrap_or("?"),
                s["Address"].as_str().unwrap_or("?"),
                if s["Leader"].as_bool() == Some(true) { "leader" } else { "follower" },
                s["Voter"].as_bool().unwrap_or(false)
            );
        }
        Ok(())
    })
}
