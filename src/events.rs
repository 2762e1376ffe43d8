//! Cluster events: membership changes and changes of this node's cluster entries, for
//! `GET /events` (server-sent events), the live page and `BO_EVENT_HANDLER`.
//!
//! Member events come from the engine's change stream; entry events from diffing SHOW
//! CLUSTER's rows whenever the member snapshot or the cluster changes. Both are published on
//! one broadcast channel with a short history, so nothing here ever waits on a slow reader:
//! a reader that falls behind is told how many events it missed.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, Notify};
use tracing::{debug, warn};

use crate::cluster::ClusterRow;
use crate::membership::{Member, MembershipChange};

/// Events kept for readers that connect (or reconnect) later.
pub const HISTORY: usize = 100;
/// Events a reader may fall behind by before it misses some.
const CHANNEL: usize = 1024;
/// Bytes of a failed handler's output kept for the log.
const HANDLER_OUTPUT_LOGGED: usize = 2048;

/// A member as SHOW NODES shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberFields {
    pub node_id: String,
    pub endpoint: String,
    pub status: String,
    pub generation: u64,
    pub databases: String,
    pub masters: String,
    pub version: String,
}

impl From<&Member> for MemberFields {
    fn from(m: &Member) -> Self {
        MemberFields {
            node_id: m.node_id.clone(),
            endpoint: m.endpoint.to_string(),
            status: m.status.as_str().to_string(),
            generation: m.generation,
            databases: m.databases.join(","),
            masters: m.masters.join(","),
            version: m.version.clone(),
        }
    }
}

/// A cluster entry as SHOW CLUSTER shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryFields {
    pub host: String,
    pub ip: String,
    pub port: u16,
    pub db: String,
    pub source: String,
    pub status: String,
    pub node_id: String,
}

impl From<&ClusterRow> for EntryFields {
    fn from(r: &ClusterRow) -> Self {
        EntryFields {
            host: r.host.clone(),
            ip: r.ip.clone(),
            port: r.port,
            db: r.db.clone(),
            source: r.source.as_str().to_string(),
            status: r.status.as_str().to_string(),
            node_id: r.node_id.clone(),
        }
    }
}

/// What happened, with the fields of the row it happened to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum EventKind {
    MemberJoin {
        member: MemberFields,
    },
    MemberUpdate {
        member: MemberFields,
    },
    /// The failure detector declared it dead.
    MemberFailed {
        member: MemberFields,
    },
    MemberLeave {
        member: MemberFields,
    },
    EntryAdded {
        entry: EntryFields,
    },
    EntryDropped {
        entry: EntryFields,
    },
    EntryStatus {
        entry: EntryFields,
        previous_status: String,
    },
    /// Same entry, same status, another host name or node id (a client that moved).
    EntryUpdate {
        entry: EntryFields,
    },
}

impl EventKind {
    /// The event's name: `member-join`, `entry-status`, ...
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::MemberJoin { .. } => "member-join",
            EventKind::MemberUpdate { .. } => "member-update",
            EventKind::MemberFailed { .. } => "member-failed",
            EventKind::MemberLeave { .. } => "member-leave",
            EventKind::EntryAdded { .. } => "entry-added",
            EventKind::EntryDropped { .. } => "entry-dropped",
            EventKind::EntryStatus { .. } => "entry-status",
            EventKind::EntryUpdate { .. } => "entry-update",
        }
    }

    /// The event of a membership change.
    pub fn of_change(change: &MembershipChange) -> EventKind {
        match change {
            MembershipChange::Joined(m) => EventKind::MemberJoin { member: m.into() },
            MembershipChange::Updated(m) => EventKind::MemberUpdate { member: m.into() },
            MembershipChange::Failed(m) => EventKind::MemberFailed { member: m.into() },
            MembershipChange::Left(m) => EventKind::MemberLeave { member: m.into() },
        }
    }

    /// `(name, value)` pairs of the row's fields, for the handler's environment.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let member = |m: &MemberFields| {
            vec![
                ("NODE_ID", m.node_id.clone()),
                ("ENDPOINT", m.endpoint.clone()),
                ("STATUS", m.status.clone()),
                ("GENERATION", m.generation.to_string()),
                ("DATABASES", m.databases.clone()),
                ("MASTERS", m.masters.clone()),
                ("VERSION", m.version.clone()),
            ]
        };
        let entry = |e: &EntryFields| {
            vec![
                ("HOST", e.host.clone()),
                ("IP", e.ip.clone()),
                ("PORT", e.port.to_string()),
                ("DB", e.db.clone()),
                ("SOURCE", e.source.clone()),
                ("STATUS", e.status.clone()),
                ("NODE_ID", e.node_id.clone()),
            ]
        };
        match self {
            EventKind::MemberJoin { member: m }
            | EventKind::MemberUpdate { member: m }
            | EventKind::MemberFailed { member: m }
            | EventKind::MemberLeave { member: m } => member(m),
            EventKind::EntryAdded { entry: e }
            | EventKind::EntryDropped { entry: e }
            | EventKind::EntryUpdate { entry: e } => entry(e),
            EventKind::EntryStatus {
                entry: e,
                previous_status,
            } => {
                let mut fields = entry(e);
                fields.push(("PREVIOUS_STATUS", previous_status.clone()));
                fields
            }
        }
    }
}

