//! The doors beside `/api` on real node processes: BigObject's legacy `POST /cmd`, `GET
//! /metrics` read by a real Prometheus text parser, `GET /events` as a live SSE stream with
//! `BO_EVENT_HANDLER` beside it, `BO_LOG_FORMAT=json`, `BO_MYSQL=off`, and the live page's
//! files. Loopback block 127.0.150.x.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::*;

const BLOCK: u8 = 150;

/// A raw HTTP exchange: (status, headers, body), for answers with any status.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    (status, head.to_string(), body.to_string())
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

#[test]
fn cmd_answers_in_bigobjects_legacy_shape_from_the_same_executor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(spec(dir.path(), BLOCK, 1, &[("BO_DATABASES", "log1")]));
    let addr = node.http_addr();

    let (status, _, body) = http(
        addr,
        "POST",
        "/cmd",
        r#"{"Stmt": "SHOW DATABASES", "Workspace": "main", "Opts": {"x": 1}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let cmd = json_of(&body);
    assert_eq!(cmd["Status"], 0, "{cmd}");
    assert_eq!(cmd["Err"], "", "{cmd}");
    // The same reply as /api, in the other envelope.
    let api = ok(&node, "SHOW DATABASES");
    assert_eq!(cmd["Content"]["columns"], api["columns"]);
    assert_eq!(cmd["Content"]["results"], api["results"]);
    assert_eq!(cmd["Content"]["results"], json!([["log1"]]));

    let (status, _, body) = http(addr, "POST", "/cmd", r#"{"Stmt": "CREATE DATABASE fresh"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_of(&body)["Content"]["message"],
        "database fresh created"
    );

    // Failures: a non-zero Status (the /api retcodes), the message in Err, no Content.
    for (body, http_status, code, part) in [
        (r#"{"Stmt": "SHOW FOO"}"#, 400, -2, "line 1, column 6"),
        (r#"{"Stmt": "CREATE DATABASE fresh"}"#, 400, -3, "fresh"),
        (r#"{"stmt": "SHOW NODES"}"#, 400, -1, "\"Stmt\""),
        (r#"{"Stmt": "SHOW NODES", "Opts": []}"#, 400, -1, "Opts"),
        ("not json", 400, -1, "not valid JSON"),
    ] {
        let (status, _, answer) = http(addr, "POST", "/cmd", body);
        let answer = json_of(&answer);
        assert_eq!(status, http_status, "{body}: {answer}");
        assert_eq!(answer["Status"], code, "{body}: {answer}");
        assert_eq!(answer["Content"], Value::Null, "{body}: {answer}");
        let err = answer["Err"].as_str().unwrap_or_default();
        assert!(err.contains(part), "{body}: {answer}");
    }
    // /api carries a parse error's position as fields too (the shell's caret uses them).
    let (status, body) = sql(&node, "SHOW\n  FOO");
    assert_eq!(status, 400);
    assert_eq!(
        (body["line"].clone(), body["column"].clone()),
        (json!(2), json!(3)),
        "{body}"
    );
}

#[test]
fn metrics_parse_with_a_prometheus_parser_and_count_what_happened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(spec(dir.path(), BLOCK, 2, &[]));
    ok(&node, "SHOW NODES");
    ok(&node, "SHOW NODES");
    ok(&node, r#"ADD CLIENT ip="127.0.150.99" db="gone""#);
    let _ = sql(&node, "SHOW NOTHING");

    let (status, head, text) = http(node.http_addr(), "GET", "/metrics", "");
    assert_eq!(status, 200, "{text}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let value = |metric: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .and_then(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(*v),
                _ => None,
            })
    };
    assert_eq!(
        value(
            "bocluster_statements_total",
            &[("kind", "show_nodes"), ("outcome", "ok")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            "bocluster_statements_total",
            &[("kind", "unparsed"), ("outcome", "parse_error")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("bocluster_members", &[("status", "alive")]),
        Some(1.0),
        "{text}"
    );
    // The added client never answered: its entry is counted as unreachable.
    assert_eq!(
        value("bocluster_cluster_entries", &[("status", "unreachable")]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value("bocluster_cluster_entries", &[("status", "alive")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value("bocluster_tls_handshake_failures_total", &[]),
        Some(0.0),
        "{text}"
    );
    // A lone node pulled no records and was never declared dead.
    assert_eq!(
        value("bocluster_membership_pulls_total", &[("kind", "owner")]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value("bocluster_membership_rejoins_total", &[]),
        Some(0.0),
        "{text}"
    );
    let histogram = scrape
        .samples
        .iter()
        .find(|s| s.metric == "bocluster_statement_duration_seconds")
        .unwrap_or_else(|| panic!("no latency histogram in {text}"));
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let total = buckets.last().map(|b| b.count).unwrap_or_default();
            assert_eq!(total, 4.0, "{text}");
        }
        other => panic!("the latency is not a histogram: {other:?}"),
    }
}

/// Reads server-sent events from `GET /events` and keeps every event it parsed.
struct EventStream {
    reader: BufReader<TcpStream>,
    seen: Vec<Value>,
}

impl EventStream {
    fn open(addr: SocketAddr) -> EventStream {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
            .expect("write");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        EventStream {
            reader: BufReader::new(stream),
            seen: Vec::new(),
        }
    }

    /// Waits until an event matching `wanted` arrives (or has arrived); panics after the
    /// deadline with what was seen.
    fn expect(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(event) = self.seen.iter().find(|e| wanted(e)) {
                return event.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} event within {DEADLINE:?}; seen: {:#?}",
                self.seen
            );
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!("the event stream ended; seen: {:#?}", self.seen),
                Ok(_) => {
                    if let Some(data) = line.trim_end().strip_prefix("data: ") {
                        self.seen.push(json_of(data));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading events: {e}"),
            }
        }
    }
}

fn is(event: &Value, name: &str, field: &str, key: &str, value: &str) -> bool {
    event["event"] == name && event[field][key] == value
}

#[test]
fn events_stream_member_and_entry_changes_and_the_handler_runs_per_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let handled = dir.path().join("handled.txt");
    let handler = dir.path().join("handler.sh");
    std::fs::write(
        &handler,
        format!(
            "#!/bin/sh\nread -r json\necho \"$BO_EVENT $BO_EVENT_NODE_ID $BO_EVENT_DB $BO_EVENT_STATUS ${{#json}}\" >> {}\n",
            handled.display()
        ),
    )
    .expect("write handler");
    std::fs::set_permissions(
        &handler,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .expect("chmod");
    let handler_path = handler.display().to_string();
    let master = start(spec(
        dir.path(),
        BLOCK,
        3,
        &[
            ("BO_EVENT_HANDLER", &handler_path),
            ("BO_LOG_FORMAT", "json"),
        ],
    ));
    let mut client = start(spec(
        dir.path(),
        BLOCK,
        4,
        &[
            ("BO_DATABASES", "log1"),
            ("BO_SEEDS", "127.0.150.3:9091"),
            ("BO_MYSQL", "off"),
        ],
    ));
    let mut events = EventStream::open(master.http_addr());
    let joined = events.expect("member-join of the client", |e| {
        is(e, "member-join", "member", "node_id", "n150-4")
    });
    assert_eq!(joined["member"]["endpoint"], "127.0.150.4:9091", "{joined}");
    assert_eq!(joined["observer"], "n150-3", "{joined}");

    ok(&master, r#"ADD CLIENT ip="127.0.150.4" db="log1""#);
    let added = events.expect("entry-added", |e| {
        e["event"] == "entry-added" && e["entry"]["db"] == "log1"
    });
    assert_eq!(added["entry"]["ip"], "127.0.150.4", "{added}");
    assert_eq!(added["entry"]["source"], "add", "{added}");
    events.expect("the entry alive", |e| {
        (e["event"] == "entry-added" || e["event"] == "entry-status")
            && e["entry"]["db"] == "log1"
            && e["entry"]["status"] == "alive"
    });

    client.kill();
    let failed = events.expect("member-failed of the client", |e| {
        is(e, "member-failed", "member", "node_id", "n150-4")
    });
    assert_eq!(failed["member"]["status"], "dead", "{failed}");
    let status = events.expect("the entry dead", |e| {
        is(e, "entry-status", "entry", "status", "dead")
    });
    assert_eq!(status["previous_status"], "alive", "{status}");

    ok(&master, r#"DROP CLIENT ip="127.0.150.4" db="log1""#);
    events.expect("entry-dropped", |e| {
        is(e, "entry-dropped", "entry", "db", "log1")
    });
    // Ids grow one by one in the order the node saw the events.
    let ids: Vec<u64> = events
        .seen
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");

    // The handler ran once per event, one after the other, with the event in its
    // environment and as JSON on stdin (its length is logged).
    let lines = wait_for(DEADLINE, || {
        let text = std::fs::read_to_string(&handled).ok()?;
        text.contains("entry-dropped").then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "the handler did not see entry-dropped: {:?}; master log:\n{}",
            std::fs::read_to_string(&handled),
            master.log()
        )
    });
    for expected in [
        "member-join n150-4",
        "member-failed n150-4  dead",
        "entry-status n150-4 log1 dead",
        "entry-dropped",
    ] {
        assert!(lines.contains(expected), "{expected:?} not in:\n{lines}");
    }
    assert!(
        lines.lines().all(|l| l
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n > 20)),
        "{lines}"
    );

    // BO_LOG_FORMAT=json: every log line is one JSON object.
    let log = master.log();
    assert!(!log.is_empty());
    for line in log.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
    // BO_MYSQL=off on the client: nothing listened on its 3306 (it is dead now anyway, so ask
    // the master's, which does listen).
    assert!(TcpStream::connect_timeout(
        &"127.0.150.3:3306".parse().expect("addr"),
        Duration::from_secs(2)
    )
    .is_ok());
}

#[test]
fn mysql_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(spec(dir.path(), BLOCK, 5, &[("BO_MYSQL", "off")]));
    let refused =
        TcpStream::connect_timeout(&SocketAddr::new(node.spec.ip, 3306), Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "something listens on 3306 with BO_MYSQL=off"
    );
    let other = start(spec(
        dir.path(),
        BLOCK,
        6,
        &[("BO_MYSQL", "127.0.150.6:13306")],
    ));
    assert!(TcpStream::connect_timeout(
        &"127.0.150.6:13306".parse().expect("addr"),
        Duration::from_secs(2)
    )
    .is_ok());
    drop(other);
}

#[test]
fn the_page_and_its_script_are_served_by_the_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(spec(dir.path(), BLOCK, 7, &[]));
    let (status, head, page) = http(node.http_addr(), "GET", "/", "");
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(
        page.contains("<script src=\"/page.js\"></script>"),
        "{page}"
    );
    let (status, head, script) = http(node.http_addr(), "GET", "/page.js", "");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{head}"
    );
    assert!(script.contains("new EventSource(\"/events\""), "{script}");
}
