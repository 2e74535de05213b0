//! Consul's KV semantics as a pure data structure: entries with create/modify indexes and
//! flags, tombstones so that a delete moves the index of its prefix, `cas`, `keys` with a
//! separator, and atomic transactions. Every write carries the Raft log index it is
//! applied at; that index becomes the entry's `ModifyIndex` and the `X-Consul-Index`.
//!
//! No I/O here: the Raft state machine calls [`Kv::apply`] and the HTTP API calls the
//! read methods.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Largest value accepted (Consul's default `kv_max_value_size`).
pub const MAX_VALUE_SIZE: usize = 512 * 1024;
/// Most operations in one transaction (Consul's `txn_max_req_len` default op count).
pub const MAX_TXN_OPS: usize = 128;
/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 4096;

/// One stored key, as Consul's `DirEntry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "crate::b64")]
    pub value: Vec<u8>,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    /// How many times the key was acquired (absent from older logs and snapshots).
    #[serde(default)]
    pub lock_index: u64,
    /// The session holding the key's lock.
    #[serde(default)]
    pub session: Option<String>,
}

/// A write, as it travels through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// `cas`: None = unconditional, Some(0) = only if absent, Some(i) = only if the
    /// entry's `ModifyIndex` is `i`.
    Set {
        key: String,
        #[serde(with = "crate::b64")]
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    },
    Delete {
        key: String,
        recurse: bool,
        cas: Option<u64>,
    },
    Txn(Vec<TxnOp>),
    /// `?acquire=SESSION`: takes the key's lock (and sets the value) if no other session
    /// holds it. Last, so that logs written before them decode the same.
    Acquire {
        key: String,
        #[serde(with = "crate::b64")]
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    /// `?release=SESSION`: gives the lock up (and sets the value) if this session holds it.
    Release {
        key: String,
        #[serde(with = "crate::b64")]
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
}

/// One operation of `/v1/txn` (Consul's KV verbs; sessions and locks are not supported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    Set {
        key: String,
        #[serde(with = "crate::b64")]
        value: Vec<u8>,
        flags: u64,
    },
    Cas {
        key: String,
        #[serde(with = "crate::b64")]
        value: Vec<u8>,
        flags: u64,
        index: u64,
    },
    Get {
        key: String,
    },
    GetTree {
        key: String,
    },
    CheckIndex {
        key: String,
        index: u64,
    },
    CheckNotExists {
        key: String,
    },
    Delete {
        key: String,
    },
    DeleteTree {
        key: String,
    },
    DeleteCas {
        key: String,
        index: u64,
    },
    /// `get-or-empty`: the entry, or an empty one when the key does not exist (never fails).
    /// Last, so that logs written before it decode the same.
    GetOrEmpty {
        key: String,
    },
    /// `lock`, `unlock`: acquire and release inside a transaction.
    Lock {
        key: String,
        #[serde(with = "crate::b64")]
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    Unlock {
        key: String,
        #[serde(with = "crate::b64")]
        value: Vec<u8>,
        flags: u64,
        session: String,
    },
    /// `check-session`: fails unless the key is held by this session.
    CheckSession {
        key: String,
        session: String,
    },
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResult {
    /// `true` unless a `cas` condition failed.
    Applied(bool),
    /// A transaction: the entries its reads and writes return, in op order, or why it
    /// was rolled back. As in Consul, only `get`, `get-or-empty` and `get-tree` return
    /// values; the entries of `set`, `cas` and `check-index` come with the value blanked.
    Txn(Result<Vec<(String, Option<Entry>)>, Vec<TxnError>>),
    /// The write names a session that does not exist.
    Refused(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("key is empty")]
    EmptyKey,
    #[error("key is longer than {MAX_KEY_LEN} bytes")]
    KeyTooLong,
    #[error("value of {0} bytes is over the limit of {MAX_VALUE_SIZE} bytes")]
    ValueTooLarge(usize),
    #[error("transaction has {0} operations, the limit is {MAX_TXN_OPS}")]
    TooManyOps(usize),
    #[error("transaction has no operations")]
    EmptyTxn,
}

impl Write {
    /// Checks a write before it is proposed, so that the log only holds writes that apply.
    pub fn validate(&self) -> Result<(), KvError> {
        fn key(k: &str, allow_empty: bool) -> Result<(), KvError> {
            if k.is_empty() && !allow_empty {
                return Err(KvError::EmptyKey);
            }
            if k.len() > MAX_KEY_LEN {
                return Err(KvError::KeyTooLong);
            }
            Ok(())
        }
        fn value(v: &[u8]) -> Result<(), KvError> {
            if v.len() > MAX_VALUE_SIZE {
                return Err(KvError::ValueTooLarge(v.len()));
            }
            Ok(())
        }
        match self {
            Write::Set { key: k, value: v, .. }
            | Write::Acquire { key: k, value: v, .. }
            | Write::Release { key: k, value: v, .. } => {
                key(k, false)?;
                value(v)
            }
            // Deleting the empty prefix recursively clears the store, as in Consul.
            Write::Delete { key: k, recurse, .. } => key(k, *recurse),
            Write::Txn(ops) => {
                if ops.is_empty() {
                    return Err(KvError::EmptyTxn);
                }
                if ops.len() > MAX_TXN_OPS {
                    return Err(KvError::TooManyOps(ops.len()));
                }
                for op in ops {
                    match op {
                        TxnOp::Set { key: k, value: v, .. }
                        | TxnOp::Cas { key: k, value: v, .. }
                        | TxnOp::Lock { key: k, value: v, .. }
                        | TxnOp::Unlock { key: k, value: v, .. } => {
                            key(k, false)?;
                            value(v)?;
                        }
                        TxnOp::GetTree { key: k } | TxnOp::DeleteTree { key: k } => key(k, true)?,
                        TxnOp::Get { key: k }
                        | TxnOp::GetOrEmpty { key: k }
                        | TxnOp::CheckSession { key: k, .. }
                        | TxnOp::CheckIndex { key: k, .. }
                        | TxnOp::CheckNotExists { key: k }
                        | TxnOp::Delete { key: k }
                        | TxnOp::DeleteCas { key: k, .. } => key(k, false)?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// The store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kv {
    entries: BTreeMap<String, Entry>,
    /// Deleted keys and the index they were deleted at: a delete must raise the index of
    /// every prefix above it, or a blocking query on that prefix would miss it.
    tombstones: BTreeMap<String, u64>,
}

impl Kv {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn list<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        self.entries
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Consul's `?keys&separator=`: keys under `prefix`, each cut after the first
    /// `separator` that follows the prefix, without repeats.
    pub fn keys(&self, prefix: &str, separator: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, _) in self.list(prefix) {
            let cut = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match k[prefix.len()..].find(sep) {
                    Some(i) => &k[..prefix.len() + i + sep.len()],
                    None => k.as_str(),
                },
                None => k.as_str(),
            };
            if out.last().map(String::as_str) != Some(cut) {
                out.push(cut.to_string());
            }
        }
        out
    }

    /// The index a blocking query on `key` (exact) waits on: the entry's `ModifyIndex`,
    /// or the index of its deletion. 0 if the key never existed.
    pub fn key_index(&self, key: &str) -> u64 {
        self.entries.get(key).map(|e| e.modify_index).or(self.tombstones.get(key).copied()).unwrap_or(0)
    }

    /// The index a blocking query on everything under `prefix` waits on.
    pub fn prefix_index(&self, prefix: &str) -> u64 {
        let live = self.list(prefix).map(|(_, e)| e.modify_index).max().unwrap_or(0);
        let dead = self
            .tombstones
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        live.max(dead)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Applies a write at Raft index `index` (strictly above any index applied before),
    /// with no sessions.
    pub fn apply(&mut self, index: u64, w: &Write) -> WriteResult {
        self.apply_with(index, w, &|_| false)
    }

    /// Applies a write; `live` says whether a session exists (for acquire and lock).
    pub fn apply_with(&mut self, index: u64, w: &Write, live: &dyn Fn(&str) -> bool) -> WriteResult {
        match w {
            Write::Acquire { key, value, flags, session } => {
                if !live(session) {
                    return WriteResult::Refused(format!("invalid session {session:?}"));
                }
                WriteResult::Applied(self.acquire(index, key, value, *flags, session))
            }
            Write::Release { key, value, flags, session } => {
                if !live(session) {
                    return WriteResult::Refused(format!("invalid session {session:?}"));
                }
                WriteResult::Applied(self.release(index, key, value, *flags, session))
            }
            Write::Set { key, value, flags, cas } => {
                if let Some(c) = cas {
                    if !self.cas_holds(key, *c) {
                        return WriteResult::Applied(false);
                    }
                }
                self.set(index, key, value, *flags);
                WriteResult::Applied(true)
            }
            Write::Delete { key, recurse, cas } => {
                if let Some(c) = cas {
                    // Consul: a delete-cas on a missing key with index 0 "succeeds".
                    if !self.cas_holds(key, *c) {
                        return WriteResult::Applied(false);
                    }
                }
                if *recurse {
                    self.delete_tree(index, key);
                } else {
                    self.delete(index, key);
                }
                WriteResult::Applied(true)
            }
            Write::Txn(ops) => WriteResult::Txn(self.txn(index, ops, live)),
        }
    }

    fn cas_holds(&self, key: &str, index: u64) -> bool {
        match (self.entries.get(key), index) {
            (None, 0) => true,
            (Some(e), i) => i != 0 && e.modify_index == i,
            (None, _) => false,
        }
    }

    /// A plain write keeps the key's lock as it is, as in Consul.
    fn set(&mut self, index: u64, key: &str, value: &[u8], flags: u64) {
        let old = self.entries.get(key);
        let create_index = old.map(|e| e.create_index).unwrap_or(index);
        let (lock_index, session) = old.map(|e| (e.lock_index, e.session.clone())).unwrap_or_default();
        self.tombstones.remove(key);
        self.entries.insert(
            key.to_string(),
            Entry { value: value.to_vec(), flags, create_index, modify_index: index, lock_index, session },
        );
    }

    /// Consul's kvsLockTxn: false when another session holds the key. The lock index
    /// counts acquisitions; re-acquiring by the holder only updates the value.
    fn acquire(&mut self, index: u64, key: &str, value: &[u8], flags: u64, session: &str) -> bool {
        let old = self.entries.get(key);
        let lock_index = match old {
            Some(e) if e.session.as_deref() == Some(session) => e.lock_index,
            Some(e) if e.session.is_some() => return false,
            Some(e) => e.lock_index + 1,
            None => 1,
        };
        let create_index = old.map(|e| e.create_index).unwrap_or(index);
        self.tombstones.remove(key);
        let session = Some(session.to_string());
        self.entries.insert(
            key.to_string(),
            Entry { value: value.to_vec(), flags, create_index, modify_index: index, lock_index, session },
        );
        true
    }

    /// Consul's kvsUnlockTxn: false unless this session holds the key.
    fn release(&mut self, index: u64, key: &str, value: &[u8], flags: u64, session: &str) -> bool {
        match self.entries.get_mut(key) {
            Some(e) if e.session.as_deref() == Some(session) => {
                *e = Entry { value: value.to_vec(), flags, modify_index: index, session: None, ..e.clone() };
                true
            }
            _ => false,
        }
    }

    /// A session was invalidated: the keys it held are unlocked (`delete`: deleted).
    /// Returns them, for their lock delay.
    pub fn invalidate_session(&mut self, index: u64, session: &str, delete: bool) -> Vec<String> {
        let held: Vec<String> =
            self.entries.iter().filter(|(_, e)| e.session.as_deref() == Some(session)).map(|(k, _)| k.clone()).collect();
        for k in &held {
            if delete {
                self.delete(index, k);
            } else if let Some(e) = self.entries.get_mut(k) {
                e.session = None;
                e.modify_index = index;
            }
        }
        held
    }

    fn delete(&mut self, index: u64, key: &str) {
        if self.entries.remove(key).is_some() {
            self.tombstones.insert(key.to_string(), index);
        }
    }

    fn delete_tree(&mut self, index: u64, prefix: &str) {
        let doomed: Vec<String> = self.list(prefix).map(|(k, _)| k.clone()).collect();
        for k in doomed {
            self.delete(index, &k);
        }
    }

    /// All operations or none: checks run against the state as the earlier operations of
    /// the same transaction left it, and a failure rolls everything back.
    fn txn(
        &mut self,
        index: u64,
        ops: &[TxnOp],
        live: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<(String, Option<Entry>)>, Vec<TxnError>> {
        let mut work = self.clone();
        let mut results = Vec::new();
        let mut errors = Vec::new();
        let blanked = |e: Option<&Entry>| e.map(|e| Entry { value: Vec::new(), ..e.clone() });
        for (i, op) in ops.iter().enumerate() {
            let fail = |what: String| TxnError { op_index: i, what };
            match op {
                TxnOp::Set { key, value, flags } => {
                    work.set(index, key, value, *flags);
                    results.push((key.clone(), blanked(work.entries.get(key))));
                }
                TxnOp::Cas { key, value, flags, index: want } => {
                    if work.cas_holds(key, *want) {
                        work.set(index, key, value, *flags);
                        results.push((key.clone(), blanked(work.entries.get(key))));
                    } else {
                        errors.push(fail(format!(
                            "failed to set key {key:?}, index is stale (want {want}, has {})",
                            work.key_index(key)
                        )));
                    }
                }
                TxnOp::Get { key } => match work.entries.get(key) {
                    Some(e) => results.push((key.clone(), Some(e.clone()))),
                    None => errors.push(fail(format!("key {key:?} doesn't exist"))),
                },
                TxnOp::Lock { key, value, flags, session } => {
                    if !live(session) {
                        errors.push(fail(format!("invalid session {session:?}")));
                    } else if work.acquire(index, key, value, *flags, session) {
                        results.push((key.clone(), blanked(work.entries.get(key))));
                    } else {
                        errors.push(fail(format!("failed to lock key {key:?}, lock is already held")));
                    }
                }
                TxnOp::Unlock { key, value, flags, session } => {
                    if work.release(index, key, value, *flags, session) {
                        results.push((key.clone(), blanked(work.entries.get(key))));
                    } else {
                        errors.push(fail(format!(
                            "failed to unlock key {key:?}, lock isn't held, or is held by another session"
                        )));
                    }
                }
                TxnOp::CheckSession { key, session } => match work.entries.get(key) {
                    Some(e) if e.session.as_deref() == Some(session.as_str()) => {
                        results.push((key.clone(), blanked(Some(e))))
                    }
                    Some(_) => errors.push(fail(format!("failed session check for key {key:?}, lock not held by {session:?}"))),
                    None => errors.push(fail(format!("failed to check session, key {key:?} doesn't exist"))),
                },
                TxnOp::GetOrEmpty { key } => {
                    let empty = Entry {
                        value: Vec::new(),
                        flags: 0,
                        create_index: 0,
                        modify_index: 0,
                        lock_index: 0,
                        session: None,
                    };
                    results.push((key.clone(), Some(work.entries.get(key).cloned().unwrap_or(empty))));
                }
                TxnOp::GetTree { key } => {
                    results.extend(work.list(key).map(|(k, e)| (k.clone(), Some(e.clone()))));
                }
                TxnOp::CheckIndex { key, index: want } => match work.entries.get(key) {
                    Some(e) if e.modify_index == *want => results.push((key.clone(), blanked(Some(e)))),
                    Some(e) => errors.push(fail(format!(
                        "current modify index {} != {want} for key {key:?}",
                        e.modify_index
                    ))),
                    None => errors.push(fail(format!("key {key:?} doesn't exist"))),
                },
                TxnOp::CheckNotExists { key } => {
                    if work.entries.contains_key(key) {
                        errors.push(fail(format!("key {key:?} exists")));
                    }
                }
                TxnOp::Delete { key } => work.delete(index, key),
                TxnOp::DeleteTree { key } => work.delete_tree(index, key),
                TxnOp::DeleteCas { key, index: want } => {
                    if work.cas_holds(key, *want) {
                        work.delete(index, key);
                    } else {
                        errors.push(fail(format!("failed to delete key {key:?}, index is stale")));
                    }
                }
            }
        }
        if errors.is_empty() {
            *self = work;
            Ok(results)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, v: &str) -> Write {
        Write::Set { key: key.into(), value: v.as_bytes().to_vec(), flags: 0, cas: None }
    }

    #[test]
    fn set_get_and_indexes() {
        let mut kv = Kv::default();
        assert_eq!(kv.apply(5, &set("a/b", "1")), WriteResult::Applied(true));
        assert_eq!(kv.apply(6, &set("a/b", "2")), WriteResult::Applied(true));
        let e = kv.get("a/b").unwrap();
        assert_eq!((e.create_index, e.modify_index, e.value.as_slice()), (5, 6, &b"2"[..]));
        assert_eq!(kv.key_index("a/b"), 6);
        assert_eq!(kv.key_index("zz"), 0);
    }

    #[test]
    fn cas_rules() {
        let mut kv = Kv::default();
        let cas = |i, v: &str| Write::Set { key: "k".into(), value: v.into(), flags: 7, cas: Some(i) };
        // 0 = create only.
        assert_eq!(kv.apply(1, &cas(0, "a")), WriteResult::Applied(true));
        assert_eq!(kv.apply(2, &cas(0, "b")), WriteResult::Applied(false));
        assert_eq!(kv.apply(3, &cas(2, "b")), WriteResult::Applied(false));
        assert_eq!(kv.apply(4, &cas(1, "b")), WriteResult::Applied(true));
        assert_eq!(kv.get("k").unwrap().value, b"b");
        assert_eq!(kv.get("k").unwrap().flags, 7);
        let del = |i| Write::Delete { key: "k".into(), recurse: false, cas: Some(i) };
        assert_eq!(kv.apply(5, &del(1)), WriteResult::Applied(false));
        assert_eq!(kv.apply(6, &del(4)), WriteResult::Applied(true));
        assert!(kv.get("k").is_none());
    }

    #[test]
    fn deletes_raise_prefix_index_and_unrelated_writes_do_not() {
        let mut kv = Kv::default();
        kv.apply(1, &set("web/a", "1"));
        kv.apply(2, &set("web/b", "1"));
        kv.apply(3, &set("db/x", "1"));
        assert_eq!(kv.prefix_index("web/"), 2);
        kv.apply(4, &set("db/y", "1"));
        assert_eq!(kv.prefix_index("web/"), 2);
        kv.apply(9, &Write::Delete { key: "web/a".into(), recurse: false, cas: None });
        assert_eq!(kv.prefix_index("web/"), 9);
        assert_eq!(kv.key_index("web/a"), 9);
        kv.apply(10, &Write::Delete { key: "web/".into(), recurse: true, cas: None });
        assert_eq!(kv.list("web/").count(), 0);
        assert_eq!(kv.prefix_index("web/"), 10);
        assert_eq!(kv.len(), 2);
        // Re-creating a deleted key keeps a fresh CreateIndex.
        kv.apply(11, &set("web/a", "2"));
        assert_eq!(kv.get("web/a").unwrap().create_index, 11);
    }

    #[test]
    fn keys_with_separator() {
        let mut kv = Kv::default();
        for (i, k) in ["a/1", "a/b/2", "a/b/3", "a/c", "b"].iter().enumerate() {
            kv.apply(i as u64 + 1, &set(k, ""));
        }
        assert_eq!(kv.keys("a/", Some("/")), vec!["a/1", "a/b/", "a/c"]);
        assert_eq!(kv.keys("", Some("/")), vec!["a/", "b"]);
        assert_eq!(kv.keys("a/", None), vec!["a/1", "a/b/2", "a/b/3", "a/c"]);
        // The prefix is a string prefix, not a path: "a" matches "a/..." too.
        assert_eq!(kv.list("a").count(), 4);
    }

    #[test]
    fn txn_is_all_or_nothing() {
        let mut kv = Kv::default();
        kv.apply(1, &set("x", "1"));
        let ops = vec![
            TxnOp::Set { key: "y".into(), value: b"2".to_vec(), flags: 0 },
            TxnOp::CheckIndex { key: "x".into(), index: 99 },
        ];
        match kv.apply(2, &Write::Txn(ops)) {
            WriteResult::Txn(Err(errs)) => assert_eq!(errs[0].op_index, 1),
            other => panic!("{other:?}"),
        }
        assert!(kv.get("y").is_none());
        let ops = vec![
            TxnOp::CheckIndex { key: "x".into(), index: 1 },
            TxnOp::Set { key: "y".into(), value: b"2".to_vec(), flags: 0 },
            TxnOp::Delete { key: "x".into() },
            TxnOp::CheckNotExists { key: "x".into() },
            TxnOp::Get { key: "y".into() },
        ];
        match kv.apply(3, &Write::Txn(ops)) {
            WriteResult::Txn(Ok(r)) => assert_eq!(r.len(), 3),
            other => panic!("{other:?}"),
        }
        assert!(kv.get("x").is_none());
        assert_eq!(kv.get("y").unwrap().modify_index, 3);
    }

    /// Consul's txnKVS: only reads return values; get-or-empty never fails.
    #[test]
    fn txn_results_blank_written_values_and_get_or_empty_answers_a_missing_key() {
        let mut kv = Kv::default();
        let ops = vec![
            TxnOp::Set { key: "a".into(), value: b"1".to_vec(), flags: 5 },
            TxnOp::CheckIndex { key: "a".into(), index: 4 },
            TxnOp::Cas { key: "a".into(), value: b"2".to_vec(), flags: 0, index: 4 },
            TxnOp::Get { key: "a".into() },
            TxnOp::GetOrEmpty { key: "a".into() },
            TxnOp::GetOrEmpty { key: "missing".into() },
        ];
        let WriteResult::Txn(Ok(r)) = kv.apply(4, &Write::Txn(ops)) else { panic!("txn failed") };
        let values: Vec<&[u8]> = r.iter().map(|(_, e)| e.as_ref().unwrap().value.as_slice()).collect();
        assert_eq!(values, [&b""[..], b"", b"", b"2", b"2", b""]);
        assert_eq!(r[0].1.as_ref().unwrap().flags, 5);
        let missing = r[5].1.as_ref().unwrap();
        assert_eq!((r[5].0.as_str(), missing.create_index, missing.modify_index), ("missing", 0, 0));
        assert!(kv.get("missing").is_none());
    }

    #[test]
    fn validation() {
        assert_eq!(set("", "x").validate(), Err(KvError::EmptyKey));
        let big = Write::Set { key: "k".into(), value: vec![0; MAX_VALUE_SIZE + 1], flags: 0, cas: None };
        assert_eq!(big.validate(), Err(KvError::ValueTooLarge(MAX_VALUE_SIZE + 1)));
        assert!(Write::Delete { key: "".into(), recurse: true, cas: None }.validate().is_ok());
        assert_eq!(Write::Txn(vec![]).validate(), Err(KvError::EmptyTxn));
        let many = Write::Txn(vec![TxnOp::Get { key: "a".into() }; MAX_TXN_OPS + 1]);
        assert_eq!(many.validate(), Err(KvError::TooManyOps(MAX_TXN_OPS + 1)));
    }
}
