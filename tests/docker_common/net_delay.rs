//! A fixed delay on the packets a network namespace sends, without `tc netem` (this kernel has
//! no sch_netem): an iptables rule in the namespace queues the selected packets to NFQUEUE,
//! and a reader thread of the test, moved into that namespace with `setns`, holds each packet
//! for the delay and then lets it go on (the ACCEPT verdict), in arrival order.
//!
//! Only outgoing packets are delayed (the rule is in OUTPUT), so a packet between two delayed
//! namespaces is held once, as with netem on each node's interface: a round trip gains twice
//! the delay.
//!
//! The rule uses `--queue-bypass`, so traffic still flows if the reader is gone; the delay
//! then silently vanishes, which is why [`NetDelay::check`] (the reader still runs) and
//! [`Report::check`] (every packet the rule matched reached the reader; the kernel dropped
//! none from the queue) exist: a test calls both and fails instead of passing undelayed.
//!
//! The reader stops, takes its rule out and lets the held packets go when [`NetDelay::stop`]
//! is called or the handle is dropped (also while a failing test unwinds). Needs root, the
//! iptables NFQUEUE target and nfnetlink_queue in the kernel.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::fs::File;
use std::io::ErrorKind;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The NFQUEUE number the rule sends packets to (queues are per network namespace).
pub const QUEUE_NUM: u16 = 9091;
/// How many packets the kernel keeps queued for the reader at most (beyond that it drops,
/// which [`Report::check`] reports).
pub const QUEUE_MAX_LEN: u32 = 4096;
/// How long the reader sleeps when nothing is due or readable (the delay's resolution).
const TICK: Duration = Duration::from_millis(1);

/// What the reader saw, from its start to [`NetDelay::stop`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Which namespace (the label given to [`NetDelay::start`]).
    pub label: String,
    /// Packets received from the queue (all of them were held and then accepted).
    pub delayed: u64,
    /// Hold times: from the reader's receipt to its verdict.
    pub mean_hold: Duration,
    pub min_hold: Duration,
    pub max_hold: Duration,
    /// Most packets held at once.
    pub max_held: usize,
    /// The rule's packet counter, read just before the rule was removed.
    pub rule_packets: u64,
    /// Packets the rule matched that never reached the reader (bypassed, i.e. not delayed).
    pub bypassed: u64,
    /// From the kernel's `nfnetlink_queue` table for the queue: packets dropped because the
    /// queue was full, or because they could not be sent to the reader.
    pub queue_dropped: u64,
    pub user_dropped: u64,
}

impl Report {
    /// `Err` when the delay did not apply to every packet the rule matched.
    pub fn check(&self) -> Result<(), String> {
        if self.bypassed > 0 || self.queue_dropped > 0 || self.user_dropped > 0 {
            return Err(format!(
                "{}: the delay did not apply to every packet: {self:?}",
                self.label
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} packets delayed (rule matched {}), hold mean {:.1?} min {:.1?} max {:.1?}, at most {} held at once, {} bypassed, {} dropped by the queue",
            self.label,
            self.delayed,
            self.rule_packets,
            self.mean_hold,
            self.min_hold,
            self.max_hold,
            self.max_held,
            self.bypassed,
            self.queue_dropped + self.user_dropped
        )
    }
}

struct Shared {
    stop: AtomicBool,
    /// Makes the reader fail as if its socket broke (to test that failing is noticed).
    fail: AtomicBool,
    delayed: AtomicU64,
}

/// A running delay in one network namespace; stops when dropped.
pub struct NetDelay {
    label: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<Report, String>>>,
}

impl NetDelay {
    /// Delays the packets of the network namespace of process `pid` (a container's main
    /// process, from `docker inspect -f '{{.State.Pid}}'`) that OUTPUT rule `selector` (iptables
    /// match arguments, e.g. `["!", "-o", "lo", "-p", "udp"]`) matches, by `delay`.
    pub fn for_pid(
        label: &str,
        pid: &str,
        delay: Duration,
        selector: &[&str],
    ) -> Result<NetDelay, String> {
        let path = format!("/proc/{pid}/ns/net");
        let netns = File::open(&path).map_err(|e| format!("{label}: open {path}: {e}"))?;
        Self::start(label, netns, delay, selector)
    }

