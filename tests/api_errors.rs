//! The HTTP statement API of a real node: the shapes of its answers, and how it rejects
//! malformed requests, statements that do not parse and statements that cannot be carried out.
//!
//! Address blocks used here: 127.0.60.x to 127.0.64.x and 127.0.69.x.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

/// An agent that returns every HTTP status as a response instead of an error.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// POSTs `body` as is to the node's `/api`; returns the status and the body text.
fn post_raw(node: &LocalNode, body: &[u8]) -> (u16, String) {
    let url = format!("http://{}/api", node.http_addr());
    let response = agent()
        .post(&url)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
        .unwrap_or_else(|e| panic!("reading the answer of POST {url}: {e}"));
    (status, text)
}

/// POSTs a body the node may refuse before reading all of it: the node answers and closes
/// the connection while the body is still being sent, so writing may fail with a broken pipe
/// (as an HTTP client library reports it). Writes what it can, then reads the answer.
/// Returns the status and the answer as text.
fn post_oversized(node: &LocalNode, body: &[u8]) -> (u16, String) {
    let addr = node.http_addr();
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .expect("write the request head");
    // The node may answer and close before all of this is written; that is fine.
    let _ = stream.write_all(body);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if answer.is_empty() => panic!("no answer from {addr}: {e}"),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    (status, text)
}

/// Like [`post_raw`], but the answer must be JSON.
fn post_json(node: &LocalNode, body: &[u8]) -> (u16, Value) {
    let (status, text) = post_raw(node, body);
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("HTTP {status} answer is not JSON ({e}): {text:?}"));
    (status, value)
}

/// GET /health: status and JSON body.
fn health(node: &LocalNode) -> (u16, Value) {
    let url = format!("http://{}/health", node.http_addr());
    let response = agent()
        .get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_json::<Value>()
        .unwrap_or_else(|e| panic!("GET {url} did not answer JSON: {e}"));
    (status, body)
}

fn retcode(body: &Value) -> i64 {
    body.get("retcode")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer retcode in {body}"))
}

fn errmsg(body: &Value) -> &str {
    body.get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string errmsg in {body}"))
}

/// Asserts an error answer: `status`, a negative retcode, and an errmsg containing every part.
fn assert_error(what: &str, answer: &(u16, Value), status: u16, parts: &[&str]) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{what}: HTTP status; body {body}");
    assert!(
        retcode(body) < 0,
        "{what}: retcode must be negative: {body}"
    );
    let message = errmsg(body);
    for part in parts {
        assert!(
            message.contains(part),
            "{what}: errmsg {message:?} lacks {part:?}"
        );
    }
}

/// The node answers /health with its own id: it did not crash on what it was sent.
fn assert_still_healthy(node: &LocalNode) {
    let (status, body) = health(node);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["node_id"], node.spec.node_id.as_str(), "{body}");
    let (status, body) = sql(node, "SHOW DATABASES");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn success_answers_have_the_documented_shape() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 60, 1, &[]));

    let (status, body) = health(&node);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "ok", "node_id": "n60-1"}));

    let (status, body) = sql(&node, "SHOW DATABASES");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retcode"], 0, "{body}");
    assert_eq!(body["columns"], json!(["name"]), "{body}");
    assert!(body["results"].is_array(), "{body}");

    let (status, body) = sql(&node, "CREATE DATABASE x");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retcode"], 0, "{body}");
    assert_eq!(body["columns"], json!([]), "{body}");
    assert_eq!(body["results"], json!([]), "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );

    let (status, body) = sql(&node, "SHOW DATABASES");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([["x"]]), "{body}");

    // Keywords in any case, and a trailing ';'.
    for statement in ["show databases;", "Show DataBases ;", "sHoW dAtAbAsEs"] {
        let (status, body) = sql(&node, statement);
        assert_eq!(status, 200, "{statement:?}: {body}");
        assert_eq!(body["retcode"], 0, "{statement:?}: {body}");
        assert_eq!(body["results"], json!([["x"]]), "{statement:?}: {body}");
    }
    let (status, body) = sql(&node, "drop database x;");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retcode"], 0, "{body}");
    let (status, body) = sql(&node, "show nodes;");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["columns"][0], "node_id", "{body}");

    assert_still_healthy(&node);
}

