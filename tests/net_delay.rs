//! The NFQUEUE delay the container chaos test uses (`docker_common/net_delay.rs`), measured in
//! a network namespace of this test's own with loopback only: UDP round trips between two
//! sockets on 127.0.0.1 without the delay, with 100 ms on every packet sent, and after the
//! reader fails (the rule's `--queue-bypass` lets traffic through undelayed, and the failure
//! is reported rather than passing unnoticed). Needs root, iptables and nfnetlink_queue;
//! without them the test prints a notice and skips.

mod common;
#[path = "docker_common/net_delay.rs"]
mod net_delay;

use std::fs::File;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use net_delay::NetDelay;

const DELAY: Duration = Duration::from_millis(100);

/// `n` round trips from `client` to `server` and back; each one's time, sorted.
fn round_trips(client: &UdpSocket, server: &UdpSocket, n: usize) -> Vec<Duration> {
    let to = server.local_addr().unwrap();
    let mut buf = [0u8; 64];
    let mut times: Vec<Duration> = (0..n as u32)
        .map(|i| {
            let start = Instant::now();
            client.send_to(&i.to_be_bytes(), to).unwrap();
            let (len, from) = server.recv_from(&mut buf).expect("ping reaches the server");
            server.send_to(&buf[..len], from).unwrap();
            let (len, _) = client.recv_from(&mut buf).expect("pong reaches the client");
            assert_eq!(&buf[..len], &i.to_be_bytes(), "pong {i}");
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn describe(times: &[Duration]) -> String {
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    format!(
        "min {:.2?} median {:.2?} mean {:.2?} max {:.2?} ({} round trips)",
        times[0],
        times[times.len() / 2],
        mean,
        times[times.len() - 1],
        times.len()
    )
}

#[test]
fn nfqueue_delay_adds_100ms_per_packet_sent() {
    if let Err(e) = common::enter_private_netns() {
        eprintln!("NOTICE: skipping the NFQUEUE delay test: no network namespace of its own ({e}); run as root with iproute2");
        return;
    }
    // This thread's namespace, for the reader thread to join.
    let netns = File::open(format!("/proc/self/task/{}/ns/net", nix::unistd::gettid()))
        .expect("open this thread's network namespace");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let n = 20;
    let plain = round_trips(&client, &server, n);
    eprintln!(
        "MEASURED net delay: UDP round trip without the delay: {}",
        describe(&plain)
    );

    let delay = match NetDelay::start(
        "own-netns",
        netns.try_clone().unwrap(),
        DELAY,
        &["-p", "udp"],
    ) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("NOTICE: skipping the NFQUEUE delay test: cannot start the delay ({e}); needs iptables with NFQUEUE and nfnetlink_queue");
            return;
        }
    };
    let delayed = round_trips(&client, &server, n);
    eprintln!(
        "MEASURED net delay: UDP round trip with {DELAY:?} on every packet sent: {}",
        describe(&delayed)
    );
    delay.check().expect("the reader runs");
    let report = delay.stop().expect("the reader stops cleanly");
    eprintln!("MEASURED net delay: {report}");
    report.check().unwrap();
    // Both directions are held once: ping and pong.
    assert_eq!(report.delayed, 2 * n as u64, "{report}");
    assert!(
        delayed[0] >= 2 * DELAY,
        "a round trip shorter than 2 x {DELAY:?}: {delayed:?}"
    );
    let median = delayed[n / 2];
    assert!(
        median < 2 * DELAY + plain[n / 2] + Duration::from_millis(20),
        "median round trip {median:?}, expected about 2 x {DELAY:?}: {delayed:?}"
    );
    assert!(report.min_hold >= DELAY, "{report}");

    // Stopped: the rule is gone, round trips are fast again.
    let after = round_trips(&client, &server, n);
    eprintln!("MEASURED net delay: after stop: {}", describe(&after));
    assert!(
        after[n / 2] < DELAY / 2,
        "still delayed after stop: {after:?}"
    );

    // A reader that fails: traffic bypasses the queue (not delayed), and both checks say so.
    let delay = NetDelay::start("own-netns", netns, DELAY, &["-p", "udp"]).expect("restart");
    round_trips(&client, &server, 2);
    delay.simulate_failure();
    let failed = common::wait_for(Duration::from_secs(5), || delay.check().err());
    let why = failed.expect("a failed reader is noticed by check()");
    eprintln!("net delay: after a simulated failure, check() says: {why}");
    let bypassed = round_trips(&client, &server, n);
    eprintln!(
        "MEASURED net delay: with the reader gone (--queue-bypass): {}",
        describe(&bypassed)
    );
    assert!(bypassed[n / 2] < DELAY / 2, "{bypassed:?}");
    let stopped = delay.stop();
    assert!(stopped.is_err(), "stop() after a failure: {stopped:?}");
}