/// One event, numbered in the order this node saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// 1, 2, 3... since this node started (the SSE `id`, for `Last-Event-ID`).
    pub id: u64,
    /// Unix time in milliseconds.
    pub time_ms: u64,
    /// The node that saw it.
    pub observer: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// The events of one node: publish, subscribe, and a short history.
pub struct Events {
    observer: String,
    sender: broadcast::Sender<Arc<Event>>,
    history: Mutex<VecDeque<Arc<Event>>>,
    next_id: AtomicU64,
    cluster_changed: Notify,
}

impl Events {
    pub fn new(observer: &str) -> Events {
        Events {
            observer: observer.to_string(),
            sender: broadcast::channel(CHANNEL).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            next_id: AtomicU64::new(1),
            cluster_changed: Notify::new(),
        }
    }

    /// Numbers `kind`, keeps it in the history and sends it to every reader.
    pub fn publish(&self, kind: EventKind) -> Arc<Event> {
        let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        // Numbered under the lock, so the history and the channel are in id order.
        let event = Arc::new(Event {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            observer: self.observer.clone(),
            kind,
        });
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(event.clone());
        // No reader is fine.
        let _ = self.sender.send(event.clone());
        event
    }

    /// The kept events after `after` (all of them for 0), and a receiver of the next ones,
    /// taken together so that none falls between them.
    pub fn subscribe_since(
        &self,
        after: u64,
    ) -> (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>) {
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = self.sender.subscribe();
        let past = history.iter().filter(|e| e.id > after).cloned().collect();
        (past, receiver)
    }

    /// Tells the entry watcher that the cluster changed (ADD/DROP CLIENT, registrations), so
    /// entry events come at once rather than at the next recheck.
    pub fn cluster_changed(&self) {
        self.cluster_changed.notify_one();
    }

    /// Resolves at the next [`Events::cluster_changed`] (or at once for one that came while
    /// nobody waited).
    pub async fn cluster_change(&self) {
        self.cluster_changed.notified().await;
    }
}

/// Entry events from `before` to `after`, entries matched by (ip, port, db).
pub fn diff_entries(before: &[ClusterRow], after: &[ClusterRow]) -> Vec<EventKind> {
    let key = |r: &ClusterRow| (r.ip.clone(), r.port, r.db.clone());
    let old: BTreeMap<_, &ClusterRow> = before.iter().map(|r| (key(r), r)).collect();
    let new: BTreeMap<_, &ClusterRow> = after.iter().map(|r| (key(r), r)).collect();
    let mut events = Vec::new();
    for (k, row) in &new {
        match old.get(k) {
            None => events.push(EventKind::EntryAdded {
                entry: (*row).into(),
            }),
            Some(was) if was.status != row.status => events.push(EventKind::EntryStatus {
                entry: (*row).into(),
                previous_status: was.status.as_str().to_string(),
            }),
            Some(was) if *was != *row => events.push(EventKind::EntryUpdate {
                entry: (*row).into(),
            }),
            Some(_) => {}
        }
    }
    for (k, row) in &old {
        if !new.contains_key(k) {
            events.push(EventKind::EntryDropped {
                entry: (*row).into(),
            });
        }
    }
    events
}

