//! What the Raft log carries and what applying it does: the replicated state is a pure
//! value, changed only by [`State::apply`] at a log index.
use serde::{Deserialize, Serialize};

use crate::{
    acl::{AclResult, AclState, AclWrite},
    kv::{Kv, Write, WriteResult},
};

/// A replicated command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Kv(Write),
    Acl(AclWrite),
    /// Changes nothing; committing one proves this leader's commit index is current
    /// (see `Agent::linearizable`).
    Noop,
}

/// What a command did, returned to the writer once it is committed and applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Blank and membership entries.
    #[default]
    None,
    Kv(WriteResult),
    Acl(AclResult),
}

/// Everything the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub kv: Kv,
    pub acl: AclState,
}

impl State {
    pub fn apply(&mut self, index: u64, req: &Request) -> Response {
        match req {
            Request::Kv(w) => Response::Kv(self.kv.apply(index, w)),
            Request::Acl(w) => Response::Acl(self.acl.apply(index, w)),
            Request::Noop => Response::None,
        }
    }
}
