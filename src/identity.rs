//! Who this node is: its node id and its generation.
//!
//! The node id is `BO_NODE_ID` or, when unset, a name generated once and kept in the data dir
//! so a restarted node is the same member. The generation grows on every start so peers can
//! tell a restart from a stale message; it is persisted so it grows even if the clock jumps
//! back, and seeded from the clock so it grows even if the data dir is lost.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::durable::write_atomic;

const IDENTITY_FILE: &str = "identity.json";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is damaged ({source}); remove it to give this node a new identity")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct IdentityFile {
    node_id: String,
    generation: u64,
}

/// The identity of this run of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node_id: String,
    pub generation: u64,
}

impl NodeIdentity {
    /// The identity this start runs under: the one in `data_dir` (or a new one) with the next
    /// generation. Nothing is written: [`NodeIdentity::save`] must end before the generation
    /// is announced to anyone.
    pub fn next(
        data_dir: &Path,
        configured_id: Option<&str>,
    ) -> Result<NodeIdentity, IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let previous = match fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<IdentityFile>(&bytes).map_err(
                |source| IdentityError::Corrupt {
                    path: path.clone(),
                    source,
                },
            )?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(IdentityError::Read { path, source }),
        };
        let node_id = match (configured_id, &previous) {
            (Some(id), _) => id.to_string(),
            (None, Some(prev)) => prev.node_id.clone(),
            (None, None) => generate_node_id(),
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let previous_generation = previous.as_ref().map(|p| p.generation).unwrap_or(0);
        Ok(NodeIdentity {
            node_id,
            generation: now_ms.max(previous_generation + 1),
        })
    }

    /// Writes this identity to `data_dir` durably.
    pub fn save(&self, data_dir: &Path) -> Result<(), IdentityError> {
        let path = data_dir.join(IDENTITY_FILE);
        let file = IdentityFile {
            node_id: self.node_id.clone(),
            generation: self.generation,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| IdentityError::Write {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        write_atomic(&path, &bytes).map_err(|source| IdentityError::Write { path, source })
    }
}

/// `node-` and 8 random hex digits: short enough to type, unique enough for a fleet.
fn generate_node_id() -> String {
    format!("node-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a node's start does with its identity: the next one, written.
    fn load_and_bump(
        dir: &Path,
        configured_id: Option<&str>,
    ) -> Result<NodeIdentity, IdentityError> {
        let identity = NodeIdentity::next(dir, configured_id)?;
        identity.save(dir)?;
        Ok(identity)
    }

    #[test]
    fn id_is_kept_and_generation_grows() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_and_bump(dir.path(), None).unwrap();
        let second = load_and_bump(dir.path(), None).unwrap();
        assert_eq!(first.node_id, second.node_id);
        assert!(second.generation > first.generation);
        let named = load_and_bump(dir.path(), Some("edge-7")).unwrap();
        assert_eq!(named.node_id, "edge-7");
        assert!(named.generation > second.generation);
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(IDENTITY_FILE), b"{not json").unwrap();
        let err = load_and_bump(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("identity.json"), "{err}");
    }
}
