//! Consul's sessions as replicated state: a session belongs to a node, may hold KV locks
//! (`?acquire=`), and when it is invalidated (destroyed, its TTL lapsed, its node failed)
//! the keys it held are released or deleted (its `Behavior`) and stay unacquirable for its
//! `LockDelay`. Pure: the leader decides when a TTL lapsed or a node failed and proposes
//! the destroy (the session keeper, `sessions.rs` at the crate root); the wall-clock time of the lock delay comes with
//! the command, so every server applies the same value.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Consul's limits: a TTL between 10 s and 24 h, a lock delay of at most 60 s.
pub const MIN_TTL_MS: u64 = 10_000;
pub const MAX_TTL_MS: u64 = 86_400_000;
pub const MAX_LOCK_DELAY_MS: u64 = 60_000;
/// Consul's default lock delay.
pub const DEFAULT_LOCK_DELAY_MS: u64 = 15_000;
/// The node check every session gets unless told otherwise: the node is alive in gossip.
pub const SERF_HEALTH: &str = "serfHealth";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Behavior {
    /// The held keys are unlocked and kept.
    #[default]
    Release,
    /// The held keys are deleted.
    Delete,
}

impl Behavior {
    pub fn as_str(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub name: String,
    pub node: String,
    pub lock_delay_ms: u64,
    pub behavior: Behavior,
    /// None: no TTL (lives until destroyed or its node fails).
    pub ttl_ms: Option<u64>,
    /// Node checks; `serfHealth` ties the session to its node being alive.
    pub node_checks: Vec<String>,
    pub create_index: u64,
}

impl Session {
    /// The checks a new session gets in before it is stored.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.node.is_empty() {
            return Err("a session needs an ID and a Node".into());
        }
        if let Some(t) = self.ttl_ms {
            if !(MIN_TTL_MS..=MAX_TTL_MS).contains(&t) {
                return Err(format!("Invalid Session TTL '{t}ms', must be between [10s=24h0m0s]"));
            }
        }
        if self.lock_delay_ms > MAX_LOCK_DELAY_MS {
            return Err(format!("Invalid Session LockDelay '{}ms', must be at most 60s", self.lock_delay_ms));
        }
        if let Some(c) = self.node_checks.iter().find(|c| c.as_str() != SERF_HEALTH) {
            return Err(format!("Missing check '{c}' registration (ballast's only node check is serfHealth)"));
        }
        Ok(())
    }
}

/// A replicated session change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionWrite {
    Create(Session),
    /// Destroys (invalidates) a session: its keys are released or deleted.
    Destroy { id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionResult {
    Ok,
    Refused(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sessions {
    pub by_id: BTreeMap<String, Session>,
    /// Keys a session held when it was invalidated, and until when (ms since the epoch,
    /// the invalidating leader's clock) no session may acquire them.
    pub lock_delay: BTreeMap<String, u64>,
    /// The index of the last change, for blocking queries on the session endpoints.
    pub index: u64,
}

impl Sessions {
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.by_id.get(id)
    }

    /// Until when `key` may not be acquired, if it is in a lock delay at `now_ms`.
    pub fn delayed_until(&self, key: &str, now_ms: u64) -> Option<u64> {
        self.lock_delay.get(key).copied().filter(|until| *until > now_ms)
    }

    /// Records the lock delay of the keys an invalidated session held, and forgets
    /// delays that are over.
    pub fn delay_keys(&mut self, keys: &[String], at_ms: u64, delay_ms: u64) {
        self.lock_delay.retain(|_, until| *until > at_ms);
        if delay_ms > 0 {
            for k in keys {
                self.lock_delay.insert(k.clone(), at_ms + delay_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(ttl: Option<u64>, delay: u64) -> Session {
        Session {
            id: "s".into(),
            name: String::new(),
            node: "n".into(),
            lock_delay_ms: delay,
            behavior: Behavior::Release,
            ttl_ms: ttl,
            node_checks: vec![SERF_HEALTH.into()],
            create_index: 0,
        }
    }

    #[test]
    fn limits_are_consuls() {
        assert!(session(None, 15_000).validate().is_ok());
        assert!(session(Some(10_000), 0).validate().is_ok());
        assert!(session(Some(9_999), 0).validate().is_err());
        assert!(session(Some(MAX_TTL_MS + 1), 0).validate().is_err());
        assert!(session(None, 60_001).validate().is_err());
        let mut s = session(None, 0);
        s.node_checks = vec!["service:web".into()];
        assert!(s.validate().unwrap_err().contains("service:web"));
    }

    #[test]
    fn lock_delays_end_and_are_forgotten() {
        let mut s = Sessions::default();
        s.delay_keys(&["a".into()], 1_000, 500);
        assert_eq!(s.delayed_until("a", 1_200), Some(1_500));
        assert_eq!(s.delayed_until("a", 1_500), None);
        s.delay_keys(&["b".into()], 2_000, 0);
        assert!(s.lock_delay.is_empty(), "a's delay is over, b has none: {:?}", s.lock_delay);
    }
}
