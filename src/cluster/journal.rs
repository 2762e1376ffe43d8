//! The master's cluster on disk: a snapshot (`cluster.json`, written atomically) and an
//! append-only log of the changes made since (`cluster.log`).
//!
//! Rewriting the whole snapshot on every change cost time in proportion to the cluster (31 ms
//! at 9,700 entries); appending one record costs the same at 10 or 100,000 entries. A change
//! is acknowledged only after its record is fsynced. When the log outgrows the snapshot, the
//! state is written as a new snapshot and the log emptied, so a restart never replays more
//! than about a snapshot's worth of records.
//!
//! A record: `len: u32 LE | crc32(payload): u32 LE | crc32(first 8 bytes): u32 LE | payload`,
//! the payload a JSON [`Record`]. Records are numbered; the snapshot names the last one it
//! holds, so records left in the log by a crash between a snapshot and the log's truncation
//! are skipped. A record cut short at the end of the log (a crash while appending: it was
//! never acknowledged) is removed at open; any other damage is an error naming the file and
//! the byte, never a silent loss.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::{ClusterState, EntryKey};
use crate::db_name::DatabaseName;
use crate::durable::{sync_dir, write_atomic};
use crate::sql::ClientSpec;

/// The snapshot's name in the data dir.
pub const SNAPSHOT_FILE: &str = "cluster.json";
/// The log's name in the data dir.
pub const LOG_FILE: &str = "cluster.log";

/// The log is folded into a new snapshot once it is larger than this and than the snapshot.
const MIN_COMPACT_BYTES: u64 = 4 << 20;

/// Header bytes before each record's payload.
const HEADER: usize = 12;

/// A record's payload is never larger than this (a registration of many databases is the
/// largest); a larger length is damage.
const MAX_RECORD: u32 = 16 << 20;

/// One change to the cluster, as the operations of [`ClusterState`] take it: replaying the
/// changes in order rebuilds the state, since those operations are pure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Change {
    /// ADD CLIENT.
    Add {
        key: EntryKey,
        node_there: Option<String>,
    },
    /// DROP CLIENT.
    Drop {
        key: EntryKey,
        node_there: Option<String>,
    },
    /// A client's registration (its endpoint and databases).
    Register {
        node_id: String,
        endpoint: SocketAddr,
        databases: Vec<DatabaseName>,
    },
}

impl Change {
    /// Applies the change; whether it changed anything.
    pub fn apply(&self, state: &mut ClusterState) -> bool {
        match self {
            Change::Add { key, node_there } => {
                state.add_changed(&spec(key), node_there.as_deref()).1
            }
            Change::Drop { key, node_there } => state
                .drop_entry(&spec(key), node_there.as_deref())
                .is_some(),
            Change::Register {
                node_id,
                endpoint,
                databases,
            } => state.apply_registration(node_id, *endpoint, databases),
        }
    }
}

fn spec(key: &EntryKey) -> ClientSpec {
    ClientSpec {
        host: key.host.clone(),
        port: key.port,
        db: key.db.clone(),
    }
}

/// A numbered change, as the log stores it.
#[derive(Serialize, Deserialize)]
struct Record {
    seq: u64,
    change: Change,
}

/// The snapshot's shape: the state and the number of the last change it holds.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    #[serde(flatten)]
    state: ClusterState,
    /// Absent in snapshots written before the log existed: 0.
    #[serde(default)]
    seq: u64,
}

