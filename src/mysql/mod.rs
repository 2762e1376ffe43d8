//! The MySQL client/server protocol on 3306 (`BO_MYSQL`), so that `mysql`, `mariadb` and
//! drivers such as PyMySQL run our statements.
//!
//! `opensrv-mysql` speaks the protocol; this module only translates: the queries clients send
//! on connect are answered by [`session`], everything else goes to the same executor as
//! `POST /api`, and its answer becomes a result set with typed columns, an OK packet, or an
//! error packet whose code is chosen here from the kind of [`ExecError`].

pub mod auth;
pub mod deadline;
pub mod login;
pub mod session;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, InitWriter,
    OkResponse, ParamParser, QueryResultWriter, StatementMetaWriter,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::context::NodeContext;
use crate::exec::execute_text;
use crate::reply::{ExecError, Reply};
use session::Local;

/// MySQL connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 256;

/// A connection that sends nothing for this long is closed (MySQL's own `wait_timeout` is
/// 8 hours; clients with pools reconnect on their own). It bounds what a silent or
/// half-open connection holds.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A client has this long between two pieces of its handshake (the login) before the
/// connection is closed: one that connects and says nothing frees its place soon.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    #[error("address {addr} is already in use (TCP); is another node or a MySQL server running there? (set BO_MYSQL=off to disable it)")]
    InUse { addr: SocketAddr },
    #[error("cannot bind TCP {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// Binds the MySQL listener (at start, so a port in use stops the node with a clear error).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MysqlError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == io::ErrorKind::AddrInUse {
            MysqlError::InUse { addr }
        } else {
            MysqlError::Bind { addr, source }
        }
    })
}

