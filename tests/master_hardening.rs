//! A master's cluster under careless or hostile input: addresses it must never dial, a log
//! record torn by kill -9, damage in the log, a hand-edited entry with port 0.
//!
//! Address block used here: 127.0.153.x. (Broadcast and multicast refusals are unit tests of
//! the validator, `src/cluster/dialable.rs`: a master that wrongly accepted one would really
//! send packets there.)

mod common;
use common::*;

use std::io::Write;

#[test]
fn add_client_refuses_unspecified_addresses_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 153, 1, &[]));
    for (statement, ip) in [
        ("ADD CLIENT ip=0.0.0.0 db=log1", "0.0.0.0"),
        ("ADD CLIENT ip=:: db=log1", "::"),
        ("ADD CLIENT ip=[::] db=log1 port=19091", "::"),
    ] {
        let (status, body) = sql(&node, statement);
        assert_eq!(status, 400, "{statement}: {body}");
        let errmsg = body["errmsg"].as_str().unwrap_or_default();
        assert!(
            errmsg.contains(&format!("{ip} is an unspecified address")),
            "{statement}: {errmsg}"
        );
    }
    assert!(show_cluster(&node).is_empty());
}

/// The data dir's cluster log.
fn log_path(node: &LocalNode) -> std::path::PathBuf {
    node.spec.data_dir.join("cluster.log")
}

fn hosts(node: &LocalNode) -> Vec<String> {
    show_cluster(node).into_iter().map(|row| row.0).collect()
}

#[test]
fn a_torn_last_record_after_kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(spec(dir.path(), 153, 2, &[]));
    // The first change writes the snapshot; the next ones are records of the log.
    for host in 200..=203 {
        ok(&node, &format!("ADD CLIENT ip=127.0.153.{host} db=log1"));
    }
    let acknowledged: Vec<String> = (200..=203).map(|h| format!("127.0.153.{h}")).collect();
    node.kill();
    let whole = std::fs::read(log_path(&node)).expect("cluster.log after ADD CLIENT");
    assert!(!whole.is_empty());

    // A crash while a record was being appended: part of a header, then part of a record
    // (the first half of one as the log holds them: 12 bytes of header, then the payload).
    let first_len = 12 + u32::from_le_bytes([whole[0], whole[1], whole[2], whole[3]]) as usize;
    assert!(first_len < whole.len());
    for torn in [&b"\x30\x00\x00"[..], &whole[..first_len / 2]] {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(log_path(&node))
            .unwrap();
        log.write_all(torn).unwrap();
        drop(log);
        node.restart().expect("restart");
        node.wait_healthy(DEADLINE)
            .expect("healthy after a torn record");
        assert_eq!(hosts(&node), acknowledged);
        assert!(node
            .log()
            .contains("cut short at the end of the cluster log"));
        node.kill();
        assert_eq!(std::fs::read(log_path(&node)).unwrap(), whole);
    }

    // Appending goes on after the trimmed log, and survives kill -9 too.
    node.restart().expect("restart");
    node.wait_healthy(DEADLINE).expect("healthy");
    ok(&node, "DROP CLIENT ip=127.0.153.201 db=log1");
    ok(&node, "ADD CLIENT ip=127.0.153.204 db=log1");
    node.kill();
    node.restart().expect("restart");
    node.wait_healthy(DEADLINE).expect("healthy");
    assert_eq!(
        hosts(&node),
        [
            "127.0.153.200",
            "127.0.153.202",
            "127.0.153.203",
            "127.0.153.204"
        ]
    );

    // Damage before the end is no torn write: the node refuses to start, naming the file and
    // the byte, and leaves the log as it was.
    node.kill();
    let mut damaged = std::fs::read(log_path(&node)).unwrap();
    damaged[14] ^= 0x20;
    std::fs::write(log_path(&node), &damaged).unwrap();
    let log_before = node.log().len();
    node.restart().expect("restart");
    let code = node.wait_exit(DEADLINE);
    let log = node.log();
    let new_log = &log[log_before..];
    assert_eq!(code, Some(2), "{new_log}");
    assert!(
        new_log.contains("cluster.log is damaged at byte 0"),
        "{new_log}"
    );
    assert_eq!(std::fs::read(log_path(&node)).unwrap(), damaged);
}

#[test]
fn an_entry_with_port_0_is_refused_at_load_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(spec(dir.path(), 153, 3, &[]));
    ok(&node, "ADD CLIENT ip=127.0.153.210 db=log1");
    assert!(node.stop(DEADLINE), "stops on SIGTERM");
    // The entry went to the log (the node wrote an empty snapshot at start): plant it, with
    // port 0, in the snapshot instead, and take the log away.
    let path = node.spec.data_dir.join("cluster.json");
    let snapshot = std::fs::read_to_string(&path).expect("cluster.json");
    let entry =
        r#"{"key":{"host":"127.0.153.210","port":0,"db":"log1"},"source":"add","node_id":null}"#;
    let edited = snapshot.replace("\"entries\":[]", &format!("\"entries\":[{entry}]"));
    assert_ne!(edited, snapshot, "{snapshot}");
    std::fs::write(&path, &edited).unwrap();
    std::fs::remove_file(node.spec.data_dir.join("cluster.log")).expect("cluster.log");
    let log_before = node.log().len();
    node.restart().expect("restart");
    let code = node.wait_exit(DEADLINE);
    let log = node.log();
    let new_log = &log[log_before..];
    assert_eq!(code, Some(2), "{new_log}");
    assert!(
        new_log.contains("entry 127.0.153.210:0 db log1 has port 0"),
        "{new_log}"
    );
    assert!(new_log.contains("cluster.json"), "{new_log}");
}
