//! The membership engine: foca (SWIM) plus the record store, sans-IO.
//!
//! It never touches a socket, a clock or a global random source: time comes in as `now`
//! (any monotonic origin), datagrams come in as plaintext bytes with their source, and what
//! the engine wants done comes out of [`Engine::take_output`] (datagrams to send, records to
//! pull). A node process drives it from one tokio task (see `driver`); a test or a simulator
//! drives thousands of them on a virtual clock with the same code.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foca::{
    Foca, Identity, Member as FocaMember, Message, OwnedNotification, PostcardCodec, Runtime,
    State, Timer,
};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::claims::{self, Claims};
use super::health::LocalHealth;
use super::id::{self, MemberId, NodeKey};
use super::missing::MissingRecords;
use super::packet::{self, Alive, Digest, Hello, Leaving, Packet, PacketError, Suspected, Taken};
use super::paths::{ReturnPaths, SenderStamp};
use super::record::{
    lock, Record, RecordBroadcasts, RecordStore, RecordUpdate, RecordVersion, INLINE_RECORD_BYTES,
    MAX_RECORD_BYTES,
};
use super::settings::{Timings, MAX_PLAINTEXT};
use super::view::{Member, MemberStatus};

type Swim = Foca<MemberId, PostcardCodec, SmallRng, RecordBroadcasts>;

/// A pull the engine asks its driver to make over QUIC; the answer comes back through
/// [`Engine::handle_versions`] or [`Engine::handle_records`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pull {
    /// Ask `from` for the (node, generation, version) of every record it holds.
    Versions { from: SocketAddr },
    /// Ask `from` for these nodes' records.
    Records {
        from: SocketAddr,
        nodes: Vec<String>,
    },
    /// Ask `from` for the members it holds dead or left (see [`Engine::handle_gone`]).
    Gone { from: SocketAddr },
}

impl Pull {
    /// The member asked.
    pub fn from(&self) -> SocketAddr {
        match self {
            Pull::Versions { from } | Pull::Records { from, .. } | Pull::Gone { from } => *from,
        }
    }
}

/// A member a node holds dead or left (one of its tombstones), as it answers a
/// [`Pull::Gone`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GoneMember {
    pub id: MemberId,
    pub left: bool,
}

/// What the engine wants done after a call.
#[derive(Debug, Default)]
pub struct Output {
    /// Plaintext datagrams (seal them, then send) and where to.
    pub datagrams: Vec<(SocketAddr, Vec<u8>)>,
    pub pulls: Vec<Pull>,
}

impl Output {
    /// Plaintext bytes of the datagrams to send.
    pub fn datagram_bytes(&self) -> usize {
        self.datagrams.iter().map(|(_, d)| d.len()).sum()
    }
}

/// What a joining node gets from the member it joins through.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinView {
    /// The member answering (so the joiner can announce itself to it).
    pub seed: MemberId,
    /// Every member the seed holds alive.
    pub members: Vec<MemberId>,
    pub records: Vec<RecordUpdate>,
}

/// Why a record change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("this node's advertisement would take {size} bytes, over the limit of {limit} bytes (too many or too long database names)")]
    TooLarge { size: usize, limit: usize },
}

/// Counters, by packet kind: what a node sent and received, and what it refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EngineStats {
    pub swim_out: u64,
    pub swim_in: u64,
    pub leaving_out: u64,
    pub leaving_in: u64,
    /// Goodbyes passed on, from a leaver that did not know every member this node knows
    /// (see `Engine::pass_goodbye_on`); counted in `leaving_out` too.
    pub goodbyes_passed_on: u64,
    pub digest_out: u64,
    pub digest_in: u64,
    pub suspected_out: u64,
    pub suspected_in: u64,
    pub alive_out: u64,
    pub alive_in: u64,
    pub hello_out: u64,
    pub hello_in: u64,
    /// Plaintext bytes out and in (the seal adds its overhead on top).
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// Datagrams that did not decode, or that foca refused.
    pub refused: u64,
    /// Answers dropped because they were bigger than what an unknown source sent.
    pub amplification_dropped: u64,
    /// Suspicions given more time because this node itself was slow, or still heard from
    /// the suspect.
    pub suspicions_deferred: u64,
    /// Suspicions that ran out while this node heard no member at all (see
    /// `DEAF_PATIENCE`), looked at again a probe interval later.
    pub deaf_deferrals: u64,
    /// Last asks: suspects asked once more, one probe timeout before their suspicion would
    /// have ended (see `Engine::suspicion_verdict`).
    pub suspects_asked: u64,
    /// Times this node found itself declared dead and rejoined under a renewed identity.
    pub rejoins: u64,
    /// Members this node still held alive that a peer held dead or left: news this node
    /// missed, found by anti-entropy (see [`Engine::handle_gone`]).
    pub missed_news_repaired: u64,
    /// Record pulls asked: batches from a peer (see [`super::missing`]), and single records
    /// from the member itself; anti-entropy's versions and records pulls, and pulls for
    /// the members a peer holds gone.
    pub record_batches: u64,
    pub owner_pulls: u64,
    pub anti_entropy_pulls: u64,
    /// Word from a peer's host that nothing listens on the port this node sent to (a member's
    /// or not; see [`Engine::handle_port_closed`]), and the live members suspected because
    /// of it.
    pub ports_closed: u64,
    pub suspected_on_closed_port: u64,
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    timer: Timer<MemberId>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// foca's [`Runtime`] for one call: collects what foca wants done.
struct Collect<'a> {
    now: Duration,
    /// foca's suspect-to-down timers are handed back this much early: the engine asks the
    /// suspect itself once more before it lets the suspicion end (see
    /// `Engine::suspicion_verdict`).
    ask_ahead: Duration,
    /// foca's probe rounds are held back this much: its period is the base
    /// `probe_interval`, which it cannot change while it runs, and a larger fleet probes less
    /// often (`Timings::probe_interval_for`).
    probe_stretch: Duration,
    timers: &'a mut BinaryHeap<Reverse<Scheduled>>,
    seq: &'a mut u64,
    datagrams: &'a mut Vec<(SocketAddr, Vec<u8>)>,
    notes: &'a mut Vec<OwnedNotification<MemberId>>,
    /// foca's current timer token (it keeps it to itself), as seen on its probe timer.
    timer_token: &'a mut foca::TimerToken,
}

impl Runtime<MemberId> for Collect<'_> {
    fn notify(&mut self, notification: foca::Notification<'_, MemberId>) {
        self.notes.push(notification.to_owned());
    }

    fn send_to(&mut self, to: MemberId, data: &[u8]) {
        self.datagrams
            .push((to.endpoint, packet::encode_swim(data)));
    }

    fn submit_after(&mut self, timer: Timer<MemberId>, after: Duration) {
        if let Timer::ProbeRandomMember(token) = timer {
            *self.timer_token = token;
        }
        let after = match timer {
            Timer::ChangeSuspectToDown { .. } => after.saturating_sub(self.ask_ahead),
            Timer::ProbeRandomMember(_) => after + self.probe_stretch,
            _ => after,
        };
        *self.seq += 1;
        self.timers.push(Reverse(Scheduled {
            at: self.now + after,
            seq: *self.seq,
            timer,
        }));
    }
}

/// A member foca declared down (or that left), kept for SHOW NODES after foca itself has
/// forgotten it. foca forgets down identities soon (see `Timings::foca_config`): a down
/// identity is terminal in SWIM, so a node that comes back from a partition under the same
/// identity is only taken in again once it has been forgotten.
#[derive(Debug, Clone)]
struct Tombstone {
    id: MemberId,
    left: bool,
    since: Duration,
}

/// How long an address we join through counts as a known source.
const EXPECT_FOR: Duration = Duration::from_secs(10);

/// How often a node knocks on one dead member's door (see `knock_on_a_dead_member`).
const KNOCK_EVERY: Duration = Duration::from_secs(2);

/// For this long after a member went down, knocks come every [`KNOCK_EVERY`]; then every
/// [`KNOCK_SELDOM_EVERY`] (see `Engine::knock_spacing`).
const KNOCK_OFTEN_FOR: Duration = Duration::from_secs(60);

/// How often a node knocks once every gone member went down long ago (Serf tries to reconnect
/// to a failed member every 30 s).
const KNOCK_SELDOM_EVERY: Duration = Duration::from_secs(30);

/// After this node's member list last grew, for this many probe periods it asks one random
/// member per period for its members (a foca announce, answered with a feed): while a fleet
/// forms, joins crowd the piggyback space and an epidemic misses a few pairs, which the probes
/// alone would find only after many periods. A feed holds about 24 random members, so the tail
/// of a big fleet takes more asks: at 5 periods, a simulated fleet of 200 formed only when
/// foca's own periodic announce came, after 30 s; at 15, in 8-10 s (3 seeds; 100 nodes: 4.2 s
/// either way). A steady fleet sends none of these.
const CATCH_UP_PERIODS: u32 = 15;

/// While a node catches up (see [`CATCH_UP_PERIODS`]), its anti-entropy rounds come this many
/// probe periods apart instead of `anti_entropy_interval`: a feed holds random members, so the
/// last few a node misses in a big forming fleet were found only by the first anti-entropy
/// round, 10 s after the start (a simulated fleet of 200, and 100 processes, formed in 10.2 s
/// every time; a round finds every member whose record this node lacks).
const CATCH_UP_ANTI_ENTROPY_PERIODS: u32 = 3;

/// For this long after its start, a node that catches up asks every gossip tick rather than
/// every probe period (see [`CATCH_UP_PERIODS`]). Its first ask goes out as it joins, when
/// the members that start with it are not known yet; the second, a probe period later, was
/// what the last few pairs of a forming fleet waited for (a simulated fleet of 50 started
/// within 200 ms, one seed: all saw all after 1.2 s in 2 of 20 seeds, the rest within
/// 0.65 s; asking every tick, within 0.39 s in all 20). A node asks about ten more times in
/// its life, once.
const QUICK_CATCH_UP: Duration = Duration::from_secs(2);

/// How long after its start a node counts as joining a forming fleet (see [`CATCH_UP_PERIODS`]).
const FORMING: Duration = Duration::from_secs(30);

/// A suspect we keep hearing from is given another suspicion timeout at most this many times.
const MAX_HEARD_EXTENSIONS: u32 = 3;

/// For this long after a member came back from `dead` (a partition healed, or it restarted),
/// a suspicion of it waits at least three of the short (port closed) suspicion timeouts: the
/// paths to it may still be settling (after a network is reconnected, one direction can work
/// seconds before the other), and a short suspicion would send it straight back to `dead`.
/// Unless its port is closed: then its process is gone, whatever the paths do.
const RETURN_WINDOW: Duration = Duration::from_secs(30);

/// How many suspicion timeouts a member back lately gets (see [`RETURN_WINDOW`]), and how far
/// back hearing from it counts.
const RETURNED_SCALE: u32 = 3;

