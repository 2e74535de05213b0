//! The Raft state machine: the replicated [`ReplicatedState`] in memory, persisted as snapshots
//! (`snapshot.json`, replaced atomically). On start the last snapshot is loaded and
//! openraft re-applies the committed entries after it from the log.
//!
//! Readers (the HTTP API) share the state through [`StoreView`] and wait for changes on
//! the applied-index channel (blocking queries).
use std::{
    io::Cursor,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
};

use openraft::{
    storage::RaftStateMachine, EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{Entry, LogId, Node, NodeId, StorageError, TypeConfig};
use crate::files;
use crate::state::{Outcome, ReplicatedState};

/// The applied state and where in the log it stands.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership<NodeId, Node>,
    pub state: ReplicatedState,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, Node>,
    #[serde(with = "crate::b64")]
    data: Vec<u8>,
}

struct Inner {
    dir: PathBuf,
    applied: RwLock<Applied>,
    /// The latest snapshot (meta and serialized [`Applied`]), also on disk.
    snapshot: Mutex<Option<(SnapshotMeta<NodeId, Node>, Vec<u8>)>>,
    seq: AtomicU64,
    /// Applied log index, for blocking queries.
    index_tx: watch::Sender<u64>,
}

#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Inner>,
}

/// Read access to the applied state for the API.
#[derive(Clone)]
pub struct StoreView {
    inner: Arc<Inner>,
}

impl StoreView {
    pub fn read<T>(&self, f: impl FnOnce(&Applied) -> T) -> T {
        f(&self.inner.applied.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Changes whenever entries are applied or a snapshot is installed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.index_tx.subscribe()
    }
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachine {
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let mut applied = Applied::default();
        let mut snapshot = None;
        if let Some(bytes) = files::read_opt(&dir.join("snapshot.json"))? {
            let f: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("snapshot: {e}"))
            })?;
            applied = serde_json::from_slice(&f.data).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("snapshot data: {e}"))
            })?;
            snapshot = Some((f.meta, f.data));
        }
        let index = applied.last_applied.map(|l| l.index).unwrap_or(0);
        let (index_tx, _) = watch::channel(index);
        Ok(StateMachine {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                applied: RwLock::new(applied),
                snapshot: Mutex::new(snapshot),
                seq: AtomicU64::new(0),
                index_tx,
            }),
        })
    }

    pub fn view(&self) -> StoreView {
        StoreView { inner: self.inner.clone() }
    }

    fn save_snapshot(&self, meta: &SnapshotMeta<NodeId, Node>, data: &[u8]) -> Result<(), StorageError> {
        let file = SnapshotFile { meta: meta.clone(), data: data.to_vec() };
        let bytes = serde_json::to_vec(&file).map_err(snapshot_err)?;
        files::replace(&self.inner.dir.join("snapshot.json"), &bytes, true).map_err(snapshot_err)?;
        *self.inner.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some((meta.clone(), data.to_vec()));
        Ok(())
    }

    fn publish(&self) {
        let index = self.view().read(|a| a.last_applied.map(|l| l.index).unwrap_or(0));
        self.inner.index_tx.send_replace(index);
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, last_applied, last_membership) = {
            let a = self.inner.applied.read().unwrap_or_else(|p| p.into_inner());
            let data = serde_json::to_vec(&*a).map_err(|e| StorageIOError::read_state_machine(&e))?;
            (data, a.last_applied, a.last_membership.clone())
        };
        let seq = self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("--{seq}"),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        self.save_snapshot(&meta, &data)?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, Node>), StorageError> {
        Ok(self.view().read(|a| (a.last_applied, a.last_membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        {
            let mut a = self.inner.applied.write().unwrap_or_else(|p| p.into_inner());
            for e in entries {
                a.last_applied = Some(e.log_id);
                out.push(match e.payload {
                    EntryPayload::Blank => Outcome::None,
                    EntryPayload::Normal(req) => a.state.apply(e.log_id.index, &req),
                    EntryPayload::Membership(m) => {
                        a.last_membership = StoredMembership::new(Some(e.log_id), m);
                        Outcome::None
                    }
                });
            }
        }
        self.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let applied: Applied = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.save_snapshot(meta, &data)?;
        *self.inner.applied.write().unwrap_or_else(|p| p.into_inner()) = applied;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let g = self.inner.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        Ok(g.as_ref().map(|(m, d)| Snapshot { meta: m.clone(), snapshot: Box::new(Cursor::new(d.clone())) }))
    }
}
