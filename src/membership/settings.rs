//! The engine's timings: a profile (LAN or WAN) and the settings a user may override.

use std::num::{NonZeroU32, NonZeroU8, NonZeroUsize};
use std::time::Duration;

/// Which network the defaults are made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Round trips of a few ms (a site, a data centre, loopback).
    Lan,
    /// Edge links over cellular: round trips of 100-300 ms, bursts of loss.
    Wan,
}

impl Profile {
    pub fn parse(value: &str) -> Option<Profile> {
        match value.trim().to_ascii_lowercase().as_str() {
            "lan" => Some(Profile::Lan),
            "wan" => Some(Profile::Wan),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Lan => "lan",
            Profile::Wan => "wan",
        }
    }

    /// The defaults of this profile (see the README for how they were chosen).
    pub fn timings(self) -> Timings {
        match self {
            Profile::Lan => Timings {
                profile: self,
                probe_interval: Duration::from_millis(1000),
                probe_timeout: Duration::from_millis(400),
                suspect_timeout: Duration::from_secs(3),
                port_closed_timeout: Duration::from_millis(1000),
                anti_entropy_interval: Duration::from_secs(10),
                dead_node_grace: Duration::from_secs(3600),
            },
            Profile::Wan => Timings {
                profile: self,
                probe_interval: Duration::from_secs(2),
                probe_timeout: Duration::from_millis(900),
                suspect_timeout: Duration::from_secs(5),
                port_closed_timeout: Duration::from_secs(2),
                anti_entropy_interval: Duration::from_secs(30),
                dead_node_grace: Duration::from_secs(3600),
            },
        }
    }
}

/// How the engine paces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    pub profile: Profile,
    /// Each node probes one member this often, at up to 10 members; the period grows with
    /// log10 of the fleet size, as the suspicion timeouts do (`BO_PROBE_INTERVAL`). Detection
    /// and dissemination take longer in a larger fleet anyway (memberlist's too), so probing
    /// as often at 1,000 members as at 10 would buy a smaller share of the detection time for
    /// the same bytes: scaled, a node's bytes fall as the fleet grows, and detection stays a
    /// fixed share of Serf's.
    pub probe_interval: Duration,
    /// How long a direct probe waits for its ack before asking others to probe
    /// (`BO_PROBE_TIMEOUT`); the rest of the interval is left for the indirect probes.
    pub probe_timeout: Duration,
    /// How long a suspected member that has gone silent has to refute before it is declared
    /// dead, at up to 10 members; it grows with log10 of the fleet size, as memberlist's does
    /// (`BO_SUSPECT_TIMEOUT`). Silence is what a frozen or starved process looks like as much
    /// as a crashed one: 3 s lets a process stopped for 3 s come back alive.
    pub suspect_timeout: Duration,
    /// The same for a suspect whose host answered that nothing listens on its port (ICMP port
    /// unreachable: the process is gone), at most `suspect_timeout`
    /// (`BO_PORT_CLOSED_TIMEOUT`). A frozen process's socket stays open, so this never
    /// shortens a pause's suspicion, and a crash is told in about a third of the time.
    pub port_closed_timeout: Duration,
    /// How often a node compares its records with one random member (`BO_ANTI_ENTROPY_INTERVAL`).
    pub anti_entropy_interval: Duration,
    /// How long a dead or left member stays listed before it is forgotten (`BO_DEAD_NODE_GRACE`).
    pub dead_node_grace: Duration,
}

impl Default for Timings {
    fn default() -> Timings {
        Profile::Lan.timings()
    }
}

/// The fewest times an update is piggybacked, whatever the fleet size foca knows of when it is
/// queued (see `Timings::foca_config`).
pub const MIN_TRANSMISSIONS: u8 = 8;

/// The largest plaintext of one membership datagram: the sealed datagram stays within 1,200
/// bytes (a path MTU with room for IP and UDP headers), and the seal and kind byte take the
/// rest.
pub const MAX_PLAINTEXT: usize = crate::seal::MAX_PLAINTEXT;

impl Timings {
    /// How much a fleet of `members` scales the suspicion timeouts: x1 up to 10, x2 at 100,
    /// x3 at 1,000.
    fn fleet_scale(members: usize) -> f64 {
        (members.max(1) as f64).log10().max(1.0)
    }

    /// The probe period in a fleet of `members`: x1 up to 10, x2 at 100, x3 at 1,000.
    pub fn probe_interval_for(&self, members: usize) -> Duration {
        self.probe_interval.mul_f64(Self::fleet_scale(members))
    }

    /// How often foca gossips the updates it has to tell (its periodic gossip: 200 ms LAN,
    /// 500 ms WAN), if it does.
    pub fn gossip_interval(&self) -> Option<Duration> {
        self.foca_config(1).periodic_gossip.map(|g| g.frequency)
    }

    /// The suspicion timeout of a silent suspect in a fleet of `members`.
    pub fn suspect_timeout_for(&self, members: usize) -> Duration {
        self.suspect_timeout.mul_f64(Self::fleet_scale(members))
    }

    /// The suspicion timeout of a suspect whose port is closed, in a fleet of `members`.
    pub fn port_closed_timeout_for(&self, members: usize) -> Duration {
        self.port_closed_timeout
            .min(self.suspect_timeout)
            .mul_f64(Self::fleet_scale(members))
    }

