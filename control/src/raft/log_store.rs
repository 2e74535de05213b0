//! The Raft log on disk: `log` holds framed JSON entries, appended and fsynced before
//! openraft is told they are durable; `vote.json` and `purged.json` are replaced
//! atomically; `committed.json` is a hint (losing it only means re-applying entries).
//! Entries are also kept in memory: the log is bounded by snapshots and purges, and a
//! control-plane log is small. A truncate or a purge rewrites the file.
//!
//! File I/O is synchronous inside the async methods: writes are small and this keeps the
//! ordering obvious (append-then-flush before the callback).
use std::{
    collections::BTreeMap,
    fmt::Debug,
    fs::File,
    io::Write as _,
    ops::RangeBounds,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use openraft::{
    storage::{LogFlushed, RaftLogStorage},
    LogState, RaftLogReader, StorageIOError,
};

use super::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::files;

struct Inner {
    dir: PathBuf,
    file: File,
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// When committed.json was last written: it is a hint, so at most a few writes a
    /// second (an older value only means re-applying a few more entries at start).
    committed_saved: Option<std::time::Instant>,
}

/// Cloned handles share one log (openraft wants a separate reader).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match files::read_opt(path)? {
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
        }),
        None => Ok(None),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting a torn tail left by a crash.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let vote: Option<Vote> = read_json(&dir.join("vote.json"))?;
        let last_purged: Option<LogId> = read_json(&dir.join("purged.json"))?;
        // A hint only: unreadable means "unknown".
        let committed: Option<LogId> = read_json(&dir.join("committed.json")).ok().flatten();
        let path = dir.join("log");
        let raw = files::read_opt(&path)?.unwrap_or_default();
        let (records, good) = files::unframe(&raw);
        let mut entries = BTreeMap::new();
        for r in records {
            let e: Entry = serde_json::from_slice(r).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("log entry: {e}"))
            })?;
            if last_purged.is_some_and(|p| e.log_id.index <= p.index) {
                continue;
            }
            // A later record for the same index replaces the earlier one (append after a
            // truncate that was not rewritten yet cannot happen, but be exact anyway).
            entries.split_off(&e.log_id.index);
            entries.insert(e.log_id.index, e);
        }
        if files::corrupt_before_end(&raw, good) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: record at byte {good} is damaged and more follow; refusing to cut acknowledged entries \
                     (restore this server from a snapshot or remove its data dir and let it rejoin)",
                    path.display()
                ),
            ));
        }
        if good < raw.len() {
            log::warn!("raft log {}: cut a torn tail of {} bytes", path.display(), raw.len() - good);
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(good as u64)?;
            f.sync_all()?;
        }
        let file = files::open_append(&path)?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                last_purged,
                vote,
                committed,
                committed_saved: None,
            })),
        })
    }
}

impl Inner {
    /// Writes the whole log again (after a truncate or purge), atomically.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for e in self.entries.values() {
            files::frame(&serde_json::to_vec(e)?, &mut buf);
        }
        let path = self.dir.join("log");
        files::replace(&path, &buf, true)?;
        self.file = files::open_append(&path)?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(lock(&self.inner).entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let g = lock(&self.inner);
        let last = g.entries.values().next_back().map(|e| e.log_id).or(g.last_purged);
        Ok(LogState { last_purged_log_id: g.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut g = lock(&self.inner);
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        files::replace(&g.dir.join("vote.json"), &bytes, true).map_err(|e| StorageIOError::write_vote(&e))?;
        g.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(lock(&self.inner).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut g = lock(&self.inner);
        g.committed = committed;
        if g.committed_saved.is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(200)) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?;
        files::replace(&g.dir.join("committed.json"), &bytes, false)
            .map_err(|e| StorageIOError::write(&e))?;
        g.committed_saved = Some(std::time::Instant::now());
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(lock(&self.inner).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut g = lock(&self.inner);
        let mut buf = Vec::new();
        let mut new = Vec::new();
        for e in entries {
            files::frame(&serde_json::to_vec(&e).map_err(|e| StorageIOError::write_logs(&e))?, &mut buf);
            new.push(e);
        }
        let res = g.file.write_all(&buf).and_then(|_| g.file.sync_data());
        match res {
            Ok(()) => {
                for e in new {
                    g.entries.insert(e.log_id.index, e);
                }
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = lock(&self.inner);
        g.entries.split_off(&log_id.index);
        g.rewrite().map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut g = lock(&self.inner);
        // Record the purge point first: a crash after it and before the rewrite only
        // leaves entries that open() skips.
        let bytes = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        files::replace(&g.dir.join("purged.json"), &bytes, true)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        g.last_purged = Some(log_id);
        let keep = g.entries.split_off(&(log_id.index + 1));
        g.entries = keep;
        g.rewrite().map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
