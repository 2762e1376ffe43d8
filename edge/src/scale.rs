//! `edge-fleet scale`: N real nodes in this one process, to see how cost grows with N.
//!
//! Each node is the real node code (`RunningNode::start_on`: identity, catalog, the SWIM
//! membership engine and its records, the master view), all on one multi-threaded tokio
//! runtime, all seeded to the first node. The nodes reach each other over an in-process
//! network (`--transport memory`, the default, which can also lose datagrams: `--loss`), or over
//! real QUIC with TLS, each on its own 127.1.x.y address (`--transport quic`). Measured per size: time to start them, time until
//! every node sees all N alive, resident memory of the process per node, CPU and gossip bytes
//! per node over a steady window, and the time a change (CREATE DATABASE on one node) takes to
//! reach all N.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bocluster::config::{NodeArgs, NodeConfig};
use bocluster::membership::MemberStatus;
use bocluster::node::{PeerNetwork, RunningNode};
use bocluster::transport::MemoryNetwork;
use clap::Args;

use crate::netns::{ByteCounters, CounterRule, Direction};
use crate::procfs::{self, Machine};
use crate::reports::scale::{ScaleReport, ScaleResult, ScaleTransport};
use crate::runs::write_file;
use crate::stats::median;

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Numbers of in-process nodes, comma-separated
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub sizes: Vec<usize>,
    /// How long a size may take to converge (and a change to reach all)
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub limit: Duration,
    /// Steady window after convergence for CPU, bandwidth and false positives (0s skips it)
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub steady: Duration,
    /// How the nodes reach each other
    #[arg(long, value_enum, default_value_t = ScaleTransport::Memory)]
    pub transport: ScaleTransport,
    /// Share of membership datagrams the in-process network drops (0 to 1; `--transport memory`)
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// Stop after the first size that does not converge within --limit
    #[arg(long)]
    pub stop_at_failure: bool,
    /// Give a size up once the process's resident memory passes this many MiB (protects the
    /// machine; the size is then reported as not converged)
    #[arg(long, default_value_t = 8192)]
    pub max_rss_mib: u64,
    /// BO_PROBE_INTERVAL of every node [default: the node's default]. `auto`: the default up
    /// to 200 nodes, then 8 ms per node (kept to rerun the previous engine's figures, whose
    /// rounds cost O(N) per node; a SWIM probe costs the same at any N, so the default fits any
    /// fleet)
    #[arg(
        long = "probe-interval",
        alias = "gossip-interval",
        value_name = "DURATION|auto"
    )]
    pub gossip_interval: Option<String>,
    /// BO_SUSPECT_TIMEOUT of every node [default: the node's default]
    #[arg(long, value_name = "DURATION")]
    pub suspect_timeout: Option<String>,
    /// Also write the JSON report to this file (and the table beside it, as .md)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Draw a PNG chart of the figures against N into this folder
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
}

const POLL: Duration = Duration::from_millis(100);

/// Address of node `i` of a size whose block starts at third octet `first_octet`.
fn node_ip(first_octet: usize, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (first_octet + i / 250) as u8, (i % 250 + 1) as u8)
}

pub fn run(args: &ScaleArgs, counting: bool) -> Result<(), String> {
    if args.sizes.is_empty() {
        return Err("--sizes must not be empty".into());
    }
    if !(0.0..=1.0).contains(&args.loss) {
        return Err(format!(
            "--loss: {} is not a share between 0 and 1",
            args.loss
        ));
    }
    if args.loss > 0.0 && args.transport != ScaleTransport::Memory {
        return Err("--loss needs --transport memory (for QUIC, use a netns with loss)".into());
    }
    let blocks: usize = args.sizes.iter().map(|n| n.div_ceil(250)).sum();
    if blocks > 255 || args.sizes.contains(&0) {
        return Err("--sizes: too many nodes in all (at most 63,750 over all sizes)".into());
    }
    raise_fd_limit();
    let machine = Machine::describe();
    eprintln!("scale: machine: {machine}");
    if !counting && args.transport == ScaleTransport::Quic {
        eprintln!("scale: NOTICE: no private network namespace with iptables (needs root); gossip bandwidth is skipped");
    }
    let worker_threads = machine.cores.max(1);
    let mut results = Vec::new();
    let mut first_octet = 0;
    for &n in &args.sizes {
        let result = one_size(n, first_octet, args, counting, worker_threads)?;
        first_octet += n.div_ceil(250);
        let failed = result.converge_ms.is_none();
        results.push(result);
        if failed && args.stop_at_failure {
            eprintln!("scale: N={n} did not converge; stopping (--stop-at-failure)");
            break;
        }
    }
    let report = ScaleReport {
        machine,
        transport: args.transport,
        loss: args.loss,
        bocluster_version: bocluster::node::VERSION.to_string(),
        gossip_interval_ms: results.last().map_or(
            ms(bocluster::membership::Timings::default().probe_interval),
            |r| r.gossip_interval_ms,
        ),
        limit_s: args.limit.as_secs_f64(),
        steady_s: args.steady.as_secs_f64(),
        worker_threads,
        largest_converged: results
            .iter()
            .filter(|r| r.converge_ms.is_some())
            .map(|r| r.n)
            .max(),
        sizes: results,
    };
    let table = render_table(&report);
    println!("{table}");
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    println!("{json}");
    if let Some(out) = &args.out {
        write_file(out, &json)?;
        let md = out.with_extension("md");
        write_file(&md, &table)?;
        eprintln!("scale: wrote {} and {}", out.display(), md.display());
    }
    if let Some(dir) = &args.plots {
        match crate::plot::plot_scale(&report, dir) {
            Ok(files) => {
                for f in files {
                    eprintln!("scale: wrote {}", f.display());
                }
            }
            Err(e) => eprintln!("scale: NOTICE: no plots: {e}"),
        }
    }
    Ok(())
}