/// What this node did about one suspicion (of one member at one incarnation) before letting
/// it turn into `dead`.
#[derive(Debug, Clone, Copy)]
struct Suspicion {
    /// When this node first acted on it (for pruning).
    since: Duration,
    /// Times it was given more time (see [`Engine::suspicion_verdict`]).
    extensions: u32,
    /// When this node asked the suspect itself for the last time before declaring it down
    /// (see [`Verdict::Ask`]).
    last_ask_at: Option<Duration>,
    /// Until when it was given the rest of a longer suspicion (silence, or a member back
    /// lately) beyond foca's shorter timer (see [`Engine::suspicion_verdict`]). foca starts
    /// a timer for every failed probe of a suspect, so one suspicion may see several: each
    /// waits for this same end.
    lengthened_until: Option<Duration>,
}

/// What to do with a suspicion whose time ran out here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Give it this much more time (and tell the suspect again).
    Extend(Duration),
    /// Give it the rest of its longer timeout (and tell the suspect again).
    Lengthen(Duration),
    /// This node has not asked the suspect itself lately: ask, and wait one probe timeout.
    Ask,
    /// This node asked a moment ago, or gave it a longer time: wait this much longer.
    AwaitAnswer(Duration),
    /// This node hears no member at all lately (see [`DEAF_PATIENCE`]): look again after
    /// this long.
    HearNoOne(Duration),
    /// Declare it down.
    Down,
}

/// For this long after this node last heard any member, while it knows at least
/// [`DEAF_WITNESSES`] live members besides a suspect, a suspicion running out here waits (one
/// probe interval at a time) instead of turning into `dead`: when every member has gone
/// silent at once, the likelier fault is this node's own inbound path (Lifeguard's reasoning;
/// memberlist's deaf node waits up to 9 probe intervals and 6 suspicion timeouts). A deaf
/// node declared a live peer dead every 2 s, and its outbound declarations made healthy
/// nodes list them dead too (soak seeds 31 and 100 at N = 10: 11-13 false positives from 2-3
/// nodes deaf for 11-15 s). Past this, a node cut off from everyone lists them dead once its
/// health score's patience (up to `health::MAX_SCORE` probe intervals more) has run out too:
/// about 20 s after the cut with the LAN timings.
const DEAF_PATIENCE: Duration = Duration::from_secs(10);

/// How many other live members must have gone silent together for this node to doubt its own
/// ears (see [`DEAF_PATIENCE`]); with fewer, silence is what their crash looks like.
const DEAF_WITNESSES: usize = 2;

/// A later holder of this node's id is asked this many times to show it runs before its
/// claim is taken for stale gossip (see [`Engine::own_id_claimed`]).
const CLAIM_ASKS: u32 = 3;

/// A later holder of this node's id that was asked to show that it runs.
#[derive(Debug, Clone)]
struct ClaimCheck {
    claimant: MemberId,
    incarnation: u16,
    asked_at: Duration,
    asks: u32,
}

/// At most this many nodes never heard of are knocked on per records answer (see
/// `Engine::strangers_in`).
const MAX_STRANGERS: usize = 4;

/// Up to this many records, a pull's endpoints are found by scanning (see `records_for`).
const FEW_RECORDS: usize = 8;

/// How long a record pull may be outstanding before it is asked again.
const PULL_RETRY: Duration = Duration::from_secs(5);

/// A goodbye that must be passed on goes to this many members from each node that takes
/// it as news: the fan-out of foca's own gossip, enough for news to reach everyone.
const GOODBYE_FANOUT: usize = 3;

/// Goodbyes of node ids this node has not heard of at all are kept (until the next prune)
/// only while there are fewer than this many more of them than members: a join and a
/// goodbye that crossed each other, not a flood.
const EARLY_GOODBYES: usize = 64;

/// How many times news may be gossiped at once within one gossip tick (see
/// [`Engine::spread_news`]). A seed takes a fleet's joins within milliseconds of each other,
/// and every node hears of them as fast: with one gossip per tick, every join after the
/// first waited up to a tick at each hop (a simulated fleet of 50 started within 200 ms, one
/// seed: all saw all in a median 1.22 s over 20 seeds; 0.35 s at 16 per tick, 0.21 s with no
/// limit). The limit bounds what a storm of news (a big fleet forming, churn) costs a node
/// per tick, while the updates themselves are told no more often: only sooner.
const NEWS_GOSSIPS_PER_TICK: u32 = 16;

/// How long news waits before it is gossiped (see [`Engine::spread_news`]), gathering what
/// comes meanwhile into the same gossip. Told the moment it arrived, one join set off a burst
/// across the whole fleet within a millisecond or two (every node that heard it told it on at
/// once): on a 2-core machine running 50 nodes, that burst held the master's own answers up
/// (ADD CLIENT 10 ms instead of 2), and during churn every update went out in datagrams of
/// its own. Ten milliseconds a hop is still far below a gossip tick.
const NEWS_GATHER: Duration = Duration::from_millis(10);

pub struct Engine {
    swim: Swim,
    store: Arc<Mutex<RecordStore>>,
    own: Record,
    timings: Timings,
    timers: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    now: Duration,
    out: Output,
    notes: Vec<OwnedNotification<MemberId>>,
    /// Node id -> the generation that said it is leaving.
    left: HashMap<String, u64>,
    /// Members that went down, by node id (see [`Tombstone`]).
    tombstones: HashMap<String, Tombstone>,
    /// Addresses we are joining through (over QUIC, so they proved who they are), until
    /// when: their first datagrams are answered in full, before the join's answer is in.
    expected: HashMap<SocketAddr, Duration>,
    health: LocalHealth,
    /// Suspicions this node acted on, by (node id, incarnation).
    suspicions: HashMap<(String, u16), Suspicion>,
    /// Members that came back from `dead` lately, and when (see [`RETURN_WINDOW`]).
    returned: HashMap<String, Duration>,
    /// Senders told our current identity because they addressed an older one, and when (see
    /// [`Engine::answer_an_older_identity`]).
    told_current: HashMap<SocketAddr, Duration>,
    /// See [`Engine::rebuild_member_endpoints`].
    member_endpoints: HashSet<SocketAddr>,
    /// When a datagram last came from each member endpoint (see `suspicion_extension`).
    last_heard: HashMap<SocketAddr, Duration>,
    /// When a datagram last came from any member (see [`DEAF_PATIENCE`]).
    last_heard_anyone: Duration,
    /// foca's timer token, for the suspicions this node times itself (see
    /// [`Engine::handle_gone`]).
    timer_token: foca::TimerToken,
    /// Member addresses whose host said nothing listens there, and when (see
    /// [`Engine::handle_port_closed`]); cleared when the address is heard from again.
    port_closed: HashMap<SocketAddr, Duration>,
    /// Members heard from other addresses than their advertised endpoints (see [`paths`]).
    ///
    /// [`paths`]: super::paths
    paths: ReturnPaths,
    rng: SmallRng,
    next_anti_entropy: Duration,
    next_knock: Duration,
    /// Until when this node asks for members after its list grew (see [`CATCH_UP_PERIODS`]).
    catch_up_until: Duration,
    next_catch_up: Duration,
    /// When the current gossip tick's allowance of news gossips ends, and how many of them
    /// were spent in it (see [`Engine::spread_news`]).
    news_tick_ends: Duration,
    news_gossips_in_tick: u32,
    /// When the news gathered since it was first heard is gossiped (see [`NEWS_GATHER`]).
    news_due: Option<Duration>,
    /// News (a member up or down here, or a record update new here: ours, or one foca's
    /// handler took as news) that has not been gossiped at once yet (see
    /// [`Engine::spread_news`]).
    news_waiting: bool,
    /// Set while a datagram is handled, until its source is known to be a member: news that
    /// datagram brought waits for the next call, since what an unknown source makes this
    /// node send is capped at what it sent (see [`Engine::limit_answers`]), and news
    /// gossiped now would be dropped there, its turn and its tellings spent.
    holding_news: bool,
    /// When this engine started.
    started: Duration,
    /// Record pulls in flight, by address, and when they were asked.
    pulls_in_flight: HashMap<SocketAddr, Duration>,
    /// Members that came up without their record (see [`super::missing`]).
    missing: MissingRecords,
    /// The member last asked for them (see [`Engine::record_source`]).
    record_source: Option<MemberId>,
    /// The fleet size foca's configuration was last made for.
    configured_for: usize,
    /// A claim on this node's id being checked (see [`Engine::own_id_claimed`]).
    claim_check: Option<ClaimCheck>,
    /// Set once a later process holding this node's id answered: this node handed its peers
    /// over to it and must stop (without a goodbye: the id lives on there).
    lost_id_to: Option<MemberId>,
    /// Other holders of this node's id already logged, so each is logged once.
    claims_logged: HashSet<MemberId>,
    changed: bool,
    leaving: bool,
    stats: EngineStats,
}

