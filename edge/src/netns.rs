//! A private network namespace for the harness and iptables byte counters in it.
//!
//! [`enter_private_netns`] moves the calling thread into a new network namespace with its
//! loopback up: node processes it spawns, threads it starts afterwards and connections it makes
//! all live there, apart from the machine's other loopback users, and the namespace (with its
//! iptables rules) disappears with them. Inside, [`ByteCounters`] adds one counting rule (no
//! target: it only counts) per node address and direction and reads the byte counts back.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Runs a command; `Err` with its stderr when it fails.
pub fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Moves the calling thread into a new network namespace and brings its loopback up. Call it
/// from the main thread before any other thread starts. Needs root (CAP_SYS_ADMIN).
pub fn enter_private_netns() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
    run_cmd("ip", &["link", "set", "lo", "up"]).map(|_| ())
}

/// Which way a counted packet goes, seen from the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent by the node: counted in OUTPUT.
    Out,
    /// Received by the node: counted in INPUT.
    In,
}

/// A counting rule: which node (or `None` for traffic that cannot be told apart by address and
/// is shared out evenly), which way, and the match (`-s/-d` is added for node rules).
#[derive(Debug, Clone)]
pub struct CounterRule {
    pub node: Option<usize>,
    pub direction: Direction,
    pub matches: Vec<String>,
}

impl CounterRule {
    /// A rule for node `node` at `ip`: `-s ip` when out, `-d ip` when in, then `matches`.
    pub fn node(node: usize, ip: Ipv4Addr, direction: Direction, matches: &[&str]) -> Self {
        let flag = match direction {
            Direction::Out => "-s",
            Direction::In => "-d",
        };
        let mut all = vec![flag.to_string(), ip.to_string()];
        all.extend(matches.iter().map(|m| m.to_string()));
        CounterRule {
            node: Some(node),
            direction,
            matches: all,
        }
    }

    /// A fleet-wide rule whose bytes are shared out evenly over the nodes.
    pub fn shared(direction: Direction, matches: &[&str]) -> Self {
        CounterRule {
            node: None,
            direction,
            matches: matches.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn chain(&self) -> &'static str {
        self.direction.chain()
    }
}

impl Direction {
    /// The chain of this direction's counting rules: one of our own, jumped to from the end of
    /// OUTPUT or INPUT, so that rules inserted at the top of INPUT (the churn faults) neither
    /// shift the counting rules' numbers nor are counted: a packet a fault drops was not
    /// received.
    fn chain(self) -> &'static str {
        match self {
            Direction::Out => "EDGE_COUNT_OUT",
            Direction::In => "EDGE_COUNT_IN",
        }
    }

    fn builtin_chain(self) -> &'static str {
        match self {
            Direction::Out => "OUTPUT",
            Direction::In => "INPUT",
        }
    }
}

const DIRECTIONS: [Direction; 2] = [Direction::Out, Direction::In];

/// Byte and packet counts per node, in and out, at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub bytes_in: Vec<u64>,
    pub bytes_out: Vec<u64>,
    pub packets_in: Vec<u64>,
    pub packets_out: Vec<u64>,
}

impl Snapshot {
    /// Per-node bytes since `earlier`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let sub = |a: &[u64], b: &[u64]| -> Vec<u64> {
            a.iter().zip(b).map(|(x, y)| x.saturating_sub(*y)).collect()
        };
        Snapshot {
            bytes_in: sub(&self.bytes_in, &earlier.bytes_in),
            bytes_out: sub(&self.bytes_out, &earlier.bytes_out),
            packets_in: sub(&self.packets_in, &earlier.packets_in),
            packets_out: sub(&self.packets_out, &earlier.packets_out),
        }
    }
}

