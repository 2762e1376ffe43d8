//! ADD CLIENT / DROP CLIENT / SHOW CLUSTER through the HTTP API of a real node: every kind of
//! bad input is refused with its position, every accepted spelling adds the expected entry,
//! and SHOW CLUSTER lists the entries in the documented order with the right statuses.
//!
//! Address blocks used here: 127.0.80.x to 127.0.83.x. Entries that must stay `unreachable`
//! point at addresses of the test's own block where no node runs (127.0.<block>.200 and
//! similar), or at `::1` / `localhost` on ports where nothing listens.

mod common;
use common::*;

use std::time::Duration;

use serde_json::{json, Value};

fn retcode(body: &Value) -> i64 {
    body.get("retcode")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| panic!("no integer retcode in {body}"))
}

fn errmsg(body: &Value) -> String {
    body.get("errmsg")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string errmsg in {body}"))
        .to_string()
}

fn message(body: &Value) -> String {
    body.get("message")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string message in {body}"))
        .to_string()
}

/// Adds an entry that must be new.
fn added(node: &LocalNode, statement: &str) {
    let body = ok(node, statement);
    let text = message(&body);
    assert!(
        text.contains("added") && !text.contains("already"),
        "{statement:?}: message {text:?} does not say the client was added"
    );
}

/// Asserts that `statement` is refused as a user error: HTTP 400, a negative retcode, an
/// errmsg that starts with "line L, column C:" and contains every one of `parts`.
fn refused_at(node: &LocalNode, statement: &str, line: u64, column: u64, parts: &[&str]) {
    let (status, body) = sql(node, statement);
    assert_eq!(status, 400, "{statement:?}: HTTP status; body {body}");
    assert!(
        retcode(&body) < 0,
        "{statement:?}: retcode must be negative: {body}"
    );
    let text = errmsg(&body);
    let prefix = format!("line {line}, column {column}: ");
    assert!(
        text.starts_with(&prefix),
        "{statement:?}: errmsg {text:?} does not start with {prefix:?}"
    );
    for part in parts {
        assert!(
            text.contains(part),
            "{statement:?}: errmsg {text:?} lacks {part:?}"
        );
    }
}

/// SHOW CLUSTER's rows; also checks the column list and that every row is complete.
fn cluster_of(node: &LocalNode, statement: &str) -> Vec<ClusterRow> {
    let body = ok(node, statement);
    assert_eq!(
        body["columns"],
        json!(["host", "ip", "port", "db", "source", "status", "node_id"]),
        "{statement:?}: {body}"
    );
    rows_as_maps(&body)
        .iter()
        .map(|r| {
            let row = cluster_row(r);
            let host = r.get("host").and_then(Value::as_str);
            // Nothing is known about the host of an endpoint that never answered.
            if row.4 == "unreachable" {
                assert_eq!(host, Some(""), "an unreachable row names a host: {r:?}");
                assert_eq!(row.5, "", "an unreachable row names a node: {r:?}");
            }
            row
        })
        .collect()
}

fn cluster(node: &LocalNode) -> Vec<ClusterRow> {
    cluster_of(node, "SHOW CLUSTER")
}

fn unreachable(ip: &str, port: u64, db: &str) -> ClusterRow {
    (
        ip.to_string(),
        port,
        db.to_string(),
        "add".to_string(),
        "unreachable".to_string(),
        String::new(),
    )
}

/// Waits until SHOW CLUSTER is exactly `want`, in that order.
fn expect_cluster(node: &LocalNode, want: &[ClusterRow]) {
    if wait_for(DEADLINE, || (cluster(node) == want).then_some(())).is_none() {
        panic!(
            "SHOW CLUSTER on {} never became\n{want:#?}\nlast:\n{:#?}\nlog:\n{}",
            node.spec.node_id,
            cluster(node),
            node.log()
        );
    }
}

