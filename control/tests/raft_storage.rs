//! openraft's storage test suite on our on-disk log and state machine, plus reopen
//! checks (entries surviving a restart are covered by tests/cluster.rs).
use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use ballast_control::raft::{log_store::LogStore, state_machine::StateMachine, StorageError, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};

/// A fresh directory per build, removed when the suite drops the guard.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "ballast-raft-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

struct OnDisk;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for OnDisk {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = temp_dir("suite");
        let log = LogStore::open(&dir.0).expect("log store");
        let sm = StateMachine::open(&dir.0).expect("state machine");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(OnDisk)?;
    Ok(())
}

#[test]
fn vote_survives_reopen_and_torn_tail_is_cut() {
    use openraft::{storage::RaftLogStorage, RaftLogReader, Vote};
    let dir = temp_dir("reopen");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut log = LogStore::open(&dir.0).unwrap();
        log.save_vote(&Vote::new(3, 1)).await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, None);
        drop(log);
        let mut log = LogStore::open(&dir.0).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 1)));
        // Garbage at the end of the file (a torn append) is cut, not an error.
        std::fs::write(dir.0.join("log"), [1, 2, 3, 4, 5]).unwrap();
        drop(log);
        let mut log = LogStore::open(&dir.0).unwrap();
        assert!(log.try_get_log_entries(0..).await.unwrap().is_empty());
        assert_eq!(std::fs::metadata(dir.0.join("log")).unwrap().len(), 0);
    });
}
