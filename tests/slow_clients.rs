//! Hostile HTTP clients that send request bodies slowly: they must buy neither memory nor the
//! API's connection places.
//!
//! Each test is one long window (20 s and 45 s, the windows of issue 11) and nothing else; they
//! run in parallel, so the file adds about 50 s to the test stage. Both print their figures
//! (resident memory, `/health` latency). `BO_TEST_BINARY=/path/to/bocluster` runs them
//! against another build, e.g. an older one to compare.
//!
//! Address block used here: 127.0.151.x.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The binary under test: `BO_TEST_BINARY`, or this checkout's.
fn binary() -> PathBuf {
    std::env::var_os("BO_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| exe().to_path_buf())
}

/// A script that starts the binary with the open-files limit at `nofile`.
fn with_nofile(dir: &Path, nofile: u32) -> PathBuf {
    let path = dir.join("bocluster-limited");
    let script = format!(
        "#!/bin/sh\nulimit -n {nofile} || exit 99\nexec '{}' \"$@\"\n",
        binary().display()
    );
    std::fs::write(&path, script).expect("write the wrapper script");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    path
}

fn start_with(exe: &Path, spec: NodeSpec) -> LocalNode {
    let mut node = LocalNode::start(exe, spec).expect("spawn bocluster node");
    if let Err(e) = node.wait_healthy(DEADLINE) {
        panic!("{e}");
    }
    node
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

const MB: f64 = 1_000_000.0;

/// Sends `request` on a new connection; returns the status line's code, or why there was
/// none, within `limit` (connecting included).
fn request(addr: SocketAddr, request: &[u8], limit: Duration) -> Result<(u16, Duration), String> {
    let started = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).ok();
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit
            .checked_sub(started.elapsed())
            .ok_or_else(|| format!("no whole answer within {limit:?}: {answer:?}"))?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read after {:?}: {e}", started.elapsed())),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let code = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    Ok((code, started.elapsed()))
}

fn health_request(addr: SocketAddr) -> Vec<u8> {
    format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").into_bytes()
}

fn statement_request(addr: SocketAddr) -> Vec<u8> {
    let body = r#"{"stmt": "SHOW DATABASES"}"#;
    format!(
        "POST /api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Opens a connection and sends the head of a 1,000,000-byte body (none of it yet).
fn open_trickle(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_nodelay(true).ok();
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .ok();
    let head = format!(
        "POST /api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).ok()?;
    Some(stream)
}

/// Clears the flag when dropped, so the client threads stop also when the test fails.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Issue 11, section 1: 20 connections send a body a byte every millisecond for 20 s. The
/// node's resident memory grows by less than 50 MB, stays there after they close, and
/// `/health` answers throughout.
#[test]
fn trickled_bodies_do_not_buy_memory() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(&binary(), spec(dir.path(), 151, 1, &[]));
    let pid = node.pid().expect("pid");
    let addr = node.http_addr();
    let baseline = rss(pid);

    let mut streams: Vec<TcpStream> = (0..20)
        .map(|_| open_trickle(addr).expect("open a trickling connection"))
        .collect();
    let running = Arc::new(AtomicBool::new(true));
    let _stop = StopOnDrop(running.clone());
    let writer = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut writes = 0u64;
            let mut next = Instant::now();
            while running.load(Ordering::Relaxed) {
                for stream in &mut streams {
                    if stream.write_all(b" ").is_ok() {
                        writes += 1;
                    }
                }
                // The pace of the hostile client: a write on each connection every 1 ms.
                next += Duration::from_millis(1);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            writes
        })
    };

    let window = Duration::from_secs(20);
    let started = Instant::now();
    let mut peak = baseline;
    let mut slowest = Duration::ZERO;
    while started.elapsed() < window {
        let answer = request(addr, &health_request(addr), Duration::from_secs(1));
        let (code, took) = answer.unwrap_or_else(|e| {
            panic!(
                "/health at {:?}: {e}; log:\n{}",
                started.elapsed(),
                node.log()
            )
        });
        assert_eq!(code, 200);
        slowest = slowest.max(took);
        peak = peak.max(rss(pid));
        // Sampling pace, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(250));
    }
    running.store(false, Ordering::Relaxed);
    let writes = writer.join().expect("writer thread");
    // The connections are closed (the writer owned them); memory must not stay up.
    let after = wait_for(Duration::from_secs(5), || {
        let now = rss(pid);
        (now < baseline + 50_000_000).then_some(now)
    })
    .unwrap_or_else(|| rss(pid));
    println!(
        "trickle: {writes} one-byte writes on 20 connections in {window:?}; resident memory \
         {:.1} MB before, {:.1} MB peak, {:.1} MB after they closed; slowest /health {slowest:?}",
        baseline as f64 / MB,
        peak as f64 / MB,
        after as f64 / MB
    );
    assert!(
        peak < baseline + 50_000_000,
        "resident memory grew from {:.1} MB to {:.1} MB",
        baseline as f64 / MB,
        peak as f64 / MB
    );
    assert!(after < baseline + 50_000_000);
}

/// Issue 11, section 2: with the open-files limit at 1,024 (so 896 connection places), 1,000
/// connections trickle bodies (a byte on each about every second, reconnecting when closed);
/// `/health` and a statement each answer within 1 s, every second, for 45 s.
#[test]
fn a_flood_of_slow_uploads_does_not_lock_out_the_api() {
    // The flood itself needs more than 1,000 descriptors in this process.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let needed = 1500;
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < needed {
        if hard < needed {
            eprintln!(
                "NOTICE: skipping the flood test: the open-files limit is {hard}, it needs {needed}"
            );
            return;
        }
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise the open-files limit");
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = with_nofile(dir.path(), 1024);
    let node = start_with(&exe, spec(dir.path(), 151, 2, &[]));
    let pid = node.pid().expect("pid");
    let addr = node.http_addr();
    let baseline = rss(pid);

    let running = Arc::new(AtomicBool::new(true));
    let _stop = StopOnDrop(running.clone());
    let flooder = {
        let running = running.clone();
        std::thread::spawn(move || {
            let mut streams: Vec<Option<TcpStream>> = (0..1000).map(|_| None).collect();
            let (mut opened, mut writes) = (0u64, 0u64);
            let mut next = Instant::now();
            while running.load(Ordering::Relaxed) {
                for slot in streams.iter_mut() {
                    if !running.load(Ordering::Relaxed) {
                        break;
                    }
                    let alive = match slot {
                        Some(stream) => stream.write_all(b" ").is_ok(),
                        None => false,
                    };
                    if alive {
                        writes += 1;
                    } else {
                        *slot = open_trickle(addr);
                        opened += u64::from(slot.is_some());
                    }
                    // The flood's pace: one connection served every millisecond.
                    next += Duration::from_millis(1);
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }
            (opened, writes)
        })
    };
    // The first round opens the 1,000 connections.
    std::thread::sleep(Duration::from_millis(1500));

    let window = Duration::from_secs(45);
    let started = Instant::now();
    let (mut slowest_health, mut slowest_statement) = (Duration::ZERO, Duration::ZERO);
    let mut peak = baseline;
    let mut next = Instant::now();
    while started.elapsed() < window {
        let health = request(addr, &health_request(addr), Duration::from_secs(1));
        let statement = request(addr, &statement_request(addr), Duration::from_secs(1));
        for (what, answer, slowest) in [
            ("/health", health, &mut slowest_health),
            ("SHOW DATABASES", statement, &mut slowest_statement),
        ] {
            let (code, took) = answer.unwrap_or_else(|e| {
                panic!(
                    "{what} at {:?}: {e}; log:\n{}",
                    started.elapsed(),
                    node.log()
                )
            });
            assert_eq!(code, 200, "{what}");
            *slowest = (*slowest).max(took);
        }
        peak = peak.max(rss(pid));
        // Once every second, as the issue's check does.
        next += Duration::from_secs(1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    running.store(false, Ordering::Relaxed);
    let (opened, writes) = flooder.join().expect("flood thread");
    println!(
        "flood: {opened} trickling connections opened, {writes} one-byte writes in {window:?}; \
         slowest /health {slowest_health:?}, slowest statement {slowest_statement:?}; \
         resident memory {:.1} MB before, {:.1} MB peak",
        baseline as f64 / MB,
        peak as f64 / MB
    );
    assert!(opened >= 1000, "only {opened} connections opened");
}