/// The node is up, answers /health with its id, and SHOW CLUSTER still answers.
fn assert_healthy(node: &LocalNode) {
    let url = format!("http://{}/health", node.http_addr());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let body: Value = agent
        .get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}; log:\n{}", node.log()))
        .into_body()
        .read_json()
        .unwrap_or_else(|e| panic!("GET {url} did not answer JSON: {e}"));
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["node_id"], node.spec.node_id.as_str(), "{body}");
    cluster(node);
}

#[test]
fn bad_client_statements_are_refused_at_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 80, 1, &[("BO_DATABASES", "log1")]));

    let long_db = format!("ADD CLIENT ip=127.0.80.200 db={}", "a".repeat(65));
    // Columns are counted by hand: 1-based, in characters.
    let cases: &[(&str, u64, u64, &[&str])] = &[
        // Missing keys: reported where the statement ends (just after its last token).
        // "ADD CLIENT " is 11 characters, db="log1" is 9: the end is column 21.
        (r#"ADD CLIENT db="log1""#, 1, 21, &["needs ip="]),
        // ip="127.0.80.200" is columns 12-28, port=19091 30-39, ';' at 40.
        (
            r#"ADD CLIENT ip="127.0.80.200" port=19091;"#,
            1,
            40,
            &["needs db="],
        ),
        ("ADD CLIENT", 1, 11, &["needs ip=", "and db="]),
        ("DROP CLIENT", 1, 12, &["DROP CLIENT needs ip=", "and db="]),
        ("drop client db=log1 port=19091", 1, 31, &["needs ip="]),
        ("DROP CLIENT ip=127.0.80.200 ;", 1, 29, &["needs db="]),
        // Unknown keys: at the key.
        (
            r#"ADD CLIENT ip="127.0.80.200" host="x" db="log1""#,
            1,
            30,
            &["unknown key", "host"],
        ),
        (
            "DROP CLIENT db=log1 ip=127.0.80.200 database=log1",
            1,
            37,
            &["unknown key", "database"],
        ),
        // Repeated keys (case-insensitively): at the second one.
        (
            "ADD CLIENT db=log1 ip=127.0.80.200 DB=log2",
            1,
            36,
            &["key db", "more than once"],
        ),
        (
            "DROP CLIENT port=1 ip=127.0.80.200 db=x port=2",
            1,
            41,
            &["key port", "more than once"],
        ),
        (
            "ADD CLIENT ip=127.0.80.200 db=log1 ip=127.0.80.201",
            1,
            36,
            &["key ip", "more than once"],
        ),
        // Ports: at the value, which the message quotes.
        // ip=127.0.80.200 is columns 12-26, db=log1 28-34, port= 36-40: the value is at 41.
        (
            "ADD CLIENT ip=127.0.80.200 db=log1 port=65536",
            1,
            41,
            &["65536", "out of range"],
        ),
        (
            "ADD CLIENT ip=127.0.80.200 db=log1 port=0",
            1,
            41,
            &["\"0\"", "out of range"],
        ),
        (
            "ADD CLIENT ip=127.0.80.200 db=log1 port=4294967297",
            1,
            41,
            &["4294967297", "out of range"],
        ),
        (
            r#"ADD CLIENT ip=127.0.80.200 db=log1 port="abc""#,
            1,
            41,
            &["abc", "not a number"],
        ),
        (
            "ADD CLIENT ip=127.0.80.200 db=log1 port=-5",
            1,
            41,
            &["-5", "not a number"],
        ),
        (
            "DROP CLIENT ip=127.0.80.200 db=log1 port=90x1",
            1,
            42,
            &["90x1", "not a number"],
        ),
        (
            "ADD CLIENT ip=127.0.80.200 db=log1 port=''",
            1,
            41,
            &["port", "not a number"],
        ),
        // Bad database names: at the value.
        (
            r#"ADD CLIENT ip=127.0.80.200 db="my-db""#,
            1,
            31,
            &["bad db value", "my-db"],
        ),
        (
            "ADD CLIENT ip=127.0.80.200 db=1abc",
            1,
            31,
            &["bad db value", "1abc"],
        ),
        (
            "DROP CLIENT db='a b' ip=127.0.80.200",
            1,
            16,
            &["bad db value", "a b"],
        ),
        (
            "ADD CLIENT ip=127.0.80.200 db=''",
            1,
            31,
            &["bad db value", "empty"],
        ),
        (&long_db, 1, 31, &["bad db value", "longer than 64"]),
        // Bad addresses: at the value.
        (
            "ADD CLIENT ip=127.0.80.999 db=log1",
            1,
            15,
            &["127.0.80.999", "not a valid IPv4"],
        ),
        ("ADD CLIENT ip=127.0.80.200:9091 db=log1", 1, 15, &["port="]),
        (r#"ADD CLIENT ip="" db=log1"#, 1, 15, &["empty"]),
        // Unterminated quotes: at the opening quote.
        (
            r#"ADD CLIENT ip="127.0.80.200 db=log1"#,
            1,
            15,
            &["unterminated quote"],
        ),
        (
            "ADD CLIENT ip=127.0.80.200 db='log1",
            1,
            31,
            &["unterminated quote"],
        ),
        (
            "DROP CLIENT ip=127.0.80.200 db=log1 port=\"19091",
            1,
            42,
            &["unterminated quote"],
        ),
        // On a later line: line 3, after two spaces of indentation, "db=" is columns 3-5.
        (
            "ADD CLIENT\n  ip=127.0.80.200\n  db='log1",
            3,
            6,
            &["unterminated quote"],
        ),
        // Anything after the statement: at the first extra token.
        // ';' is column 35, the second statement starts at 37.
        (
            "ADD CLIENT ip=127.0.80.200 db=log1; SHOW CLUSTER",
            1,
            37,
            &["unexpected", "SHOW", "after the end", "only one statement"],
        ),
        (
            "DROP CLIENT ip=127.0.80.200 db=log1;;",
            1,
            37,
            &["unexpected", "after the end"],
        ),
        ("SHOW CLUSTER extra", 1, 14, &["unexpected", "extra"]),
        ("show cluster; x", 1, 15, &["unexpected", "\"x\""]),
        // A misspelled statement.
        (
            "SHOW CLUSTERS",
            1,
            6,
            &["expected DATABASES, NODES or CLUSTER", "CLUSTERS"],
        ),
        ("ADD CLIENTS ip=127.0.80.200 db=log1", 1, 5, &["CLIENT"]),
    ];
    for (statement, line, column, parts) in cases {
        refused_at(&node, statement, *line, *column, parts);
    }

    // None of them added anything, not even the ones that were complete statements followed
    // by more input.
    assert_eq!(cluster(&node), Vec::<ClusterRow>::new());
    assert_healthy(&node);
}

#[test]
fn every_accepted_spelling_adds_the_expected_entry() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 81, 1, &[]));

    for statement in [
        // Double quotes with a port.
        r#"ADD CLIENT ip="127.0.81.200" db="log1" port=19091"#,
        // Single quotes, default port.
        "ADD CLIENT ip='127.0.81.200' db='log2'",
        // Bare values, the default port given explicitly.
        "ADD CLIENT ip=127.0.81.200 db=log3 port=9091",
        // Spaces around '=' (or on one side only).
        r#"ADD CLIENT ip = "127.0.81.9" db= log1 port =19091"#,
        // Any key order.
        r#"ADD CLIENT port=19092 db="log1" ip=127.0.81.200"#,
        // Lowercase keywords and a trailing ';'.
        "add client db='log1' ip='127.0.81.10';",
        // Mixed-case keywords and keys, quoted port, ';' after a space.
        "Add Client IP=127.0.81.10 DB=log2 Port='7' ;",
        // Spread over lines, with tabs.
        "ADD CLIENT\n\tip=\"127.0.81.201\"\n\tdb=log1\n;",
        // IPv6 literals with a port, quoted and in brackets.
        r#"ADD CLIENT ip="::1" db=log1 port=19081"#,
        "ADD CLIENT ip=[::1] db=log2 port=19081",
        // DNS names (only localhost here), bare and quoted.
        "ADD CLIENT ip=localhost db=log1 port=19081",
        r#"add client ip="localhost" db="log2" port=19081;"#,
    ] {
        added(&node, statement);
    }

    // Sorted by ip (numerically; IPv4, then IPv6, then names), then port (numerically),
    // then db. Nothing answers at any of these endpoints.
    let want = vec![
        unreachable("127.0.81.9", 19091, "log1"),
        unreachable("127.0.81.10", 7, "log2"),
        unreachable("127.0.81.10", 9091, "log1"),
        unreachable("127.0.81.200", 9091, "log2"),
        unreachable("127.0.81.200", 9091, "log3"),
        unreachable("127.0.81.200", 19091, "log1"),
        unreachable("127.0.81.200", 19092, "log1"),
        unreachable("127.0.81.201", 9091, "log1"),
        unreachable("::1", 19081, "log1"),
        unreachable("::1", 19081, "log2"),
        unreachable("localhost", 19081, "log1"),
        unreachable("localhost", 19081, "log2"),
    ];
    assert_eq!(cluster(&node), want);
    // SHOW CLUSTER itself in other spellings.
    assert_eq!(cluster_of(&node, "show cluster;"), want);
    assert_eq!(cluster_of(&node, "  Show\n Cluster ; "), want);

    // The node dials the entries; they stay unreachable (nothing is there) and nothing
    // changes in the list while it does.
    let changed = wait_for(Duration::from_secs(3), || {
        (cluster(&node) != want).then(|| cluster(&node))
    });
    assert_eq!(changed, None, "SHOW CLUSTER changed by itself");
    assert_healthy(&node);
}