#[test]
fn malformed_requests_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 61, 1, &[]));

    for body in [&b"SHOW DATABASES"[..], b"{\"stmt\": ", b"", b"\xff\xfe"] {
        let what = format!("body {:?}", String::from_utf8_lossy(body));
        let answer = post_json(&node, body);
        assert_error(&what, &answer, 400, &["JSON"]);
    }

    for body in [&br#"{"x": 1}"#[..], b"{}", br#"{"Stmt": "SHOW NODES"}"#] {
        let what = format!("body {:?}", String::from_utf8_lossy(body));
        let answer = post_json(&node, body);
        assert_error(&what, &answer, 400, &["stmt"]);
    }

    for body in [
        &br#"{"stmt": 1}"#[..],
        br#"{"stmt": null}"#,
        br#"{"stmt": ["SHOW NODES"]}"#,
        br#"{"stmt": {"text": "SHOW NODES"}}"#,
    ] {
        let what = format!("body {:?}", String::from_utf8_lossy(body));
        let answer = post_json(&node, body);
        assert_error(&what, &answer, 400, &["stmt"]);
    }

    // Just under the limit the body is read (and the statement rejected by the parser)...
    let under = format!(r#"{{"stmt": "{}"}}"#, "x".repeat((1 << 20) - 64));
    assert!(under.len() < 1 << 20);
    let answer = post_json(&node, under.as_bytes());
    assert_error("body just under 1 MiB", &answer, 400, &["line 1, column 1"]);

    // ...one byte over, it is refused with 413, and so is a much larger one.
    let over = format!(r#"{{"stmt": "{}"}}"#, "x".repeat((1 << 20) - 11));
    assert_eq!(over.len(), (1 << 20) + 1);
    let (status, head) = post_oversized(&node, over.as_bytes());
    assert_eq!(status, 413, "body of 1 MiB + 1 byte: {head}");
    let big = format!(r#"{{"stmt": "{}"}}"#, "x".repeat(3 << 20));
    let (status, head) = post_oversized(&node, big.as_bytes());
    assert_eq!(status, 413, "body of 3 MiB: {head}");

    assert_still_healthy(&node);
}

#[test]
fn a_json_array_is_not_a_statement_request() {
    // The API takes "a JSON object with a string field \"stmt\"" (its own words); serde's
    // derived Deserialize also accepts a struct written as a sequence, which must not leak
    // through as a second, undocumented request format.
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 64, 1, &[]));
    for body in [&br#"["SHOW NODES"]"#[..], br#"["CREATE DATABASE arr"]"#] {
        let what = format!("body {:?}", String::from_utf8_lossy(body));
        let answer = post_json(&node, body);
        assert_error(&what, &answer, 400, &["stmt"]);
    }
    let (status, body) = sql(&node, "SHOW DATABASES");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([]), "{body}");
    assert_still_healthy(&node);
}

#[test]
fn an_oversized_body_gets_the_json_error_shape() {
    // Every error answer is {"retcode": <negative>, "errmsg": "..."} (src/api.rs), and
    // retcode::BAD_REQUEST is documented to cover "body too large" (src/reply.rs).
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 69, 1, &[]));
    let over = format!(r#"{{"stmt": "{}"}}"#, "x".repeat(1 << 20));
    let (status, answer) = post_oversized(&node, over.as_bytes());
    assert_eq!(status, 413, "{answer}");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let body: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("413 answer has no JSON body ({e}):\n{head}\n\n{body}"));
    assert_eq!(retcode(&body), -1, "{body}");
    assert!(!errmsg(&body).is_empty(), "{body}");
    assert_still_healthy(&node);
}