/// One run of the handler; returns its outcome: `ok`, `failed` or `timeout`.
pub async fn run_once(
    handler: &std::path::Path,
    event: &Event,
    self_node_id: &str,
    timeout: Duration,
) -> &'static str {
    let json = match serde_json::to_vec(event) {
        Ok(json) => json,
        Err(e) => {
            warn!(error = %e, "cannot encode an event for the handler");
            return "failed";
        }
    };
    let mut command = tokio::process::Command::new(handler);
    command
        // The node's secrets are not the handler's business.
        .env_remove("BO_CLUSTER_KEY")
        .env_remove("BO_API_TOKEN")
        .env("BO_EVENT", event.kind.name())
        .env("BO_EVENT_ID", event.id.to_string())
        .env("BO_EVENT_TIME_MS", event.time_ms.to_string())
        .env("BO_SELF_NODE_ID", self_node_id)
        .envs(
            event
                .kind
                .fields()
                .into_iter()
                .map(|(k, v)| (format!("BO_EVENT_{k}"), v)),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout ends what it started too.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            warn!(handler = %handler.display(), event = event.kind.name(), error = %e, "cannot start the event handler");
            return "failed";
        }
    };
    let group = child.id();
    let stdin = child.stdin.take();
    let run = async {
        if let Some(mut stdin) = stdin {
            // A handler that does not read its stdin is fine.
            let _ = stdin.write_all(&json).await;
            let _ = stdin.write_all(b"\n").await;
        }
        child.wait_with_output().await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) if output.status.success() => {
            debug!(handler = %handler.display(), event = event.kind.name(), id = event.id, "event handler ran");
            "ok"
        }
        Ok(Ok(output)) => {
            let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
            text.truncate(HANDLER_OUTPUT_LOGGED);
            warn!(handler = %handler.display(), event = event.kind.name(), id = event.id, status = %output.status, stderr = %text.trim_end(), "event handler failed");
            "failed"
        }
        Ok(Err(e)) => {
            warn!(handler = %handler.display(), event = event.kind.name(), error = %e, "event handler failed");
            "failed"
        }
        // Dropping the future dropped the child, which kill_on_drop kills (by its PID); the
        // rest of its group (what the script started) goes the same way.
        Err(_) => {
            if let Some(pid) = group.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            warn!(handler = %handler.display(), event = event.kind.name(), id = event.id, timeout = ?timeout, "event handler timed out and was killed");
            "timeout"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{EntryStatus, Source};

    fn row(ip: &str, db: &str, status: EntryStatus) -> ClusterRow {
        ClusterRow {
            host: "h".into(),
            ip: ip.into(),
            port: 9091,
            db: db.into(),
            source: Source::Add,
            status,
            node_id: "n".into(),
        }
    }

    #[test]
    fn entry_diff_names_added_dropped_and_status_changes() {
        let before = vec![
            row("10.0.0.1", "a", EntryStatus::Alive),
            row("10.0.0.2", "b", EntryStatus::Alive),
        ];
        let after = vec![
            row("10.0.0.1", "a", EntryStatus::Dead),
            row("10.0.0.3", "c", EntryStatus::Unreachable),
        ];
        let names: Vec<&str> = diff_entries(&before, &after)
            .iter()
            .map(EventKind::name)
            .collect();
        assert_eq!(names, ["entry-status", "entry-added", "entry-dropped"]);
        assert!(diff_entries(&after, &after).is_empty());
        match &diff_entries(&before, &after)[0] {
            EventKind::EntryStatus {
                entry,
                previous_status,
            } => {
                assert_eq!(
                    (entry.status.as_str(), previous_status.as_str()),
                    ("dead", "alive")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_serialize_flat_with_their_name() {
        let events = Events::new("me");
        let event = events.publish(EventKind::EntryDropped {
            entry: (&row("10.0.0.1", "a", EntryStatus::Left)).into(),
        });
        let json = serde_json::to_value(&*event).unwrap();
        assert_eq!(json["event"], "entry-dropped");
        assert_eq!(json["id"], 1);
        assert_eq!(json["observer"], "me");
        assert_eq!(json["entry"]["status"], "left");
    }

    #[test]
    fn history_keeps_the_last_events_and_resumes_after_an_id() {
        let events = Events::new("me");
        for _ in 0..HISTORY + 5 {
            events.publish(EventKind::EntryDropped {
                entry: (&row("10.0.0.1", "a", EntryStatus::Left)).into(),
            });
        }
        let (all, _) = events.subscribe_since(0);
        assert_eq!(all.len(), HISTORY);
        assert_eq!(all[0].id, 6);
        let (tail, mut next) = events.subscribe_since(HISTORY as u64 + 3);
        assert_eq!(tail.iter().map(|e| e.id).collect::<Vec<_>>(), [104, 105]);
        events.publish(EventKind::EntryDropped {
            entry: (&row("10.0.0.1", "a", EntryStatus::Left)).into(),
        });
        assert_eq!(next.try_recv().map(|e| e.id).ok(), Some(106));
    }

    #[tokio::test]
    async fn the_handler_gets_the_event_in_its_environment_and_stdin_and_is_timed_out() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = dir.path().join("handler.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n{{ echo \"$BO_EVENT $BO_EVENT_DB $BO_EVENT_PREVIOUS_STATUS $BO_SELF_NODE_ID\"; cat; }} > {}\n[ \"$BO_EVENT_DB\" = slow ] && sleep 5\nexit 0\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let events = Events::new("me");
        let event = events.publish(EventKind::EntryStatus {
            entry: (&row("10.0.0.1", "log1", EntryStatus::Dead)).into(),
            previous_status: "alive".into(),
        });
        let outcome = run_once(&script, &event, "me", Duration::from_secs(10)).await;
        assert_eq!(outcome, "ok");
        let text = std::fs::read_to_string(&out).unwrap();
        let (env_line, json) = text.split_once('\n').unwrap();
        assert_eq!(env_line, "entry-status log1 alive me");
        let json: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(json["entry"]["status"], "dead");

        let slow = events.publish(EventKind::EntryAdded {
            entry: (&row("10.0.0.1", "slow", EntryStatus::Alive)).into(),
        });
        let started = std::time::Instant::now();
        let outcome = run_once(&script, &slow, "me", Duration::from_millis(300)).await;
        assert_eq!(outcome, "timeout");
        assert!(started.elapsed() < Duration::from_secs(4));
        let missing = run_once(
            &dir.path().join("missing"),
            &slow,
            "me",
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(missing, "failed");
    }
}