/// Lifts the soft open-files limit to the hard one: each node holds a UDP socket, a TCP
/// listener and its files.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

fn one_size(
    n: usize,
    first_octet: usize,
    args: &ScaleArgs,
    counting: bool,
    worker_threads: usize,
) -> Result<ScaleResult, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let me = std::process::id();
    let rss_before = procfs::rss_kib(me).unwrap_or(0);
    let mut interval = bocluster::membership::Timings::default().probe_interval;
    let memory = (args.transport == ScaleTransport::Memory).then(|| {
        let network = MemoryNetwork::new();
        network.set_loss(args.loss);
        network
    });
    let result = runtime.block_on(async {
        let seed = format!("{}:9091", node_ip(first_octet, 0));
        let mut nodes: Vec<RunningNode> = Vec::with_capacity(n);
        let start = Instant::now();
        for i in 0..n {
            let node_args = NodeArgs {
                listen: Some(format!("{}:9091", node_ip(first_octet, i))),
                data_dir: Some(dir.path().join(format!("s{i}")).display().to_string()),
                node_id: Some(format!("s{i}")),
                seeds: (i > 0).then(|| seed.clone()),
                log: Some("off".into()),
                // In-process nodes answer statements only through the executor.
                mysql: Some("off".into()),
                probe_interval: interval_for(args.gossip_interval.as_deref(), n),
                suspect_timeout: args.suspect_timeout.clone(),
                ..NodeArgs::default()
            };
            let config = NodeConfig::from_args(&node_args).map_err(|e| e.to_string())?;
            interval = config.timings.probe_interval;
            let network = match &memory {
                Some(network) => PeerNetwork::Memory(network.clone()),
                None => PeerNetwork::Quic,
            };
            let node = RunningNode::start_on(config, network)
                .await
                .map_err(|e| format!("node s{i}: {e}"))?;
            nodes.push(node);
            if let Some(reason) = over_memory(me, args.max_rss_mib) {
                return Err(format!("N={n}: {reason} after starting {} nodes", i + 1));
            }
            if (i + 1) % 100 == 0 && i + 1 < n {
                eprintln!("scale: [N={n}] started {}/{n}", i + 1);
            }
        }
        let start_ms = ms(start.elapsed());
        eprintln!("scale: [N={n}] started all in {start_ms:.0} ms; waiting until every node sees {n} alive");

        // Convergence.
        let converging = Instant::now();
        let mut next_note = Duration::from_secs(10);
        let mut gave_up = None;
        let (converge_ms, nodes_seeing_all, median_alive_seen) = loop {
            let alive: Vec<f64> = nodes
                .iter()
                .map(|node| {
                    node.ctx
                        .membership
                        .members()
                        .iter()
                        .filter(|m| m.status == MemberStatus::Alive)
                        .count() as f64
                })
                .collect();
            let full = alive.iter().filter(|&&a| a as usize == n).count();
            let med = median(&alive).unwrap_or(0.0);
            if full == n {
                break (Some(ms(converging.elapsed())), full, med);
            }
            if converging.elapsed() >= args.limit {
                break (None, full, med);
            }
            if let Some(reason) = over_memory(me, args.max_rss_mib) {
                gave_up = Some(reason);
                break (None, full, med);
            }
            if converging.elapsed() >= next_note {
                eprintln!(
                    "scale: [N={n}] {:.0} s: {full}/{n} nodes see all {n} alive; the median node sees {med:.0}",
                    converging.elapsed().as_secs_f64()
                );
                next_note += Duration::from_secs(10);
            }
            tokio::time::sleep(POLL).await;
        };
        match converge_ms {
            Some(t) => eprintln!("scale: [N={n}] converged {t:.0} ms after the last start"),
            None => eprintln!(
                "scale: [N={n}] NOT converged after {:.0?}: {nodes_seeing_all}/{n} nodes see all alive, the median node sees {median_alive_seen:.0}{}",
                converging.elapsed(),
                gave_up.as_deref().map_or(String::new(), |g| format!(" ({g})"))
            ),
        }

        // Steady window: CPU, gossip bytes, false positives.
        let (mut cpu, mut bytes, mut false_positives) = (None, None, None);
        if converge_ms.is_some() && !args.steady.is_zero() {
            let counters = if counting && memory.is_none() {
                ByteCounters::install(
                    1,
                    vec![CounterRule::shared(
                        Direction::Out,
                        &["-s", "127.1.0.0/16", "-p", "udp"],
                    )],
                )
                .map_err(|e| eprintln!("scale: NOTICE: cannot count bytes ({e})"))
                .ok()
            } else {
                None
            };
            eprintln!("scale: [N={n}] steady window of {:?}", args.steady);
            let before_bytes = counters.as_ref().and_then(|c| c.read().ok());
            let before_memory = memory.as_ref().map(MemoryNetwork::stats);
            let before_cpu = procfs::cpu_time(me);
            let t = Instant::now();
            let mut dead_seen = std::collections::BTreeSet::new();
            while t.elapsed() < args.steady {
                for node in &nodes {
                    for m in node.ctx.membership.members().iter() {
                        if m.status != MemberStatus::Alive {
                            dead_seen.insert(m.node_id.clone());
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let secs = t.elapsed().as_secs_f64();
            if let (Some(b), Some(a)) = (before_cpu, procfs::cpu_time(me)) {
                cpu = Some((a - b).as_secs_f64() / secs * 100.0 / n as f64);
            }
            if let (Some(network), Some(before)) = (&memory, before_memory) {
                let sent = network.stats().datagram_bytes - before.datagram_bytes;
                bytes = Some(sent as f64 / secs / n as f64);
            }
            if let (Some(c), Some(before)) = (&counters, before_bytes) {
                if let Ok(after) = c.read() {
                    let sent = after.since(&before).bytes_out[0];
                    bytes = Some(sent as f64 / secs / n as f64);
                }
            }
            false_positives = Some(dead_seen.len());
        }
        let rss_process_kib = procfs::rss_kib(me).unwrap_or(0);

        // A change on one node until all N see it.
        let mut change_ms = None;
        if converge_ms.is_some() {
            let target = n / 2;
            let target_id = format!("s{target}");
            let t = Instant::now();
            bocluster::exec::execute_text(&nodes[target].ctx, "CREATE DATABASE scale_change")
                .await
                .map_err(|e| format!("CREATE DATABASE on s{target}: {e}"))?;
            while t.elapsed() < args.limit {
                let all = nodes.iter().all(|node| {
                    node.ctx.membership.members().iter().any(|m| {
                        m.node_id == target_id && m.databases.iter().any(|d| d == "scale_change")
                    })
                });
                if all {
                    change_ms = Some(ms(t.elapsed()));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!(
                "scale: [N={n}] change seen by all: {}",
                change_ms.map_or("NOT in time".to_string(), |v| format!("{v:.0} ms"))
            );
        }
        // Close every endpoint at once (each waits up to a second for its peers to be told).
        let mut closing = tokio::task::JoinSet::new();
        for node in &nodes {
            let ctx = node.ctx.clone();
            closing.spawn(async move { ctx.transport.close().await });
        }
        while closing.join_next().await.is_some() {}
        drop(nodes);
        Ok::<ScaleResult, String>(ScaleResult {
            n,
            gossip_interval_ms: ms(interval),
            log2_n: (n as f64).log2(),
            start_ms,
            converge_ms,
            nodes_seeing_all,
            median_alive_seen,
            gave_up,
            rss_per_node_kib: rss_process_kib.saturating_sub(rss_before) as f64 / n as f64,
            rss_process_kib,
            cpu_percent_per_node: cpu,
            gossip_bytes_per_s_per_node: bytes,
            false_positive_nodes: false_positives,
            change_rounds: change_ms.map(|v| v / ms(interval)),
            change_ms,
        })
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Fleets up to this size keep the node's default interval under `--gossip-interval auto`.
const AUTO_DEFAULT_UP_TO: usize = 200;
/// Beyond that, the interval per node under `--gossip-interval auto`: 8 s for 1,000 nodes,
/// which keeps a 2-core machine below saturation (at 5 s a 1,000-node fleet used 1.9 of its
/// 2 cores and converged in one run out of two).
const AUTO_PER_NODE: Duration = Duration::from_millis(8);

/// The nodes' BO_PROBE_INTERVAL for a fleet of `n` (see `ScaleArgs::gossip_interval`).
fn interval_for(choice: Option<&str>, n: usize) -> Option<String> {
    match choice {
        Some("auto") if n <= AUTO_DEFAULT_UP_TO => None,
        Some("auto") => {
            let per_node = AUTO_PER_NODE * u32::try_from(n).unwrap_or(u32::MAX);
            Some(format!("{}ms", per_node.as_millis()))
        }
        other => other.map(str::to_string),
    }
}

/// A reason to stop when this process holds more than `max_mib` resident.
fn over_memory(pid: u32, max_mib: u64) -> Option<String> {
    let rss = procfs::rss_kib(pid)?;
    (rss > max_mib * 1024).then(|| {
        format!(
            "gave up: process resident memory {} MiB passed --max-rss-mib {max_mib}",
            rss / 1024
        )
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// The report as a Markdown table, one row per size.
pub fn render_table(report: &ScaleReport) -> String {
    let mut out = format!(
        "Machine: {}\nbocluster {} in one process ({} tokio worker threads), {}; limit {:.0} s, steady window {:.0} s\n\n",
        report.machine,
        report.bocluster_version,
        report.worker_threads,
        match report.transport {
            ScaleTransport::Quic => "real QUIC with TLS on 127.1.x.y (gossip bytes: UDP with IP headers)".to_string(),
            ScaleTransport::Memory => format!(
                "in-process network, {:.0} % of datagrams lost (gossip bytes: membership datagrams' plaintext, unsealed)",
                report.loss * 100.0
            ),
        },
        report.limit_s,
        report.steady_s
    );
    out.push_str("| N | gossip interval | start all | converge (after last start) | change to all (rounds; 2 log2 N) | RSS per node | CPU per node | gossip out per node | false positives |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in &report.sizes {
        out.push_str(&format!(
            "| {} | {:.0} ms | {:.1} s | {} | {} | {:.0} KiB | {} | {} | {} |\n",
            r.n,
            r.gossip_interval_ms,
            r.start_ms / 1000.0,
            match r.converge_ms {
                Some(v) => format!("{:.1} s", v / 1000.0),
                None => format!(
                    "**not in {:.0} s** ({}/{} nodes saw all; median {:.0} alive{})",
                    report.limit_s,
                    r.nodes_seeing_all,
                    r.n,
                    r.median_alive_seen,
                    r.gave_up
                        .as_deref()
                        .map_or(String::new(), |g| format!("; {g}"))
                ),
            },
            match (r.change_ms, r.change_rounds) {
                (Some(v), Some(rounds)) =>
                    format!("{v:.0} ms ({rounds:.1}; {:.1})", 2.0 * r.log2_n),
                _ => "-".into(),
            },
            r.rss_per_node_kib,
            opt(r.cpu_percent_per_node, |v| format!("{v:.2} %")),
            opt(r.gossip_bytes_per_s_per_node, |v| format!(
                "{:.1} kB/s",
                v / 1000.0
            )),
            r.false_positive_nodes
                .map_or("-".to_string(), |v| v.to_string()),
        ));
    }
    if let Some(largest) = report.largest_converged {
        out.push_str(&format!(
            "\nLargest N that converged within {:.0} s: {largest}\n",
            report.limit_s
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_intervals_grow_past_200_nodes() {
        assert_eq!(interval_for(Some("auto"), 100), None);
        assert_eq!(interval_for(Some("auto"), 201).as_deref(), Some("1608ms"));
        assert_eq!(interval_for(Some("auto"), 1000).as_deref(), Some("8000ms"));
        assert_eq!(interval_for(Some("1s"), 1000).as_deref(), Some("1s"));
        assert_eq!(interval_for(None, 1000), None);
    }

    #[test]
    fn addresses_fill_blocks_of_250() {
        assert_eq!(node_ip(0, 0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(node_ip(0, 249), Ipv4Addr::new(127, 1, 0, 250));
        assert_eq!(node_ip(0, 250), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(node_ip(4, 999), Ipv4Addr::new(127, 1, 7, 250));
    }
}
