//! Carries out a parsed statement against the node: parse -> execute -> reply.

use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tracing::debug;

use crate::catalog::CatalogError;
use crate::cluster::dialable::{check_dialable, check_resolved};
use crate::cluster::master::introduce_soon;
use crate::cluster::{AddOutcome, SHOW_CLUSTER_COLUMNS};
use crate::context::NodeContext;
use crate::reply::{retcode, ExecError, Reply};
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

/// Parses and executes one statement.
pub async fn execute_text(ctx: &Arc<NodeContext>, text: &str) -> Result<Reply, ExecError> {
    let statement = parse_text(text).await?;
    execute(ctx, statement).await
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
    parsed.map_err(|e| ExecError {
        http_status: 400,
        retcode: retcode::PARSE_ERROR,
        errmsg: e.to_string(),
    })
}

pub async fn execute(ctx: &Arc<NodeContext>, statement: Statement) -> Result<Reply, ExecError> {
    match statement {
        Statement::CreateDatabase { name } => {
            // The advertisement must carry every database: refuse one that would not fit,
            // before it exists.
            let mut names: Vec<String> = ctx.catalog.list().iter().map(|n| n.to_string()).collect();
            names.push(name.to_string());
            if let Err(e) = ctx.membership.check_databases(names).await {
                return Err(ExecError {
                    http_status: 400,
                    retcode: retcode::STATEMENT_ERROR,
                    errmsg: format!("cannot create database {name}: {e}"),
                });
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
    let outcome = ctx
        .cluster
        .add_client(spec, &ctx.membership.members())
        .map_err(|e| ExecError::server(e.to_string()))?;
    // Reach the client now rather than at the next reach-out round.
    introduce_soon(ctx, ctx.cluster.addresses_of(&spec.host, spec.port));
    Ok(Reply::message(match outcome {
        AddOutcome::Added => format!("client {} added", describe(spec)),
        AddOutcome::AlreadyThere => format!("client {} is already in the cluster", describe(spec)),
    }))
}

fn drop_client(ctx: &NodeContext, spec: &ClientSpec) -> Result<Reply, ExecError> {
    let removed = ctx
        .cluster
        .drop_client(spec, &ctx.membership.members())
        .map_err(|e| ExecError::server(e.to_string()))?;
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