/// Accepts connections until the task is aborted; each runs on a task of its own.
pub async fn serve(ctx: Arc<NodeContext>, listener: TcpListener) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let ids = Arc::new(AtomicU32::new(1));
    if let Ok(addr) = listener.local_addr() {
        info!(mysql = %addr, "serving the MySQL protocol");
    }
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let ctx = ctx.clone();
                let id = ids.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(ctx, stream, id).await {
                        debug!(%peer, error = %e, "MySQL connection closed");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(error = %e, "cannot accept MySQL connections; trying again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Logs the client in ([`login`]), then hands the connection to opensrv-mysql.
async fn serve_connection(ctx: Arc<NodeContext>, stream: TcpStream, id: u32) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let limit = deadline::Limit::new(LOGIN_TIMEOUT);
    let mut reader = deadline::DeadlineReader::new(reader, limit.clone());
    let salt = auth::random_salt();
    let password = ctx.config.api_token.as_ref().map(|t| *t.mysql_hash());
    let outcome = login::login(
        &mut reader,
        &mut writer,
        &server_version(),
        id,
        &salt,
        password.as_ref(),
    )
    .await?;
    let (response, seq) = match outcome {
        login::Login::Accepted { response, seq } => (response, seq),
        login::Login::Refused { username } => {
            warn!(
                user = ?username,
                "MySQL login refused: the password must be the node's API token (BO_API_TOKEN)"
            );
            return Ok(());
        }
    };
    let mut shim = Session {
        ctx,
        id,
        database: None,
        salt,
    };
    if let Some(database) = &response.database {
        if let Err(message) = shim.use_database(database) {
            let packet = login::error_packet(ErrorKind::ER_BAD_DB_ERROR, &message);
            return login::write_packet(&mut writer, seq, &packet).await;
        }
    }
    login::write_packet(&mut writer, seq, &login::ok_packet(response.capabilities)).await?;
    limit.set(IDLE_TIMEOUT);
    // opensrv-mysql greets and logs in again: it reads the hand-off and its greeting and OK
    // are dropped, so the client sees one login.
    let reader = std::io::Cursor::new(login::handoff(&response)).chain(reader);
    let writer = login::SkipPackets::new(writer, 2);
    AsyncMysqlIntermediary::run_on(shim, reader, writer).await
}

/// One client connection.
struct Session {
    ctx: Arc<NodeContext>,
    id: u32,
    /// The database of `USE` (or of the handshake); our statements name their own, so it is
    /// only what `SELECT DATABASE()` answers.
    database: Option<String>,
    /// This connection's handshake salt (the one [`login::login`] used).
    salt: [u8; auth::SALT_LEN],
}

/// The version clients see: a MySQL 5.7 protocol level (what drivers check), then ours (the
/// package version, as the node advertises it; read from Cargo here so that this front end
/// does not reach back into the node that starts it).
pub fn server_version() -> String {
    format!("5.7.0-bocluster-{}", env!("CARGO_PKG_VERSION"))
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> AsyncMysqlShim<W> for Session {
    type Error = io::Error;

    fn version(&self) -> String {
        server_version()
    }

    fn connect_id(&self) -> u32 {
        self.id
    }

    fn salt(&self) -> [u8; auth::SALT_LEN] {
        self.salt
    }

    /// The password was checked by [`login::login`] before opensrv-mysql saw the connection.
    async fn authenticate(
        &self,
        _auth_plugin: &str,
        _username: &[u8],
        _salt: &[u8],
        _answer: &[u8],
    ) -> bool {
        true
    }

    async fn on_prepare<'a>(
        &'a mut self,
        _query: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> io::Result<()> {
        info.error(
            ErrorKind::ER_NOT_SUPPORTED_YET,
            b"prepared statements are not supported by bocluster; send statements as text",
        )
        .await
    }

    async fn on_execute<'a>(
        &'a mut self,
        _id: u32,
        _params: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        results
            .error(
                ErrorKind::ER_UNKNOWN_STMT_HANDLER,
                b"prepared statements are not supported by bocluster",
            )
            .await
    }

    async fn on_close<'a>(&'a mut self, _stmt: u32)
    where
        W: 'async_trait,
    {
    }

    async fn on_init<'a>(
        &'a mut self,
        database: &'a str,
        writer: InitWriter<'a, W>,
    ) -> io::Result<()> {
        match self.use_database(database) {
            Ok(()) => writer.ok().await,
            Err(message) => {
                writer
                    .error(ErrorKind::ER_BAD_DB_ERROR, message.as_bytes())
                    .await
            }
        }
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        let local = session::answer_locally(query, self.database.as_deref(), self.id);
        let outcome = match local {
            Some(Local::Use(database)) => match self.use_database(&database) {
                Ok(()) => Ok(Reply::message(format!("database changed to {database}"))),
                Err(message) => {
                    return results
                        .error(ErrorKind::ER_BAD_DB_ERROR, message.as_bytes())
                        .await
                }
            },
            Some(Local::Answer(reply)) => Ok(reply),
            None => execute_text(&self.ctx, query).await,
        };
        match outcome {
            Ok(reply) => write_reply(reply, results).await,
            Err(e) => {
                results
                    .error(error_kind(&e), e.to_string().as_bytes())
                    .await
            }
        }
    }
}

impl Session {
    fn use_database(&mut self, database: &str) -> Result<(), String> {
        let name = database.trim().trim_matches('`');
        // Some drivers (mysql.connector) name an empty database on connect: none chosen.
        if name.is_empty() {
            self.database = None;
            return Ok(());
        }
        let known = self.ctx.catalog.list().iter().any(|n| n.as_str() == name);
        if known {
            self.database = Some(name.to_string());
            Ok(())
        } else {
            Err(format!(
                "unknown database {name:?} on this node (see SHOW DATABASES)"
            ))
        }
    }
}

/// The MySQL error code for a failed statement.
pub fn error_kind(e: &ExecError) -> ErrorKind {
    match e {
        ExecError::BadRequest(_) => ErrorKind::ER_UNKNOWN_COM_ERROR,
        ExecError::Parse(_) => ErrorKind::ER_PARSE_ERROR,
        ExecError::Statement(_) => ErrorKind::ER_WRONG_ARGUMENTS,
        ExecError::Server(_) => ErrorKind::ER_UNKNOWN_ERROR,
    }
}