#[test]
fn parse_errors_point_at_the_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 62, 1, &[]));

    // (statement, where it goes wrong, what the message must say); columns counted by hand,
    // 1-based, in characters.
    let cases: [(&str, &str, &[&str]); 10] = [
        // "SHOW " is 5 characters: FOO starts at column 6.
        ("SHOW FOO", "line 1, column 6", &["FOO"]),
        // "CREATE DATABASE " is 16 characters: the name starts at column 17.
        ("CREATE DATABASE 9x", "line 1, column 17", &["9x"]),
        // Not a statement at all: the first word.
        ("SELEC 1", "line 1, column 1", &["SELEC"]),
        ("", "line 1, column 1", &["empty"]),
        ("   ", "line 1, column 1", &["empty"]),
        // "SHOW NODES " is 11 characters: the extra word is at column 12.
        ("SHOW NODES extra", "line 1, column 12", &["extra"]),
        // "ADD CLIENT ip=" is 14 characters: the quote that is never closed is at column 15.
        (
            "ADD CLIENT ip=\"1.2.3.4 db=x",
            "line 1, column 15",
            &["unterminated"],
        ),
        // Missing name: at the end of the input, just after "DATABASE" (column 16).
        ("CREATE DATABASE", "line 1, column 16", &["database name"]),
        // Second line, after two spaces: column 3.
        ("SHOW\n  BOGUS", "line 2, column 3", &["BOGUS"]),
        // "SHOW NODES; " is 12 characters: the second statement starts at column 13.
        (
            "SHOW NODES; SHOW NODES",
            "line 1, column 13",
            &["one statement"],
        ),
    ];
    for (statement, position, parts) in cases {
        let answer = sql(&node, statement);
        let what = format!("{statement:?}");
        assert_error(&what, &answer, 400, &[position]);
        assert_error(&what, &answer, 400, parts);
        assert!(
            errmsg(&answer.1).starts_with(position),
            "{what}: errmsg {:?} should start with {position:?}",
            errmsg(&answer.1)
        );
    }

    assert_still_healthy(&node);
}

#[test]
fn statements_that_cannot_be_carried_out_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 63, 1, &[]));

    let (status, body) = sql(&node, "CREATE DATABASE dup");
    assert_eq!(status, 200, "{body}");
    let answer = sql(&node, "CREATE DATABASE dup");
    assert_error("second CREATE", &answer, 400, &["dup", "already exists"]);
    // Keywords are case-insensitive, names are not: "DUP" is another database.
    let (status, body) = sql(&node, "create database DUP;");
    assert_eq!(status, 200, "{body}");

    let answer = sql(&node, "DROP DATABASE missing");
    assert_error(
        "DROP of a missing one",
        &answer,
        400,
        &["missing", "does not exist"],
    );

    let answer = sql(&node, "CREATE DATABASE \"a-b\"");
    assert_error("name with '-'", &answer, 400, &["a-b", "'-'"]);
    let long = "a".repeat(65);
    let answer = sql(&node, &format!("CREATE DATABASE {long}"));
    assert_error(
        "65-character name",
        &answer,
        400,
        &[&long, "longer than 64"],
    );
    let answer = sql(&node, &format!("DROP DATABASE {long}"));
    assert_error(
        "DROP of a 65-character name",
        &answer,
        400,
        &["longer than 64"],
    );
    // 64 characters is still fine.
    let (status, body) = sql(&node, &format!("CREATE DATABASE {}", "b".repeat(64)));
    assert_eq!(status, 200, "{body}");

    // None of the failures changed anything.
    let (status, body) = sql(&node, "SHOW DATABASES");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"],
        json!([["DUP"], ["b".repeat(64)], ["dup"]]),
        "{body}"
    );

    assert_still_healthy(&node);
}
