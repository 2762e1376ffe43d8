//! The node's Prometheus metrics (`GET /metrics`), as typed families with a small API.
//!
//! Counters are fed where things happen: statements by the executor, registrations by the
//! master, seal refusals and TLS failures by the transport ([`Metrics::datagram_refused`],
//! [`Metrics::tls_handshake_failed`], which it calls through its [`RefusalSink`] trait: it may
//! not depend on this module, which reads the layers above it). Members by status, cluster entries by status and the
//! membership engine's own counters (packets by kind, bytes, refusals) are not kept here: they
//! are read from the snapshots and the engine's stats at scrape time, so they never drift.

use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::cluster::{ClusterRow, EntryStatus};
use crate::membership::{EngineStats, Member, MemberStatus};
use crate::seal::OpenError;
use crate::transport::RefusalSink;

/// The content type of [`Metrics::encode`]'s text (OpenMetrics, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How a registration reached the master, and what it did.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RegistrationVia {
    /// A `BO_MASTER` client's hello (or first registration) over QUIC.
    Hello,
    /// A `BO_MASTER` client's first registration in one sealed datagram.
    Datagram,
    /// The masters a member advertises in gossip.
    Gossip,
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// The master's cluster changed (entries added or removed).
    Changed,
    /// Already recorded as it is.
    Unchanged,
    /// It could not be written to disk.
    Failed,
}

impl RegistrationVia {
    fn as_str(self) -> &'static str {
        match self {
            RegistrationVia::Hello => "hello",
            RegistrationVia::Gossip => "gossip",
            RegistrationVia::Datagram => "datagram",
        }
    }
}

impl RegistrationOutcome {
    fn as_str(self) -> &'static str {
        match self {
            RegistrationOutcome::Changed => "changed",
            RegistrationOutcome::Unchanged => "unchanged",
            RegistrationOutcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PacketLabels {
    direction: &'static str,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrationLabels {
    via: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// Every metric of one node. Cheap to call from any task: counters are atomics.
pub struct Metrics {
    registry: Registry,
    datagrams_refused: Family<RefusalLabels, Counter>,
    tls_handshake_failures: Counter,
    registrations: Family<RegistrationLabels, Counter>,
    statements: Family<StatementLabels, Counter>,
    statement_seconds: Histogram,
    event_handler_runs: Family<HandlerLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bocluster");
        let datagrams_refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "datagrams_refused",
            "Membership datagrams dropped before decoding (by the seal), by the seal's reason",
            datagrams_refused.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "QUIC connections whose mutual TLS handshake failed (a peer of another cluster key)",
            tls_handshake_failures.clone(),
        );
        let registrations = Family::<RegistrationLabels, Counter>::default();
        registry.register(
            "registrations",
            "Client registrations seen by this node as a master, by how they came and what they did",
            registrations.clone(),
        );
        let statements = Family::<StatementLabels, Counter>::default();
        registry.register(
            "statements",
            "Statements executed, by kind and outcome (from HTTP, /cmd and MySQL alike)",
            statements.clone(),
        );
        // 50 us .. ~1.6 s: a SHOW takes microseconds, an ADD CLIENT that dials takes longer.
        let statement_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "statement_duration_seconds",
            "Time from a statement's arrival to its answer",
            statement_seconds.clone(),
        );
        let event_handler_runs = Family::<HandlerLabels, Counter>::default();
        registry.register(
            "event_handler_runs",
            "Runs of BO_EVENT_HANDLER, by outcome (ok, failed, timeout, skipped)",
            event_handler_runs.clone(),
        );
        Metrics {
            registry,
            datagrams_refused,
            tls_handshake_failures,
            registrations,
            statements,
            statement_seconds,
            event_handler_runs,
        }
    }

    /// The transport dropped a membership datagram before decoding it. Labelled with the
    /// seal's own reason (as the transport's log line is): a fixed set of eight names.
    pub fn datagram_refused(&self, refusal: &OpenError) {
        self.datagrams_refused
            .get_or_create(&RefusalLabels {
                reason: refusal.reason(),
            })
            .inc();
    }