/// Feeds `script` to one `iptables-restore` call (with `args`); each table's rules are committed
/// all or none.
pub fn iptables_restore(args: &[&str], script: &str) -> Result<(), String> {
    let mut child = Command::new("iptables-restore")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("iptables-restore: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("iptables-restore: no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("iptables-restore: {e}"))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("iptables-restore: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Counting rules installed in this namespace, in chains of their own jumped to from INPUT
/// and OUTPUT (which the counters own: they are flushed when the counters are installed and
/// dropped).
pub struct ByteCounters {
    nodes: usize,
    rules: Vec<CounterRule>,
}

impl ByteCounters {
    /// Flushes INPUT and OUTPUT and installs `rules` (one `iptables-restore` call).
    pub fn install(nodes: usize, rules: Vec<CounterRule>) -> Result<ByteCounters, String> {
        flush()?;
        let mut script = String::from("*filter\n");
        for direction in DIRECTIONS {
            script.push_str(&format!(":{} - [0:0]\n", direction.chain()));
            script.push_str(&format!(
                "-A {} -j {}\n",
                direction.builtin_chain(),
                direction.chain()
            ));
        }
        for rule in &rules {
            script.push_str(&format!("-A {} {}\n", rule.chain(), rule.matches.join(" ")));
        }
        script.push_str("COMMIT\n");
        iptables_restore(&["--noflush"], &script)?;
        Ok(ByteCounters { nodes, rules })
    }

    /// Reads every rule's byte and packet counts and adds them up per node; shared rules are
    /// divided evenly over the nodes.
    pub fn read(&self) -> Result<Snapshot, String> {
        let listing = |chain: &str| -> Result<Vec<(usize, u64, u64)>, String> {
            let text = run_cmd(
                "iptables",
                &["-L", chain, "-v", "-n", "-x", "--line-numbers"],
            )?;
            Ok(parse_listing(&text))
        };
        let output = listing(Direction::Out.chain())?;
        let input = listing(Direction::In.chain())?;
        let mut snapshot = Snapshot {
            bytes_in: vec![0; self.nodes],
            bytes_out: vec![0; self.nodes],
            packets_in: vec![0; self.nodes],
            packets_out: vec![0; self.nodes],
        };
        let (mut out_index, mut in_index) = (0, 0);
        for rule in &self.rules {
            let (rows, index) = match rule.direction {
                Direction::Out => (&output, &mut out_index),
                Direction::In => (&input, &mut in_index),
            };
            *index += 1;
            let (packets, bytes) = rows
                .iter()
                .find(|(num, _, _)| *num == *index)
                .map(|(_, packets, bytes)| (*packets, *bytes))
                .ok_or_else(|| format!("iptables lost counting rule {index}"))?;
            let (byte_totals, packet_totals) = match rule.direction {
                Direction::Out => (&mut snapshot.bytes_out, &mut snapshot.packets_out),
                Direction::In => (&mut snapshot.bytes_in, &mut snapshot.packets_in),
            };
            for (totals, count) in [(byte_totals, bytes), (packet_totals, packets)] {
                match rule.node {
                    Some(node) => totals[node] += count,
                    None if self.nodes > 0 => {
                        let share = count / self.nodes as u64;
                        totals.iter_mut().for_each(|t| *t += share);
                    }
                    None => {}
                }
            }
        }
        Ok(snapshot)
    }
}

impl Drop for ByteCounters {
    fn drop(&mut self) {
        let _ = flush();
    }
}

/// Empties OUTPUT and INPUT and deletes the counting chains (quiet when they are absent).
fn flush() -> Result<(), String> {
    for direction in DIRECTIONS {
        run_cmd("iptables", &["-F", direction.builtin_chain()])?;
        let _ = run_cmd("iptables", &["-F", direction.chain()]);
        let _ = run_cmd("iptables", &["-X", direction.chain()]);
    }
    Ok(())
}

/// `(rule number, packets, bytes)` of each rule in `iptables -L CHAIN -v -n -x --line-numbers`.
pub fn parse_listing(text: &str) -> Vec<(usize, u64, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let num = fields.next()?.parse().ok()?;
            let packets = fields.next()?.parse().ok()?;
            let bytes = fields.next()?.parse().ok()?;
            Some((num, packets, bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_iptables_listing() {
        let text = "\
Chain OUTPUT (policy ACCEPT 0 packets, 0 bytes)
num      pkts      bytes target     prot opt in     out     source               destination
1           9     1228            17   --  *      *       127.0.220.1          0.0.0.0/0            udp spt:7946
2           5      480            6    --  *      *       127.0.0.1            0.0.0.0/0            tcp dpt:7946
3    12345678 987654321            6    --  *      *       127.0.220.1          0.0.0.0/0
";
        assert_eq!(
            parse_listing(text),
            vec![(1, 9, 1228), (2, 5, 480), (3, 12345678, 987654321)]
        );
        assert!(parse_listing("Chain INPUT (policy ACCEPT)\n").is_empty());
    }

    #[test]
    fn node_rules_name_the_address_by_direction() {
        let ip = Ipv4Addr::new(127, 0, 221, 4);
        let out = CounterRule::node(3, ip, Direction::Out, &["-p", "udp"]);
        assert_eq!(out.matches, ["-s", "127.0.221.4", "-p", "udp"]);
        assert_eq!(out.chain(), "EDGE_COUNT_OUT");
        let inbound = CounterRule::node(3, ip, Direction::In, &["-p", "udp"]);
        assert_eq!(inbound.matches, ["-d", "127.0.221.4", "-p", "udp"]);
        assert_eq!(inbound.chain(), "EDGE_COUNT_IN");
    }

    #[test]
    fn snapshot_difference() {
        let a = Snapshot {
            bytes_in: vec![10, 20],
            bytes_out: vec![5, 5],
            packets_in: vec![1, 2],
            packets_out: vec![1, 1],
        };
        let b = Snapshot {
            bytes_in: vec![15, 40],
            bytes_out: vec![5, 9],
            packets_in: vec![2, 4],
            packets_out: vec![1, 3],
        };
        assert_eq!(
            b.since(&a),
            Snapshot {
                bytes_in: vec![5, 20],
                bytes_out: vec![0, 4],
                packets_in: vec![1, 2],
                packets_out: vec![0, 2],
            }
        );
    }
}
