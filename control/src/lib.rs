//! ballast's control plane: the replicated store (openraft), its Consul-compatible HTTP
//! API, and the CLI client. Pure logic (`kv`, `fsm`) is apart from I/O (`raft`, `api`,
//! `agent`).
pub mod acl;
pub mod agent;
pub mod api;
pub mod b64;
pub mod client;
pub mod config;
pub mod fsm;
pub mod gossip;
pub mod kv;
pub mod linearizability;
pub mod raft;