    /// How long foca remembers a down identity: long enough for the news to have spread
    /// (its broadcasts are spent long before), short enough for a partition to heal soon.
    pub fn forget_down_after(&self, members: usize) -> Duration {
        (self.port_closed_timeout_for(members) * 3)
            .max(Duration::from_secs(10))
            .min(self.dead_node_grace)
    }

    /// foca's configuration for a fleet of `members`, with our timings.
    pub fn foca_config(&self, members: usize) -> foca::Config {
        let size =
            NonZeroU32::new(members.clamp(1, u32::MAX as usize) as u32).unwrap_or(NonZeroU32::MIN);
        let mut config = match self.profile {
            Profile::Lan => foca::Config::new_lan(size),
            Profile::Wan => foca::Config::new_wan(size),
        };
        // foca refuses a new probe period once it runs (`Foca::set_config`), so its period is
        // the base one, and the engine holds each probe round back for the rest of
        // `probe_interval_for(members)` (`Collect::submit_after`).
        config.probe_period = self.probe_interval;
        config.probe_rtt = self.probe_timeout;
        // foca's timer is the shorter one; a silent suspect is given the rest of its time by
        // the engine (`Engine::suspicion_verdict`).
        config.suspect_to_down_after = self.port_closed_timeout_for(members);
        // foca forgets a down identity soon (SHOW NODES keeps listing it for
        // `dead_node_grace` from the engine's own tombstones): SWIM never takes a down
        // identity back, so a node cut off by a partition is taken in again, under the same
        // identity, only once it has been forgotten.
        config.remove_down_after = Some(self.forget_down_after(members));
        // foca fixes an update's retransmissions when it is queued, from the fleet size it
        // knows then, and 4 x log10(N + 1) is only 4 at N = 10: an epidemic with 4 tellings
        // misses a node now and then, which then learns of a crash only by probing the dead
        // node itself (13.9 s instead of 7 s at N = 10 in one compare run), and early in a cold
        // start every node knows only a few members. A floor keeps every update told enough.
        let floor = NonZeroU8::new(MIN_TRANSMISSIONS).unwrap_or(NonZeroU8::MIN);
        config.max_transmissions = config.max_transmissions.max(floor);
        // One byte of the plaintext is our kind tag.
        config.max_packet_size = NonZeroUsize::new(MAX_PLAINTEXT - 1).unwrap_or(NonZeroUsize::MIN);
        // foca's periodic announce (one random member every 30 s, answered with a feed of
        // about 24 members, a full 1.2 KB datagram) was 15 % of a steady node's bytes in the
        // simulator (188 B/s sealed at N = 50; 160 B/s without it), and it repairs a missed
        // join only when the feed happens to hold the missing member (24 in N per round).
        // Anti-entropy finds a missed join for certain: the digests differ, the peer's record
        // of the unknown node comes over, and the node knocks on its door (`handle_records`);
        // a forming fleet has its own catch-up, and a healed partition its knocks.
        config.periodic_announce = None;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_grows_with_log_of_fleet_size() {
        let t = Timings::default();
        assert_eq!(t.suspect_timeout_for(3), t.suspect_timeout);
        assert_eq!(t.suspect_timeout_for(100), t.suspect_timeout * 2);
        let config = t.foca_config(1000);
        assert_eq!(config.suspect_to_down_after, t.port_closed_timeout * 3);
        assert!(config.probe_rtt < config.probe_period);
    }

    #[test]
    fn the_probe_period_grows_with_log_of_fleet_size() {
        let t = Timings::default();
        assert_eq!(t.probe_interval_for(10), t.probe_interval);
        assert_eq!(t.probe_interval_for(100), t.probe_interval * 2);
        assert_eq!(t.probe_interval_for(1000), t.probe_interval * 3);
    }

    /// foca refuses a config whose probe period or probe timeout differs from the one it
    /// runs with: a config for another fleet size must keep both, or it is not applied at all.
    #[test]
    fn a_config_for_another_fleet_size_is_one_foca_accepts() {
        let t = Timings::default();
        let first = t.foca_config(1);
        for members in [2, 10, 11, 100, 1000, 10_000] {
            let later = t.foca_config(members);
            assert_eq!(later.probe_period, first.probe_period, "{members}");
            assert_eq!(later.probe_rtt, first.probe_rtt, "{members}");
        }
    }

    #[test]
    fn a_closed_port_shortens_the_suspicion_and_never_lengthens_it() {
        let t = Timings::default();
        assert!(t.port_closed_timeout_for(10) < t.suspect_timeout_for(10));
        assert_eq!(t.port_closed_timeout_for(100), t.port_closed_timeout * 2);
        let short = Timings {
            suspect_timeout: Duration::from_millis(600),
            ..Timings::default()
        };
        assert_eq!(short.port_closed_timeout_for(5), Duration::from_millis(600));
    }

    #[test]
    fn profiles_parse() {
        assert_eq!(Profile::parse("WAN"), Some(Profile::Wan));
        assert_eq!(Profile::parse("lan"), Some(Profile::Lan));
        assert_eq!(Profile::parse("moon"), None);
    }
}
