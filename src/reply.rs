//! What a statement answers: rows, or a message, or an error with its HTTP status.

use serde::Serialize;
use serde_json::Value;

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

/// A failed statement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{errmsg}")]
pub struct ExecError {
    /// HTTP status: 400 for the user's mistakes, 500 for the node's.
    pub http_status: u16,
    pub retcode: i32,
    pub errmsg: String,
}

impl ExecError {
    pub fn statement(errmsg: impl Into<String>) -> ExecError {
        ExecError {
            http_status: 400,
            retcode: retcode::STATEMENT_ERROR,
            errmsg: errmsg.into(),
        }
    }

    pub fn server(errmsg: impl Into<String>) -> ExecError {
        ExecError {
            http_status: 500,
            retcode: retcode::SERVER_ERROR,
            errmsg: errmsg.into(),
        }
    }
}