impl Engine {
    /// A new engine for `id`, advertising `record` (its version is set here), with its
    /// randomness from `seed` (a simulator passes a seed per node; a node a random one).
    pub fn new(
        id: MemberId,
        mut record: Record,
        timings: Timings,
        seed: u64,
        now: Duration,
    ) -> Engine {
        let store = Arc::new(Mutex::new(RecordStore::default()));
        let handler = RecordBroadcasts {
            store: store.clone(),
        };
        let swim = Foca::with_custom_broadcast(
            id,
            timings.foca_config(1),
            SmallRng::seed_from_u64(seed),
            PostcardCodec,
            handler,
        );
        record.version = 1;
        let mut engine = Engine {
            swim,
            store,
            own: record,
            next_anti_entropy: now + timings.anti_entropy_interval,
            next_knock: now + KNOCK_EVERY,
            catch_up_until: Duration::ZERO,
            next_catch_up: Duration::ZERO,
            news_tick_ends: Duration::ZERO,
            news_gossips_in_tick: 0,
            news_due: None,
            news_waiting: false,
            holding_news: false,
            started: now,
            timings,
            timers: BinaryHeap::new(),
            seq: 0,
            now,
            out: Output::default(),
            notes: Vec::new(),
            left: HashMap::new(),
            tombstones: HashMap::new(),
            expected: HashMap::new(),
            health: LocalHealth::default(),
            suspicions: HashMap::new(),
            returned: HashMap::new(),
            told_current: HashMap::new(),
            last_heard: HashMap::new(),
            last_heard_anyone: now,
            port_closed: HashMap::new(),
            timer_token: 0,
            paths: ReturnPaths::default(),
            member_endpoints: HashSet::new(),
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed_5eed_5eed_5eed),
            pulls_in_flight: HashMap::new(),
            missing: MissingRecords::default(),
            record_source: None,
            configured_for: 1,
            claim_check: None,
            lost_id_to: None,
            claims_logged: HashSet::new(),
            changed: true,
            leaving: false,
            stats: EngineStats::default(),
        };
        engine.publish_own_record();
        engine
    }

    pub fn id(&self) -> &MemberId {
        self.swim.identity()
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn health_score(&self) -> u32 {
        self.health.score()
    }

    /// This node's own record.
    pub fn own_record(&self) -> &Record {
        &self.own
    }

    /// Members foca holds active (alive or suspect), this node excluded.
    pub fn active_members(&self) -> usize {
        self.swim.num_members()
    }

    /// Takes what the engine wants done since the last call. Datagrams go to where each
    /// member is reached (see [`Engine::route`]).
    pub fn take_output(&mut self) -> Output {
        let mut out = std::mem::take(&mut self.out);
        for (to, bytes) in &mut out.datagrams {
            *to = self.paths.route(*to, self.now);
            self.stats.bytes_out += bytes.len() as u64;
            if packet::is_swim(bytes) {
                self.stats.swim_out += 1;
            }
        }
        out
    }

    /// Where the member advertised at `endpoint` is reached now: the address it was last
    /// heard from, lately, if not its endpoint (see [`super::paths`]). Record pulls dial
    /// this.
    pub fn route(&self, endpoint: SocketAddr) -> SocketAddr {
        self.paths.route(endpoint, self.now)
    }

    /// Whether the member list may have changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        let records = lock(&self.store).take_changed();
        std::mem::take(&mut self.changed) | records
    }

    /// When [`Engine::advance`] next has something to do.
    pub fn next_deadline(&self) -> Duration {
        let mut periodic = self.next_anti_entropy.min(self.next_knock);
        if let Some(check) = &self.claim_check {
            periodic = periodic.min(check.asked_at + self.timings.probe_timeout);
        }
        if let Some(due) = self.missing.due_at() {
            periodic = periodic.min(due);
        }
        if self.now < self.catch_up_until {
            periodic = periodic.min(self.next_catch_up.min(self.catch_up_until));
        }
        if let Some(due) = self.news_due {
            periodic = periodic.min(due);
        }
        let timer = self.timers.peek().map(|Reverse(s)| s.at);
        timer.map_or(periodic, |t| t.min(periodic))
    }

    fn runtime(&mut self) -> (&mut Swim, Collect<'_>) {
        let probe_stretch = self
            .probe_period()
            .saturating_sub(self.timings.probe_interval);
        (
            &mut self.swim,
            Collect {
                now: self.now,
                ask_ahead: self.timings.probe_timeout,
                probe_stretch,
                timers: &mut self.timers,
                seq: &mut self.seq,
                datagrams: &mut self.out.datagrams,
                notes: &mut self.notes,
                timer_token: &mut self.timer_token,
            },
        )
    }

    fn set_now(&mut self, now: Duration) {
        // A clock that goes backwards (it should not) is held where it was.
        self.now = self.now.max(now);
    }

    /// Fires every timer due at `now`, and anti-entropy when its turn comes.
    pub fn advance(&mut self, now: Duration) {
        self.set_now(now);
        while let Some(Reverse(next)) = self.timers.peek() {
            if next.at > self.now {
                break;
            }
            let Some(Reverse(due)) = self.timers.pop() else {
                break;
            };
            let lateness = self.now.saturating_sub(due.at);
            self.health
                .timer_fired_late(self.now, lateness, self.timings.probe_timeout / 2);
            self.fire(due.timer);
        }
        self.check_claim();
        if self.now >= self.next_knock {
            self.next_knock = self.now + self.knock_spacing();
            self.knock_on_a_dead_member();
        }
        if self.now < self.catch_up_until && self.now >= self.next_catch_up {
            self.next_catch_up = self.now + self.catch_up_spacing();
            self.catch_up();
        }
        if self.now >= self.next_anti_entropy {
            self.next_anti_entropy = self.now + self.anti_entropy_spacing();
            self.anti_entropy_round();
        }
        if self.news_due.is_some_and(|due| self.now >= due) {
            self.news_due = None;
            self.spread_news();
        }
        self.ask_missing_records();
        self.ask_wanted_records();
        self.after_call();
    }

    fn fire(&mut self, timer: Timer<MemberId>) {
        let refuted = match &timer {
            Timer::ChangeSuspectToDown {
                member_id,
                incarnation,
                ..
            } => self
                .swim
                .iter_membership_state()
                .find(|m| m.id() == member_id)
                .filter(|m| m.incarnation() != *incarnation && m.state() != State::Down)
                .map(|m| m.id().endpoint),
            _ => None,
        };
        if let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = &timer
        {
            let key = (member_id.node_id.clone(), *incarnation);
            if refuted.is_some() {
                self.suspicions.remove(&key);
            } else {
                let member = member_id.clone();
                let wait = match self.suspicion_verdict(&member, &key) {
                    Verdict::Down => {
                        self.suspicions.remove(&key);
                        None
                    }
                    Verdict::Extend(wait) => {
                        self.stats.suspicions_deferred += 1;
                        self.suspicion_mut(&key).extensions += 1;
                        Some(wait)
                    }
                    Verdict::Lengthen(wait) => {
                        let until = self.now + wait;
                        self.suspicion_mut(&key).lengthened_until = Some(until);
                        Some(wait)
                    }
                    Verdict::Ask => {
                        self.stats.suspects_asked += 1;
                        self.suspicion_mut(&key).last_ask_at = Some(self.now);
                        Some(self.timings.probe_timeout)
                    }
                    Verdict::AwaitAnswer(wait) => {
                        self.schedule(wait, timer);
                        return;
                    }
                    Verdict::HearNoOne(wait) => {
                        self.stats.deaf_deferrals += 1;
                        self.schedule(wait, timer);
                        return;
                    }
                };
                if let Some(wait) = wait {
                    self.schedule(wait, timer);
                    // Ask it (again): its answer, or its refutation, is what ends the
                    // suspicion.
                    self.tell_suspect(&member);
                    return;
                }
            }
        }
        let queued = self.out.datagrams.len();
        let (swim, mut rt) = self.runtime();
        if let Err(e) = swim.handle_timer(timer, &mut rt) {
            tracing::debug!(error = %e, "membership timer");
        }
        // foca 2.0.0 sends its "you are down" courtesy even when the suspicion was refuted
        // (and nothing was declared down): the refuter would renew its identity for nothing.
        if let Some(endpoint) = refuted {
            let mut i = queued;
            while i < self.out.datagrams.len() {
                if self.out.datagrams[i].0 == endpoint {
                    self.out.datagrams.remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }

    fn schedule(&mut self, after: Duration, timer: Timer<MemberId>) {
        self.seq += 1;
        self.timers.push(Reverse(Scheduled {
            at: self.now + after,
            seq: self.seq,
            timer,
        }));
    }

    fn suspicion_mut(&mut self, key: &(String, u16)) -> &mut Suspicion {
        let now = self.now;
        self.suspicions.entry(key.clone()).or_insert(Suspicion {
            since: now,
            extensions: 0,
            last_ask_at: None,
            lengthened_until: None,
        })
    }

    /// What becomes of a suspicion of `member` whose time ran out here.
    ///
    /// - This node is slow itself (local health): the suspect gets the time it may have lost
    ///   here, once.
    /// - foca's timer is the short one, for a suspect whose port is closed (its process is
    ///   gone; see [`Engine::handle_port_closed`]). A silent suspect gets the rest of the
    ///   longer `suspect_timeout`, once: a frozen or starved process is silent too.
    /// - The suspect came back from `dead` lately: at least three short timeouts, and hearing
    ///   from it within that counts (see [`RETURN_WINDOW`]).
    /// - We heard from the suspect itself within the suspicion: it is alive and only some
    ///   path to it lossy, and its refutation is on its way (a crashed node sends nothing, so
    ///   this never delays a real failure), up to [`MAX_HEARD_EXTENSIONS`] times. Heard before
    ///   its port was found closed does not count: a node killed just after a datagram of it
    ///   arrived took two short timeouts instead of one (2.2 s against 1.1-1.3 s at N = 10, in
    ///   2 of 3 compare runs).
    /// - The last ask: the suspecter asked the suspect itself when its probe failed; foca's
    ///   timer is handed to us one probe timeout early (see [`Collect`]), and the suspect is
    ///   asked once more then, so a live suspect whose answers were lost for a moment answers
    ///   that one. It answers in one round trip, wherever the gossip of its refutation has
    ///   got to, which is what lets the suspicion be short. Less than one probe timeout after
    ///   that ask, the answer may still come: wait for it.
    /// - Otherwise (asked a last time, and no answer): down.
    fn suspicion_verdict(&self, member: &MemberId, key: &(String, u16)) -> Verdict {
        if self.hears_no_one() {
            return Verdict::HearNoOne(self.probe_period());
        }
        let suspicion = self.suspicions.get(key);
        let extensions = suspicion.map_or(0, |s| s.extensions);
        let patience = self.health.patience(self.now, self.probe_period());
        if extensions == 0 && !patience.is_zero() {
            return Verdict::Extend(patience);
        }
        let returned_lately = self
            .returned
            .get(&member.node_id)
            .is_some_and(|at| self.now.saturating_sub(*at) < RETURN_WINDOW);
        // A member back lately is judged on the scale of three short timeouts throughout; the
        // silent timeout is about that long already, and is not stretched further. A closed
        // port is no path still settling: its process is gone.
        let port_closed = self.port_closed_lately(member);
        let scale = if returned_lately && !port_closed {
            RETURNED_SCALE
        } else {
            1
        };
        let window = if port_closed {
            self.short_suspicion_window()
        } else {
            self.suspicion_window()
                .max(self.short_suspicion_window() * scale)
        };
        match suspicion.and_then(|s| s.lengthened_until) {
            None if window > self.short_suspicion_window() => {
                return Verdict::Lengthen(window - self.short_suspicion_window());
            }
            Some(until) if self.now < until => {
                return Verdict::AwaitAnswer(until - self.now);
            }
            _ => {}
        }
        // Heard from near the end of its time (not before a lengthened suspicion began), and
        // since its port was found closed: what it sent before its process ended says nothing.
        let recent = self.short_suspicion_window() * scale;
        let closed_at = self.port_closed_at(member);
        let heard_lately = self.last_heard.get(&member.endpoint).is_some_and(|at| {
            self.now.saturating_sub(*at) <= recent && closed_at.is_none_or(|closed| *at > closed)
        });
        if heard_lately && extensions < MAX_HEARD_EXTENSIONS {
            return Verdict::Extend(recent);
        }
        let ask_wait = self.timings.probe_timeout;
        match suspicion.and_then(|s| s.last_ask_at) {
            Some(at) if self.now.saturating_sub(at) < ask_wait => {
                Verdict::AwaitAnswer(ask_wait - self.now.saturating_sub(at))
            }
            // Asked, and waited (an extension since then asks again).
            Some(at) if self.now.saturating_sub(at) <= ask_wait * 2 => Verdict::Down,
            _ => Verdict::Ask,
        }
    }

    /// Whether every member has been silent here for two probe intervals, but not yet for
    /// [`DEAF_PATIENCE`], while enough of them are listed alive to be heard from.
    fn hears_no_one(&self) -> bool {
        let silence = self.now.saturating_sub(self.last_heard_anyone);
        // The suspect is one of the active members.
        self.swim.num_members() > DEAF_WITNESSES
            && silence >= self.probe_period() * 2
            && silence < DEAF_PATIENCE
    }

    /// How often this node probes at the fleet size it knows now (foca's probe period).
    fn probe_period(&self) -> Duration {
        self.timings.probe_interval_for(self.swim.num_members() + 1)
    }

    /// The suspicion timeout of a silent suspect at the fleet size this node knows now.
    fn suspicion_window(&self) -> Duration {
        self.timings
            .suspect_timeout_for(self.swim.num_members() + 1)
    }

    /// The suspicion timeout of a suspect whose port is closed (foca's own timer).
    fn short_suspicion_window(&self) -> Duration {
        self.timings
            .port_closed_timeout_for(self.swim.num_members() + 1)
    }

    /// Whether `member`'s host said lately that nothing listens on its port, and it has not
    /// been heard from since.
    fn port_closed_lately(&self, member: &MemberId) -> bool {
        let window = self.suspicion_window() * RETURNED_SCALE;
        self.port_closed_at(member)
            .is_some_and(|at| self.now.saturating_sub(at) <= window)
    }

    /// When `member`'s port (at its endpoint or the path it is answered on) was last found
    /// closed, if it has not been heard from there since.
    fn port_closed_at(&self, member: &MemberId) -> Option<Duration> {
        [member.endpoint, self.paths.route(member.endpoint, self.now)]
            .iter()
            .filter_map(|addr| self.port_closed.get(addr).copied())
            .max()
    }

    /// Something this node sent to `addr` was answered by its host with "port unreachable"
    /// (see `transport::closed_ports`): the process of the member reached there is gone. A
    /// live member there is suspected at once (its probe would fail a whole period later),
    /// and its suspicion runs the short `port_closed_timeout` instead of the silent one. A
    /// running process's socket never gets this answer, so a frozen, starved or cut-off
    /// member keeps the longer timeout; a forged answer only starts a suspicion, which the
    /// live member refutes when asked.
    pub fn handle_port_closed(&mut self, now: Duration, addr: SocketAddr) {
        self.set_now(now);
        self.stats.ports_closed += 1;
        let found = self
            .swim
            .iter_members()
            .find(|m| {
                m.id().endpoint == addr || self.paths.route(m.id().endpoint, self.now) == addr
            })
            .map(|m| (m.id().clone(), m.incarnation(), m.state()));
        let Some((member, incarnation, state)) = found else {
            return;
        };
        self.port_closed.insert(addr, self.now);
        if state == State::Alive {
            self.stats.suspected_on_closed_port += 1;
            tracing::debug!(member = ?member, "its port is closed: suspecting it");
            self.suspect_here(&member, incarnation);
        }
        self.after_call();
    }

    /// Takes in a suspicion of `member` as gossip brings one: held suspect, with no timeout
    /// here (for tests of what repairs a death missed after it).
    #[cfg(test)]
    pub(crate) fn hear_suspicion(&mut self, now: Duration, member: &MemberId) {
        self.set_now(now);
        let Some(incarnation) = self
            .swim
            .iter_members()
            .find(|m| m.id() == member)
            .map(|m| m.incarnation())
        else {
            return;
        };
        self.hold_suspect(member, incarnation);
        self.after_call();
    }

    /// Holds `member` suspect at `incarnation`, as a suspicion gossip brings: no timeout.
    fn hold_suspect(&mut self, member: &MemberId, incarnation: u16) {
        let suspect = FocaMember::new(member.clone(), incarnation, State::Suspect);
        let (swim, mut rt) = self.runtime();
        let _ = swim.apply_many(std::iter::once(suspect), true, &mut rt);
    }

    /// A SWIM message addressed to an older identity of this node (an earlier generation,
    /// or this one before a renewal) is dropped by foca unanswered: only an announce may name
    /// another identity of ours. Its sender still holds that identity, and its probes of it
    /// fail until it declares it dead: a live node listed `dead` (a simulated fleet of 200
    /// after a partition healed: a node that had missed a peer's renewal declared it dead
    /// 100 s later, and learned the renewal by a knock 6 s after that). So the sender is
    /// told our current identity with an announce, at most once per probe period each, and
    /// replaces the old one (a newer identity wins foca's address conflict).
    fn answer_an_older_identity(&mut self, data: &[u8], from: SocketAddr) {
        let Ok((header, _)) = postcard::take_from_bytes::<foca::Header<MemberId>>(data) else {
            return;
        };
        let own = self.id();
        let older_of_ours = header.dst.addr() == own.addr() && own.is_newer_than(&header.dst);
        if !older_of_ours || header.message == Message::Announce || header.src.addr() == own.addr()
        {
            return;
        }
        let period = self.probe_period();
        if self
            .told_current
            .get(&from)
            .is_some_and(|at| self.now.saturating_sub(*at) < period)
        {
            return;
        }
        self.told_current.insert(from, self.now);
        tracing::debug!(peer = ?header.src, addressed = ?header.dst, "a peer addressed an older identity of ours: announcing the current one");
        let (swim, mut rt) = self.runtime();
        let _ = swim.announce(header.src, &mut rt);
    }

    /// Whether a suspicion of `member` at `incarnation` has its timeout scheduled here.
    fn times_out_here(&self, member: &MemberId, incarnation: u16) -> bool {
        self.timers.iter().any(|Reverse(scheduled)| {
            matches!(
                &scheduled.timer,
                Timer::ChangeSuspectToDown { member_id, incarnation: i, token }
                    if member_id == member && *i == incarnation && *token == self.timer_token
            )
        })
    }

    /// Suspects `member` here, where no probe of ours failed: foca times a suspicion only
    /// where its probe failed, so this one is ours to time, as if our probe had failed; and
    /// the suspect is asked itself.
    fn suspect_here(&mut self, member: &MemberId, incarnation: u16) {
        self.hold_suspect(member, incarnation);
        let window = self.short_suspicion_window();
        let timer = Timer::ChangeSuspectToDown {
            member_id: member.clone(),
            incarnation,
            token: self.timer_token,
        };
        let (_, mut rt) = self.runtime();
        rt.submit_after(timer, window);
        self.tell_suspect(member);
    }

    /// Takes in one datagram's plaintext (already opened) from `from`.
    /// `stamp` is where it stands in its sender's stream (from the seal), if it was sealed.
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        from: SocketAddr,
        stamp: Option<SenderStamp>,
        bytes: &[u8],
    ) -> Result<(), PacketError> {
        self.set_now(now);
        self.holding_news = true;
        self.stats.bytes_in += bytes.len() as u64;
        let mut known_source = self.is_member_endpoint(from);
        let already_queued = self.out.datagrams.len();
        if known_source {
            self.last_heard.insert(from, self.now);
            self.port_closed.remove(&from);
        }
        let result = match packet::decode(bytes) {
            Ok(Packet::Swim(data)) => {
                self.stats.swim_in += 1;
                let claims = claims::take_claims(data, self.id());
                let data = claims.as_ref().map_or(data, |c| c.packet.as_slice());
                let notes_before = self.notes.len();
                let records_queued = self.swim.custom_broadcast_backlog();
                let (swim, mut rt) = self.runtime();
                if let Err(e) = swim.handle_data(data, &mut rt) {
                    tracing::trace!(peer = %from, error = %e, "SWIM packet refused");
                    self.stats.refused += 1;
                }
                // foca queues a record update only when its handler took it as news.
                self.news_waiting |= self.swim.custom_broadcast_backlog() > records_queued;
                let senders: Vec<MemberId> = self.notes[notes_before..]
                    .iter()
                    .filter_map(|note| match note {
                        OwnedNotification::DataReceived(header) => Some(header.src.clone()),
                        _ => None,
                    })
                    .collect();
                if senders.is_empty() {
                    // foca took no payload: perhaps one addressed to an older identity of ours.
                    self.answer_an_older_identity(data, from);
                }
                for sender in senders {
                    known_source |= self.heard_from(&sender, from, stamp);
                }
                if let Some(Claims { claims, .. }) = claims {
                    for claim in claims {
                        self.own_id_claimed(claim);
                    }
                }
                Ok(())
            }
            Ok(Packet::Leaving(leaving)) => {
                self.stats.leaving_in += 1;
                let news = self.member_leaves(&leaving.node_id, leaving.generation);
                if news
                    && leaving
                        .told
                        .is_some_and(|told| told != self.others_hash(&leaving))
                {
                    self.pass_goodbye_on(from, &leaving);
                }
                Ok(())
            }
            Ok(Packet::Digest(digest)) => {
                self.stats.digest_in += 1;
                self.compare_digest(digest);
                Ok(())
            }
            Ok(Packet::Suspected(suspected)) => {
                self.stats.suspected_in += 1;
                known_source |= self.heard_from(&suspected.by, from, stamp);
                self.refute(suspected);
                Ok(())
            }
            Ok(Packet::Alive(alive)) => {
                self.stats.alive_in += 1;
                known_source |= self.heard_from(&alive.member, from, stamp);
                self.suspect_answered(alive);
                Ok(())
            }
            Ok(Packet::Hello(hello)) => {
                self.stats.hello_in += 1;
                self.hello_received(from, hello, bytes.len());
                Ok(())
            }
            Ok(Packet::Taken(taken)) => {
                if taken.holder.node_id == self.id().node_id && taken.holder != *self.id() {
                    self.own_id_claimed(FocaMember::new(
                        taken.holder,
                        taken.incarnation,
                        State::Alive,
                    ));
                }
                Ok(())
            }
            Err(e) => {
                self.stats.refused += 1;
                Err(e)
            }
        };
        if known_source && result.is_ok() {
            self.last_heard_anyone = self.now;
        }
        self.holding_news = !known_source;
        self.after_call();
        self.holding_news = false;
        // After `after_call`, so nothing it sends escapes the cap.
        if !known_source {
            self.limit_answers(already_queued, bytes.len());
        }
        result
    }

    /// A datagram from `sender` came from `from`: if `sender` is a member we knew (live, or
    /// gone lately) it is reached there now (see [`super::paths`]), and counts as heard.
    /// Returns whether `from` is where that member is reached. Only the engine's own members
    /// steer paths (a newcomer is answered at its endpoint, and within what it sent until it
    /// is known), and only with a datagram newer than any heard from them (not a replay).
    fn heard_from(
        &mut self,
        sender: &MemberId,
        from: SocketAddr,
        stamp: Option<SenderStamp>,
    ) -> bool {
        if *sender == *self.id() || !self.member_endpoints.contains(&sender.endpoint) {
            return false;
        }
        let reached_there = self.paths.heard(sender.endpoint, from, stamp, self.now);
        if reached_there {
            self.last_heard.insert(sender.endpoint, self.now);
            self.port_closed.remove(&sender.endpoint);
            self.port_closed.remove(&from);
        }
        reached_there
    }

    /// Never amplify: what we answer to a source that is not a known member is no bigger
    /// than what it sent (a forged source address gets no more than it cost the forger).
    fn limit_answers(&mut self, first_answer: usize, budget: usize) {
        let mut spent = 0usize;
        let mut kept = Vec::with_capacity(self.out.datagrams.len());
        for (i, datagram) in self.out.datagrams.drain(..).enumerate() {
            if i < first_answer {
                kept.push(datagram);
                continue;
            }
            spent += datagram.1.len();
            if spent <= budget {
                kept.push(datagram);
            } else {
                self.stats.amplification_dropped += 1;
            }
        }
        self.out.datagrams = kept;
    }

    /// Whether `addr` is where a member we know (live, or gone only lately) is reached.
    fn is_member_endpoint(&self, addr: SocketAddr) -> bool {
        self.expected
            .get(&addr)
            .is_some_and(|until| self.now < *until)
            || self.member_endpoints.contains(&addr)
            || self.paths.endpoint_via(addr, self.now).is_some()
    }

    /// Where every active member and every tombstone is reached: rebuilt when membership
    /// changes, so that checking a datagram's source costs a lookup, not a walk over the
    /// fleet.
    fn rebuild_member_endpoints(&mut self) {
        self.member_endpoints = self
            .swim
            .iter_members()
            .map(|m| m.id().endpoint)
            .chain(self.tombstones.values().map(|t| t.id.endpoint))
            .collect();
    }

    /// A member suspects us: refute now (foca raises our incarnation past the suspected one
    /// and gossips it), and answer the suspecter itself with a small `Alive`, so its
    /// suspicion ends one round trip later.
    fn refute(&mut self, suspected: Suspected) {
        if suspected.suspect != *self.id() || self.leaving {
            return;
        }
        if suspected.by.node_id == self.id().node_id {
            self.log_other_holder(
                &suspected.by,
                "it asked whether this process runs, and stops once answered",
            );
        }
        // The answer goes first: to a source we do not know yet, only as many bytes go back
        // as it sent, and this answer is smaller than the question.
        let alive = Alive {
            member: self.id().clone(),
            incarnation: suspected.incarnation.saturating_add(1),
        };
        self.send_packet(
            suspected.by.endpoint,
            packet::encode_alive(&alive),
            PacketKind::Alive,
        );
        let me = FocaMember::new(self.id().clone(), suspected.incarnation, State::Suspect);
        let (swim, mut rt) = self.runtime();
        let _ = swim.apply_many(std::iter::once(me), true, &mut rt);
    }

    /// A suspect answered: it is alive past the incarnation we suspected.
    fn suspect_answered(&mut self, alive: Alive) {
        if alive.member.node_id == self.id().node_id {
            self.claimant_answered(alive);
            return;
        }
        let member = FocaMember::new(alive.member, alive.incarnation, State::Alive);
        let (swim, mut rt) = self.runtime();
        let _ = swim.apply_many(std::iter::once(member), true, &mut rt);
    }

    /// An update gave this node's id to another live identity (taken out of the packet
    /// before foca saw it, see [`claims`]).
    ///
    /// - An earlier identity: a previous run of this node that gossip still carries (what a
    ///   restart looks like), or an earlier process that holds the id too and stops once it
    ///   hears of this one. Nothing to do: every node's foca already prefers this one.
    /// - A later one: if it really runs, it keeps the id. It is asked directly first (as a
    ///   suspect is), so that gossip about a process that has since stopped cannot stop this
    ///   one; [`Engine::claimant_answered`] settles it.
    fn own_id_claimed(&mut self, claim: FocaMember<MemberId>) {
        if self.lost_id_to.is_some() || self.leaving {
            return;
        }
        let claimant = claim.id().clone();
        if !claims::wins_over(&claimant, self.id()) {
            if claimant.endpoint != self.id().endpoint {
                self.log_other_holder(&claimant, "an earlier identity: a previous run of this node, or an earlier process with this id, which stops once it hears of this one");
            }
            return;
        }
        if self
            .claim_check
            .as_ref()
            .is_some_and(|c| c.claimant == claimant)
        {
            return;
        }
        self.log_other_holder(
            &claimant,
            "a later process with this node id; asking it whether it runs",
        );
        self.claim_check = Some(ClaimCheck {
            claimant,
            incarnation: claim.incarnation(),
            asked_at: self.now,
            asks: 0,
        });
        self.ask_claimant();
    }

    /// Asks the later holder of our id to show it runs (it answers a `Suspected` with an
    /// `Alive`, as any suspect does).
    fn ask_claimant(&mut self) {
        let Some(check) = self.claim_check.as_mut() else {
            return;
        };
        check.asks += 1;
        check.asked_at = self.now;
        let (claimant, incarnation) = (check.claimant.clone(), check.incarnation);
        self.send_suspected(&claimant, incarnation, 1);
    }

    /// Asks a silent claimant again, or gives up on it (stale gossip of a process that
    /// stopped: this node keeps its id).
    fn check_claim(&mut self) {
        let Some(check) = &self.claim_check else {
            return;
        };
        if self.now < check.asked_at + self.timings.probe_timeout {
            return;
        }
        if check.asks < CLAIM_ASKS {
            self.ask_claimant();
        } else {
            tracing::info!(claimant = ?check.claimant, "the later holder of this node id did not answer: taken for stale gossip; this node keeps its id");
            self.claim_check = None;
        }
    }

    /// A process holding our node id answered directly. If it is the later one we asked,
    /// the conflict is settled the way every node's foca settles it: it keeps the id. This
    /// node tells each of its peers that the id is alive there (so none lists the id `dead`
    /// in between), and stops.
    fn claimant_answered(&mut self, alive: Alive) {
        let asked = self.claim_check.as_ref().is_some_and(|c| {
            c.claimant.generation == alive.member.generation
                && c.claimant.endpoint == alive.member.endpoint
        });
        if !asked || self.lost_id_to.is_some() || !claims::wins_over(&alive.member, self.id()) {
            return;
        }
        tracing::error!(
            node_id = %self.id().node_id,
            other = ?alive.member,
            "node id conflict: another process holds this node id and started later; it keeps the id, this one hands its peers over and stops. Give one of them another BO_NODE_ID."
        );
        self.claim_check = None;
        self.lost_id_to = Some(alive.member.clone());
        let handover = packet::encode_alive(&alive);
        let peers: Vec<SocketAddr> = self.swim.iter_members().map(|m| m.id().endpoint).collect();
        for peer in peers {
            self.send_packet(peer, handover.clone(), PacketKind::Alive);
        }
        self.changed = true;
    }

    /// foca told `loser` it is down because it holds an identity that lost its node id: if
    /// a newer identity holds that id alive here, say which (see [`Taken`]); a process that
    /// was only restarted never hears this, since its old identity sends nothing.
    fn tell_if_taken(&mut self, loser: &MemberId) {
        let holder = self
            .swim
            .iter_members()
            .find(|m| m.id().addr() == loser.addr() && m.id() != loser)
            .filter(|m| claims::wins_over(m.id(), loser))
            .map(|m| (m.id().clone(), m.incarnation()));
        if let Some((holder, incarnation)) = holder {
            let bytes = packet::encode_taken(&Taken {
                holder,
                incarnation,
            });
            self.send_packet(loser.endpoint, bytes, PacketKind::Taken);
        }
    }

    /// Logs another holder of this node's id, once per identity.
    fn log_other_holder(&mut self, other: &MemberId, what: &str) {
        if self.claims_logged.len() < 64 && self.claims_logged.insert(other.clone()) {
            tracing::warn!(node_id = %self.id().node_id, other = ?other, "another identity claims this node id: {what}");
        }
    }

    /// The process holding this node's id that this node lost it to (see
    /// [`Engine::claimant_answered`]): once set, the node must stop, without a goodbye.
    pub fn lost_id_to(&self) -> Option<&MemberId> {
        self.lost_id_to.as_ref()
    }

    /// Our probe of `member` failed and foca suspects it: tell it directly (twice: the
    /// network that lost the probe may lose one of these too).
    fn tell_suspect(&mut self, member: &MemberId) {
        let incarnation = self
            .swim
            .iter_membership_state()
            .find(|m| m.id() == member)
            .map(|m| m.incarnation());
        let Some(incarnation) = incarnation else {
            return;
        };
        self.send_suspected(member, incarnation, 2);
    }

    /// Sends `suspect` a `Suspected` from us (`copies` times): a running suspect answers
    /// each with an `Alive`.
    fn send_suspected(&mut self, suspect: &MemberId, incarnation: u16, copies: usize) {
        let bytes = packet::encode_suspected(&Suspected {
            by: self.id().clone(),
            suspect: suspect.clone(),
            incarnation,
        });
        for _ in 0..copies {
            self.send_packet(suspect.endpoint, bytes.clone(), PacketKind::Suspected);
        }
    }

    /// A member said it is leaving: list it `left` now, and tell foca it is down. True when
    /// this was news here.
    ///
    /// A goodbye from a start of the node not heard of yet (its join is still on its way
    /// here: it joined through another member and stopped at once) is remembered, so it is
    /// listed `left` when the join arrives (see [`Engine::after_call`]). One from an older
    /// start than one this node knows is stale, and ignored.
    fn member_leaves(&mut self, node_id: &str, generation: u64) -> bool {
        if self.left.get(node_id).is_some_and(|&g| g >= generation) {
            return false;
        }
        let mut exact = None;
        let mut newest_known = self.tombstones.get(node_id).map(|t| t.id.generation);
        for member in self.swim.iter_membership_state() {
            let id = member.id();
            if id.node_id == node_id {
                newest_known = newest_known.max(Some(id.generation));
                if id.generation == generation {
                    exact = Some(id.clone());
                }
            }
        }
        if newest_known.is_some_and(|g| g > generation) {
            return false;
        }
        // Of a node never heard of, only a few: the goodbyes of strangers are not kept.
        if newest_known.is_none()
            && self.left.len() >= self.swim.num_members() + self.tombstones.len() + EARLY_GOODBYES
        {
            return false;
        }
        if let Some(tombstone) = self.tombstones.get_mut(node_id) {
            tombstone.left |= tombstone.id.generation == generation;
        }
        self.left.insert(node_id.to_string(), generation);
        self.changed = true;
        if let Some(id) = exact {
            let (swim, mut rt) = self.runtime();
            let _ = swim.apply_many(
                std::iter::once(FocaMember::new(id, u16::MAX, State::Down)),
                true,
                &mut rt,
            );
        }
        true
    }

    /// The hash of the identities this node would have told, had it been the one leaving:
    /// its active members other than the leaver, and itself. Equal to the leaver's `told`,
    /// everyone this node knows heard the goodbye first-hand.
    fn others_hash(&self, leaving: &Leaving) -> u64 {
        let others = self
            .swim
            .iter_members()
            .map(|m| m.id())
            .filter(|id| id.node_id != leaving.node_id);
        id::identities_hash(others.chain(std::iter::once(self.id())))
    }

    /// A goodbye that was news here, from a leaver that did not tell everyone this node
    /// knows (it had just joined, or had not yet heard of a newcomer): pass it on to a few
    /// members, as SWIM passes on a death. Each node passes it on once (the second time it
    /// is not news), so a goodbye costs a few datagrams per member only when it is needed;
    /// otherwise a member the leaver did not know would list it `dead`.
    fn pass_goodbye_on(&mut self, from: SocketAddr, leaving: &Leaving) {
        let mut targets: Vec<SocketAddr> = self
            .swim
            .iter_members()
            .map(|m| m.id())
            .filter(|id| id.node_id != leaving.node_id && id.endpoint != from)
            .map(|id| id.endpoint)
            .collect();
        // In a fixed order before the pick, so one seed gives one run (the simulator).
        targets.sort();
        let bytes = packet::encode_leaving(leaving);
        for _ in 0..GOODBYE_FANOUT.min(targets.len()) {
            let pick = self.rng.random_range(0..targets.len());
            let target = targets.swap_remove(pick);
            self.stats.goodbyes_passed_on += 1;
            self.send_packet(target, bytes.clone(), PacketKind::Leaving);
        }
    }

    /// A member holds something other than we do: pull what it has that we lack, and answer
    /// once with our own digest so it can do the same.
    fn compare_digest(&mut self, digest: Digest) {
        if digest.digest == self.digest() {
            return;
        }
        self.stats.anti_entropy_pulls += u64::from(self.pull(Pull::Versions { from: digest.from }));
        if !digest.reply {
            let answer = Digest {
                from: self.id().endpoint,
                digest: self.digest(),
                reply: true,
            };
            self.send_packet(
                digest.from,
                packet::encode_digest(&answer),
                PacketKind::Digest,
            );
        }
    }

    /// Asks the driver for `pull`, unless a pull to the same member is in flight; returns
    /// whether it was asked.
    fn pull(&mut self, pull: Pull) -> bool {
        let from = pull.from();
        if let Some(asked) = self.pulls_in_flight.get(&from) {
            if self.now < *asked + PULL_RETRY {
                return false;
            }
        }
        self.pulls_in_flight.insert(from, self.now);
        self.out.pulls.push(pull);
        true
    }

    /// The answer to a [`Pull::Versions`]: pull the records that are newer there.
    pub fn handle_versions(&mut self, now: Duration, from: SocketAddr, versions: &[RecordVersion]) {
        self.set_now(now);
        self.pulls_in_flight.remove(&from);
        let own = &self.id().node_id;
        let nodes: Vec<String> = lock(&self.store)
            .newer_in(versions)
            .into_iter()
            .filter(|n| n != own)
            .collect();
        if nodes.is_empty() {
            // The digests differ and its records are no newer: perhaps the members differ.
            self.stats.anti_entropy_pulls += u64::from(self.pull(Pull::Gone { from }));
        } else {
            self.stats.anti_entropy_pulls += u64::from(self.pull(Pull::Records { from, nodes }));
        }
        self.after_call();
    }

    /// The members this node holds dead or left, to answer a [`Pull::Gone`].
    pub fn gone_members(&self) -> Vec<GoneMember> {
        let mut gone: Vec<GoneMember> = self
            .tombstones
            .values()
            .map(|t| GoneMember {
                id: t.id.clone(),
                left: t.left,
            })
            .collect();
        // In a fixed order, so one seed gives one run (the asker suspects them in this order).
        gone.sort_by(|a, b| a.id.node_id.cmp(&b.id.node_id));
        gone
    }

    /// The answer to a [`Pull::Gone`]: the members `from` holds dead or left.
    ///
    /// A member this node holds alive under the very same identity is news this node missed:
    /// a death or a goodbye gossiped while its datagrams were lost, which it would otherwise
    /// learn only when its own probes came round to that member (in a fleet of 100, up to
    /// 100 periods; 44 s in one compare run). A goodbye is taken as it would have been. A
    /// death is not taken on trust (`from` may be cut off from a member this node reaches):
    /// the member is suspected here, so it is declared dead only if it does not answer
    /// (see [`Engine::suspicion_verdict`]).
    ///
    /// A member held suspect here is judged the same way unless this node's own probe
    /// suspected it: foca times out only the suspicions its own probes raise, and one heard
    /// from gossip ends only with the death gossiped after it. Missed, that left a crashed
    /// member listed alive here until this node's probes came round to it (a simulated fleet
    /// of 200: over 120 s, while every anti-entropy round pulled the gone for nothing).
    pub fn handle_gone(&mut self, now: Duration, from: SocketAddr, gone: &[GoneMember]) {
        self.set_now(now);
        self.pulls_in_flight.remove(&from);
        for member in gone {
            let held = self
                .swim
                .iter_members()
                .find(|m| *m.id() == member.id)
                .map(|m| (m.incarnation(), m.state()));
            let Some((incarnation, state)) = held else {
                continue;
            };
            if member.left {
                self.stats.missed_news_repaired += 1;
                self.member_leaves(&member.id.node_id, member.id.generation);
            } else if state == State::Alive
                || (state == State::Suspect && !self.times_out_here(&member.id, incarnation))
            {
                self.stats.missed_news_repaired += 1;
                tracing::debug!(peer = %from, member = ?member.id, "a peer holds dead a member held alive here: suspecting it");
                self.suspect_here(&member.id, incarnation);
            }
        }
        self.after_call();
    }

    /// The answer to a [`Pull::Records`] (or the records of a join).
    pub fn handle_records(
        &mut self,
        now: Duration,
        from: Option<SocketAddr>,
        updates: Vec<RecordUpdate>,
    ) {
        self.set_now(now);
        if let Some(from) = from {
            self.pulls_in_flight.remove(&from);
        }
        let own = self.id().node_id.clone();
        let strangers = match from {
            Some(_) => self.strangers_in(&updates),
            None => Vec::new(),
        };
        let mut store = lock(&self.store);
        for update in updates.into_iter().filter(|u| u.node_id != own) {
            if update
                .body
                .as_ref()
                .is_some_and(|b| b.encoded_len() <= MAX_RECORD_BYTES)
            {
                store.learn(update);
            }
        }
        drop(store);
        if let Some(from) = from {
            self.missing_batch_over(from);
        }
        // A peer's record of a node this node has never heard of is a join it missed (the
        // digests differed because the peer holds that node active): knock on its door, as
        // on a gone member's, and the two find each other (see `Timings::foca_config`).
        for stranger in strangers {
            let (swim, mut rt) = self.runtime();
            let _ = swim.announce(stranger, &mut rt);
        }
        self.after_call();
    }

    /// The nodes of `updates` that foca has never heard of (neither a member nor gone), at
    /// most [`MAX_STRANGERS`], as identities to knock on.
    fn strangers_in(&self, updates: &[RecordUpdate]) -> Vec<MemberId> {
        if updates.is_empty() {
            return Vec::new();
        }
        let known: HashSet<&str> = self
            .swim
            .iter_membership_state()
            .map(|m| m.id().node_id.as_str())
            .chain(self.tombstones.keys().map(String::as_str))
            .chain(std::iter::once(self.id().node_id.as_str()))
            .collect();
        updates
            .iter()
            .filter(|u| u.body.is_some() && !known.contains(u.node_id.as_str()))
            .take(MAX_STRANGERS)
            .map(|u| MemberId::new(u.node_id.clone(), u.generation, u.owner_endpoint))
            .collect()
    }

    /// A pull failed (no answer): it may be asked again at once.
    pub fn pull_failed(&mut self, from: SocketAddr) {
        self.pulls_in_flight.remove(&from);
        self.missing_batch_over(from);
    }

    /// The batch of missing records asked of `from` is over (see [`super::missing`]).
    fn missing_batch_over(&mut self, from: SocketAddr) {
        let store = lock(&self.store);
        let from_members = self
            .missing
            .answered(from, self.now, |id| holds_record(&store, id));
        drop(store);
        for member in from_members {
            self.pull_record_from_owner(&member);
        }
    }

    /// Asks one peer for the records of the members that came up without theirs, once they
    /// have gathered (see [`super::missing`]); what no peer can be asked for, or what the
    /// peer lacked, is pulled from the members themselves.
    fn ask_missing_records(&mut self) {
        if self.missing.due_at().is_none() {
            return;
        }
        let store = lock(&self.store);
        self.missing.retain(|id| !holds_record(&store, id));
        drop(store);
        for member in self.missing.take_overdue(self.now) {
            self.pull_record_from_owner(&member);
        }
        if self.missing.due_at().is_none_or(|due| self.now < due) {
            return;
        }
        match self.record_source() {
            Some(from) => {
                if let Some(nodes) = self.missing.take_batch(self.now, from) {
                    self.stats.record_batches +=
                        u64::from(self.pull(Pull::Records { from, nodes }));
                }
            }
            None => {
                for member in self.missing.take_all() {
                    self.pull_record_from_owner(&member);
                }
            }
        }
    }

    /// A member to ask for others' records: the one asked last, while it is an active
    /// member (its connection is open, so a cold start costs one handshake, not one per
    /// batch), or else one picked at random; never one missing its own record here, or
    /// already asked something (a few random tries; none in a fleet of two).
    fn record_source(&mut self) -> Option<SocketAddr> {
        let usable = |engine: &Engine, member: &MemberId| {
            !engine.missing.contains(&member.node_id)
                && !engine.pulls_in_flight.contains_key(&member.endpoint)
        };
        if let Some(last) = self.record_source.clone() {
            let active = self.swim.iter_members().any(|m| *m.id() == last);
            if active && usable(self, &last) {
                return Some(last.endpoint);
            }
        }
        for _ in 0..4 {
            let member = self.random_active_member()?;
            if usable(self, &member) {
                let endpoint = member.endpoint;
                self.record_source = Some(member);
                return Some(endpoint);
            }
        }
        None
    }

    /// Pulls `member`'s record from `member` itself, unless it is held by now.
    fn pull_record_from_owner(&mut self, member: &MemberId) {
        if !holds_record(&lock(&self.store), member) {
            let asked = self.pull(Pull::Records {
                from: member.endpoint,
                nodes: vec![member.node_id.clone()],
            });
            self.stats.owner_pulls += u64::from(asked);
        }
    }

    fn ask_wanted_records(&mut self) {
        let wanted = lock(&self.store).wanted();
        for (from, nodes) in wanted {
            let asked = self.pull(Pull::Records {
                from,
                nodes: nodes.into_iter().collect(),
            });
            self.stats.owner_pulls += u64::from(asked);
        }
    }

    /// Knocks on one gone member's door (a foca announce): after a partition heals, this is
    /// how the two sides find each other again. The one knocked answers, or tells us we are
    /// down to it, and both sides renew what they hold as down.
    fn knock_on_a_dead_member(&mut self) {
        // Left members too: a node that stopped and started again at the same address, with
        // no seed of its own (the first node of a fleet), is found this way.
        let mut dead: Vec<MemberId> = self.tombstones.values().map(|t| t.id.clone()).collect();
        // In a fixed order, so one seed picks the same member (the simulator replays runs).
        dead.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        if dead.is_empty() {
            return;
        }
        let pick = self.rng.random_range(0..dead.len());
        let target = dead[pick].clone();
        let (swim, mut rt) = self.runtime();
        let _ = swim.announce(target, &mut rt);
    }

    /// How long until the next knock: [`KNOCK_EVERY`] while some member went down within
    /// [`KNOCK_OFTEN_FOR`] (a partition that heals soon is healed in seconds), and
    /// [`KNOCK_SELDOM_EVERY`] once all are older: a member that has been dead for a while
    /// most likely crashed for good, and knocking on its door every 2 s, on every node, for
    /// the hour it stays listed, cost each node about 50 B/s, a fifth of its steady bytes.
    fn knock_spacing(&self) -> Duration {
        let now = self.now;
        let recent = self
            .tombstones
            .values()
            .any(|t| now.saturating_sub(t.since) < KNOCK_OFTEN_FOR);
        if recent {
            KNOCK_EVERY
        } else {
            KNOCK_SELDOM_EVERY
        }
    }

    /// One active member, picked at random (none while we know no one).
    fn random_active_member(&mut self) -> Option<MemberId> {
        let active = self.swim.num_members();
        if active == 0 {
            return None;
        }
        let pick = self.rng.random_range(0..active);
        self.swim.iter_members().nth(pick).map(|m| m.id().clone())
    }

    /// How long until the next anti-entropy round: sooner while catching up (see
    /// [`CATCH_UP_ANTI_ENTROPY_PERIODS`]).
    fn anti_entropy_spacing(&self) -> Duration {
        let usual = self.timings.anti_entropy_interval;
        if self.now < self.catch_up_until {
            usual.min(self.timings.probe_interval * CATCH_UP_ANTI_ENTROPY_PERIODS)
        } else {
            usual
        }
    }

    /// How long until the next ask for members while catching up: a gossip tick in this
    /// node's first [`QUICK_CATCH_UP`], a probe period after (see [`CATCH_UP_PERIODS`]).
    fn catch_up_spacing(&self) -> Duration {
        match self.timings.gossip_interval() {
            Some(tick) if self.now < self.started + QUICK_CATCH_UP => tick,
            _ => self.timings.probe_interval,
        }
    }

    /// Asks one random active member for its members (see [`CATCH_UP_PERIODS`]).
    fn catch_up(&mut self) {
        let Some(target) = self.random_active_member() else {
            return;
        };
        let (swim, mut rt) = self.runtime();
        let _ = swim.announce(target, &mut rt);
    }

    fn anti_entropy_round(&mut self) {
        // Records of nodes membership has forgotten are forgotten too.
        let known: HashSet<String> = self
            .swim
            .iter_membership_state()
            .map(|m| m.id().node_id.clone())
            .collect();
        let grace = self.timings.dead_node_grace;
        let now = self.now;
        self.tombstones
            .retain(|_, t| now.saturating_sub(t.since) < grace);
        self.rebuild_member_endpoints();
        let own = self.id().node_id.clone();
        let tombstones = &self.tombstones;
        lock(&self.store)
            .retain(|node| node == own || known.contains(node) || tombstones.contains_key(node));
        self.left
            .retain(|node, _| known.contains(node) || tombstones.contains_key(node));
        self.paths.prune(now);
        let window = self.suspicion_window();
        self.last_heard
            .retain(|_, at| now.saturating_sub(*at) <= window * RETURNED_SCALE);
        self.port_closed
            .retain(|_, at| now.saturating_sub(*at) <= window * RETURNED_SCALE);
        // A suspicion lasts at most a few windows (extensions, one ask): what is older was
        // refuted or declared long ago.
        let stale = (window * (MAX_HEARD_EXTENSIONS + 2)).max(self.timings.anti_entropy_interval);
        self.suspicions
            .retain(|_, s| now.saturating_sub(s.since) <= stale);
        self.returned
            .retain(|_, at| now.saturating_sub(*at) < RETURN_WINDOW);
        let period = self.probe_period();
        self.told_current
            .retain(|_, at| now.saturating_sub(*at) < period);
        let Some(target) = self.random_active_member().map(|m| m.endpoint) else {
            return;
        };
        let digest = Digest {
            from: self.id().endpoint,
            digest: self.digest(),
            reply: false,
        };
        self.send_packet(target, packet::encode_digest(&digest), PacketKind::Digest);
    }

    /// The digest of the records of every active member and this node.
    pub fn digest(&self) -> u64 {
        let own = self.id().node_id.as_str();
        let store = lock(&self.store);
        let members = self.swim.iter_members().map(|m| m.id().node_id.as_str());
        store.digest(std::iter::once(own).chain(members))
    }

    /// We are joining through `addr` (a QUIC request is on its way): what it sends us before
    /// its answer arrives is from a known source.
    pub fn expect(&mut self, now: Duration, addr: SocketAddr) {
        self.set_now(now);
        let now = self.now;
        self.expected.retain(|_, until| now < *until);
        self.expected.insert(addr, now + EXPECT_FOR);
    }

    /// Joins through a member that answered our join request with its view.
    pub fn join(&mut self, now: Duration, view: JoinView) {
        self.set_now(now);
        self.handle_records(now, None, view.records);
        // Whoever a node joins through holds the records of those that joined through it:
        // the first to ask for records missing here (see `record_source`).
        self.record_source = Some(view.seed.clone());
        let own = self.id().node_id.clone();
        let members: Vec<FocaMember<MemberId>> = view
            .members
            .into_iter()
            .filter(|m| m.node_id != own && m.node_id != view.seed.node_id)
            .map(FocaMember::alive)
            .collect();
        let (swim, mut rt) = self.runtime();
        // What the seed knows, the cluster knows: taken in quietly. The seed itself may be
        // news (a master that dialled an added client): spread it.
        let _ = swim.apply_many(members.into_iter(), false, &mut rt);
        let _ = swim.apply_many(
            std::iter::once(FocaMember::alive(view.seed.clone())),
            true,
            &mut rt,
        );
        let _ = swim.announce(view.seed, &mut rt);
        self.after_call();
    }

    /// Sends foca's join message to `addr` when all we know of it is an identity (e.g. a
    /// peer we are told about); a seed known only by address is joined through QUIC.
    pub fn announce(&mut self, now: Duration, to: MemberId) {
        self.set_now(now);
        let (swim, mut rt) = self.runtime();
        let _ = swim.announce(to, &mut rt);
        self.after_call();
    }

    /// A node joined through us (over QUIC): take it in as alive and spread the news.
    pub fn introduce(&mut self, now: Duration, id: MemberId, record: Option<RecordUpdate>) {
        self.set_now(now);
        self.take_in(id, record);
        self.after_call();
    }

    /// Says hello to `addr`, a node known by its address alone (a client a master adds). Its
    /// answering hello makes it alive here, with its record, one round trip from now (see
    /// [`packet::Hello`]); the QUIC join started beside it takes over where this is lost.
    pub fn say_hello(&mut self, now: Duration, addr: SocketAddr) {
        self.expect(now, addr);
        // Padded to a whole datagram: the answer may be as big as what we send.
        let hello = self.own_hello(false, MAX_PLAINTEXT);
        self.send_packet(
            addr,
            packet::encode_hello(&hello, MAX_PLAINTEXT),
            PacketKind::Hello,
        );
        self.after_call();
    }

    /// Our hello, with our record's body when the whole fits `budget` bytes.
    fn own_hello(&self, answer: bool, budget: usize) -> Hello {
        let mut hello = Hello {
            member: self.id().clone(),
            record: self.own_update(true),
            answer,
        };
        if packet::encode_hello(&hello, 0).len() > budget {
            hello.record.body = None;
        }
        hello
    }

    /// A hello from `from` (`len` bytes): answered first, within what it cost its sender,
    /// then its sender is taken in, as a node that joined through us over QUIC is.
    fn hello_received(&mut self, from: SocketAddr, hello: Hello, len: usize) {
        if hello.member.node_id == self.id().node_id {
            return;
        }
        if !hello.answer {
            let answer = self.own_hello(true, len);
            self.send_packet(from, packet::encode_hello(&answer, 0), PacketKind::Hello);
        }
        // A record is taken only as the sender's own, at the generation it says hello from.
        let record = Some(hello.record).filter(|r| {
            r.node_id == hello.member.node_id && r.generation == hello.member.generation
        });
        // Both sides ask the other for its members: a client a master added learns the fleet
        // from it. The ask rides on what the first hello paid for, after the answer, and is
        // dropped when that does not fit (the answer to a bare hello, e.g.).
        self.take_in(hello.member, record);
    }

    /// Takes a node that introduced itself in as alive, with its record, spreads it, and asks
    /// it for its members.
    fn take_in(&mut self, id: MemberId, record: Option<RecordUpdate>) {
        if id.node_id == self.id().node_id {
            return;
        }
        if let Some(record) = record {
            self.learn_and_spread(record);
        }
        let (swim, mut rt) = self.runtime();
        let _ = swim.apply_many(
            std::iter::once(FocaMember::alive(id.clone())),
            true,
            &mut rt,
        );
        // And ask it for its members in turn (foca answers an announce with a feed): a node
        // that was joined *through* (an added client, dialled by its master) knows everyone a
        // round trip later, not only the one that dialled it.
        let _ = swim.announce(id, &mut rt);
    }

    /// What a joiner gets from us.
    pub fn join_view(&self) -> JoinView {
        let members: Vec<MemberId> = self.swim.iter_members().map(|m| m.id().clone()).collect();
        let nodes: Vec<String> = members
            .iter()
            .map(|m| m.node_id.clone())
            .chain(std::iter::once(self.id().node_id.clone()))
            .collect();
        JoinView {
            seed: self.id().clone(),
            members,
            records: self.records_for(&nodes),
        }
    }

    /// (node, generation, version) of every record held, ours included.
    pub fn versions(&self) -> Vec<RecordVersion> {
        lock(&self.store).versions()
    }

    /// The records held for `nodes`, to answer a pull.
    pub fn records_for(&self, nodes: &[String]) -> Vec<RecordUpdate> {
        // Most pulls ask for one record (a member that came up): find its endpoint by one
        // scan, not by a map of every member (at 1,000 members the map was most of a
        // simulated fleet's time).
        if nodes.len() <= FEW_RECORDS {
            let own = self.id();
            return lock(&self.store).updates_for(nodes, |node| {
                if node == own.node_id {
                    return Some(own.endpoint);
                }
                if let Some(t) = self.tombstones.get(node) {
                    return Some(t.id.endpoint);
                }
                let key = NodeKey::of(node);
                self.swim
                    .iter_membership_state()
                    .find(|m| m.id().addr() == key)
                    .map(|m| m.id().endpoint)
            });
        }
        let endpoints: HashMap<&str, SocketAddr> = self
            .swim
            .iter_membership_state()
            .map(|m| (m.id().node_id.as_str(), m.id().endpoint))
            .chain(
                self.tombstones
                    .values()
                    .map(|t| (t.id.node_id.as_str(), t.id.endpoint)),
            )
            .chain(std::iter::once((
                self.id().node_id.as_str(),
                self.id().endpoint,
            )))
            .collect();
        lock(&self.store).updates_for(nodes, |node| endpoints.get(node).copied())
    }

    /// Changes this node's record (bumping its version) and spreads the change.
    pub fn update_record(
        &mut self,
        now: Duration,
        change: impl FnOnce(&mut Record),
    ) -> Result<(), RecordError> {
        self.set_now(now);
        let mut next = self.own.clone();
        change(&mut next);
        next.version = self.own.version;
        if next == self.own {
            return Ok(());
        }
        let size = next.encoded_len();
        if size > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                size,
                limit: MAX_RECORD_BYTES,
            });
        }
        next.version += 1;
        self.own = next;
        self.publish_own_record();
        self.news_waiting = true;
        self.after_call();
        Ok(())
    }

    /// Whether a record made by `change` would be accepted (checked before a database is
    /// created, so the statement fails instead of the advertisement).
    pub fn check_record(&self, change: impl FnOnce(&mut Record)) -> Result<(), RecordError> {
        let mut next = self.own.clone();
        change(&mut next);
        let size = next.encoded_len();
        if size > MAX_RECORD_BYTES {
            return Err(RecordError::TooLarge {
                size,
                limit: MAX_RECORD_BYTES,
            });
        }
        Ok(())
    }

    fn own_update(&self, with_body: bool) -> RecordUpdate {
        RecordUpdate {
            node_id: self.id().node_id.clone(),
            generation: self.id().generation,
            version: self.own.version,
            owner_endpoint: self.id().endpoint,
            body: with_body.then(|| self.own.clone()),
        }
    }

    fn publish_own_record(&mut self) {
        let whole = self.own_update(true);
        let Some(bytes) = broadcast_of(&whole) else {
            return;
        };
        if let Err(e) = self.swim.add_broadcast(&bytes) {
            tracing::warn!(error = %e, "cannot queue this node's record broadcast");
        }
        // The store holds our own record whole, whatever the broadcast carried.
        lock(&self.store).learn(whole);
        self.changed = true;
    }

    /// Learns a record its owner handed us directly (a hello, a join over QUIC) and, when it
    /// is news, gossips it with the owner's arrival, as a record heard in gossip is passed on.
    /// Otherwise every other node hears the member come up without its record and pulls it
    /// over QUIC: one connection per node for each node that joins.
    fn learn_and_spread(&mut self, update: RecordUpdate) {
        let too_big = update
            .body
            .as_ref()
            .is_some_and(|b| b.encoded_len() > MAX_RECORD_BYTES);
        if update.node_id == self.id().node_id || too_big {
            return;
        }
        if let Some(bytes) = broadcast_of(&update) {
            if let Err(e) = self.swim.add_broadcast(&bytes) {
                tracing::debug!(error = %e, node_id = %update.node_id, "cannot queue a record broadcast");
            }
        }
        // The body, when the broadcast carried the version alone.
        lock(&self.store).learn(update);
        self.changed = true;
    }

    /// Stops gracefully: marks the record leaving, tells every live member directly (so all
    /// list this node `left` at once), and lets foca spread its own goodbye.
    pub fn leave(&mut self, now: Duration) {
        self.set_now(now);
        if self.leaving {
            return;
        }
        self.leaving = true;
        let _ = self.update_record(now, |r| r.leaving = true);
        let told: Vec<MemberId> = self.swim.iter_members().map(|m| m.id().clone()).collect();
        let leaving = Leaving {
            node_id: self.id().node_id.clone(),
            generation: self.id().generation,
            told: Some(id::identities_hash(told.iter())),
        };
        // foca's goodbye first: it carries the record that says `leaving`, which a member
        // takes only from a sender it still holds alive, so before our `Leaving` downs us.
        let (swim, mut rt) = self.runtime();
        let _ = swim.leave_cluster(&mut rt);
        let bytes = packet::encode_leaving(&leaving);
        for target in told {
            self.send_packet(target.endpoint, bytes.clone(), PacketKind::Leaving);
        }
        self.after_call();
    }

    fn send_packet(&mut self, to: SocketAddr, bytes: Vec<u8>, kind: PacketKind) {
        match kind {
            PacketKind::Leaving => self.stats.leaving_out += 1,
            PacketKind::Digest => self.stats.digest_out += 1,
            PacketKind::Suspected => self.stats.suspected_out += 1,
            PacketKind::Alive => self.stats.alive_out += 1,
            PacketKind::Taken => {}
            PacketKind::Hello => self.stats.hello_out += 1,
        }
        self.out.datagrams.push((to, bytes));
    }

    /// Reacts to what foca said during the last call; counts what it sent.
    fn after_call(&mut self) {
        let membership_changed = self.notes.iter().any(|note| {
            matches!(
                note,
                OwnedNotification::MemberUp(_)
                    | OwnedNotification::Rename(..)
                    | OwnedNotification::MemberDown(_)
            )
        });
        let mut gone_before_heard = Vec::new();
        for note in std::mem::take(&mut self.notes) {
            match note {
                OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) => {
                    // A renewed identity ran on after a goodbye of its start (one forged,
                    // or replayed): it is not downed again.
                    if self.left.get(&id.node_id) == Some(&id.generation) && id.renewal == 0 {
                        gone_before_heard.push(id);
                        continue;
                    }
                    if self.tombstones.remove(&id.node_id).is_some() {
                        self.returned.insert(id.node_id.clone(), self.now);
                    }
                    self.want_record_of(&id);
                    self.changed = true;
                }
                OwnedNotification::MemberDown(id) => {
                    let left = self.left.get(&id.node_id) == Some(&id.generation)
                        || lock(&self.store)
                            .get(&id.node_id)
                            .and_then(|k| k.body.clone())
                            .is_some_and(|r| r.leaving);
                    self.tombstones.insert(
                        id.node_id.clone(),
                        Tombstone {
                            id,
                            left,
                            since: self.now,
                        },
                    );
                    // A fresh loss: knock often again (see `knock_spacing`).
                    self.next_knock = self.next_knock.min(self.now + KNOCK_EVERY);
                    self.changed = true;
                }
                OwnedNotification::Active | OwnedNotification::Idle => self.changed = true,
                OwnedNotification::Rejoin(id) => {
                    tracing::warn!(identity = ?id, "this node was declared dead by its peers; rejoined");
                    self.stats.rejoins += 1;
                    self.changed = true;
                }
                OwnedNotification::Defunct => {
                    if !self.leaving {
                        tracing::warn!(
                            "this node was declared dead by its peers and cannot rejoin"
                        );
                    }
                    self.changed = true;
                }
                OwnedNotification::DataSent(header) => {
                    if header.message == Message::TurnUndead {
                        self.tell_if_taken(&header.dst);
                    }
                }
                OwnedNotification::DataReceived(header) => {
                    if matches!(
                        header.message,
                        Message::Ack(_) | Message::ForwardedAck { .. }
                    ) {
                        self.health.probe_answered();
                    }
                }
                OwnedNotification::ProbeFailed(_, member) => {
                    self.health.probe_failed();
                    self.tell_suspect(&member);
                }
            }
        }
        if membership_changed {
            self.rebuild_member_endpoints();
        }
        if !gone_before_heard.is_empty() {
            // Joins that arrived after the member's goodbye: it is gone, listed `left`.
            let downs = gone_before_heard
                .into_iter()
                .map(|id| FocaMember::new(id, u16::MAX, State::Down));
            let (swim, mut rt) = self.runtime();
            let _ = swim.apply_many(downs, true, &mut rt);
            self.after_call();
            return;
        }
        self.news_waiting |= membership_changed;
        if self.news_waiting && !self.holding_news {
            self.news_waiting = false;
            if self.news_due.is_none() {
                self.news_due = Some(self.now + NEWS_GATHER);
            }
        }
        let active = self.swim.num_members() + 1;
        // Only while this node is new: a partition that heals also grows the list, and asking
        // members that still hold us down would have them tell us so, and renew us for nothing.
        if active > self.configured_for && self.now < self.started + FORMING {
            self.catch_up_until = self.now + self.timings.probe_interval * CATCH_UP_PERIODS;
            self.next_anti_entropy = self
                .next_anti_entropy
                .min(self.now + self.anti_entropy_spacing());
        }
        if active != self.configured_for {
            self.configured_for = active;
            if let Err(e) = self.swim.set_config(self.timings.foca_config(active)) {
                tracing::debug!(error = %e, "membership config not updated");
            }
        }
    }

    /// A member came up or went down here, or a record changed: gossip it on soon (what else
    /// comes within [`NEWS_GATHER`] rides along) rather than at the next gossip tick, at most
    /// [`NEWS_GOSSIPS_PER_TICK`] times per tick. Each hop of a join, a death, a leave or a
    /// record change then costs a round trip and the gathering instead of half a tick on
    /// average (news takes several hops to reach everyone), and no more tellings: foca tells
    /// each update a fixed number of times, and this is one of them, told sooner.
    fn spread_news(&mut self) {
        let Some(tick) = self.timings.gossip_interval() else {
            return;
        };
        let queued = self.swim.updates_backlog() + self.swim.custom_broadcast_backlog();
        if queued == 0 {
            return;
        }
        if self.now >= self.news_tick_ends {
            self.news_tick_ends = self.now + tick;
            self.news_gossips_in_tick = 0;
        }
        if self.news_gossips_in_tick >= NEWS_GOSSIPS_PER_TICK {
            return;
        }
        self.news_gossips_in_tick += 1;
        let (swim, rt) = self.runtime();
        if let Err(e) = swim.gossip(rt) {
            tracing::debug!(error = %e, "news not gossiped at once");
        }
        // What it sent is counted like the rest (no member changes come of a gossip sent).
        self.after_call();
    }

    /// A member came up whose record (at its generation) we do not hold: it is asked for
    /// soon, with the others missing (see [`Engine::ask_missing_records`]), so the member is
    /// not listed without its databases for long.
    fn want_record_of(&mut self, id: &MemberId) {
        if !holds_record(&lock(&self.store), id) {
            self.missing.want(id, self.now);
        }
    }

    /// Every member this node knows of, itself included, one row per node id, sorted.
    pub fn members(&self) -> Vec<Member> {
        let store = lock(&self.store);
        let own_id = self.id();
        let mut rows: HashMap<&str, Member> = HashMap::new();
        for member in self.swim.iter_membership_state() {
            let id = member.id();
            if id.node_id == own_id.node_id {
                continue;
            }
            let record = store
                .get(&id.node_id)
                .filter(|k| k.generation == id.generation)
                .and_then(|k| k.body.clone());
            let left = self.left.get(&id.node_id) == Some(&id.generation)
                || record.as_ref().is_some_and(|r| r.leaving);
            let status = match member.state() {
                State::Alive | State::Suspect => MemberStatus::Alive,
                State::Down if left => MemberStatus::Left,
                State::Down => MemberStatus::Dead,
            };
            rows.insert(
                id.node_id.as_str(),
                member_row(id, status, record.as_deref(), false),
            );
        }
        for (node, tombstone) in &self.tombstones {
            if rows.contains_key(node.as_str()) || *node == own_id.node_id {
                continue;
            }
            let id = &tombstone.id;
            let record = store
                .get(node)
                .filter(|k| k.generation == id.generation)
                .and_then(|k| k.body.clone());
            let status = if tombstone.left || record.as_ref().is_some_and(|r| r.leaving) {
                MemberStatus::Left
            } else {
                MemberStatus::Dead
            };
            rows.insert(
                node.as_str(),
                member_row(id, status, record.as_deref(), false),
            );
        }
        let own_status = if self.leaving {
            MemberStatus::Left
        } else {
            MemberStatus::Alive
        };
        rows.insert(
            own_id.node_id.as_str(),
            member_row(own_id, own_status, Some(&self.own), true),
        );
        let mut members: Vec<Member> = rows.into_values().collect();
        members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        members
    }
}