#[test]
fn adding_twice_and_dropping_what_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 82, 1, &[]));

    added(&node, "ADD CLIENT ip=127.0.82.200 db=log1");
    // The same entry, spelled differently: accepted, said to be there already, not doubled.
    for again in [
        "ADD CLIENT ip=127.0.82.200 db=log1",
        r#"add client db="log1" ip='127.0.82.200' port=9091;"#,
    ] {
        let text = message(&ok(&node, again));
        assert!(text.contains("already"), "{again:?}: message {text:?}");
    }
    assert_eq!(cluster(&node), [unreachable("127.0.82.200", 9091, "log1")]);

    // Same ip and db on another port is another entry.
    added(&node, "ADD CLIENT ip=127.0.82.200 db=log1 port=19091");
    // An address is the same however it is written; a DNS name whatever its case.
    added(&node, "ADD CLIENT ip=::1 db=log1 port=19082");
    let text = message(&ok(
        &node,
        r#"ADD CLIENT ip="0:0:0:0:0:0:0:1" db=log1 port=19082"#,
    ));
    assert!(text.contains("already"), "{text:?}");
    added(&node, "ADD CLIENT ip=localhost db=log1 port=19082");
    let text = message(&ok(&node, "ADD CLIENT ip=LocalHost db=log1 port=19082"));
    assert!(text.contains("already"), "{text:?}");
    let all = vec![
        unreachable("127.0.82.200", 9091, "log1"),
        unreachable("127.0.82.200", 19091, "log1"),
        unreachable("::1", 19082, "log1"),
        unreachable("localhost", 19082, "log1"),
    ];
    assert_eq!(cluster(&node), all);

    // DROP of an entry that is not there: another ip, another db, another port.
    for (missing, what) in [
        ("DROP CLIENT ip=127.0.82.201 db=log1", "127.0.82.201"),
        ("DROP CLIENT ip=127.0.82.200 db=log2", "log2"),
        ("DROP CLIENT ip=127.0.82.200 db=log1 port=9092", "9092"),
        ("drop client ip=::1 db=log1;", "::1"),
    ] {
        let (status, body) = sql(&node, missing);
        assert_eq!(status, 400, "{missing:?}: {body}");
        assert!(retcode(&body) < 0, "{missing:?}: {body}");
        let text = errmsg(&body);
        assert!(
            text.contains("not in") && text.contains("cluster") && text.contains(what),
            "{missing:?}: errmsg {text:?} does not say that it is not in the cluster"
        );
    }
    assert_eq!(cluster(&node), all);

    // DROP of an existing entry removes exactly that row.
    let text = message(&ok(&node, r#"drop client ip="127.0.82.200" db='log1';"#));
    assert!(text.contains("dropped"), "{text:?}");
    assert_eq!(cluster(&node), all[1..]);
    // Dropping it again is an error; adding it again adds it (not "already there").
    let (status, body) = sql(&node, "DROP CLIENT ip=127.0.82.200 db=log1");
    assert_eq!(status, 400, "{body}");
    assert!(retcode(&body) < 0, "{body}");
    assert!(errmsg(&body).contains("not in"), "{body}");
    added(&node, "ADD CLIENT db=log1 ip=127.0.82.200");
    assert_eq!(cluster(&node), all);

    // DROP with the default port given, and with other spellings of the address and name.
    for statement in [
        "DROP CLIENT ip=127.0.82.200 db=log1 port=9091",
        "DROP CLIENT ip=[::1] db=log1 port=19082",
        "DROP CLIENT ip=LOCALHOST db=log1 port='19082'",
    ] {
        let text = message(&ok(&node, statement));
        assert!(text.contains("dropped"), "{statement:?}: {text:?}");
    }
    assert_eq!(cluster(&node), [unreachable("127.0.82.200", 19091, "log1")]);
    assert_healthy(&node);
}

#[test]
fn live_endpoints_show_alive_no_db_left_and_dead() {
    let dir = tempfile::tempdir().unwrap();
    let master = start(spec(dir.path(), 83, 1, &[("BO_DATABASES", "log1")]));
    // Knows nothing of the master (no seeds, no BO_MASTER): the master has to reach it.
    let mut other = start(spec(dir.path(), 83, 2, &[("BO_DATABASES", "log2,log3")]));

    // The master's own address, with a database it has and one it lacks.
    added(&master, r#"ADD CLIENT ip="127.0.83.1" db="log1""#);
    added(&master, "ADD CLIENT ip=127.0.83.1 db=nodb");
    // Another live node, with a database it has and one it lacks.
    added(&master, "ADD CLIENT ip=127.0.83.2 db=log2 port=9091");
    added(&master, "ADD CLIENT ip=127.0.83.2 db=log9");
    // Nobody there.
    added(&master, "ADD CLIENT ip=127.0.83.200 db=log1");

    let live = |other_status: &str, other_log9: &str| {
        expected_rows(&[
            ("127.0.83.1", 9091, "log1", "add", "alive", "n83-1"),
            ("127.0.83.1", 9091, "nodb", "add", "no_db", "n83-1"),
            ("127.0.83.2", 9091, "log2", "add", other_status, "n83-2"),
            ("127.0.83.2", 9091, "log9", "add", other_log9, "n83-2"),
            ("127.0.83.200", 9091, "log1", "add", "unreachable", ""),
        ])
    };
    expect_cluster(&master, &live("alive", "no_db"));
    // Live rows name the machine the node runs on.
    let body = ok(&master, "SHOW CLUSTER");
    for row in rows_as_maps(&body) {
        let live = row["status"] != "unreachable";
        assert_eq!(
            row["host"].as_str().is_some_and(|h| !h.is_empty()),
            live,
            "{row:?}"
        );
    }

    // The client's databases change: the statuses follow.
    ok(&other, "CREATE DATABASE log9");
    ok(&other, "DROP DATABASE log2");
    expect_cluster(&master, &live("no_db", "alive"));

    // A clean stop: left. A restart: alive again (BO_DATABASES creates log2 again at start,
    // log9 is still on disk).
    assert!(other.stop(DEADLINE), "n83-2 did not stop on SIGTERM");
    expect_cluster(&master, &live("left", "left"));
    other.restart().unwrap();
    other.wait_healthy(DEADLINE).unwrap();
    expect_cluster(&master, &live("alive", "alive"));

    // A crash: dead. A restart: alive again.
    other.kill();
    expect_cluster(&master, &live("dead", "dead"));
    other.restart().unwrap();
    other.wait_healthy(DEADLINE).unwrap();
    expect_cluster(&master, &live("alive", "alive"));

    assert_healthy(&master);
    assert_healthy(&other);
}
