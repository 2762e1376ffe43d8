//! Who may use a node's HTTP API: the `BO_API_TOKEN` bearer token on every door (`/api`,
//! `/cmd`, `/events`, `/metrics`; `/health` and the page's shell open), and the browser rules
//! (JSON bodies only, no other site's `Origin`).
//!
//! Address block used here: 127.0.150.x.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "t0ken-for-the-api-test";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// POSTs `SHOW DATABASES` to `/api` with the given headers; returns the status and JSON body.
fn post(node: &LocalNode, headers: &[(&str, &str)]) -> (u16, Value) {
    let url = format!("http://{}/api", node.http_addr());
    let mut request = agent().post(&url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send(br#"{"stmt": "SHOW DATABASES"}"#.as_slice())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_json::<Value>()
        .unwrap_or_else(|e| panic!("POST {url} answered HTTP {status} without JSON: {e}"));
    (status, body)
}

fn errmsg(body: &Value) -> &str {
    body["errmsg"].as_str().unwrap_or_default()
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// `method path` (GET or POST) with the given headers and body: the status and the body.
fn call(
    node: &LocalNode,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let url = format!("http://{}{path}", node.http_addr());
    let agent = agent();
    let response = if method == "POST" {
        let mut request = agent.post(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send(body.as_bytes())
    } else {
        let mut request = agent.get(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.call()
    };
    let response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response
        .into_body()
        .read_to_string()
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    (status, text)
}

/// Opens `GET <path>` (an event stream) with `headers`: the status, then (when it is 200) the
/// first `data:` line that contains `wanted`, if one comes within the deadline.
fn event_with(
    node: &LocalNode,
    path: &str,
    headers: &[(&str, &str)],
    wanted: &str,
) -> (u16, Option<String>) {
    let mut stream = TcpStream::connect(node.http_addr()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    let mut status = None;
    // Kept across timeouts: a read cut by one leaves its bytes here.
    let mut line = String::new();
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if !line.ends_with('\n') => continue,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
        let complete = std::mem::take(&mut line);
        if status.is_none() {
            status = complete
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok());
            if status != Some(200) {
                break;
            }
        } else if let Some(data) = complete.trim_end().strip_prefix("data: ") {
            if data.contains(wanted) {
                return (200, Some(data.to_string()));
            }
        }
    }
    let status = status.unwrap_or_else(|| panic!("GET {path}: no status line"));
    (status, None)
}

#[test]
fn the_token_is_required_and_never_logged_and_health_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 150, 1, &[("BO_API_TOKEN", TOKEN)]));
    let bearer = format!("Bearer {TOKEN}");

    let (status, body) = post(&node, &[JSON]);
    assert_eq!(status, 401, "{body}");
    assert!(errmsg(&body).contains("requires an API token"), "{body}");
    assert_eq!(body["retcode"], -4, "{body}");
    let (status, body) = post(&node, &[JSON, ("Authorization", "Bearer wrong")]);
    assert_eq!(status, 401, "{body}");
    assert!(errmsg(&body).contains("wrong"), "{body}");
    let (status, body) = post(&node, &[JSON, ("Authorization", TOKEN)]);
    assert_eq!(status, 401, "{body}");
    assert!(errmsg(&body).contains("Bearer"), "{body}");
    let (status, body) = post(&node, &[JSON, ("Authorization", &bearer)]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["retcode"], 0, "{body}");

    // The statement helpers of the tests send the spec's token: everything works with it.
    ok(&node, "CREATE DATABASE guarded");

    // /health needs no token.
    let response = agent()
        .get(&format!("http://{}/health", node.http_addr()))
        .call()
        .expect("GET /health");
    assert_eq!(response.status().as_u16(), 200);

    // `bocluster sql` takes the token from --token or BO_API_TOKEN.
    let host = node.http_addr().to_string();
    let sql = |args: &[&str], env: Option<&str>| {
        let mut command = std::process::Command::new(exe());
        command.arg("sql").args(["--host", &host]).args(args);
        command.env_remove("BO_API_TOKEN");
        if let Some(token) = env {
            command.env("BO_API_TOKEN", token);
        }
        command.output().expect("run bocluster sql")
    };
    let out = sql(&["SHOW DATABASES"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("requires an API token"),
        "{out:?}"
    );
    let out = sql(&["--token", TOKEN, "SHOW DATABASES"], None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("guarded"));
    let out = sql(&["SHOW DATABASES"], Some(TOKEN));
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // The other doors: refused without the token and with a wrong one, open with it.
    ok(&node, r#"ADD CLIENT ip="127.0.150.99" db="gone""#);
    let cmd = r#"{"Stmt": "SHOW DATABASES"}"#;
    for (method, path, body) in [("POST", "/cmd", cmd), ("GET", "/metrics", "")] {
        for (headers, part) in [
            (vec![JSON], "requires an API token"),
            (vec![JSON, ("Authorization", "Bearer wrong")], "wrong"),
        ] {
            let (status, text) = call(&node, method, path, &headers, body);
            assert_eq!(status, 401, "{method} {path}: {text}");
            assert!(text.contains(part), "{method} {path}: {text}");
            assert!(!text.contains(TOKEN), "{text}");
        }
    }
    let (status, text) = call(
        &node,
        "POST",
        "/cmd",
        &[JSON, ("Authorization", &bearer)],
        cmd,
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("guarded"), "{text}");
    let (status, text) = call(&node, "GET", "/metrics", &[("Authorization", &bearer)], "");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("bocluster_"), "{text}");

    // /events: the header, or ?token= (browsers' EventSource cannot send headers).
    let (status, _) = event_with(&node, "/events", &[], "");
    assert_eq!(status, 401);
    let (status, _) = event_with(&node, "/events?token=wrong", &[], "");
    assert_eq!(status, 401);
    let (status, _) = event_with(
        &node,
        &format!("/events?token={TOKEN}"),
        &[("Authorization", "Bearer wrong")],
        "",
    );
    assert_eq!(
        status, 401,
        "a wrong header is not saved by a right query token"
    );
    for (path, headers) in [
        (format!("/events?token={TOKEN}"), vec![]),
        (
            "/events".to_string(),
            vec![("Authorization", bearer.as_str())],
        ),
    ] {
        let (status, data) = event_with(&node, &path, &headers, "127.0.150.99");
        assert_eq!(status, 200, "{path}");
        assert!(data.is_some(), "{path}: no event of the added entry");
    }

    // The page's shell loads without the token (it holds no cluster data).
    let (status, page) = call(&node, "GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(
        !page.contains("127.0.150.99") && !page.contains("guarded"),
        "{page}"
    );

    let log = node.log();
    assert!(!log.contains(TOKEN), "the token appears in the log:\n{log}");
    // Bound to loopback: no warning about an open API.
    assert!(!log.contains("BO_API_TOKEN is not set"), "{log}");
}

#[test]
fn browsers_cannot_be_used_against_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 150, 2, &[]));

    // A page can send text/plain (or a form) to any address without asking first.
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = post(&node, &[("Content-Type", content_type)]);
        assert_eq!(status, 415, "{content_type}: {body}");
        assert!(errmsg(&body).contains("application/json"), "{body}");
        assert!(errmsg(&body).contains(content_type), "{body}");
    }
    let (status, body) = post(&node, &[]);
    assert_eq!(status, 415, "{body}");
    assert!(errmsg(&body).contains("no Content-Type"), "{body}");
    let (status, body) = post(
        &node,
        &[("Content-Type", "application/json; charset=utf-8")],
    );
    assert_eq!(status, 200, "{body}");

    // Another site's page is refused; the node's own page is not.
    let (status, body) = post(&node, &[JSON, ("Origin", "http://evil.example")]);
    assert_eq!(status, 403, "{body}");
    assert!(errmsg(&body).contains("evil.example"), "{body}");
    let (status, body) = post(&node, &[JSON, ("Origin", "null")]);
    assert_eq!(status, 403, "{body}");
    let own = format!("http://{}", node.http_addr());
    let (status, body) = post(&node, &[JSON, ("Origin", &own)]);
    assert_eq!(status, 200, "{body}");

    // No token set, on loopback: open, and no warning.
    assert!(!node.log().contains("BO_API_TOKEN is not set"));
}
