//! ballast's control plane: gossip membership, the replicated store (openraft), its
//! Consul-compatible HTTP API, and the CLI client. Pure logic (`state`: the KV store, ACLs
//! and the commands the Raft log carries; `config`) is apart from I/O (`gossip`, `raft`,
//! `api`, `plane`).
pub mod api;
pub mod b64;
pub mod backend_health;
pub mod client;
pub mod config;
pub mod duration;
pub mod failover;
pub mod files;
pub mod gossip;
pub mod gslb;
pub mod hook_target;
pub mod hooks;
pub mod metrics;
pub mod plane;
pub mod raft;
pub mod scale;
pub mod scheduler;
pub mod sessions;
pub mod state;
pub mod wall;
