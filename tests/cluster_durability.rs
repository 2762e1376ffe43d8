//! A master's cluster survives kill -9: every acknowledged ADD CLIENT and DROP CLIENT is on
//! disk before it is answered, and a damaged cluster file stops the node instead of being
//! taken for an empty cluster.
//!
//! Address blocks used here: 127.0.90.x to 127.0.92.x. Added entries point at addresses of
//! the test's own block where no node runs, so they stay `unreachable`.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bocluster::cli::sql::{post_statement, ApiOutcome};

/// (ip, port, db) of each row.
fn keys(rows: &[ClusterRow]) -> Vec<(String, u64, String)> {
    rows.iter()
        .map(|(ip, port, db, ..)| (ip.clone(), *port, db.clone()))
        .collect()
}

/// Restarts a stopped or killed node on the same data dir and waits for /health.
fn restart(node: &mut LocalNode) {
    node.restart().expect("respawn bocluster node");
    if let Err(e) = node.wait_healthy(DEADLINE) {
        panic!("{e}");
    }
}

/// An entry the stream adds: (ip, db), always on the default port.
type Added = (String, String);

/// Sends distinct ADD CLIENTs to `http` as fast as it can until `stop` is set (or it runs out
/// of entries), pushing every acknowledged one onto `acked`. Returns every entry it sent.
fn stream_adds(
    http: String,
    block: u8,
    cycle: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Added>>>,
) -> std::thread::JoinHandle<Vec<Added>> {
    std::thread::spawn(move || {
        let mut sent = Vec::new();
        // 8 databases per address, 151 addresses (hosts 100..=250): 1208 distinct entries.
        for i in 0..8 * 151 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let ip = format!("127.0.{block}.{}", 100 + i / 8);
            let db = format!("c{cycle}_d{}", i % 8);
            let statement = if i % 2 == 0 {
                format!("ADD CLIENT ip={ip} db={db}")
            } else {
                format!(r#"ADD CLIENT ip="{ip}" db="{db}" port=9091;"#)
            };
            sent.push((ip.clone(), db.clone()));
            if let ApiOutcome::Answered { status, body } =
                post_statement(&http, &statement, Duration::from_secs(10))
            {
                if status == 200 && body["retcode"] == 0 {
                    let message = body["message"].as_str().unwrap_or_default();
                    assert!(
                        message.contains("added"),
                        "{statement:?} acknowledged without adding: {body}"
                    );
                    acked.lock().unwrap().push((ip, db));
                }
            }
        }
        sent
    })
}

