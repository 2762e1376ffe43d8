//! The `bocluster` binary run directly: bad configuration, ports in use and the `sql`
//! subcommand's exit codes and output.
//!
//! Address blocks used here: 127.0.65.x to 127.0.68.x.

mod common;
use common::*;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// What a finished run of the binary left behind.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Starts `bocluster <args>` with only PATH and `env` set, in `dir`, output to files there.
fn spawn(dir: &Path, tag: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let stdout = File::create(dir.join(format!("{tag}.out"))).unwrap();
    let stderr = File::create(dir.join(format!("{tag}.err"))).unwrap();
    Command::new(exe())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn bocluster")
}

/// Waits for `child` to exit within [`DEADLINE`]; kills it and fails the test otherwise.
fn finish(mut child: Child, dir: &Path, tag: &str) -> Outcome {
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{tag}.{ext}"))).unwrap();
    let (stdout, stderr) = (read("out"), read("err"));
    let Some(status) = status else {
        panic!("{tag}: still running after {DEADLINE:?}; stdout:\n{stdout}\nstderr:\n{stderr}");
    };
    Outcome {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Runs `bocluster <args>` to completion.
fn run(dir: &Path, tag: &str, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let child = spawn(dir, tag, args, env);
    finish(child, dir, tag)
}

/// Asserts exit code 2 and a stderr naming every one of `parts`, without a panic.
fn assert_refused(what: &str, outcome: &Outcome, parts: &[&str]) {
    assert_eq!(
        outcome.code,
        Some(2),
        "{what}: exit code; stderr:\n{}",
        outcome.stderr
    );
    for part in parts {
        assert!(
            outcome.stderr.contains(part),
            "{what}: stderr lacks {part:?}:\n{}",
            outcome.stderr
        );
    }
    assert!(
        !outcome.stderr.contains("panicked"),
        "{what}: stderr shows a panic:\n{}",
        outcome.stderr
    );
}

/// A child process that is killed and reaped when dropped, unless taken out first.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether `GET http://{addr}/health` answers 200.
fn healthy(addr: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent
        .get(&format!("http://{addr}/health"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

#[test]
fn invalid_values_exit_2_naming_the_variable_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // Everything else valid, on this test's own block, so only the bad value can fail.
    let base = [
        ("BO_LISTEN", "127.0.65.1:9091"),
        ("BO_HTTP", "127.0.65.1:9090"),
        ("BO_DATA_DIR", data),
    ];
    let cases: [(&str, &str, &str); 15] = [
        ("BO_LISTEN", "nonsense", "\"nonsense\""),
        ("BO_LISTEN", "127.0.65.1:99999", "\"127.0.65.1:99999\""),
        ("BO_ENDPOINT", "0.0.0.0:9091", "\"0.0.0.0:9091\""),
        ("BO_HTTP", "x", "\"x\""),
        ("BO_NODE_ID", "a b", "\"a b\""),
        ("BO_DATABASES", "ok,9bad", "\"ok,9bad\""),
        ("BO_SEEDS", "a,,b", "\"a,,b\""),
        ("BO_GOSSIP_INTERVAL", "fast", "\"fast\""),
        ("BO_GOSSIP_INTERVAL", "1ms", "\"1ms\""),
        ("BO_CLUSTER_KEY", "", "\"\""),
        // Weak keys: refused with the way to make a good one, and never echoed.
        ("BO_CLUSTER_KEY", "winter2026", "bocluster keygen"),
        ("BO_CLUSTER_KEY", "x", "<not shown: 1 character>"),
        ("BO_LOG", "info,[", "\"info,[\""),
        ("BO_PHI_THRESHOLD", "NaN", "\"NaN\""),
        ("BO_DEAD_NODE_GRACE", "forever", "\"forever\""),
    ];
    for (i, (var, value, quoted)) in cases.into_iter().enumerate() {
        let mut env: Vec<(&str, &str)> = base.iter().copied().filter(|(k, _)| *k != var).collect();
        env.push((var, value));
        let what = format!("{var}={value:?}");
        let outcome = run(dir.path(), &format!("case{i}"), &["node"], &env);
        assert_refused(&what, &outcome, &[var, quoted]);
        if var == "BO_CLUSTER_KEY" && value.len() > 1 {
            assert!(
                !outcome.stderr.contains(value),
                "{what}: the key is echoed:\n{}",
                outcome.stderr
            );
        }
    }
    // Nothing was started, so nothing was created either.
    assert!(!Path::new(data).exists(), "a refused start created {data}");
}

#[test]
fn a_flag_wins_over_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let outcome = run(
        dir.path(),
        "bad-flag",
        &["node", "--listen", "nonsense"],
        &[("BO_LISTEN", "127.0.66.1:9091"), ("BO_DATA_DIR", data)],
    );
    assert_refused(
        "--listen nonsense",
        &outcome,
        &["BO_LISTEN", "\"nonsense\""],
    );

    let outcome = run(
        dir.path(),
        "bad-http-flag",
        &["node", "--http", "x"],
        &[
            ("BO_LISTEN", "127.0.66.1:9091"),
            ("BO_HTTP", "127.0.66.1:9090"),
            ("BO_DATA_DIR", data),
        ],
    );
    assert_refused("--http x", &outcome, &["BO_HTTP", "\"x\""]);

    // A valid flag with an invalid variable: the flag is used and the node starts.
    let child = spawn(
        dir.path(),
        "good-flag",
        &["node", "--listen", "127.0.66.1:9091", "--node-id", "n66-1"],
        &[
            ("BO_LISTEN", "nonsense"),
            ("BO_NODE_ID", "a b"),
            ("BO_DATA_DIR", data),
            ("BO_PROBE_INTERVAL", "100ms"),
        ],
    );
    let pid = Pid::from_raw(child.id() as i32);
    // Killed and reaped if anything below fails before it exited.
    let mut running = Running(Some(child));
    let up = wait_for(DEADLINE, || healthy("127.0.66.1:9090").then_some(()));
    if up.is_none() {
        let mut child = running.0.take().unwrap();
        let _ = child.kill();
        let outcome = finish(child, dir.path(), "good-flag");
        panic!(
            "valid --listen with BO_LISTEN=nonsense did not start (exit {:?}); stderr:\n{}",
            outcome.code, outcome.stderr
        );
    }
    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let outcome = finish(running.0.take().unwrap(), dir.path(), "good-flag");
    assert_eq!(
        outcome.code,
        Some(0),
        "exit code after SIGTERM; stderr:\n{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("n66-1"),
        "--node-id should win over BO_NODE_ID; stderr:\n{}",
        outcome.stderr
    );
}

#[test]
fn ports_in_use_exit_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(spec(dir.path(), 67, 1, &[]));
    let quic = node.quic_addr().to_string();
    let http = node.http_addr().to_string();

    // Same QUIC address, free HTTP address.
    let data2 = dir.path().join("second");
    let outcome = run(
        dir.path(),
        "same-listen",
        &["node"],
        &[
            ("BO_LISTEN", &quic),
            ("BO_HTTP", "127.0.67.2:9090"),
            ("BO_DATA_DIR", data2.to_str().unwrap()),
        ],
    );
    assert_refused("same BO_LISTEN", &outcome, &["BO_LISTEN", &quic, "in use"]);

    // Free QUIC address, same HTTP address.
    let data3 = dir.path().join("third");
    let outcome = run(
        dir.path(),
        "same-http",
        &["node"],
        &[
            ("BO_LISTEN", "127.0.67.3:9091"),
            ("BO_HTTP", &http),
            ("BO_DATA_DIR", data3.to_str().unwrap()),
        ],
    );
    assert_refused("same BO_HTTP", &outcome, &["BO_HTTP", &http, "in use"]);

    // The first node was not disturbed.
    let (status, body) = sql(&node, "SHOW NODES");
    assert_eq!(status, 200, "{body}");
    let rows = rows_as_maps(&body);
    assert_eq!(rows.len(), 1, "only the first node may be a member: {body}");
    assert_eq!(rows[0]["node_id"], "n67-1", "{body}");
}

#[test]
fn sql_subcommand_exit_codes_and_output() {
    let dir = tempfile::tempdir().unwrap();

    // Nothing listens there: exit 2, naming the address tried.
    let nowhere = "127.0.68.9:9090";
    let outcome = run(
        dir.path(),
        "unreachable",
        &["sql", "--host", nowhere, "--timeout", "10s", "SHOW NODES"],
        &[],
    );
    assert_refused("sql against nothing", &outcome, &[nowhere]);
    assert!(outcome.stdout.is_empty(), "stdout: {}", outcome.stdout);

    let node = start(spec(dir.path(), 68, 1, &[("BO_DATABASES", "log_one,x")]));
    let host = node.http_addr().to_string();

    // A statement that does not parse: exit 1, the error on stderr.
    let outcome = run(
        dir.path(),
        "bad",
        &["sql", "--host", &host, "SHOW FOO"],
        &[],
    );
    assert_eq!(outcome.code, Some(1), "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("line 1, column 6"),
        "stderr:\n{}",
        outcome.stderr
    );
    // One that cannot be carried out: exit 1 too.
    let outcome = run(
        dir.path(),
        "exists",
        &["sql", "--host", &host, "CREATE DATABASE x"],
        &[],
    );
    assert_eq!(outcome.code, Some(1), "stderr:\n{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("already exists"),
        "stderr:\n{}",
        outcome.stderr
    );

    // A good statement: exit 0 and an aligned table.
    let outcome = run(
        dir.path(),
        "good",
        &["sql", "--host", &host, "SHOW DATABASES"],
        &[],
    );
    assert_eq!(outcome.code, Some(0), "stderr:\n{}", outcome.stderr);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(
        lines,
        ["name", "-------", "log_one", "x", "(2 rows)"],
        "stdout:\n{}",
        outcome.stdout
    );

    // Several columns: the separators line up on every line of the table.
    let outcome = run(
        dir.path(),
        "nodes",
        &["sql", "--host", &host, "SHOW NODES"],
        &[],
    );
    assert_eq!(outcome.code, Some(0), "stderr:\n{}", outcome.stderr);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert!(lines.len() >= 4, "stdout:\n{}", outcome.stdout);
    assert!(
        lines[0].starts_with("node_id") && lines[0].contains("| status"),
        "stdout:\n{}",
        outcome.stdout
    );
    let separators = |line: &str, sep: char| -> Vec<usize> {
        line.char_indices()
            .filter(|(_, c)| *c == sep)
            .map(|(i, _)| i)
            .collect()
    };
    let header = separators(lines[0], '|');
    assert_eq!(header.len(), 6, "stdout:\n{}", outcome.stdout);
    assert_eq!(
        separators(lines[1], '+'),
        header,
        "stdout:\n{}",
        outcome.stdout
    );
    assert!(lines[2].starts_with("n68-1"), "stdout:\n{}", outcome.stdout);
    assert_eq!(
        separators(lines[2], '|'),
        header,
        "stdout:\n{}",
        outcome.stdout
    );
    assert_eq!(
        lines.last(),
        Some(&"(1 row)"),
        "stdout:\n{}",
        outcome.stdout
    );

    // --json: the raw answer, success or not.
    let outcome = run(
        dir.path(),
        "json",
        &["sql", "--json", "--host", &host, "SHOW DATABASES"],
        &[],
    );
    assert_eq!(outcome.code, Some(0), "stderr:\n{}", outcome.stderr);
    let body: Value = serde_json::from_str(outcome.stdout.trim())
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}):\n{}", outcome.stdout));
    assert_eq!(body["retcode"], 0, "{body}");
    assert_eq!(
        body["results"],
        serde_json::json!([["log_one"], ["x"]]),
        "{body}"
    );

    let outcome = run(
        dir.path(),
        "json-bad",
        &["sql", "--json", "--host", &host, "SHOW FOO"],
        &[],
    );
    assert_eq!(outcome.code, Some(1), "stderr:\n{}", outcome.stderr);
    let body: Value = serde_json::from_str(outcome.stdout.trim())
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}):\n{}", outcome.stdout));
    assert!(body["retcode"].as_i64().is_some_and(|c| c < 0), "{body}");
    assert!(body["errmsg"].is_string(), "{body}");
}