/// A column's type, from its values: unsigned or signed 64-bit integers, doubles, or text.
pub fn column_type(values: impl Iterator<Item = Value> + Clone) -> (ColumnType, ColumnFlags) {
    let mut non_null = values.filter(|v| !v.is_null()).peekable();
    if non_null.peek().is_none() {
        return (ColumnType::MYSQL_TYPE_VAR_STRING, ColumnFlags::empty());
    }
    let all = |f: fn(&Value) -> bool| non_null.clone().all(|v| f(&v));
    if all(|v| v.is_u64()) {
        (ColumnType::MYSQL_TYPE_LONGLONG, ColumnFlags::UNSIGNED_FLAG)
    } else if all(|v| v.is_i64() || v.is_u64()) && all(|v| v.as_i64().is_some()) {
        (ColumnType::MYSQL_TYPE_LONGLONG, ColumnFlags::empty())
    } else if all(Value::is_number) {
        (ColumnType::MYSQL_TYPE_DOUBLE, ColumnFlags::empty())
    } else {
        (ColumnType::MYSQL_TYPE_VAR_STRING, ColumnFlags::empty())
    }
}

/// Columns of a reply, typed from its rows.
pub fn columns_of(reply: &Reply) -> Vec<Column> {
    reply
        .columns
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let values = reply
                .results
                .iter()
                .map(move |row| row.get(i).cloned().unwrap_or(Value::Null));
            let (coltype, colflags) = column_type(values);
            Column {
                table: String::new(),
                column: name.clone(),
                coltype,
                colflags,
            }
        })
        .collect()
}

async fn write_reply<W: AsyncWrite + Send + Unpin>(
    reply: Reply,
    results: QueryResultWriter<'_, W>,
) -> io::Result<()> {
    if reply.columns.is_empty() {
        return results
            .completed(OkResponse {
                info: reply.message.unwrap_or_default(),
                ..OkResponse::default()
            })
            .await;
    }
    let columns = columns_of(&reply);
    let mut rows = results.start(&columns).await?;
    for row in &reply.results {
        for (i, column) in columns.iter().enumerate() {
            let value = row.get(i).unwrap_or(&Value::Null);
            match (value, column.coltype) {
                (Value::Null, _) => rows.write_col(None::<u8>)?,
                (v, ColumnType::MYSQL_TYPE_LONGLONG)
                    if column.colflags.contains(ColumnFlags::UNSIGNED_FLAG) =>
                {
                    rows.write_col(v.as_u64().unwrap_or_default())?
                }
                (v, ColumnType::MYSQL_TYPE_LONGLONG) => {
                    rows.write_col(v.as_i64().unwrap_or_default())?
                }
                (v, ColumnType::MYSQL_TYPE_DOUBLE) => {
                    rows.write_col(v.as_f64().unwrap_or_default())?
                }
                (Value::String(s), _) => rows.write_col(s.as_str())?,
                (other, _) => rows.write_col(other.to_string())?,
            }
        }
        rows.end_row().await?;
    }
    rows.finish().await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_are_typed_from_their_values() {
        let reply = Reply::rows(
            &["name", "port", "delta", "ratio", "empty"],
            vec![
                vec![json!("a"), json!(9091), json!(-1), json!(0.5), Value::Null],
                vec![json!("b"), json!(9092), json!(2), json!(1), Value::Null],
            ],
        );
        let types: Vec<(ColumnType, bool)> = columns_of(&reply)
            .iter()
            .map(|c| (c.coltype, c.colflags.contains(ColumnFlags::UNSIGNED_FLAG)))
            .collect();
        assert_eq!(
            types,
            [
                (ColumnType::MYSQL_TYPE_VAR_STRING, false),
                (ColumnType::MYSQL_TYPE_LONGLONG, true),
                (ColumnType::MYSQL_TYPE_LONGLONG, false),
                (ColumnType::MYSQL_TYPE_DOUBLE, false),
                (ColumnType::MYSQL_TYPE_VAR_STRING, false),
            ]
        );
    }

    #[test]
    fn error_codes_follow_the_kind_of_error() {
        assert_eq!(
            error_kind(&ExecError::Parse(crate::sql::ParseError {
                line: 1,
                column: 1,
                message: "x".into()
            })) as u16,
            1064
        );
        assert_eq!(error_kind(&ExecError::server("disk")) as u16, 1105);
    }
}