#[test]
fn acknowledged_adds_survive_kill_9_mid_stream() {
    let dir = tempfile::tempdir().unwrap();
    let block = 90;
    let mut master = start(spec(dir.path(), block, 1, &[]));
    let http = master.http_addr().to_string();

    let mut acked_so_far: BTreeSet<Added> = BTreeSet::new();
    let mut sent_so_far: BTreeSet<Added> = BTreeSet::new();
    for cycle in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stream = stream_adds(http.clone(), block, cycle, stop.clone(), acked.clone());

        let enough = 30 + 20 * cycle;
        let reached = wait_for(DEADLINE, || {
            (acked.lock().unwrap().len() >= enough).then_some(())
        });
        // SIGKILL while the stream is still sending.
        master.kill();
        stop.store(true, Ordering::SeqCst);
        let sent = stream.join().expect("the ADD CLIENT stream panicked");
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(
            reached.is_some(),
            "cycle {cycle}: only {} of {enough} ADD CLIENTs acknowledged in {DEADLINE:?}; log:\n{}",
            acked.len(),
            master.log()
        );
        assert!(
            sent.len() < 8 * 151,
            "cycle {cycle}: the stream ran out of entries before the kill"
        );
        acked_so_far.extend(acked);
        sent_so_far.extend(sent);

        restart(&mut master);
        // Right after /health answers, no waiting.
        let rows = show_cluster(&master);
        let shown = keys(&rows);
        let unique: BTreeSet<_> = shown.iter().cloned().collect();
        assert_eq!(
            unique.len(),
            shown.len(),
            "cycle {cycle}: duplicate rows in SHOW CLUSTER: {rows:#?}"
        );
        let mut sorted = shown.clone();
        sorted.sort_by_key(|(ip, port, db)| {
            (
                ip.parse::<std::net::IpAddr>().expect("an IP entry"),
                *port,
                db.clone(),
            )
        });
        assert_eq!(sorted, shown, "cycle {cycle}: rows out of order");
        let present: BTreeSet<Added> = shown
            .iter()
            .map(|(ip, port, db)| {
                assert_eq!(*port, 9091, "cycle {cycle}: {ip} {db} on port {port}");
                (ip.clone(), db.clone())
            })
            .collect();
        let lost: Vec<&Added> = acked_so_far.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} acknowledged entries missing after kill -9 and restart: {lost:?}",
            lost.len()
        );
        // Anything more can only be a statement that was carried out but not answered when
        // the node died.
        let invented: Vec<&Added> = present.difference(&sent_so_far).collect();
        assert!(
            invented.is_empty(),
            "cycle {cycle}: entries nobody added: {invented:?}"
        );
        eprintln!(
            "cycle {cycle}: {} acknowledged so far, {} sent, {} shown after the restart",
            acked_so_far.len(),
            sent_so_far.len(),
            rows.len()
        );
        for (ip, _, db, source, status, node_id) in &rows {
            assert_eq!(
                (source.as_str(), status.as_str(), node_id.as_str()),
                ("add", "unreachable", ""),
                "cycle {cycle}: row {ip} {db}"
            );
        }
    }

    // The restarted node keeps working: it adds, and adds nothing twice.
    let again = acked_so_far.iter().next().unwrap().clone();
    let body = ok(
        &master,
        &format!("ADD CLIENT ip={} db={}", again.0, again.1),
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("already"),
        "{body}"
    );
    ok(&master, "ADD CLIENT ip=127.0.90.251 db=after");
    let before = show_cluster(&master).len();
    master.kill();
    restart(&mut master);
    let rows = show_cluster(&master);
    assert_eq!(rows.len(), before);
    assert!(keys(&rows).contains(&("127.0.90.251".into(), 9091, "after".into())));
}

