//! What only the real daemon needs, on top of the node: its data
//! directory, the identity key kept in it, and the durable store (an
//! embedded transactional database) behind [`crate::store::Store`].
//!
//! Real-mode-only code: it reads the file system, the environment and OS
//! entropy, so it is not built for the simulator (`--cfg madsim`), whose
//! hosts get a [`crate::store::MemStore`] and keys from the scenario seed.
//!
//! The data directory (`--data-dir`, else `$GROVE_DATA_DIR`, else
//! `$XDG_DATA_HOME/grove`, else `~/.local/share/grove`; created with mode
//! 0700) holds:
//!
//! - `identity.key`: the node's secret key seed, 64 hex digits, created
//!   once from OS entropy (or from the file named by `GROVE_KEY_SEED_FILE`)
//!   with mode 0600, and refused if group or others may read it;
//! - `store.redb`: knowledge updates and the peer cache ([`RedbStore`]).

pub mod datadir;
pub mod redb_store;

pub use datadir::{DataDir, DataDirError};
pub use redb_store::RedbStore;

/// A fresh directory under the system's temporary directory, removed when
/// dropped (the tests' data directories).
#[cfg(test)]
pub(crate) struct TempDir(pub std::path::PathBuf);

#[cfg(test)]
impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "grove-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