/// Why the cluster cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} is damaged ({source}); restore it from a backup or move it away to start with an empty cluster")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} is damaged at byte {offset} ({reason}); restore the data dir from a backup, or move {path} away to go back to the snapshot in cluster.json (losing the changes after it)")]
    CorruptLog {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("cannot save the cluster to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// The open log, appended to by [`Journal::append`].
pub struct Journal {
    snapshot_path: PathBuf,
    log_path: PathBuf,
    /// Opened on the first append (a node that is no master never creates the log).
    log: Option<File>,
    /// Bytes in the log (all of them whole records).
    log_len: u64,
    /// Number of the last change written.
    seq: u64,
    /// Size of the last snapshot written or read; `None` when there is none yet.
    snapshot_len: Option<u64>,
}

impl Journal {
    /// Reads the snapshot and replays the log after it; removes a torn last record.
    pub fn open(data_dir: &Path) -> Result<(Journal, ClusterState), JournalError> {
        let snapshot_path = data_dir.join(SNAPSHOT_FILE);
        let log_path = data_dir.join(LOG_FILE);
        let (mut state, snapshot_seq, snapshot_len) = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let snapshot: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|source| JournalError::Corrupt {
                        path: snapshot_path.clone(),
                        source,
                    })?;
                (snapshot.state, snapshot.seq, Some(bytes.len() as u64))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (ClusterState::default(), 0, None),
            Err(source) => {
                return Err(JournalError::Read {
                    path: snapshot_path,
                    source,
                })
            }
        };
        let mut journal = Journal {
            snapshot_path,
            log_path,
            log: None,
            log_len: 0,
            seq: snapshot_seq,
            snapshot_len,
        };
        journal.replay(&mut state, snapshot_seq)?;
        Ok((journal, state))
    }

    fn replay(&mut self, state: &mut ClusterState, snapshot_seq: u64) -> Result<(), JournalError> {
        let read_err = |source| JournalError::Read {
            path: self.log_path.clone(),
            source,
        };
        let mut file = match OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.log_path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(read_err(source)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(read_err)?;
        let whole = parse_log(&bytes).map_err(|(offset, reason)| JournalError::CorruptLog {
            path: self.log_path.clone(),
            offset,
            reason,
        })?;
        for (offset, record) in whole.records {
            if record.seq <= snapshot_seq {
                continue;
            }
            if record.seq != self.seq + 1 {
                return Err(JournalError::CorruptLog {
                    path: self.log_path.clone(),
                    offset,
                    reason: format!(
                        "change {} follows change {}: changes are missing",
                        record.seq, self.seq
                    ),
                });
            }
            record.change.apply(state);
            self.seq = record.seq;
        }
        if whole.len < bytes.len() as u64 {
            tracing::warn!(
                file = %self.log_path.display(),
                offset = whole.len,
                bytes = bytes.len() as u64 - whole.len,
                "removing a change cut short at the end of the cluster log (a crash while it was written; it was never acknowledged)"
            );
            file.set_len(whole.len)
                .and_then(|()| file.sync_all())
                .map_err(|source| JournalError::Write {
                    path: self.log_path.clone(),
                    source,
                })?;
        }
        self.log_len = whole.len;
        self.log = Some(file);
        Ok(())
    }

    /// Writes `changes` (already applied to `state`) durably: appended to the log and
    /// fsynced, or folded into a new snapshot when the log has grown large (or no snapshot
    /// exists yet). When this fails, nothing was written: the caller must not keep the
    /// changes in memory.
    pub fn append(&mut self, changes: &[Change], state: &ClusterState) -> Result<(), JournalError> {
        if changes.is_empty() {
            return Ok(());
        }
        let next_seq = self.seq + changes.len() as u64;
        let too_long = self.log_len > MIN_COMPACT_BYTES.max(self.snapshot_len.unwrap_or(0));
        if self.snapshot_len.is_none() || too_long {
            return self.snapshot(state, next_seq);
        }
        let mut bytes = Vec::new();
        for (i, change) in changes.iter().enumerate() {
            let record = Record {
                seq: self.seq + 1 + i as u64,
                change: change.clone(),
            };
            let payload =
                serde_json::to_vec(&record).map_err(|e| self.write_err(io::Error::other(e)))?;
            encode(&payload, &mut bytes);
        }
        let result = self.write_log(&bytes);
        if let Err(source) = result {
            // Take back what may have been half written, so the next record follows whole ones.
            if let Some(file) = &self.log {
                if file
                    .set_len(self.log_len)
                    .and_then(|()| file.sync_all())
                    .is_err()
                {
                    self.log = None;
                }
            }
            return Err(self.write_err(source));
        }
        self.log_len += bytes.len() as u64;
        self.seq = next_seq;
        Ok(())
    }

    /// Creates the snapshot and the log if they do not exist yet, so that the first change is
    /// one append. Creating two files, each with its fsyncs and the directory's, made the
    /// first ADD CLIENT on a new master take 2-9 ms instead of half of one.
    pub fn prepare(&mut self, state: &ClusterState) -> Result<(), JournalError> {
        if self.snapshot_len.is_none() {
            self.snapshot(state, self.seq)?;
        }
        if self.log.is_none() {
            self.open_log().map_err(|source| self.write_err(source))?;
        }
        Ok(())
    }

    /// Opens (creating it durably) the log, holding just the records this journal knows of.
    fn open_log(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        // The log must not hold whole records beyond what this journal knows of.
        file.set_len(self.log_len)?;
        file.sync_all()?;
        if let Some(dir) = self.log_path.parent() {
            sync_dir(dir)?;
        }
        self.log = Some(file);
        Ok(())
    }

    fn write_log(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.log.is_none() {
            self.open_log()?;
        }
        let Some(file) = self.log.as_mut() else {
            return Err(io::Error::other("the cluster log is not open"));
        };
        file.write_all(bytes)?;
        file.sync_data()
    }

    /// Writes `state` (which holds changes up to `seq`) as the snapshot, then empties the log.
    fn snapshot(&mut self, state: &ClusterState, seq: u64) -> Result<(), JournalError> {
        let snapshot = SnapshotRef { state, seq };
        let bytes = serde_json::to_vec(&snapshot).map_err(|e| JournalError::Write {
            path: self.snapshot_path.clone(),
            source: io::Error::other(e),
        })?;
        write_atomic(&self.snapshot_path, &bytes).map_err(|source| JournalError::Write {
            path: self.snapshot_path.clone(),
            source,
        })?;
        self.snapshot_len = Some(bytes.len() as u64);
        self.seq = seq;
        // The snapshot holds every record now: a crash before this truncation leaves records
        // that the next open skips by their numbers.
        if self.log_len > 0 {
            let truncated = self
                .log
                .as_ref()
                .map(|file| file.set_len(0).and_then(|()| file.sync_all()));
            match truncated {
                Some(Ok(())) => self.log_len = 0,
                Some(Err(e)) => {
                    tracing::warn!(file = %self.log_path.display(), error = %e, "cannot empty the cluster log after a snapshot; its records are skipped at the next start");
                    self.log = None;
                }
                None => {}
            }
        }
        Ok(())
    }

    fn write_err(&self, source: io::Error) -> JournalError {
        JournalError::Write {
            path: self.log_path.clone(),
            source,
        }
    }

    /// Bytes in the log now (for tests and benchmarks).
    pub fn log_len(&self) -> u64 {
        self.log_len
    }
}

/// [`Snapshot`] by reference, to write one without copying the state.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    #[serde(flatten)]
    state: &'a ClusterState,
    seq: u64,
}

