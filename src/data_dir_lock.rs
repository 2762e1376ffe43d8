//! One process per data dir: an exclusive `flock` on `<data dir>/lock`, held for the node's
//! lifetime.
//!
//! Two nodes on one data dir would both bump the generation in `identity.json` and claim the
//! same identity. The kernel drops the lock when the process ends, however it ends (kill -9
//! included), so a restart after a crash needs no clean-up. The holder's PID is written into
//! the file so that a second process can say who holds it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::durable::{create_dir_durable, TEMP_PREFIX};

/// The lock file's name inside the data dir.
pub const LOCK_FILE: &str = "lock";

/// Why the data dir cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path} exists but is not a directory; point BO_DATA_DIR at a directory (it is created if missing), or move {path} away")]
    NotADirectory { path: PathBuf },
    #[error("cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("{path} is in use by another bocluster node ({holder}); stop it, or give this node a data dir of its own")]
    InUse { path: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: Flock<File>,
}

impl DataDirLock {
    /// Creates `dir` if missing, takes its lock (failing at once if another process holds
    /// it), and removes the temp files a crash left behind (nobody else can be writing them).
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataDirError> {
        match fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => {
                return Err(DataDirError::NotADirectory {
                    path: dir.to_path_buf(),
                })
            }
            _ => {}
        }
        create_dir_durable(dir).map_err(|source| DataDirError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let lock_err = |source: io::Error| DataDirError::Lock {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_err)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim().parse::<u32>() {
                    Ok(pid) => format!("PID {pid}"),
                    Err(_) => "a process that has not written its PID yet".to_string(),
                };
                return Err(DataDirError::InUse {
                    path: dir.to_path_buf(),
                    holder,
                });
            }
            Err((_, errno)) => return Err(lock_err(io::Error::from(errno))),
        };
        file.set_len(0).map_err(lock_err)?;
        file.rewind().map_err(lock_err)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
        remove_temp_files(dir);
        Ok(DataDirLock { _file: file })
    }
}

/// Removes the temp files of interrupted atomic writes in `dir` (see
/// [`crate::durable::write_atomic`]); the files they were to replace are intact.
fn remove_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let leftover =
            name.to_str().is_some_and(is_temp_name) && entry.file_type().is_ok_and(|t| t.is_file());
        if leftover {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed the temp file of an interrupted write")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove the temp file of an interrupted write")
                }
            }
        }
    }
}

/// A temp file name of [`crate::durable::write_atomic`]: ours, or `.tmp` and six characters
/// (what versions before the prefix wrote).
fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
        || name
            .strip_prefix(".tmp")
            .is_some_and(|rest| rest.len() == 6 && rest.chars().all(|c| c.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).unwrap();
        let err = DataDirLock::acquire(&data).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&data.display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("PID {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        DataDirLock::acquire(&data).unwrap();
    }

    #[test]
    fn a_file_is_not_a_data_dir_and_leftover_temp_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        let err = DataDirLock::acquire(&file).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let err = DataDirLock::acquire(Path::new("/dev/null")).unwrap_err();
        assert!(err.to_string().contains("/dev/null"), "{err}");

        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join(format!("{TEMP_PREFIX}abc")), b"").unwrap();
        fs::write(data.join(".tmpA1b2C3"), b"").unwrap();
        fs::write(data.join("identity.json"), b"{}").unwrap();
        let _lock = DataDirLock::acquire(&data).unwrap();
        let mut names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["identity.json", "lock"]);
    }
}
