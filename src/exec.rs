//! Carries out a parsed statement against the node: parse -> execute -> reply.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::catalog::CatalogError;
use crate::cluster::dialable::{check_dialable, check_resolved};
use crate::cluster::master::dial_unless_greeted;
use crate::cluster::{AddOutcome, SHOW_CLUSTER_COLUMNS};
use crate::context::NodeContext;
use crate::reply::{ExecError, Reply};
use crate::resolve::resolve_host;
use crate::sql::{parse_statement, ClientHost, ClientSpec, Statement};

/// Statements up to this long are parsed right where they arrive, on the async worker (that
/// takes microseconds); longer ones, which only a script or an attacker sends, are parsed on
/// the blocking pool, at most [`parse_permits`] at a time, so that a burst of MiB-long
/// statements never holds the few workers that also run gossip and answer `/health`.
pub const INLINE_PARSE_MAX_BYTES: usize = 4 * 1024;

/// Long statements parsed at once: one per CPU (at least one). The parser is CPU-bound; more
/// at a time would only queue them in the blocking pool's threads instead of here.
fn parse_permits() -> &'static Semaphore {
    static PERMITS: OnceLock<Semaphore> = OnceLock::new();
    PERMITS.get_or_init(|| {
        Semaphore::new(std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
    })
}

/// Parses and executes one statement, and counts it (kind, outcome, time) in the metrics.
pub async fn execute_text(ctx: &Arc<NodeContext>, text: &str) -> Result<Reply, ExecError> {
    let started = std::time::Instant::now();
    let (kind, result) = match parse_text(text).await {
        Ok(statement) => {
            let kind = statement_kind(&statement);
            (kind, execute(ctx, statement).await)
        }
        Err(e) => ("unparsed", Err(e)),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind(),
    };
    ctx.metrics.statement(kind, outcome, started.elapsed());
    result
}

/// Kinds of statements, as the metrics and the shell's `\h` name them.
pub const STATEMENT_KINDS: [(&str, &str); 7] = [
    ("create_database", "CREATE DATABASE name"),
    ("drop_database", "DROP DATABASE name"),
    ("show_databases", "SHOW DATABASES"),
    ("show_nodes", "SHOW NODES"),
    ("show_cluster", "SHOW CLUSTER"),
    (
        "add_client",
        "ADD CLIENT ip=\"10.0.0.5\" [port=9091] db=\"name\"  (or host=\"name\")",
    ),
    (
        "drop_client",
        "DROP CLIENT ip=\"10.0.0.5\" [port=9091] db=\"name\"",
    ),
];

/// The metrics' name of a statement's kind (one of [`STATEMENT_KINDS`]).
pub fn statement_kind(statement: &Statement) -> &'static str {
    match statement {
        Statement::CreateDatabase { .. } => "create_database",
        Statement::DropDatabase { .. } => "drop_database",
        Statement::ShowDatabases => "show_databases",
        Statement::ShowNodes => "show_nodes",
        Statement::ShowCluster => "show_cluster",
        Statement::AddClient(_) => "add_client",
        Statement::DropClient(_) => "drop_client",
    }
}

/// Parses one statement, off the async workers if it is long (see [`INLINE_PARSE_MAX_BYTES`]).
pub async fn parse_text(text: &str) -> Result<Statement, ExecError> {
    let parsed = if text.len() <= INLINE_PARSE_MAX_BYTES {
        parse_statement(text)
    } else {
        let _permit = parse_permits()
            .acquire()
            .await
            .map_err(|_| ExecError::server("the statement parser is shut down"))?;
        let text = text.to_owned();
        tokio::task::spawn_blocking(move || parse_statement(&text))
            .await
            .map_err(|e| ExecError::server(format!("parsing the statement failed: {e}")))?
    };
    Ok(parsed?)
}

pub async fn execute(ctx: &Arc<NodeContext>, statement: Statement) -> Result<Reply, ExecError> {
    match statement {
        Statement::CreateDatabase { name } => {
            // The advertisement must carry every database: refuse one that would not fit,
            // before it exists.
            let mut names: Vec<String> = ctx.catalog.list().iter().map(|n| n.to_string()).collect();
            names.push(name.to_string());
            if let Err(e) = ctx.membership.check_databases(names).await {
                return Err(ExecError::statement(format!(
                    "cannot create database {name}: {e}"
                )));
            }
            ctx.catalog.create(&name).map_err(catalog_error)?;
            ctx.advertise_databases().await;
            Ok(Reply::message(format!("database {name} created")))
        }
        Statement::DropDatabase { name } => {
            ctx.catalog.drop_database(&name).map_err(catalog_error)?;
            ctx.advertise_databases().await;
            Ok(Reply::message(format!("database {name} dropped")))
        }
        Statement::ShowDatabases => {
            let rows = ctx
                .catalog
                .list()
                .into_iter()
                .map(|name| vec![Value::from(name.as_str())])
                .collect();
            Ok(Reply::rows(&["name"], rows))
        }
        Statement::ShowNodes => Ok(show_nodes(ctx)),
        Statement::ShowCluster => Ok(show_cluster(ctx)),
        Statement::AddClient(spec) => add_client(ctx, &spec).await,
        Statement::DropClient(spec) => drop_client(ctx, &spec),
    }
}

