//! The replicated state and what the Raft log carries: the state is a pure value (the KV
//! store, the ACL tables), changed only by [`ReplicatedState::apply`] at a log index.
use serde::{Deserialize, Serialize};

pub mod acl;
pub mod kv;
pub mod lb;

use acl::{AclResult, AclState, AclWrite};
use kv::{Kv, Write, WriteResult};
use lb::{LbResult, LbState, LbWrite};

/// A replicated command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Kv(Write),
    Acl(AclWrite),
    /// A change to the LB state, with the leader's wall-clock time when it proposed it
    /// (ms since the Unix epoch), for the events' timestamps.
    Lb {
        write: LbWrite,
        at_ms: u64,
    },
    /// Changes nothing; committing one proves this leader's commit index is current
    /// (see `ControlPlane::linearizable`).
    Noop,
}

/// What a command did, returned to the writer once it is committed and applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Blank and membership entries.
    #[default]
    None,
    Kv(WriteResult),
    Acl(AclResult),
    Lb(LbResult),
}

/// Everything the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedState {
    pub kv: Kv,
    pub acl: AclState,
    /// Devices, LB groups, VIP assignments and events (absent from older snapshots).
    #[serde(default)]
    pub lb: LbState,
}

impl ReplicatedState {
    pub fn apply(&mut self, index: u64, req: &Command) -> Outcome {
        match req {
            Command::Kv(w) => Outcome::Kv(self.kv.apply(index, w)),
            Command::Acl(w) => Outcome::Acl(self.acl.apply(index, w)),
            Command::Lb { write, at_ms } => Outcome::Lb(self.lb.apply(index, *at_ms, write)),
            Command::Noop => Outcome::None,
        }
    }
}
