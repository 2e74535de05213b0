//! Helpers for the integration tests and the benches (not used by the daemon): crafted
//! frames with correct checksums, and network namespaces that clean up after themselves.
pub mod fibnet;
pub mod netns;
pub mod packet;

pub use netns::{enter, parse_mac, run, sh, spawn_in, Netns};