/// `host:port db` as messages print an entry.
fn describe(spec: &ClientSpec) -> String {
    match &spec.host {
        ClientHost::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{} db {}", spec.port, spec.db),
        host => format!("{host}:{} db {}", spec.port, spec.db),
    }
}

/// ADD CLIENT: refuses addresses a master must never dial, writes the entry, answers. The
/// client is dialled in the background: an unreachable one does not hold the answer.
async fn add_client(ctx: &Arc<NodeContext>, spec: &ClientSpec) -> Result<Reply, ExecError> {
    let refuse = |reason: String| {
        ExecError::statement(format!("cannot add client {}: {reason}", describe(spec)))
    };
    match &spec.host {
        ClientHost::Ip(ip) => check_dialable(*ip).map_err(refuse)?,
        ClientHost::Dns(name) => match resolve_host(name).await {
            Ok(ips) => {
                check_resolved(name, &ips).map_err(refuse)?;
                ctx.cluster.set_resolved(name, ips);
            }
            // Not resolvable yet: added all the same, resolved again every round.
            Err(e) => debug!(name, error = %e, "cannot resolve a client name yet"),
        },
    }
    // Membership's hello (one sealed datagram each way) goes out before the entry is
    // written: it changes no topology, its round trip overlaps the fsync, and a client that
    // answered by then is `alive` the moment the entry is in. A client that does not answer
    // it is dialled over QUIC after the write (see `dial_unless_greeted`). The answer waits
    // for the disk, then at most [`GREETING_WAIT`] for the client's answering hello, so that
    // it can say whether the client is there.
    let addrs = ctx.cluster.addresses_of(&spec.host, spec.port);
    for &addr in &addrs {
        ctx.membership.say_hello(addr);
    }
    // The write blocks on fsync: off the async workers, which meanwhile drive those handshakes.
    let write = {
        let ctx = ctx.clone();
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || {
            ctx.cluster.add_client(&spec, &ctx.membership.members())
        })
    };
    let outcome = write
        .await
        .map_err(|e| ExecError::server(format!("writing the entry failed: {e}")))?
        .map_err(|e| ExecError::server(e.to_string()))?;
    ctx.events.cluster_changed();
    let answered =
        outcome == AddOutcome::Added && ctx.membership.wait_alive_at(&addrs, GREETING_WAIT).await;
    dial_unless_greeted(ctx, addrs);
    Ok(Reply::message(match (outcome, answered) {
        (AddOutcome::Added, true) => format!("client {} added; its node is alive", describe(spec)),
        (AddOutcome::Added, false) => format!(
            "client {} added; its node has not answered yet (SHOW CLUSTER shows when it does)",
            describe(spec)
        ),
        (AddOutcome::AlreadyThere, _) => {
            format!("client {} is already in the cluster", describe(spec))
        }
    }))
}

/// How long ADD CLIENT waits, after the write, for the client to answer the master's hello:
/// a round trip on a busy LAN, plus the 50 ms for which membership may hold back a new
/// member list. A client that answers later still turns `alive`; the answer only says so.
const GREETING_WAIT: Duration = Duration::from_millis(60);

fn drop_client(ctx: &NodeContext, spec: &ClientSpec) -> Result<Reply, ExecError> {
    let removed = ctx
        .cluster
        .drop_client(spec, &ctx.membership.members())
        .map_err(|e| ExecError::server(e.to_string()))?;
    ctx.events.cluster_changed();
    match removed {
        Some(_) => Ok(Reply::message(format!("client {} dropped", describe(spec)))),
        None => Err(ExecError::statement(format!(
            "client {} is not in this node's cluster (see SHOW CLUSTER)",
            describe(spec)
        ))),
    }
}

fn show_cluster(ctx: &NodeContext) -> Reply {
    let rows = ctx
        .cluster
        .rows(&ctx.membership.members())
        .into_iter()
        .map(|r| {
            vec![
                json!(r.host),
                json!(r.ip),
                json!(r.port),
                json!(r.db),
                json!(r.source.as_str()),
                json!(r.status.as_str()),
                json!(r.node_id),
            ]
        })
        .collect();
    Reply::rows(&SHOW_CLUSTER_COLUMNS, rows)
}

fn catalog_error(e: CatalogError) -> ExecError {
    if e.is_user_error() {
        ExecError::statement(e.to_string())
    } else {
        ExecError::server(e.to_string())
    }
}

/// Columns of SHOW NODES, in order.
pub const SHOW_NODES_COLUMNS: [&str; 7] = [
    "node_id",
    "endpoint",
    "status",
    "generation",
    "databases",
    "masters",
    "version",
];

fn show_nodes(ctx: &NodeContext) -> Reply {
    let rows = ctx
        .membership
        .members()
        .iter()
        .map(|m| {
            vec![
                json!(m.node_id),
                json!(m.endpoint.to_string()),
                json!(m.status.as_str()),
                json!(m.generation),
                json!(m.databases.join(",")),
                json!(m.masters.join(",")),
                json!(m.version),
            ]
        })
        .collect();
    Reply::rows(&SHOW_NODES_COLUMNS, rows)
}