#[test]
fn dropped_entries_stay_dropped_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = start(spec(dir.path(), 91, 1, &[]));
    // A client that registers all its databases with the master.
    let client = start(spec(
        dir.path(),
        91,
        2,
        &[
            ("BO_MASTER", "127.0.91.1"),
            ("BO_DATABASES", "log1,log2,log3"),
        ],
    ));
    for db in ["a", "b", "c"] {
        ok(&master, &format!("ADD CLIENT ip=127.0.91.200 db={db}"));
    }
    let row = |ip: &str, db: &str, source: &str, status: &str, node: &str| -> ClusterRow {
        (
            ip.to_string(),
            9091,
            db.to_string(),
            source.to_string(),
            status.to_string(),
            node.to_string(),
        )
    };
    let registered = |db: &str| row("127.0.91.2", db, "register", "alive", "n91-2");
    let nobody = |db: &str| row("127.0.91.200", db, "add", "unreachable", "");
    let expect = |master: &LocalNode, want: &[ClusterRow]| {
        if wait_for(DEADLINE, || (show_cluster(master) == want).then_some(())).is_none() {
            panic!(
                "SHOW CLUSTER never became\n{want:#?}\nlast:\n{:#?}\nmaster log:\n{}\nclient log:\n{}",
                show_cluster(master),
                master.log(),
                client.log()
            );
        }
    };
    expect(
        &master,
        &[
            registered("log1"),
            registered("log2"),
            registered("log3"),
            nobody("a"),
            nobody("b"),
            nobody("c"),
        ],
    );

    // Drop a registered entry (the client keeps registering log2: a tombstone keeps it out)
    // and an added one, then crash right after the answers.
    ok(&master, "DROP CLIENT ip=127.0.91.2 db=log2");
    ok(&master, "DROP CLIENT ip=127.0.91.200 db=b");
    master.kill();
    restart(&mut master);
    let want_keys = |dbs: &[(&str, &str)]| -> Vec<(String, u64, String)> {
        dbs.iter()
            .map(|(ip, db)| (ip.to_string(), 9091, db.to_string()))
            .collect()
    };
    // Right after /health answers: the entries, whatever gossip says of them yet.
    let rows = show_cluster(&master);
    assert_eq!(
        keys(&rows),
        want_keys(&[
            ("127.0.91.2", "log1"),
            ("127.0.91.2", "log3"),
            ("127.0.91.200", "a"),
            ("127.0.91.200", "c"),
        ]),
        "{rows:#?}"
    );
    let sources: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(sources, ["register", "register", "add", "add"]);

    // The client is heard from again and re-registers log1, log2 and log3: log2 stays out.
    let kept = [
        registered("log1"),
        registered("log3"),
        nobody("a"),
        nobody("c"),
    ];
    expect(&master, &kept);
    let back = wait_for(Duration::from_secs(3), || {
        let rows = show_cluster(&master);
        (rows != kept).then_some(rows)
    });
    assert_eq!(back, None, "a dropped entry came back");

    // ADD CLIENT of log2 at the client lifts the tombstone, durably too.
    ok(&master, "ADD CLIENT ip=127.0.91.2 db=log2");
    master.kill();
    restart(&mut master);
    expect(
        &master,
        &[
            registered("log1"),
            row("127.0.91.2", "log2", "add", "alive", "n91-2"),
            registered("log3"),
            nobody("a"),
            nobody("c"),
        ],
    );
}

#[test]
fn a_damaged_cluster_file_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(spec(dir.path(), 92, 1, &[]));
    ok(&node, "ADD CLIENT ip=127.0.92.200 db=log1");
    ok(&node, "ADD CLIENT ip=127.0.92.201 db=log2 port=19091");
    let want = show_cluster(&node);
    assert_eq!(want.len(), 2);
    assert!(node.stop(DEADLINE), "the node did not stop on SIGTERM");

    let path = node.spec.data_dir.join("cluster.json");
    let good = std::fs::read(&path).expect("cluster.json after ADD CLIENT");
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("text", b"this is not the cluster\n".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("binary", vec![0x00, 0xff, 0xfe, 0x7b, 0x80, 0x0a]),
        ("wrong shape", br#"{"entries": 5}"#.to_vec()),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&path, &bytes).unwrap();
        let log_before = node.log().len();
        node.restart().expect("respawn bocluster node");
        let code = node.wait_exit(DEADLINE);
        let log = node.log();
        let new_log = log.get(log_before..).unwrap_or(&log);
        assert_eq!(
            code,
            Some(2),
            "{what} cluster.json: expected exit code 2; log:\n{new_log}"
        );
        assert!(
            new_log.contains("cluster.json"),
            "{what} cluster.json: the message does not name the file:\n{new_log}"
        );
        assert!(
            node.sql("SHOW CLUSTER").is_err(),
            "{what} cluster.json: something still answers"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what} cluster.json: the node changed the damaged file"
        );
    }

    // Unreadable (a directory in its place): also a refusal naming the file.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let log_before = node.log().len();
    node.restart().expect("respawn bocluster node");
    let code = node.wait_exit(DEADLINE);
    let log = node.log();
    let new_log = log.get(log_before..).unwrap_or(&log);
    assert_eq!(code, Some(2), "unreadable cluster.json; log:\n{new_log}");
    assert!(new_log.contains("cluster.json"), "{new_log}");
    std::fs::remove_dir(&path).unwrap();

    // With the file restored, the node starts with its entries.
    std::fs::write(&path, &good).unwrap();
    restart(&mut node);
    assert_eq!(show_cluster(&node), want);
}
