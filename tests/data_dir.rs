//! One process per data dir (the lock), and data dirs that cannot be used.
//!
//! Address block used here: 127.0.152.x.

mod common;
use common::*;

use std::time::Duration;

use nix::sys::signal::Signal;

fn identity(dir: &std::path::Path) -> serde_json::Value {
    let bytes = std::fs::read(dir.join("identity.json")).expect("read identity.json");
    serde_json::from_slice(&bytes).expect("identity.json is JSON")
}

#[test]
fn a_second_node_on_a_data_dir_exits_and_a_kill_9_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let first_spec = spec(dir.path(), 152, 1, &[]);
    let data_dir = first_spec.data_dir.clone();
    let mut first = start(first_spec);
    let pid = first.pid().expect("pid");
    let before = identity(&data_dir);

    // Same data dir, addresses of its own: refused before it touches anything.
    let mut second_spec = spec(dir.path(), 152, 2, &[]);
    second_spec.data_dir = data_dir.clone();
    let mut second = LocalNode::start(exe(), second_spec).expect("spawn");
    let code = second.wait_exit(DEADLINE);
    let log = second.log();
    assert_eq!(code, Some(2), "second node: {log}");
    assert!(log.contains(&data_dir.display().to_string()), "{log}");
    assert!(log.contains(&format!("PID {pid}")), "{log}");
    assert!(log.contains("in use by another bocluster node"), "{log}");
    assert_eq!(
        identity(&data_dir),
        before,
        "the second node changed identity.json"
    );
    ok(&first, "SHOW DATABASES");

    // kill -9: the kernel drops the lock; a crash leaves a temp file behind, which goes.
    first.signal(Signal::SIGKILL);
    assert!(
        wait_for(DEADLINE, || first.has_exited().then_some(())).is_some(),
        "still running after SIGKILL"
    );
    let leftover = data_dir.join(".bocluster-tmp-Ab12Cd");
    std::fs::write(&leftover, b"").unwrap();
    first.restart().expect("restart");
    first
        .wait_healthy(DEADLINE)
        .expect("restarted after kill -9");
    assert!(!leftover.exists(), "the leftover temp file is still there");
    let after = identity(&data_dir);
    assert!(after["generation"].as_u64() > before["generation"].as_u64());
    assert!(first.stop(Duration::from_secs(10)), "stops on SIGTERM");
}

/// Runs `bocluster node` with `data_dir` on 127.0.152.`host`; returns its exit code and
/// stderr (killed, and the test failed, if it is still running after [`DEADLINE`]).
fn run_node(data_dir: &std::path::Path, host: u8) -> (Option<i32>, String) {
    let ip = ip(152, host);
    let mut child = std::process::Command::new(exe())
        .arg("node")
        .env_clear()
        .env("BO_LISTEN", format!("{ip}:9091"))
        .env("BO_DATA_DIR", data_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bocluster node");
    let status = wait_for(DEADLINE, || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "bocluster node with BO_DATA_DIR={} kept running",
            data_dir.display()
        );
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status.and_then(|s| s.code()), stderr)
}

#[test]
fn a_data_dir_that_is_not_a_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a dir").unwrap();
    for (host, path) in [(3, file.as_path()), (4, std::path::Path::new("/dev/null"))] {
        let (code, stderr) = run_node(path, host);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("is not a directory"), "{stderr}");
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(!stderr.contains("os error 17"), "{stderr}");
    }
}
