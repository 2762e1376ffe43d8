//! The queries MySQL clients and drivers send on their own (on connect, around each query),
//! answered so that they start cleanly: `SELECT @@version_comment`, `SELECT DATABASE()`,
//! `SET NAMES ...`, `USE db`, `SHOW WARNINGS`, `COMMIT`... Anything else is a statement for
//! the executor.

use serde_json::{json, Value};

use crate::reply::Reply;

/// What a query is when it is not one of our statements.
#[derive(Debug, Clone, PartialEq)]
pub enum Local {
    /// `USE db`: the session changes its database.
    Use(String),
    /// Answered here.
    Answer(Reply),
}

/// The query without surrounding blanks, a trailing `;` and leading `/* ... */` comments
/// (mysql.connector and JDBC prefix some).
fn normalized(query: &str) -> &str {
    let mut q = query.trim();
    while let Some(rest) = q.strip_prefix("/*") {
        match rest.find("*/") {
            Some(end) => q = rest[end + 2..].trim_start(),
            None => break,
        }
    }
    q.trim_end().trim_end_matches(';').trim_end()
}

/// The answer to a query clients send by themselves, or `None` for our statements.
pub fn answer_locally(query: &str, database: Option<&str>, connection_id: u32) -> Option<Local> {
    let q = normalized(query);
    let lower = q.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let first = words.first().copied().unwrap_or_default();
    match first {
        // Sessions have no options here: character sets are UTF-8 and there are no
        // transactions, so SET and transaction control succeed and change nothing.
        "set" | "commit" | "rollback" | "begin" => return Some(ok()),
        "start" if words.get(1) == Some(&"transaction") => return Some(ok()),
        "use" => {
            let name = q[3..].trim().trim_matches('`');
            return Some(Local::Use(name.to_string()));
        }
        "" => return Some(ok()),
        _ => {}
    }
    match words.as_slice() {
        ["show", "warnings", ..] | ["show", "errors", ..] => {
            return Some(rows(&["Level", "Code", "Message"], vec![]))
        }
        ["show", "variables", ..]
        | ["show", "session", "variables", ..]
        | ["show", "global", "variables", ..] => {
            return Some(rows(&["Variable_name", "Value"], vec![]))
        }
        ["show", "collation", ..] => {
            return Some(rows(
                &[
                    "Collation",
                    "Charset",
                    "Id",
                    "Default",
                    "Compiled",
                    "Sortlen",
                ],
                vec![],
            ))
        }
        ["show", "character", "set", ..] | ["show", "charset", ..] => {
            return Some(rows(
                &["Charset", "Description", "Default collation", "Maxlen"],
                vec![],
            ))
        }
        ["show", "engines", ..] | ["show", "tables", ..] | ["show", "full", "tables", ..] => {
            return Some(rows(&["Tables"], vec![]))
        }
        _ => {}
    }
    if first == "select" {
        return select(&q[6..], database, connection_id);
    }
    None
}

fn ok() -> Local {
    Local::Answer(Reply::message(""))
}

fn rows(columns: &[&str], results: Vec<Vec<Value>>) -> Local {
    Local::Answer(Reply::rows(columns, results))
}

/// `SELECT` of session variables and functions, e.g. `@@version_comment LIMIT 1` or
/// `DATABASE(), @@session.autocommit AS ac`; `None` when an item is not one of those.
fn select(list: &str, database: Option<&str>, connection_id: u32) -> Option<Local> {
    let mut list = list.trim();
    let lower = list.to_ascii_lowercase();
    if let Some(at) = lower.rfind(" limit ") {
        list = list[..at].trim();
    }
    let mut columns = Vec::new();
    let mut values = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        let (expr, alias) = match split_alias(item) {
            Some((expr, alias)) => (expr, Some(alias)),
            None => (item, None),
        };
        let value = item_value(expr, database, connection_id)?;
        columns.push(alias.unwrap_or(expr).to_string());
        values.push(value);
    }
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    Some(rows(&names, vec![values]))
}

