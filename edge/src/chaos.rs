//! Network faults for the churn scenarios: iptables DROP rules in the harness's private
//! network namespace, in a chain of their own that lives exactly as long as a [`Faults`] guard.
//!
//! Every packet between two loopback addresses crosses INPUT exactly once (in on `lo`): rules
//! there cut a node off, or drop a share of packets, without judging a packet twice (a random
//! drop in both OUTPUT and INPUT would drop ~2p, not p). They are in INPUT, not OUTPUT,
//! because a DROP in OUTPUT fails the sender's `sendto` with EPERM, which a real network never
//! does: memberlist takes that for a local error and never suspects the node it could not
//! ping. The rules sit in their own chain, jumped to from the top of INPUT, so that removing them
//! never touches other rules, and the guard removes them when dropped, also on an error or a
//! panic between a cut and its heal.

use std::net::Ipv4Addr;

use crate::netns::{iptables_restore, run_cmd};
use crate::serf::SERF_PORT;
use crate::systems::System;

/// The chain the fault rules live in.
const CHAIN: &str = "EDGE_FAULTS";

/// One rule's match and target, as iptables arguments after `-A CHAIN`.
pub type Rule = Vec<String>;

fn rule(args: &[&str]) -> Rule {
    args.iter().map(|a| a.to_string()).collect()
}

/// Rules cutting the node at `ip` off from every other address, both ways: all it sends and
/// all sent to it (gossip, and the harness's own calls to it). A Serf agent dials its TCP
/// connections (push-pull syncs, fallback pings) without binding its address, so they leave
/// from 127.0.0.1 and cannot be told apart per agent: for Serf, every TCP connection to the
/// gossip port from 127.0.0.1 is cut as well, fleet-wide (the others' UDP gossip, which
/// detects failures, is untouched). Otherwise the cut-off agent would still reach the others
/// over TCP.
pub fn partition_rules(system: System, ip: Ipv4Addr) -> Vec<Rule> {
    let ip = ip.to_string();
    let mut rules = vec![
        rule(&["-s", &ip, "-j", "DROP"]),
        rule(&["-d", &ip, "-j", "DROP"]),
    ];
    if system == System::Serf {
        rules.push(rule(&[
            "-s",
            "127.0.0.1",
            "-p",
            "tcp",
            "--dport",
            &SERF_PORT.to_string(),
            "-j",
            "DROP",
        ]));
    }
    rules
}

/// What [`partition_rules`] drops, for the report.
pub fn partition_note(system: System) -> &'static str {
    match system {
        System::Bocluster => "all packets from and to the node's address",
        System::Serf => {
            "all packets from and to the agent's address, and all TCP to port 7946 from 127.0.0.1 (agents dial TCP unbound)"
        }
    }
}

/// A rule dropping `probability` of the UDP packets sent from any address of the `/24`
/// loopback block `block` (127.0.block.0/24): the gossip of a whole fleet, which both systems
/// send over UDP from each node's own address (bocluster: QUIC; Serf: memberlist's probes and
/// gossip). TCP (Serf's push-pull syncs, the harness's HTTP and RPC calls) is not touched.
pub fn loss_rules(block: u8, probability: f64) -> Vec<Rule> {
    let net = format!("127.0.{block}.0/24");
    let p = format!("{probability:.4}");
    vec![rule(&[
        "-s",
        &net,
        "-p",
        "udp",
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        &p,
        "-j",
        "DROP",
    ])]
}

/// The `iptables-restore --noflush` script that (re)creates the chain with `rules` and jumps
/// to it from the top of INPUT for packets in on `lo`.
pub fn install_script(rules: &[Rule]) -> String {
    let mut script = format!("*filter\n:{CHAIN} - [0:0]\n");
    for r in rules {
        script.push_str(&format!("-A {CHAIN} {}\n", r.join(" ")));
    }
    script.push_str(&format!("-I INPUT 1 -i lo -j {CHAIN}\nCOMMIT\n"));
    script
}

/// Fault rules in force; removed when dropped.
pub struct Faults {
    rules: usize,
}

impl Faults {
    /// Installs `rules` in one `iptables-restore` call (all or none).
    pub fn install(rules: Vec<Rule>) -> Result<Faults, String> {
        // Whatever an earlier guard could not remove goes first.
        remove();
        let script = install_script(&rules);
        // From here on, whatever was installed is removed by the guard, also on failure.
        let guard = Faults { rules: rules.len() };
        iptables_restore(&["-w", "5", "--noflush"], &script)?;
        Ok(guard)
    }

    /// Packets dropped so far by each rule, in order.
    pub fn dropped(&self) -> Result<Vec<u64>, String> {
        let text = run_cmd(
            "iptables",
            &["-L", CHAIN, "-v", "-n", "-x", "--line-numbers"],
        )?;
        let rows = crate::netns::parse_listing(&text);
        Ok((1..=self.rules)
            .map(|num| {
                rows.iter()
                    .find(|(n, _, _)| *n == num)
                    .map_or(0, |(_, packets, _)| *packets)
            })
            .collect())
    }

    /// Removes the rules now (the same as dropping the guard).
    pub fn heal(self) {}
}

impl Drop for Faults {
    fn drop(&mut self) {
        remove();
    }
}

/// Takes the jump out of INPUT (every copy) and deletes the chain; quiet when absent.
fn remove() {
    while run_cmd(
        "iptables",
        &["-w", "5", "-D", "INPUT", "-i", "lo", "-j", CHAIN],
    )
    .is_ok()
    {}
    let _ = run_cmd("iptables", &["-w", "5", "-F", CHAIN]);
    let _ = run_cmd("iptables", &["-w", "5", "-X", CHAIN]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_cuts_both_ways() {
        let ip = Ipv4Addr::new(127, 0, 221, 10);
        let bo = partition_rules(System::Bocluster, ip);
        assert_eq!(
            bo,
            vec![
                rule(&["-s", "127.0.221.10", "-j", "DROP"]),
                rule(&["-d", "127.0.221.10", "-j", "DROP"]),
            ]
        );
        let serf = partition_rules(System::Serf, Ipv4Addr::new(127, 0, 222, 10));
        assert_eq!(serf.len(), 3);
        assert_eq!(
            serf[2].join(" "),
            "-s 127.0.0.1 -p tcp --dport 7946 -j DROP"
        );
    }

    #[test]
    fn loss_drops_a_share_of_the_fleets_udp() {
        assert_eq!(
            loss_rules(222, 0.05)[0].join(" "),
            "-s 127.0.222.0/24 -p udp -m statistic --mode random --probability 0.0500 -j DROP"
        );
    }

    #[test]
    fn script_creates_the_chain_and_jumps_to_it_once() {
        let script = install_script(&loss_rules(221, 0.05));
        assert_eq!(
            script,
            "*filter\n:EDGE_FAULTS - [0:0]\n\
             -A EDGE_FAULTS -s 127.0.221.0/24 -p udp -m statistic --mode random --probability 0.0500 -j DROP\n\
             -I INPUT 1 -i lo -j EDGE_FAULTS\nCOMMIT\n"
        );
    }
}
