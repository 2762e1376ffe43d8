//! What a simulated run is made of, shared by `sim` (one run, the property checks) and
//! `sim_bench` (the measurement matrix): its options, the fleet it starts, and whether that
//! fleet agrees.

use std::path::PathBuf;
use std::time::Duration;

use bocluster::membership::sim::properties::check_agreement;
use bocluster::membership::sim::{Network, SimFleet};
use bocluster::membership::Profile;
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Simulated nodes
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Virtual time the run covers, from the first start
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// The run's random seed (the network, the engines, the picks of `count` targets)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The engine's timings: lan or wan
    #[arg(long, default_value = "lan", value_parser = parse_profile)]
    pub profile: Profile,
    /// Share of datagrams lost on every link (0 to 1)
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
    /// One-way delay of every link
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Up to this much more delay, uniformly, per datagram
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub jitter: Duration,
    /// Share of datagrams held back (by the latency again) so later ones overtake them
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// The largest sealed datagram a link carries (bytes)
    #[arg(long, default_value_t = bocluster::seal::MAX_SEALED_DATAGRAM)]
    pub mtu: usize,
    /// How many seed nodes the others join through
    #[arg(long, default_value_t = 3)]
    pub join_seeds: usize,
    /// The nodes start at random times within this span (0: all in one instant). Processes
    /// started together start over a second or more, and so their timers tick out of step;
    /// started in one instant, every node gossips in the same 200 ms tick, and a change then
    /// takes a whole tick per hop instead of half of one on average
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub start_spread: Duration,
    /// A fault schedule (JSON; see BENCHMARKS.md's simulator section for the format)
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Write the report as JSON here
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Run the property checks on one random fault schedule (seed --seed) instead
    #[arg(long)]
    pub check: bool,
    /// Run the property checks on --seeds random schedules, from --seed on
    #[arg(long)]
    pub soak: bool,
    /// How many seeds --soak runs
    #[arg(long, default_value_t = 100)]
    pub seeds: u64,
    /// Run the measurements of BENCHMARKS.md at --sizes instead (one fleet per size)
    #[arg(long)]
    pub bench: bool,
    /// Fleet sizes for --bench
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub sizes: Vec<usize>,
}

fn parse_profile(value: &str) -> Result<Profile, String> {
    Profile::parse(value).ok_or_else(|| format!("`{value}`: the profile is lan or wan"))
}

/// Above this many nodes, agreement is checked by counts and digests, not member rows.
pub const ROWS_UP_TO: usize = 500;

/// Builds the fleet of a run: node 0 started at t = 0, the others at random times within
/// `start_spread` (in index order), the first `join_seeds` through node 0, the rest through one
/// of those.
pub fn start_fleet(args: &SimArgs) -> SimFleet {
    let mut fleet = SimFleet::new(args.profile.timings(), args.seed);
    fleet.net = Network {
        latency: args.latency,
        jitter: args.jitter,
        loss: args.loss,
        reorder: args.reorder,
        reorder_delay: args.latency + args.jitter,
        mtu: args.mtu,
    };
    let seeds = args.join_seeds.clamp(1, args.nodes.max(1));
    let spread_us = args.start_spread.as_micros().min(usize::MAX as u128) as usize;
    let mut starts: Vec<Duration> = (1..args.nodes)
        .map(|_| Duration::from_micros(fleet.random_below(spread_us.max(1)) as u64))
        .collect();
    starts.sort();
    fleet.start_node(1, None);
    for (i, at) in (1..args.nodes).zip(starts) {
        fleet.run_until(at);
        let through = if i < seeds { 0 } else { i % seeds };
        fleet.start_node(1, Some(through));
    }
    fleet
}

/// Whether every live node agrees on members and records: member rows for small fleets,
/// counts and record digests for big ones.
pub fn agreed(fleet: &SimFleet) -> bool {
    if fleet.nodes.len() <= ROWS_UP_TO {
        return check_agreement(fleet).is_ok();
    }
    if !fleet.all_active() {
        return false;
    }
    let mut digests = fleet.running().map(|i| fleet.nodes[i].engine.digest());
    let first = digests.next();
    digests.all(|d| Some(d) == first)
}