/// Appends one record holding `payload` to `out`.
fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&len);
    head[4..].copy_from_slice(&crc);
    out.extend_from_slice(&head);
    out.extend_from_slice(&crc32fast::hash(&head).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The whole records of a log, each with its offset, and the length they take.
struct WholeRecords {
    records: Vec<(u64, Record)>,
    len: u64,
}

/// Reads the records of `bytes`. A record cut short at the end stops the reading (it is not
/// counted in `len`); damage anywhere else is `Err((offset, reason))`.
fn parse_log(bytes: &[u8]) -> Result<WholeRecords, (u64, String)> {
    let mut records = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let offset = at as u64;
        // Cut short inside the header: the end of the log.
        let Some(head) = rest.get(..HEADER) else {
            break;
        };
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (len, crc, head_crc) = (word(0), word(4), word(8));
        if crc32fast::hash(&head[..8]) != head_crc || len > MAX_RECORD {
            // Zeros to the end: a file system that extended the log but lost the write.
            if rest.iter().all(|b| *b == 0) {
                break;
            }
            return Err((offset, "the record header's checksum does not match".into()));
        }
        let Some(payload) = rest.get(HEADER..HEADER + len as usize) else {
            break;
        };
        let last = HEADER + len as usize == rest.len();
        if crc32fast::hash(payload) != crc {
            if last {
                break;
            }
            return Err((offset, "the record's checksum does not match".into()));
        }
        let record: Record = serde_json::from_slice(payload).map_err(|e| {
            (
                offset,
                format!("the record is not a change this version reads: {e}"),
            )
        })?;
        records.push((offset, record));
        at += HEADER + len as usize;
    }
    Ok(WholeRecords {
        records,
        len: at as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::ClientHost;

    fn key(host: &str, db: &str) -> EntryKey {
        EntryKey {
            host: host.parse::<ClientHost>().unwrap(),
            port: 9091,
            db: DatabaseName::new(db).unwrap(),
        }
    }

    fn add(journal: &mut Journal, state: &mut ClusterState, host: &str, db: &str) {
        let change = Change::Add {
            key: key(host, db),
            node_there: None,
        };
        assert!(change.apply(state));
        journal.append(&[change], state).unwrap();
    }

    #[test]
    fn changes_are_replayed_and_a_torn_last_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, mut state) = Journal::open(dir.path()).unwrap();
        // The first change writes the snapshot; the next ones go to the log.
        add(&mut journal, &mut state, "10.0.0.1", "a");
        assert_eq!(journal.log_len(), 0);
        add(&mut journal, &mut state, "10.0.0.2", "a");
        add(&mut journal, &mut state, "10.0.0.3", "a");
        assert!(journal.log_len() > 0);
        drop(journal);
        let (_, reopened) = Journal::open(dir.path()).unwrap();
        assert_eq!(reopened, state);

        // A record cut short at every length: the state before it, and the log made whole.
        let log = dir.path().join(LOG_FILE);
        let whole = std::fs::read(&log).unwrap();
        let (journal, _) = Journal::open(dir.path()).unwrap();
        let first_len = {
            let parsed = parse_log(&whole).unwrap();
            parsed.records[1].0 as usize
        };
        drop(journal);
        for cut in first_len..whole.len() {
            std::fs::write(&log, &whole[..cut]).unwrap();
            let (journal, reopened) = Journal::open(dir.path()).unwrap();
            assert_eq!(reopened.len(), 2, "cut at {cut}");
            assert_eq!(journal.log_len() as usize, first_len, "cut at {cut}");
            assert_eq!(std::fs::read(&log).unwrap().len(), first_len);
        }
    }

    /// A prepared journal takes its first change as an append, and the snapshot it wrote
    /// ahead (of an empty cluster) reads back with that change.
    #[test]
    fn a_prepared_journal_appends_its_first_change() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, mut state) = Journal::open(dir.path()).unwrap();
        journal.prepare(&state).unwrap();
        assert!(dir.path().join(SNAPSHOT_FILE).exists());
        assert!(dir.path().join(LOG_FILE).exists());
        add(&mut journal, &mut state, "10.0.0.1", "a");
        assert!(journal.log_len() > 0, "the first change was not appended");
        // Preparing again (the next start) leaves what is there.
        journal.prepare(&state).unwrap();
        drop(journal);
        let (mut reopened, read) = Journal::open(dir.path()).unwrap();
        assert_eq!(read, state);
        reopened.prepare(&read).unwrap();
        drop(reopened);
        assert_eq!(Journal::open(dir.path()).unwrap().1, state);
    }

    #[test]
    fn damage_before_the_end_is_an_error_naming_the_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, mut state) = Journal::open(dir.path()).unwrap();
        for host in ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"] {
            add(&mut journal, &mut state, host, "a");
        }
        drop(journal);
        let log = dir.path().join(LOG_FILE);
        let whole = std::fs::read(&log).unwrap();
        // A flipped byte in the first record's payload, then in its header.
        for at in [HEADER + 3, 1] {
            let mut damaged = whole.clone();
            damaged[at] ^= 0x55;
            std::fs::write(&log, &damaged).unwrap();
            let err = Journal::open(dir.path()).err().expect("damage is refused");
            let msg = err.to_string();
            assert!(
                msg.contains("cluster.log") && msg.contains("byte 0"),
                "{msg}"
            );
            // The damaged log is left as it was.
            assert_eq!(std::fs::read(&log).unwrap(), damaged);
        }
        std::fs::write(&log, &whole).unwrap();
        assert_eq!(Journal::open(dir.path()).unwrap().1, state);
    }

    #[test]
    fn records_a_snapshot_already_holds_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, mut state) = Journal::open(dir.path()).unwrap();
        add(&mut journal, &mut state, "10.0.0.1", "a");
        add(&mut journal, &mut state, "10.0.0.2", "a");
        let drop_2 = Change::Drop {
            key: key("10.0.0.2", "a"),
            node_there: Some("n2".into()),
        };
        assert!(drop_2.apply(&mut state));
        journal.append(&[drop_2], &state).unwrap();
        let log = dir.path().join(LOG_FILE);
        let records = std::fs::read(&log).unwrap();
        // A snapshot of everything, with the log's records still there (a crash before the
        // log was emptied): replaying them again would be wrong, and they are skipped.
        let seq = journal.seq;
        journal.snapshot(&state, seq).unwrap();
        std::fs::write(&log, &records).unwrap();
        drop(journal);
        assert_eq!(Journal::open(dir.path()).unwrap().1, state);
    }
}