    /// Like [`NetDelay::for_pid`], for the namespace `netns` (an open `/proc/.../ns/net`).
    /// Returns once the queue is bound and the rule is in place.
    pub fn start(
        label: &str,
        netns: File,
        delay: Duration,
        selector: &[&str],
    ) -> Result<NetDelay, String> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            fail: AtomicBool::new(false),
            delayed: AtomicU64::new(0),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let rule: Vec<String> = selector
            .iter()
            .map(|s| s.to_string())
            .chain(
                [
                    "-j",
                    "NFQUEUE",
                    "--queue-num",
                    &QUEUE_NUM.to_string(),
                    "--queue-bypass",
                ]
                .map(String::from),
            )
            .collect();
        let thread_label = label.to_string();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("net-delay-{label}"))
            .spawn(move || reader(thread_label, netns, delay, rule, thread_shared, ready_tx))
            .map_err(|e| format!("{label}: spawn the reader: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(NetDelay {
                label: label.to_string(),
                shared,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(match thread.join() {
                Ok(Err(e)) => e,
                _ => format!("{label}: the reader ended before it was ready"),
            }),
        }
    }

    /// `Err` when the reader is no longer running (its packets then bypass the delay).
    pub fn check(&self) -> Result<(), String> {
        match &self.thread {
            Some(t) if !t.is_finished() => Ok(()),
            _ => Err(format!(
                "{}: the delay reader stopped after {} packets; traffic now bypasses the delay",
                self.label,
                self.shared.delayed.load(Ordering::Relaxed)
            )),
        }
    }

    /// Packets delayed so far.
    pub fn delayed(&self) -> u64 {
        self.shared.delayed.load(Ordering::Relaxed)
    }

    /// Makes the reader fail as a broken socket would (its rule stays, bypassed).
    pub fn simulate_failure(&self) {
        self.shared.fail.store(true, Ordering::Relaxed);
    }

    /// Stops the reader: reads the rule's counter, removes the rule, lets the held packets go
    /// when due. What it saw, or why it failed.
    pub fn stop(mut self) -> Result<Report, String> {
        self.finish()
    }

    fn finish(&mut self) -> Result<Report, String> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(format!("{}: the reader panicked", self.label))),
            None => Err(format!("{}: already stopped", self.label)),
        }
    }
}

impl Drop for NetDelay {
    fn drop(&mut self) {
        if self.thread.is_some() {
            if let Err(e) = self.finish() {
                eprintln!("net delay: {e}");
            }
        }
    }
}

/// Runs `iptables args` from the calling thread: in its network namespace.
fn iptables(args: &[&str]) -> Result<String, String> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The packet counter of the OUTPUT rule that queues to [`QUEUE_NUM`].
fn rule_packets() -> Result<u64, String> {
    let listing = iptables(&["-L", "OUTPUT", "-v", "-n", "-x"])?;
    let marker = format!("NFQUEUE num {QUEUE_NUM}");
    listing
        .lines()
        .find(|l| l.contains(&marker))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no {marker} rule in OUTPUT:\n{listing}"))
}

/// (queue_dropped, user_dropped) of [`QUEUE_NUM`] in the calling thread's namespace.
fn queue_drops() -> Result<(u64, u64), String> {
    let path = "/proc/thread-self/net/netfilter/nfnetlink_queue";
    let table = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // queue_num peer_portid queue_total copy_mode copy_range queue_dropped user_dropped
    // id_sequence 1
    for line in table.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() >= 8 && f[0] == u64::from(QUEUE_NUM) {
            return Ok((f[5], f[6]));
        }
    }
    Err(format!("queue {QUEUE_NUM} not in {path}:\n{table}"))
}

