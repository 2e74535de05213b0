//! The replicated store on openraft: type config, on-disk log and state machine, and the
//! HTTP transport between servers (on their cluster RPC port).
pub mod log_store;
pub mod network;
pub mod state_machine;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::state::{Command, Outcome};

pub type NodeId = u64;

/// A server as Raft's membership records it: where its HTTP API answers (requests a
/// follower forwards to the leader) and where its cluster RPC listens (Raft, join).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub api: String,
    pub rpc: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "api {} rpc {}", self.api, self.rpc)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Raft timing for a LAN (by default a leader is suspected after 0.6-1.2 s without
/// heartbeats; the agent's `raft` block changes it).
pub fn lan_config(snapshot_every: u64, t: &crate::config::Timing) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: "ballast".into(),
        heartbeat_interval: t.raft_heartbeat_ms,
        election_timeout_min: t.raft_election_min_ms,
        election_timeout_max: t.raft_election_max_ms(),
        install_snapshot_timeout: 2000,
        // Entries carry values of up to 512 KiB (base64 in JSON): 32 per request keeps a
        // batch well inside the peer's 64 MiB body limit.
        max_payload_entries: 32,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: 100,
        purge_batch_size: 64,
        ..Default::default()
    }
    .validate()
}
