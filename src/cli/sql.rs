//! `bocluster sql`: one statement to a node's HTTP API, answer printed as a table.

use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::table::{cell_text, render};

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
    /// The statement, e.g. "SHOW NODES"
    pub statement: String,
}

/// The outcome of a request to a node's API.
#[derive(Debug)]
pub enum ApiOutcome {
    /// The node answered (any HTTP status) with a JSON body.
    Answered { status: u16, body: Value },
    /// The node could not be reached or did not answer JSON.
    Unreachable(String),
}

/// `host:port` with a name resolved by our own resolver (the static binary in the container
/// image cannot resolve names through glibc); unchanged when it cannot be resolved.
fn dialable(host: &str) -> String {
    if host.parse::<std::net::SocketAddr>().is_ok() {
        return host.to_string();
    }
    let resolved = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(crate::resolve::resolve_host_port(host)).ok());
    match resolved.as_deref() {
        Some([first, ..]) => first.to_string(),
        _ => host.to_string(),
    }
}

/// Sends `statement` to `http://{host}/api` (`host` may be a name), without a token.
pub fn post_statement(host: &str, statement: &str, timeout: Duration) -> ApiOutcome {
    post_statement_with(host, statement, timeout, None)
}

/// [`post_statement`], with `Authorization: Bearer <token>` when `token` is given.
pub fn post_statement_with(
    host: &str,
    statement: &str,
    timeout: Duration,
    token: Option<&str>,
) -> ApiOutcome {
    let address = dialable(host);
    let url = if address == host {
        format!("http://{host}/api")
    } else {
        format!("http://{address}/api")
    };
    let shown = if address == host {
        url.clone()
    } else {
        format!("http://{host}/api ({address})")
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut request = agent.post(&url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = match request.send_json(json!({ "stmt": statement })) {
        Ok(response) => response,
        Err(e) => {
            return ApiOutcome::Unreachable(format!(
                "cannot reach a bocluster node at {shown}: {e}"
            ))
        }
    };
    let status = response.status().as_u16();
    match response.into_body().read_json::<Value>() {
        Ok(body) => ApiOutcome::Answered { status, body },
        Err(e) => ApiOutcome::Unreachable(format!(
            "{shown} answered HTTP {status} without a JSON body ({e}); is it a bocluster node?"
        )),
    }
}

/// Runs the subcommand; exit code 0 ok, 1 error answer, 2 unreachable.
pub fn run(args: SqlArgs) -> u8 {
    match post_statement_with(
        &args.host,
        &args.statement,
        args.timeout,
        args.token.as_deref(),
    ) {
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
    let columns: Vec<String> = body
        .get("columns")
        .and_then(Value::as_array)
        .map(|cols| cols.iter().map(cell_text).collect())
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = body
        .get("results")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|r| r.iter().map(cell_text).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(message) = body.get("message").and_then(Value::as_str) {
        out.push_str(message);
        out.push('\n');
    }
    if !columns.is_empty() {
        out.push_str(&render(&columns, &rows));
        out.push_str(&format!(
            "({} row{})\n",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        ));
    }
    out
}