fn reader(
    label: String,
    netns: File,
    delay: Duration,
    rule: Vec<String>,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<(), String>>,
) -> Result<Report, String> {
    // Everything up to the rule being in place reports through `ready`.
    let setup = || -> Result<nfq::Queue, String> {
        // This thread only: the test's other threads stay where they are.
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("{label}: setns(CLONE_NEWNET): {e}"))?;
        let mut queue =
            nfq::Queue::open().map_err(|e| format!("{label}: open an NFQUEUE socket: {e}"))?;
        queue
            .bind(QUEUE_NUM)
            .map_err(|e| format!("{label}: bind NFQUEUE {QUEUE_NUM}: {e}"))?;
        // Metadata only: the verdict needs the packet id, not the payload.
        queue
            .set_copy_range(QUEUE_NUM, 0)
            .map_err(|e| format!("{label}: NFQUEUE copy range: {e}"))?;
        queue
            .set_queue_max_len(QUEUE_NUM, QUEUE_MAX_LEN)
            .map_err(|e| format!("{label}: NFQUEUE max length: {e}"))?;
        queue.set_nonblocking(true);
        // Processes started from this thread run in its namespace.
        let mut add = vec!["-A", "OUTPUT"];
        add.extend(rule.iter().map(String::as_str));
        iptables(&add).map_err(|e| format!("{label}: {e}"))?;
        Ok(queue)
    };
    let mut queue = match setup() {
        Ok(q) => q,
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let _ = ready.send(Ok(()));

    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    let mut report = Report {
        label: label.clone(),
        min_hold: Duration::MAX,
        ..Report::default()
    };
    let mut total_hold = Duration::ZERO;
    // Receives everything readable now; `Err` on a socket error.
    let receive = |queue: &mut nfq::Queue,
                   held: &mut VecDeque<(Instant, nfq::Message)>,
                   report: &mut Report|
     -> Result<(), String> {
        loop {
            match queue.recv() {
                Ok(msg) => {
                    held.push_back((Instant::now(), msg));
                    report.delayed += 1;
                    report.max_held = report.max_held.max(held.len());
                    shared.delayed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{label}: NFQUEUE recv: {e}")),
            }
        }
    };
    // Accepts every held packet due by `until`.
    let release = |queue: &mut nfq::Queue,
                   held: &mut VecDeque<(Instant, nfq::Message)>,
                   report: &mut Report,
                   total_hold: &mut Duration,
                   until: Instant|
     -> Result<(), String> {
        while held.front().is_some_and(|(at, _)| *at + delay <= until) {
            let (at, mut msg) = held.pop_front().expect("a held packet");
            msg.set_verdict(nfq::Verdict::Accept);
            queue
                .verdict(msg)
                .map_err(|e| format!("{label}: NFQUEUE verdict: {e}"))?;
            let hold = at.elapsed();
            *total_hold += hold;
            report.min_hold = report.min_hold.min(hold);
            report.max_hold = report.max_hold.max(hold);
        }
        Ok(())
    };

    while !shared.stop.load(Ordering::Relaxed) {
        if shared.fail.load(Ordering::Relaxed) {
            return Err(format!("{label}: simulated reader failure"));
        }
        receive(&mut queue, &mut held, &mut report)?;
        release(
            &mut queue,
            &mut held,
            &mut report,
            &mut total_hold,
            Instant::now(),
        )?;
        let sleep = held
            .front()
            .map(|(at, _)| (*at + delay).saturating_duration_since(Instant::now()))
            .unwrap_or(TICK)
            .min(TICK);
        std::thread::sleep(sleep);
    }

    // Stop: the rule's counter, then everything it queued so far (the kernel hands a packet to
    // the queue before the counter read can see it), then the kernel's drop counts.
    report.rule_packets = rule_packets().map_err(|e| format!("{label}: {e}"))?;
    receive(&mut queue, &mut held, &mut report)?;
    std::thread::sleep(Duration::from_millis(5));
    receive(&mut queue, &mut held, &mut report)?;
    report.bypassed = report.rule_packets.saturating_sub(report.delayed);
    let (queue_dropped, user_dropped) = queue_drops().map_err(|e| format!("{label}: {e}"))?;
    report.queue_dropped = queue_dropped;
    report.user_dropped = user_dropped;
    let mut delete = vec!["-D", "OUTPUT"];
    delete.extend(rule.iter().map(String::as_str));
    let deleted = iptables(&delete).map_err(|e| format!("{label}: {e}"));
    // Packets queued before the rule went still get their full delay.
    let last_due = Instant::now() + delay;
    while Instant::now() < last_due + TICK {
        receive(&mut queue, &mut held, &mut report)?;
        release(
            &mut queue,
            &mut held,
            &mut report,
            &mut total_hold,
            Instant::now(),
        )?;
        std::thread::sleep(TICK);
    }
    receive(&mut queue, &mut held, &mut report)?;
    let far = Instant::now() + delay * 2;
    release(&mut queue, &mut held, &mut report, &mut total_hold, far)?;
    let _ = queue.unbind(QUEUE_NUM);
    deleted?;
    if report.delayed > 0 {
        report.mean_hold = total_hold / report.delayed as u32;
    } else {
        report.min_hold = Duration::ZERO;
    }
    Ok(report)
}