    /// A QUIC connection's TLS handshake failed.
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// A registration reached this node as a master.
    pub fn registration(&self, via: RegistrationVia, outcome: RegistrationOutcome) {
        self.registrations
            .get_or_create(&RegistrationLabels {
                via: via.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// A statement of `kind` ended with `outcome` ("ok" or an error kind) after `took`.
    pub fn statement(&self, kind: &'static str, outcome: &'static str, took: Duration) {
        self.statements
            .get_or_create(&StatementLabels { kind, outcome })
            .inc();
        self.statement_seconds.observe(took.as_secs_f64());
    }

    /// A run of the event handler ended with `outcome`.
    pub fn event_handler_run(&self, outcome: &'static str) {
        self.event_handler_runs
            .get_or_create(&HandlerLabels { outcome })
            .inc();
    }

    /// Every metric as OpenMetrics text, with members and cluster entries counted by status
    /// from the given snapshots (every status is listed, zero included, so a dashboard's
    /// series never vanish).
    pub fn encode(
        &self,
        members: &[Member],
        entries: &[ClusterRow],
        engine: &EngineStats,
    ) -> String {
        let mut scrape = Registry::with_prefix("bocluster");
        let packets = Family::<PacketLabels, Counter>::default();
        for (direction, kind, n) in [
            ("out", "swim", engine.swim_out),
            ("in", "swim", engine.swim_in),
            ("out", "leaving", engine.leaving_out),
            ("in", "leaving", engine.leaving_in),
            ("out", "digest", engine.digest_out),
            ("in", "digest", engine.digest_in),
            ("out", "suspected", engine.suspected_out),
            ("in", "suspected", engine.suspected_in),
            ("out", "alive", engine.alive_out),
            ("in", "alive", engine.alive_in),
            ("out", "hello", engine.hello_out),
            ("in", "hello", engine.hello_in),
        ] {
            packets
                .get_or_create(&PacketLabels { direction, kind })
                .inc_by(n);
        }
        scrape.register(
            "membership_packets",
            "Membership datagrams sent (out) and received (in), by kind: swim (probes, acks and what rides on them), leaving, digest (anti-entropy), suspected (told to a suspect), alive (a suspect's answer), hello (ADD CLIENT's greeting and its answer)",
            packets,
        );
        let bytes = Family::<DirectionLabels, Counter>::default();
        bytes
            .get_or_create(&DirectionLabels { direction: "out" })
            .inc_by(engine.bytes_out);
        bytes
            .get_or_create(&DirectionLabels { direction: "in" })
            .inc_by(engine.bytes_in);
        scrape.register(
            "membership_bytes",
            "Plaintext bytes of membership datagrams sent (out) and received (in); the seal adds its overhead on top",
            bytes,
        );
        let refused = Family::<RefusalLabels, Counter>::default();
        refused
            .get_or_create(&RefusalLabels {
                reason: "undecodable",
            })
            .inc_by(engine.refused);
        refused
            .get_or_create(&RefusalLabels {
                reason: "amplification",
            })
            .inc_by(engine.amplification_dropped);
        scrape.register(
            "membership_refused",
            "Membership datagrams the engine refused: undecodable (or refused by foca), or answers dropped as bigger than what an unknown source sent (amplification)",
            refused,
        );
        let pulls = Family::<KindLabels, Counter>::default();
        for (kind, n) in [
            ("record_batch", engine.record_batches),
            ("owner", engine.owner_pulls),
            ("anti_entropy", engine.anti_entropy_pulls),
        ] {
            pulls.get_or_create(&KindLabels { kind }).inc_by(n);
        }
        scrape.register(
            "membership_pulls",
            "Record pulls this node asked for over QUIC, by what asked: record_batch (records missing here, from a peer), owner (a record from the member itself), anti_entropy (versions, records or gone members after digests differed)",
            pulls,
        );
        let rejoins = Counter::<u64>::default();
        rejoins.inc_by(engine.rejoins);
        scrape.register(
            "membership_rejoins",
            "Times this node found itself declared dead and rejoined under a renewed identity",
            rejoins,
        );
        let ports_closed = Counter::<u64>::default();
        ports_closed.inc_by(engine.ports_closed);
        scrape.register(
            "membership_ports_closed",
            "Answers from a peer's host that nothing listens on the port this node sent to (ICMP port unreachable: the peer's process is gone)",
            ports_closed,
        );
        let suspected_on_closed_port = Counter::<u64>::default();
        suspected_on_closed_port.inc_by(engine.suspected_on_closed_port);
        scrape.register(
            "membership_suspected_on_closed_port",
            "Live members this node suspected at once because their port was closed",
            suspected_on_closed_port,
        );
        let by_member_status = Family::<StatusLabels, Gauge>::default();
        for status in [MemberStatus::Alive, MemberStatus::Dead, MemberStatus::Left] {
            let n = members.iter().filter(|m| m.status == status).count();
            by_member_status
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(n as i64);
        }
        scrape.register(
            "members",
            "Members this node's membership knows, by status (itself included)",
            by_member_status,
        );
        let by_entry_status = Family::<StatusLabels, Gauge>::default();
        for status in [
            EntryStatus::Alive,
            EntryStatus::NoDb,
            EntryStatus::Dead,
            EntryStatus::Left,
            EntryStatus::Unreachable,
        ] {
            let n = entries.iter().filter(|r| r.status == status).count();
            by_entry_status
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(n as i64);
        }
        scrape.register(
            "cluster_entries",
            "Entries of this node's cluster (as a master), by status",
            by_entry_status,
        );
        let mut text = String::new();
        // Writing to a String cannot fail; a failure would only cut the text short.
        let _ = encode_registry(&mut text, &self.registry);
        let _ = encode_registry(&mut text, &scrape);
        let _ = encode_eof(&mut text);
        text
    }
}

/// How the transport's refusals reach these counters.
impl RefusalSink for Metrics {
    fn datagram_refused(&self, refusal: &OpenError) {
        Metrics::datagram_refused(self, refusal);
    }

    fn tls_handshake_failed(&self) {
        Metrics::tls_handshake_failed(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_snapshot_gauges_appear_in_the_text() {
        let metrics = Metrics::new();
        metrics.statement("show_nodes", "ok", Duration::from_micros(80));
        metrics.datagram_refused(&OpenError::NoKeyOpens);
        metrics.datagram_refused(&OpenError::NoKeyOpens);
        metrics.datagram_refused(&OpenError::Truncated { len: 3 });
        metrics.tls_handshake_failed();
        let engine = EngineStats {
            swim_out: 3,
            bytes_out: 200,
            suspected_in: 4,
            hello_in: 9,
            owner_pulls: 5,
            anti_entropy_pulls: 6,
            rejoins: 7,
            ports_closed: 8,
            ..EngineStats::default()
        };
        let text = metrics.encode(&[], &[], &engine);
        assert!(
            text.contains(r#"bocluster_statements_total{kind="show_nodes",outcome="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_membership_bytes_total{direction="out"} 200"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_datagrams_refused_total{reason="no_key_opens"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_datagrams_refused_total{reason="truncated"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("bocluster_tls_handshake_failures_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_membership_packets_total{direction="out",kind="swim"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"bocluster_membership_packets_total{direction="in",kind="suspected"} 4"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_membership_packets_total{direction="in",kind="hello"} 9"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_membership_pulls_total{kind="owner"} 5"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_membership_pulls_total{kind="anti_entropy"} 6"#),
            "{text}"
        );
        assert!(
            text.contains("bocluster_membership_rejoins_total 7"),
            "{text}"
        );
        assert!(
            text.contains("bocluster_membership_ports_closed_total 8"),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_members{status="alive"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bocluster_cluster_entries{status="unreachable"} 0"#),
            "{text}"
        );
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
