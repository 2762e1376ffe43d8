//! `POST /cmd`: BigObject's legacy REST shape, for scripts written against its older API.
//!
//! `{"Stmt": "...", "Workspace": "...", "Opts": {...}}` -> `{"Status": 0, "Content": {...},
//! "Err": ""}`. The statement runs on the same executor as `/api`; the answer is the same
//! [`Reply`](crate::reply::Reply) in another envelope ([`CmdAnswer`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{answer, body_error, status_of};
use crate::context::NodeContext;
use crate::exec::execute_text;
use crate::reply::{CmdAnswer, ExecError};

/// A `/cmd` request. `Workspace` and `Opts` are accepted for compatibility and otherwise
/// unused: every statement names what it works on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CmdRequest {
    #[serde(rename = "Stmt")]
    pub stmt: String,
    #[serde(rename = "Workspace", default)]
    pub workspace: Option<String>,
    #[serde(rename = "Opts", default)]
    pub opts: Option<serde_json::Map<String, Value>>,
}

/// The request in a body, or why it is not one.
pub fn request_of(body: &[u8]) -> Result<CmdRequest, ExecError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ExecError::bad_request(format!("request body is not valid JSON: {e}")))?;
    if !value.get("Stmt").is_some_and(Value::is_string) {
        return Err(ExecError::bad_request(
            "request body must be a JSON object with a string field \"Stmt\", e.g. {\"Stmt\": \"SHOW NODES\"}",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        ExecError::bad_request(format!(
            "{e} (a /cmd body has \"Stmt\" (a string), and optionally \"Workspace\" (a string) and \"Opts\" (an object))"
        ))
    })
}

pub async fn post_cmd(
    State(ctx): State<Arc<NodeContext>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let (status, e) = body_error(&rejection);
            return answer(status, CmdAnswer::of(Err(e)));
        }
    };
    let result = match request_of(&body) {
        Ok(request) => execute_text(&ctx, &request.stmt).await,
        Err(e) => Err(e),
    };
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => status_of(e),
    };
    answer(status, CmdAnswer::of(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = request_of(br#"{"Stmt": "SHOW NODES", "Workspace": "w", "Opts": {}}"#).unwrap();
        assert_eq!(ok.stmt, "SHOW NODES");
        for (body, part) in [
            (&b"nope"[..], "not valid JSON"),
            (br#"{"stmt": "SHOW NODES"}"#, "\"Stmt\""),
            (br#"{"Stmt": 3}"#, "\"Stmt\""),
            (br#"{"Stmt": "SHOW NODES", "Opts": 3}"#, "Opts"),
            (br#"{"Stmt": "SHOW NODES", "Other": 3}"#, "Other"),
        ] {
            let e = request_of(body).unwrap_err();
            assert!(matches!(e, ExecError::BadRequest(_)), "{e:?}");
            assert!(e.to_string().contains(part), "{body:?}: {e}");
        }
    }
}
