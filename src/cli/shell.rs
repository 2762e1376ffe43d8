//! The interactive shell of `bocluster sql` (no statement given): line editing and history
//! (rustyline), statements that end with `;` and may span lines, `\q` or Ctrl-D to quit,
//! `\h` for the statements, answers as aligned tables with the row count and the time taken,
//! and errors with a caret under the position the node names.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use serde_json::Value;

use crate::cli::table::format_rows;
use crate::client::{post_statement_with, ApiOutcome};
use crate::exec::STATEMENT_KINDS;

const PROMPT: &str = "bocluster> ";
const MORE: &str = "        -> ";

/// Where the history is kept: `BO_HISTORY`, else `~/.bocluster_history`, else nowhere.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BO_HISTORY") {
        return (!path.is_empty()).then(|| PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".bocluster_history"))
}

/// Whether `text` ends with a `;` outside quotes (the statement is complete).
pub fn is_complete(text: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut last = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => {}
        }
        if !c.is_whitespace() {
            last = Some((c, quote.is_none()));
        }
    }
    matches!(last, Some((';', true)))
}

/// The help `\h` prints.
pub fn help() -> String {
    let mut out = String::from("Statements (end each with ;, they may span lines):\n");
    for (_, syntax) in STATEMENT_KINDS {
        out.push_str(&format!("  {syntax}\n"));
    }
    out.push_str("Shell commands: \\h this help, \\q quit (or Ctrl-D); Ctrl-C drops the statement being typed.\n");
    out
}

/// Runs the shell against `host` until `\q` or Ctrl-D (sending `token`, the node's
/// `BO_API_TOKEN`, with every statement); the exit code.
pub fn run(host: &str, timeout: Duration, token: Option<&str>) -> u8 {
    let mut editor = match DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("bocluster sql: cannot start the shell: {e}");
            return 1;
        }
    };
    let history = history_path();
    if let Some(path) = &history {
        // No history yet is fine.
        let _ = editor.load_history(path);
    }
    println!("bocluster shell on {host}; \\h for help, \\q to quit.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { PROMPT } else { MORE };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() {
                    match trimmed {
                        "" => continue,
                        "\\q" | "quit" | "exit" => break,
                        "\\h" | "help" | "\\?" => {
                            print!("{}", help());
                            continue;
                        }
                        _ => {}
                    }
                }
                if !buffer.is_empty() {
                    buffer.push('\n');
                }
                buffer.push_str(&line);
                if is_complete(&buffer) {
                    let statement = std::mem::take(&mut buffer);
                    let _ = editor.add_history_entry(statement.as_str());
                    if let Some(path) = &history {
                        if let Err(e) = editor.save_history(path) {
                            eprintln!("(cannot save the history to {}: {e})", path.display());
                        }
                    }
                    print!("{}", run_statement(host, &statement, timeout, token));
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("bocluster sql: {e}");
                return 1;
            }
        }
    }
    println!("bye");
    0
}

/// Sends one statement (with `token`, when given) and returns what the shell prints for its
/// answer.
pub fn run_statement(
    host: &str,
    statement: &str,
    timeout: Duration,
    token: Option<&str>,
) -> String {
    let started = Instant::now();
    let outcome = post_statement_with(host, statement, timeout, token);
    let took = started.elapsed();
    match outcome {
        ApiOutcome::Unreachable(message) => format!("error: {message}\n"),
        ApiOutcome::Answered { body, .. } => {
            if body.get("retcode").and_then(Value::as_i64) == Some(0) {
                answer_text(&body, took)
            } else {
                error_text(statement, &body)
            }
        }
    }
}

/// A successful answer: its message, its table and `(N rows, T)`.
pub fn answer_text(body: &Value, took: Duration) -> String {
    let mut out = String::new();
    if let Some(message) = body.get("message").and_then(Value::as_str) {
        out.push_str(message);
        out.push('\n');
    }
    let time = format!("{:.1} ms", took.as_secs_f64() * 1000.0);
    match format_rows(body) {
        Some((table, rows)) => {
            out.push_str(&table);
            out.push_str(&format!(
                "({rows} row{}, {time})\n",
                if rows == 1 { "" } else { "s" }
            ));
        }
        None => out.push_str(&format!("({time})\n")),
    }
    out
}

/// A failed answer: the message, and for a parse error the line it is on with a caret under
/// the column.
pub fn error_text(statement: &str, body: &Value) -> String {
    let errmsg = body
        .get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    let mut out = format!("error: {errmsg}\n");
    let line = body.get("line").and_then(Value::as_u64);
    let column = body.get("column").and_then(Value::as_u64);
    if let (Some(line), Some(column)) = (line, column) {
        if let Some(text) = statement.lines().nth(line.saturating_sub(1) as usize) {
            let pad: String = text
                .chars()
                .take(column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("  {text}\n  {pad}^\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_statement_is_complete_at_a_semicolon_outside_quotes() {
        assert!(is_complete("SHOW NODES;"));
        assert!(is_complete("SHOW\nNODES ;  "));
        assert!(!is_complete("SHOW NODES"));
        assert!(!is_complete("ADD CLIENT ip=\"1.2.3.4\" db=\"a;"));
        assert!(is_complete("ADD CLIENT ip=\"1.2.3.4\" db=\"a;b\";"));
    }

    #[test]
    fn errors_point_at_their_column() {
        let body =
            json!({"retcode": -2, "errmsg": "line 2, column 3: bad", "line": 2, "column": 3});
        assert_eq!(
            error_text("SHOW\nNOPE;", &body),
            "error: line 2, column 3: bad\n  NOPE;\n    ^\n"
        );
    }

    #[test]
    fn answers_say_rows_and_time() {
        let body = json!({"retcode": 0, "columns": ["name"], "results": [["a"], ["b"]]});
        let text = answer_text(&body, Duration::from_micros(1500));
        assert_eq!(text, "name\n----\na\nb\n(2 rows, 1.5 ms)\n");
        let body =
            json!({"retcode": 0, "columns": [], "results": [], "message": "database a created"});
        assert_eq!(
            answer_text(&body, Duration::from_millis(2)),
            "database a created\n(2.0 ms)\n"
        );
    }
}
