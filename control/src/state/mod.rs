//! The replicated state and what the Raft log carries: the state is a pure value (the KV
//! store, the ACL tables), changed only by [`ReplicatedState::apply`] at a log index.
use serde::{Deserialize, Serialize};

pub mod acl;
pub mod kv;
pub mod lb;
pub mod session;

use acl::{AclResult, AclState, AclWrite};
use kv::{Kv, Write, WriteResult};
use lb::{LbResult, LbState, LbWrite};
use session::{SessionResult, SessionWrite, Sessions};

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
    /// A session created or destroyed, with the leader's wall-clock time (the lock delay
    /// of an invalidated session's keys counts from it).
    Session {
        write: SessionWrite,
        at_ms: u64,
    },
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
    Session(SessionResult),
}

/// Everything the cluster agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicatedState {
    pub kv: Kv,
    pub acl: AclState,
    /// Devices, LB groups, VIP assignments and events (absent from older snapshots).
    #[serde(default)]
    pub lb: LbState,
    #[serde(default)]
    pub sessions: Sessions,
}

impl ReplicatedState {
    pub fn apply(&mut self, index: u64, req: &Command) -> Outcome {
        match req {
            Command::Kv(w) => {
                let sessions = &self.sessions;
                Outcome::Kv(self.kv.apply_with(index, w, &|s| sessions.get(s).is_some()))
            }
            Command::Session { write, at_ms } => Outcome::Session(self.apply_session(index, *at_ms, write)),
            Command::Acl(w) => Outcome::Acl(self.acl.apply(index, w)),
            Command::Lb { write, at_ms } => Outcome::Lb(self.lb.apply(index, *at_ms, write)),
            Command::Noop => Outcome::None,
        }
    }

    fn apply_session(&mut self, index: u64, at_ms: u64, w: &SessionWrite) -> SessionResult {
        match w {
            SessionWrite::Create(s) => {
                if let Err(e) = s.validate() {
                    return SessionResult::Refused(e);
                }
                if self.sessions.by_id.contains_key(&s.id) {
                    return SessionResult::Refused(format!("session {} exists", s.id));
                }
                let mut s = s.clone();
                s.create_index = index;
                self.sessions.by_id.insert(s.id.clone(), s);
            }
            SessionWrite::Destroy { id } => {
                let Some(s) = self.sessions.by_id.remove(id) else { return SessionResult::Ok };
                let held = self.kv.invalidate_session(index, id, s.behavior == session::Behavior::Delete);
                self.sessions.delay_keys(&held, at_ms, s.lock_delay_ms);
            }
        }
        self.sessions.index = index;
        SessionResult::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::kv::{TxnOp, Write, WriteResult};
    use super::session::{Behavior, Session, SessionWrite};
    use super::*;

    fn session(id: &str, behavior: Behavior) -> Command {
        Command::Session {
            write: SessionWrite::Create(Session {
                id: id.into(),
                name: String::new(),
                node: "n1".into(),
                lock_delay_ms: 15_000,
                behavior,
                ttl_ms: None,
                node_checks: vec![session::SERF_HEALTH.into()],
                create_index: 0,
            }),
            at_ms: 0,
        }
    }
    fn acquire(key: &str, s: &str) -> Command {
        Command::Kv(Write::Acquire { key: key.into(), value: b"v".to_vec(), flags: 0, session: s.into() })
    }
    fn release(key: &str, s: &str) -> Command {
        Command::Kv(Write::Release { key: key.into(), value: b"r".to_vec(), flags: 0, session: s.into() })
    }
    fn applied(o: Outcome) -> bool {
        match o {
            Outcome::Kv(WriteResult::Applied(b)) => b,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn one_holder_at_a_time_and_the_lock_index_counts_acquisitions() {
        let mut st = ReplicatedState::default();
        st.apply(1, &session("a", Behavior::Release));
        st.apply(2, &session("b", Behavior::Release));
        assert!(applied(st.apply(3, &acquire("lock", "a"))));
        assert!(!applied(st.apply(4, &acquire("lock", "b"))), "held by a");
        assert!(applied(st.apply(5, &acquire("lock", "a"))), "the holder re-acquires");
        assert_eq!(st.kv.get("lock").unwrap().lock_index, 1);
        assert!(!applied(st.apply(6, &release("lock", "b"))), "b does not hold it");
        // A plain write keeps the lock.
        st.apply(7, &Command::Kv(Write::Set { key: "lock".into(), value: b"x".to_vec(), flags: 0, cas: None }));
        assert_eq!(st.kv.get("lock").unwrap().session.as_deref(), Some("a"));
        assert!(applied(st.apply(8, &release("lock", "a"))));
        let e = st.kv.get("lock").unwrap();
        assert_eq!((e.session.as_deref(), e.value.as_slice(), e.modify_index), (None, &b"r"[..], 8));
        assert!(applied(st.apply(9, &acquire("lock", "b"))));
        assert_eq!(st.kv.get("lock").unwrap().lock_index, 2);
        match st.apply(10, &acquire("other", "nope")) {
            Outcome::Kv(WriteResult::Refused(why)) => assert!(why.contains("invalid session")),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn an_invalidated_session_releases_or_deletes_its_keys_with_a_lock_delay() {
        let mut st = ReplicatedState::default();
        st.apply(1, &session("rel", Behavior::Release));
        st.apply(2, &session("del", Behavior::Delete));
        st.apply(3, &acquire("k/rel", "rel"));
        st.apply(4, &acquire("k/del", "del"));
        for (i, id) in [(5, "rel"), (6, "del")] {
            st.apply(i, &Command::Session { write: SessionWrite::Destroy { id: id.into() }, at_ms: 1_000 });
        }
        let e = st.kv.get("k/rel").unwrap();
        assert_eq!((e.session.as_deref(), e.modify_index), (None, 5));
        assert!(st.kv.get("k/del").is_none());
        assert_eq!(st.sessions.delayed_until("k/rel", 1_001), Some(16_000));
        assert_eq!(st.sessions.delayed_until("k/rel", 16_000), None);
        assert!(st.sessions.by_id.is_empty());
        assert_eq!(st.sessions.index, 6);
    }

    #[test]
    fn txn_lock_unlock_and_check_session() {
        let mut st = ReplicatedState::default();
        st.apply(1, &session("a", Behavior::Release));
        let lock = |verb: &str, s: &str| match verb {
            "lock" => TxnOp::Lock { key: "k".into(), value: vec![], flags: 0, session: s.into() },
            "unlock" => TxnOp::Unlock { key: "k".into(), value: vec![], flags: 0, session: s.into() },
            _ => TxnOp::CheckSession { key: "k".into(), session: s.into() },
        };
        let txn = |ops| Command::Kv(Write::Txn(ops));
        assert!(matches!(st.apply(2, &txn(vec![lock("lock", "a"), lock("check", "a")])), Outcome::Kv(WriteResult::Txn(Ok(_)))));
        assert!(matches!(st.apply(3, &txn(vec![lock("check", "b")])), Outcome::Kv(WriteResult::Txn(Err(_)))));
        assert!(matches!(st.apply(4, &txn(vec![lock("lock", "ghost")])), Outcome::Kv(WriteResult::Txn(Err(_)))));
        assert!(matches!(st.apply(5, &txn(vec![lock("unlock", "a")])), Outcome::Kv(WriteResult::Txn(Ok(_)))));
        assert!(st.kv.get("k").unwrap().session.is_none());
    }
}