fn split_alias(item: &str) -> Option<(&str, &str)> {
    let lower = item.to_ascii_lowercase();
    let at = lower.rfind(" as ")?;
    Some((
        item[..at].trim(),
        item[at + 4..].trim().trim_matches('`').trim_matches('\''),
    ))
}

fn item_value(expr: &str, database: Option<&str>, connection_id: u32) -> Option<Value> {
    let lower = expr.to_ascii_lowercase();
    if let Some(var) = lower.strip_prefix("@@") {
        let var = var
            .strip_prefix("session.")
            .or_else(|| var.strip_prefix("global."))
            .or_else(|| var.strip_prefix("local."))
            .unwrap_or(var);
        return Some(variable(var));
    }
    if let Ok(n) = lower.parse::<i64>() {
        return Some(json!(n));
    }
    Some(match lower.replace(' ', "").as_str() {
        "database()" | "schema()" => database.map_or(Value::Null, |d| json!(d)),
        "version()" => json!(super::server_version()),
        "connection_id()" => json!(connection_id),
        "user()" | "current_user()" | "session_user()" | "system_user()" => json!("bocluster@%"),
        "now()" | "current_timestamp()" | "sysdate()" => json!(humantime::format_rfc3339_seconds(
            std::time::SystemTime::now()
        )
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_string()),
        _ => return None,
    })
}

/// Session variables clients read on connect; unknown ones are NULL.
fn variable(name: &str) -> Value {
    match name {
        "version_comment" => json!("bocluster"),
        "version" => json!(super::server_version()),
        "max_allowed_packet" => json!(67_108_864u64),
        "autocommit" => json!(1),
        "auto_increment_increment" => json!(1),
        "character_set_client"
        | "character_set_connection"
        | "character_set_results"
        | "character_set_server"
        | "character_set_database"
        | "character_set_system" => json!("utf8mb4"),
        "collation_connection" | "collation_server" | "collation_database" => {
            json!("utf8mb4_general_ci")
        }
        "transaction_isolation" | "tx_isolation" => json!("READ-COMMITTED"),
        "transaction_read_only" | "tx_read_only" => json!(0),
        "sql_mode" => json!(""),
        "lower_case_table_names" => json!(0),
        "time_zone" | "system_time_zone" => json!("UTC"),
        "wait_timeout" | "interactive_timeout" => json!(super::IDLE_TIMEOUT.as_secs()),
        "net_write_timeout" | "net_read_timeout" => json!(60),
        "performance_schema" => json!(0),
        "license" => json!("Apache-2.0"),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(q: &str) -> Reply {
        match answer_locally(q, Some("log1"), 7) {
            Some(Local::Answer(reply)) => reply,
            other => panic!("{q:?}: {other:?}"),
        }
    }

    #[test]
    fn what_clients_send_on_connect_is_answered() {
        let r = answer("select @@version_comment limit 1");
        assert_eq!(r.columns, ["@@version_comment"]);
        assert_eq!(r.results, [[json!("bocluster")]]);
        let r = answer("SELECT DATABASE(), @@session.autocommit AS ac, CONNECTION_ID()");
        assert_eq!(r.columns, ["DATABASE()", "ac", "CONNECTION_ID()"]);
        assert_eq!(r.results, [[json!("log1"), json!(1), json!(7)]]);
        assert_eq!(answer("SET NAMES utf8mb4").message.as_deref(), Some(""));
        assert_eq!(answer("/* ping */ SET autocommit=0;").columns.len(), 0);
        assert_eq!(
            answer("SHOW WARNINGS").columns,
            ["Level", "Code", "Message"]
        );
        assert_eq!(
            answer_locally("USE `log2`", None, 1),
            Some(Local::Use("log2".into()))
        );
    }

    #[test]
    fn our_statements_go_to_the_executor() {
        for q in [
            "SHOW CLUSTER",
            "show nodes;",
            "CREATE DATABASE x",
            "SELECT * FROM t",
            "ADD CLIENT ip=\"1.2.3.4\" db=\"x\"",
        ] {
            assert_eq!(answer_locally(q, None, 1), None, "{q}");
        }
    }
}
