//! What a statement answers: rows, or a message, or an error saying what went wrong.

use serde::Serialize;
use serde_json::Value;

use crate::sql::ParseError;

/// A successful answer: a result set (`columns` + `results`) or just a `message`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reply {
    pub columns: Vec<String>,
    pub results: Vec<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Reply {
    pub fn rows(columns: &[&str], results: Vec<Vec<Value>>) -> Reply {
        Reply {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            results,
            message: None,
        }
    }

    pub fn message(message: impl Into<String>) -> Reply {
        Reply {
            columns: Vec::new(),
            results: Vec::new(),
            message: Some(message.into()),
        }
    }
}

/// Negative return codes, one per kind of failure, so scripts can tell them apart.
pub mod retcode {
    /// The request itself is unusable: not JSON, no `stmt`, body too large.
    pub const BAD_REQUEST: i32 = -1;
    /// The statement does not parse.
    pub const PARSE_ERROR: i32 = -2;
    /// The statement parsed but cannot be carried out as asked (e.g. database exists).
    pub const STATEMENT_ERROR: i32 = -3;
    /// The request lacks the API token (`BO_API_TOKEN`) or carries a wrong one.
    pub const UNAUTHORIZED: i32 = -4;
    /// The node failed (disk, internal error).
    pub const SERVER_ERROR: i32 = -10;
}

/// A failed statement: what went wrong, never how a front end shows it. The HTTP layer picks
/// the status (`api`), the MySQL layer the error code (`mysql`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecError {
    /// The request itself is unusable: not JSON, no statement, body too large.
    #[error("{0}")]
    BadRequest(String),
    /// The statement does not parse; the error says where.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The statement parsed but cannot be carried out as asked (e.g. database exists).
    #[error("{0}")]
    Statement(String),
    /// The node failed (disk, internal error).
    #[error("{0}")]
    Server(String),
}

impl ExecError {
    pub fn bad_request(errmsg: impl Into<String>) -> ExecError {
        ExecError::BadRequest(errmsg.into())
    }

    pub fn statement(errmsg: impl Into<String>) -> ExecError {
        ExecError::Statement(errmsg.into())
    }

    pub fn server(errmsg: impl Into<String>) -> ExecError {
        ExecError::Server(errmsg.into())
    }

    /// The negative return code scripts see in `retcode` (and `Status` on `/cmd`).
    pub fn retcode(&self) -> i32 {
        match self {
            ExecError::BadRequest(_) => retcode::BAD_REQUEST,
            ExecError::Parse(_) => retcode::PARSE_ERROR,
            ExecError::Statement(_) => retcode::STATEMENT_ERROR,
            ExecError::Server(_) => retcode::SERVER_ERROR,
        }
    }

    /// Whether the caller is at fault (as opposed to the node).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, ExecError::Server(_))
    }

    /// A short name of the kind, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecError::BadRequest(_) => "bad_request",
            ExecError::Parse(_) => "parse_error",
            ExecError::Statement(_) => "statement_error",
            ExecError::Server(_) => "server_error",
        }
    }

    /// Where a parse error is (1-based line and column), for carets and MySQL messages.
    pub fn position(&self) -> Option<(u64, u64)> {
        match self {
            ExecError::Parse(e) => Some((e.line, e.column)),
            _ => None,
        }
    }
}

/// Where a failed statement's parse error is, as the JSON answers carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ErrorPosition {
    pub line: u64,
    pub column: u64,
}

/// The answer of `POST /api`: `{"retcode": 0, "columns", "results", "message"?}` or
/// `{"retcode": <negative>, "errmsg", "line"?, "column"?}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ApiAnswer {
    Ok {
        retcode: i32,
        #[serde(flatten)]
        reply: Reply,
    },
    Err {
        retcode: i32,
        errmsg: String,
        #[serde(flatten)]
        position: Option<ErrorPosition>,
    },
}

impl ApiAnswer {
    pub fn of(result: Result<Reply, ExecError>) -> ApiAnswer {
        match result {
            Ok(reply) => ApiAnswer::Ok { retcode: 0, reply },
            Err(e) => ApiAnswer::Err {
                retcode: e.retcode(),
                errmsg: e.to_string(),
                position: e
                    .position()
                    .map(|(line, column)| ErrorPosition { line, column }),
            },
        }
    }
}

/// The answer of `POST /cmd`, BigObject's legacy shape: `{"Status": 0, "Content": <reply>,
/// "Err": ""}`, or a negative `Status` (the same codes as `retcode`), `Content: null` and the
/// message in `Err`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CmdAnswer {
    pub status: i32,
    pub content: Option<Reply>,
    pub err: String,
}

impl CmdAnswer {
    pub fn of(result: Result<Reply, ExecError>) -> CmdAnswer {
        match result {
            Ok(reply) => CmdAnswer {
                status: 0,
                content: Some(reply),
                err: String::new(),
            },
            Err(e) => CmdAnswer {
                status: e.retcode(),
                content: None,
                err: e.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_shapes_carry_the_same_reply() {
        let reply = Reply::rows(&["name"], vec![vec![json!("log1")]]);
        let api = serde_json::to_value(ApiAnswer::of(Ok(reply.clone()))).unwrap();
        assert_eq!(
            api,
            json!({"retcode": 0, "columns": ["name"], "results": [["log1"]]})
        );
        let cmd = serde_json::to_value(CmdAnswer::of(Ok(reply))).unwrap();
        assert_eq!(
            cmd,
            json!({"Status": 0, "Content": {"columns": ["name"], "results": [["log1"]]}, "Err": ""})
        );
    }

    #[test]
    fn errors_carry_their_code_and_position() {
        let parse = ExecError::Parse(ParseError {
            line: 2,
            column: 5,
            message: "expected a statement".into(),
        });
        let api = serde_json::to_value(ApiAnswer::of(Err(parse.clone()))).unwrap();
        assert_eq!(
            api,
            json!({"retcode": -2, "errmsg": "line 2, column 5: expected a statement", "line": 2, "column": 5})
        );
        let cmd = serde_json::to_value(CmdAnswer::of(Err(ExecError::server("disk full")))).unwrap();
        assert_eq!(
            cmd,
            json!({"Status": -10, "Content": null, "Err": "disk full"})
        );
        assert_eq!(parse.retcode(), retcode::PARSE_ERROR);
        assert!(!ExecError::server("x").is_user_error());
    }
}
