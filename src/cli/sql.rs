//! `bocluster sql`: one statement to a node's HTTP API, answer printed as a table; with no
//! statement, an interactive shell ([`super::shell`]).

use std::time::Duration;

use clap::Args;
use serde_json::Value;

pub use crate::client::{post_statement, post_statement_with, ApiOutcome};

use super::table::format_rows;

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The node's HTTP API address
    #[arg(long, default_value = "127.0.0.1:9090", value_name = "HOST:PORT")]
    pub host: String,
    /// The node's API token (its BO_API_TOKEN), sent as "Authorization: Bearer"
    #[arg(
        long,
        env = "BO_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print the raw JSON answer
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the answer, e.g. 10s
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The statement, e.g. "SHOW NODES"; without one, an interactive shell opens
    pub statement: Option<String>,
}

/// Runs the subcommand; exit code 0 ok, 1 error answer, 2 unreachable.
pub fn run(args: SqlArgs) -> u8 {
    let Some(statement) = &args.statement else {
        return super::shell::run(&args.host, args.timeout, args.token.as_deref());
    };
    match post_statement_with(&args.host, statement, args.timeout, args.token.as_deref()) {
        ApiOutcome::Unreachable(message) => {
            eprintln!("bocluster sql: {message}");
            2
        }
        ApiOutcome::Answered { body, .. } => {
            let ok = body.get("retcode").and_then(Value::as_i64) == Some(0);
            if args.json {
                println!("{body}");
            } else if ok {
                print!("{}", format_answer(&body));
            } else {
                let errmsg = body
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                eprintln!("error: {errmsg}");
            }
            if ok {
                0
            } else {
                1
            }
        }
    }
}

/// A successful answer as text: the message, then the table (if it has columns).
pub fn format_answer(body: &Value) -> String {
    let mut out = String::new();
    if let Some(message) = body.get("message").and_then(Value::as_str) {
        out.push_str(message);
        out.push('\n');
    }
    if let Some((table, rows)) = format_rows(body) {
        out.push_str(&table);
        out.push_str(&format!(
            "({} row{})\n",
            rows,
            if rows == 1 { "" } else { "s" }
        ));
    }
    out
}
