//! Carries out a parsed statement against the node: parse -> execute -> reply.

use serde_json::{json, Value};

use crate::catalog::CatalogError;
use crate::node::NodeContext;
use crate::reply::{retcode, ExecError, Reply};
use crate::sql::{parse_statement, Statement};

/// Parses and executes one statement.
pub async fn execute_text(ctx: &NodeContext, text: &str) -> Result<Reply, ExecError> {
    let statement = parse_statement(text).map_err(|e| ExecError {
        http_status: 400,
        retcode: retcode::PARSE_ERROR,
        errmsg: e.to_string(),
    })?;
    execute(ctx, statement).await
}

pub async fn execute(ctx: &NodeContext, statement: Statement) -> Result<Reply, ExecError> {
    match statement {
        Statement::CreateDatabase { name } => {
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
        Statement::ShowCluster | Statement::AddClient(_) | Statement::DropClient(_) => Err(
            ExecError::statement("cluster statements (ADD CLIENT, DROP CLIENT, SHOW CLUSTER) are not available in this build"),
        ),
    }
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
        .gossip
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
