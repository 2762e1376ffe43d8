//! The node's own databases, one directory each under `<data dir>/databases/`.
//!
//! Directory creation and removal are atomic on POSIX filesystems; the parent directory is
//! fsynced after each change so a database acknowledged as created survives kill -9. A drop
//! first renames the directory out of the way, so a crash mid-removal never leaves a
//! half-deleted database that still looks present.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::db_name::DatabaseName;
use crate::durable::{create_dir_durable, sync_dir};

const DATABASES_DIR: &str = "databases";
/// Prefix of a directory being dropped; never a valid database name (names start with a
/// letter or '_', and this starts with '.').
const DROPPING_PREFIX: &str = ".dropping-";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("database {0} already exists")]
    AlreadyExists(DatabaseName),
    #[error("database {0} does not exist")]
    NotFound(DatabaseName),
    #[error("database storage error at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl CatalogError {
    /// Whether the error is the user's (a 400) rather than the server's (a 500).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, CatalogError::Io { .. })
    }
}

/// The set of local databases, mirrored in memory, guarded by one lock so concurrent
/// statements cannot both create (or both drop) the same database.
pub struct Catalog {
    root: PathBuf,
    names: Mutex<BTreeSet<DatabaseName>>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Catalog {
    /// Opens the catalog in `data_dir`, finishing any drop a crash interrupted.
    pub fn open(data_dir: &Path) -> Result<Catalog, CatalogError> {
        let root = data_dir.join(DATABASES_DIR);
        create_dir_durable(&root).map_err(io_err(&root))?;
        let mut names = BTreeSet::new();
        for entry in fs::read_dir(&root).map_err(io_err(&root))? {
            let entry = entry.map_err(io_err(&root))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if name.starts_with(DROPPING_PREFIX) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                continue;
            }
            if let (Ok(db), true) = (DatabaseName::new(name), entry.path().is_dir()) {
                names.insert(db);
            }
        }
        Ok(Catalog {
            root,
            names: Mutex::new(names),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<DatabaseName>> {
        // A panic while holding the lock cannot leave the set inconsistent with the disk
        // (the set is updated after the disk), so a poisoned lock is still usable.
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The databases, sorted by name.
    pub fn list(&self) -> Vec<DatabaseName> {
        self.lock().iter().cloned().collect()
    }

    pub fn contains(&self, name: &DatabaseName) -> bool {
        self.lock().contains(name)
    }

    /// Creates `name`; an error if it exists.
    pub fn create(&self, name: &DatabaseName) -> Result<(), CatalogError> {
        let mut names = self.lock();
        if names.contains(name) {
            return Err(CatalogError::AlreadyExists(name.clone()));
        }
        let path = self.root.join(name.as_str());
        match fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        sync_dir(&self.root).map_err(io_err(&self.root))?;
        names.insert(name.clone());
        Ok(())
    }

    /// Creates `name` unless it exists; returns whether it was created.
    pub fn ensure(&self, name: &DatabaseName) -> Result<bool, CatalogError> {
        match self.create(name) {
            Ok(()) => Ok(true),
            Err(CatalogError::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Drops `name`; an error if it does not exist.
    pub fn drop_database(&self, name: &DatabaseName) -> Result<(), CatalogError> {
        let mut names = self.lock();
        if !names.contains(name) {
            return Err(CatalogError::NotFound(name.clone()));
        }
        let path = self.root.join(name.as_str());
        let doomed = self.root.join(format!(
            "{DROPPING_PREFIX}{}-{:08x}",
            name.as_str(),
            rand::random::<u32>()
        ));
        fs::rename(&path, &doomed).map_err(io_err(&path))?;
        sync_dir(&self.root).map_err(io_err(&self.root))?;
        names.remove(name);
        drop(names);
        // Best effort: a leftover is removed at the next open.
        let _ = fs::remove_dir_all(&doomed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> DatabaseName {
        DatabaseName::new(name).unwrap()
    }

    #[test]
    fn create_drop_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        catalog.create(&db("log2")).unwrap();
        catalog.create(&db("log1")).unwrap();
        assert!(matches!(
            catalog.create(&db("log1")),
            Err(CatalogError::AlreadyExists(_))
        ));
        assert!(!catalog.ensure(&db("log1")).unwrap());
        assert_eq!(catalog.list(), vec![db("log1"), db("log2")]);
        catalog.drop_database(&db("log2")).unwrap();
        assert!(matches!(
            catalog.drop_database(&db("log2")),
            Err(CatalogError::NotFound(_))
        ));
        let reopened = Catalog::open(dir.path()).unwrap();
        assert_eq!(reopened.list(), vec![db("log1")]);
    }

    #[test]
    fn interrupted_drop_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(DATABASES_DIR);
        fs::create_dir_all(root.join(".dropping-x-1")).unwrap();
        fs::create_dir_all(root.join("kept")).unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        assert_eq!(catalog.list(), vec![db("kept")]);
        assert!(!root.join(".dropping-x-1").exists());
    }
}