enum PacketKind {
    Hello,
    Leaving,
    Digest,
    Suspected,
    Alive,
    Taken,
}

/// What gossips `update`: the whole record when it fits [`INLINE_RECORD_BYTES`], else its
/// version alone (the body is then pulled over QUIC).
fn broadcast_of(update: &RecordUpdate) -> Option<Vec<u8>> {
    let whole = postcard::to_allocvec(update).ok();
    match whole.filter(|b| b.len() <= INLINE_RECORD_BYTES) {
        Some(bytes) => Some(bytes),
        None => postcard::to_allocvec(&RecordUpdate {
            body: None,
            ..update.clone()
        })
        .ok(),
    }
}

/// Whether `store` holds `member`'s record at its generation.
fn holds_record(store: &RecordStore, member: &MemberId) -> bool {
    store
        .get(&member.node_id)
        .is_some_and(|k| k.generation == member.generation && k.body.is_some())
}

fn member_row(
    id: &MemberId,
    status: MemberStatus,
    record: Option<&Record>,
    is_self: bool,
) -> Member {
    let record = record.cloned().unwrap_or_default();
    Member {
        node_id: id.node_id.clone(),
        generation: id.generation,
        endpoint: id.endpoint,
        status,
        databases: record.databases,
        masters: record.masters,
        version: record.software,
        api: record.api,
        host: record.host,
        is_self,
    }
}
