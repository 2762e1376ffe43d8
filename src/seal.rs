//! Sealed membership datagrams: small UDP packets that only holders of a cluster key can make
//! or read, sent on the same socket as QUIC. Sans-IO: no sockets, clocks, random source or
//! globals here; the caller passes the nonce, the epoch and the sequence number in.
//!
//! Layout of one datagram (at most [`MAX_SEALED_DATAGRAM`] bytes):
//!
//! ```text
//! tag (1) | epoch (8, big-endian) | sequence (8, big-endian) | nonce (12) | ciphertext | AEAD tag (16)
//! ```
//!
//! - The tag byte has bits 0x40 and 0x80 clear. Every QUIC packet sets 0x40 (the fixed bit,
//!   RFC 9000 17.2/17.3) and long headers also set 0x80, so [`is_sealed_datagram`] tells the two
//!   apart from the first byte alone. quinn clears the fixed bit on purpose ("greasing", RFC
//!   9287) when the peer allows it, which it does by default: every endpoint that shares its
//!   socket with sealed datagrams must be built with `EndpointConfig::grease_quic_bit(false)`.
//! - ChaCha20-Poly1305 (ring) with a key derived by HKDF-SHA256 from each cluster key under a
//!   label of its own ([`SEAL_SALT`]), distinct from the TLS CA's. The whole header is the
//!   associated data: a changed epoch, sequence or nonce does not open.
//! - The nonce is 96 random bits per datagram, chosen by the caller. Random nonces stay safe
//!   far beyond these rates (below 2^-32 for a collision after 2^32 datagrams under one key);
//!   rotating the key resets the count.
//! - Replay protection without synchronized clocks: the epoch names the sending process (a
//!   number that grows with every start of it: its start time in ms, or the node's generation)
//!   and the sequence number grows with every datagram it sends. A [`ReplayGuard`] remembers,
//!   per source address, the newest epoch, the highest sequence and a 64-entry window.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

use crate::cluster_key::ClusterKeys;

/// Largest sealed datagram, header and tag included: fits the 1,200-byte path MTU QUIC
/// itself assumes.
pub const MAX_SEALED_DATAGRAM: usize = 1200;

/// The first byte of a sealed datagram of this version.
pub const SEAL_TAG_V1: u8 = 0x01;

/// Bytes before the ciphertext: tag, epoch, sequence, nonce.
pub const SEAL_HEADER_LEN: usize = 1 + 8 + 8 + NONCE_LEN;

/// Length of the Poly1305 tag after the ciphertext.
pub const AEAD_TAG_LEN: usize = 16;

/// Bytes a sealed datagram adds to its plaintext.
pub const SEAL_OVERHEAD: usize = SEAL_HEADER_LEN + AEAD_TAG_LEN;

/// The plaintext budget of one sealed datagram.
pub const MAX_PLAINTEXT: usize = MAX_SEALED_DATAGRAM - SEAL_OVERHEAD;

/// How many sequence numbers behind the highest one a datagram may arrive and still be
/// accepted once (datagrams can be reordered on the way).
pub const REPLAY_WINDOW: u64 = 64;

/// HKDF salt of the datagram key: a label of its own, so it shares nothing with the TLS CA.
pub const SEAL_SALT: &[u8] = b"bocluster datagram seal v1";

/// Whether a UDP payload's first byte marks a sealed datagram rather than QUIC: bits 0x40
/// (QUIC's fixed bit) and 0x80 (QUIC's long-header bit, which version negotiation packets set
/// too) both clear.
pub fn is_sealed_datagram(first_byte: u8) -> bool {
    first_byte & 0xc0 == 0
}

/// Why a datagram could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("plaintext of {len} bytes does not fit one sealed datagram (at most {MAX_PLAINTEXT})")]
    TooLarge { len: usize },
    #[error("the AEAD refused to seal")]
    Crypto,
}

/// Why a received datagram was dropped. Nothing of a refused datagram is decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed datagram (first byte {first_byte:#04x} has bit 0x40 or 0x80 set)")]
    NotSealed { first_byte: u8 },
    #[error("sealed datagram of an unknown version (tag {tag:#04x}, this node reads {SEAL_TAG_V1:#04x})")]
    UnknownVersion { tag: u8 },
    #[error("truncated datagram: {len} bytes, a sealed one has at least {SEAL_OVERHEAD}")]
    Truncated { len: usize },
    #[error("oversized datagram: {len} bytes, a sealed one has at most {MAX_SEALED_DATAGRAM}")]
    Oversized { len: usize },
    #[error("no cluster key opens the datagram (another cluster's key, or altered on the way)")]
    NoKeyOpens,
    #[error("datagram of an earlier process of the sender (epoch {epoch}, newest seen {newest})")]
    StaleEpoch { epoch: u64, newest: u64 },
    #[error("replayed datagram (sequence {seq} was already accepted)")]
    Replayed { seq: u64 },
    #[error("datagram too old to tell from a replay (sequence {seq}, newest {highest}, window {REPLAY_WINDOW})")]
    TooOld { seq: u64, highest: u64 },
}

impl OpenError {
    /// A short fixed name of the reason, for counters and rate-limited logs.
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::NotSealed { .. } => "not_sealed",
            OpenError::UnknownVersion { .. } => "unknown_version",
            OpenError::Truncated { .. } => "truncated",
            OpenError::Oversized { .. } => "oversized",
            OpenError::NoKeyOpens => "no_key_opens",
            OpenError::StaleEpoch { .. } => "stale_epoch",
            OpenError::Replayed { .. } => "replayed",
            OpenError::TooOld { .. } => "too_old",
        }
    }
}

/// A datagram that opened: its plaintext and what its authenticated header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub plaintext: Vec<u8>,
    /// The sender's process epoch.
    pub epoch: u64,
    /// The sender's sequence number.
    pub seq: u64,
    /// Which key opened it (0 = the first of `BO_CLUSTER_KEY`): a peer still sealing with an
    /// older key shows here during a rotation.
    pub key_index: usize,
}

/// The datagram keys of a node: one per cluster key, in order.
pub struct DatagramSeal {
    keys: Vec<LessSafeKey>,
}

impl fmt::Debug for DatagramSeal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatagramSeal({} keys)", self.keys.len())
    }
}

impl DatagramSeal {
    /// Derives one ChaCha20-Poly1305 key from each cluster key.
    pub fn new(keys: &ClusterKeys) -> Self {
        let keys = keys
            .iter()
            .map(|key| {
                let bytes = key.derive(SEAL_SALT, &[b"chacha20-poly1305"]);
                // A 32-byte key is exactly what ChaCha20-Poly1305 takes.
                let unbound = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
                    .expect("ChaCha20-Poly1305 takes a 32-byte key");
                LessSafeKey::new(unbound)
            })
            .collect();
        DatagramSeal { keys }
    }

    /// Seals `plaintext` with the first key into `out` (cleared first). `epoch` names the
    /// sending process, `seq` must grow with every datagram it sends, and `nonce` must be
    /// fresh random bytes.
    pub fn seal(
        &self,
        epoch: u64,
        seq: u64,
        nonce: [u8; NONCE_LEN],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
            });
        }
        let mut header = [0u8; SEAL_HEADER_LEN];
        header[0] = SEAL_TAG_V1;
        header[1..9].copy_from_slice(&epoch.to_be_bytes());
        header[9..17].copy_from_slice(&seq.to_be_bytes());
        header[17..].copy_from_slice(&nonce);
        out.clear();
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        let tag = self.keys[0]
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header),
                &mut out[SEAL_HEADER_LEN..],
            )
            .map_err(|_| SealError::Crypto)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens a datagram from `from`, trying each key in order, and records it in `guard`.
    /// Checks the form, then the replay state, then the keys; the guard changes only for a
    /// datagram that opened, so forged packets cannot disturb it.
    pub fn open(
        &self,
        from: SocketAddr,
        datagram: &[u8],
        guard: &mut ReplayGuard,
    ) -> Result<Opened, OpenError> {
        let first_byte = *datagram.first().ok_or(OpenError::Truncated { len: 0 })?;
        if !is_sealed_datagram(first_byte) {
            return Err(OpenError::NotSealed { first_byte });
        }
        if first_byte != SEAL_TAG_V1 {
            return Err(OpenError::UnknownVersion { tag: first_byte });
        }
        if datagram.len() > MAX_SEALED_DATAGRAM {
            return Err(OpenError::Oversized {
                len: datagram.len(),
            });
        }
        if datagram.len() < SEAL_OVERHEAD {
            return Err(OpenError::Truncated {
                len: datagram.len(),
            });
        }
        let (header, sealed) = datagram.split_at(SEAL_HEADER_LEN);
        let epoch = u64::from_be_bytes(array(&header[1..9]));
        let seq = u64::from_be_bytes(array(&header[9..17]));
        let nonce: [u8; NONCE_LEN] = array(&header[17..]);
        guard.check(from, epoch, seq)?;
        let mut buffer = Vec::with_capacity(sealed.len());
        for (key_index, key) in self.keys.iter().enumerate() {
            buffer.clear();
            buffer.extend_from_slice(sealed);
            let opened = key.open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(header),
                &mut buffer,
            );
            if let Ok(plaintext) = opened {
                let len = plaintext.len();
                buffer.truncate(len);
                guard.accept(from, epoch, seq);
                return Ok(Opened {
                    plaintext: buffer,
                    epoch,
                    seq,
                    key_index,
                });
            }
        }
        Err(OpenError::NoKeyOpens)
    }
}

/// A fixed-size array from a slice whose length the caller has checked.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// What is known of one source address.
#[derive(Debug, Clone, Copy)]
struct SourceState {
    epoch: u64,
    highest: u64,
    /// Bit i set: sequence `highest - i` was accepted.
    window: u64,
    last_used: u64,
}

/// Replay state per source address, for at most `max_sources` sources: when full, the source
/// heard from least recently is forgotten (a datagram of a forgotten source is judged afresh).
/// Only datagrams that opened add or refresh a source, so forged traffic cannot evict peers.
/// The eviction scans all sources; it runs only when a new peer appears while the guard is full.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    max_sources: usize,
    sources: HashMap<SocketAddr, SourceState>,
    clock: u64,
}

impl ReplayGuard {
    /// A guard that remembers at most `max_sources` sources (at least one).
    pub fn new(max_sources: usize) -> Self {
        ReplayGuard {
            max_sources: max_sources.max(1),
            sources: HashMap::new(),
            clock: 0,
        }
    }

    /// How many sources are remembered.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Forgets a source, e.g. once membership has declared the member at that address dead or
    /// gone, so that a new process there with a lower epoch (another node, or a clock set
    /// back) is heard at once.
    pub fn forget(&mut self, from: &SocketAddr) {
        self.sources.remove(from);
    }

    /// Whether a datagram with this epoch and sequence may be new; changes nothing.
    pub fn check(&self, from: SocketAddr, epoch: u64, seq: u64) -> Result<(), OpenError> {
        let Some(state) = self.sources.get(&from) else {
            return Ok(());
        };
        if epoch < state.epoch {
            return Err(OpenError::StaleEpoch {
                epoch,
                newest: state.epoch,
            });
        }
        if epoch > state.epoch || seq > state.highest {
            return Ok(());
        }
        let behind = state.highest - seq;
        if behind >= REPLAY_WINDOW {
            return Err(OpenError::TooOld {
                seq,
                highest: state.highest,
            });
        }
        if state.window & (1 << behind) != 0 {
            return Err(OpenError::Replayed { seq });
        }
        Ok(())
    }

    /// Records an authenticated datagram that passed [`ReplayGuard::check`].
    fn accept(&mut self, from: SocketAddr, epoch: u64, seq: u64) {
        self.clock += 1;
        let now = self.clock;
        if !self.sources.contains_key(&from) && self.sources.len() >= self.max_sources {
            let oldest = self
                .sources
                .iter()
                .min_by_key(|(_, state)| state.last_used)
                .map(|(addr, _)| *addr);
            if let Some(oldest) = oldest {
                self.sources.remove(&oldest);
            }
        }
        let fresh = SourceState {
            epoch,
            highest: seq,
            window: 1,
            last_used: now,
        };
        let state = self.sources.entry(from).or_insert(fresh);
        state.last_used = now;
        if epoch > state.epoch {
            *state = fresh;
        } else if seq > state.highest {
            let ahead = seq - state.highest;
            state.window = if ahead >= REPLAY_WINDOW {
                0
            } else {
                state.window << ahead
            };
            state.window |= 1;
            state.highest = seq;
        } else {
            state.window |= 1 << (state.highest - seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "kL63lntqa/vXk0YjAysIOtioBkRiaRl3WhUBmpA+Mo8=";
    const K2: &str = "O6Tr/fUyefcE2iG2Evq9IQwVP5eU1toongTe1sZLpEI=";
    const K3: &str = "DhoOZoqY1UHBgRtVNaeoBpaOp0LJUeWhi/z+IXQ7b4k=";

    fn seal_of(keys: &str) -> DatagramSeal {
        DatagramSeal::new(&ClusterKeys::parse(keys).unwrap())
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A distinct nonce per (epoch, seq), as a caller's random source would give.
    fn nonce(epoch: u64, seq: u64) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&(seq ^ epoch.rotate_left(32)).to_le_bytes());
        n[8..].copy_from_slice(&[0xa5, 0x5a, 0x3c, 0xc3]);
        n
    }

    fn sealed(seal: &DatagramSeal, epoch: u64, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        seal.seal(epoch, seq, nonce(epoch, seq), plaintext, &mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trip_at_every_size_class() {
        let seal = seal_of(K1);
        let mut guard = ReplayGuard::new(8);
        for (seq, len) in [0usize, 1, 100, MAX_PLAINTEXT].into_iter().enumerate() {
            let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let datagram = sealed(&seal, 7, seq as u64, &plaintext);
            assert_eq!(datagram.len(), len + SEAL_OVERHEAD);
            assert!(datagram.len() <= MAX_SEALED_DATAGRAM);
            assert!(is_sealed_datagram(datagram[0]));
            let opened = seal.open(addr(1), &datagram, &mut guard).unwrap();
            assert_eq!(opened.plaintext, plaintext);
            assert_eq!(
                (opened.epoch, opened.seq, opened.key_index),
                (7, seq as u64, 0)
            );
            // The plaintext is not visible in the datagram.
            if len >= 16 {
                let hidden = !datagram.windows(16).any(|w| w == &plaintext[..16]);
                assert!(hidden, "plaintext visible in the datagram");
            }
        }
        assert_eq!(SEAL_OVERHEAD, 45);
        assert_eq!(MAX_PLAINTEXT, 1155);
    }

    #[test]
    fn a_plaintext_over_the_budget_is_refused() {
        let seal = seal_of(K1);
        let mut out = vec![1, 2, 3];
        let err = seal
            .seal(1, 1, [0; 12], &[0; MAX_PLAINTEXT + 1], &mut out)
            .unwrap_err();
        assert_eq!(
            err,
            SealError::TooLarge {
                len: MAX_PLAINTEXT + 1
            }
        );
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let seal = seal_of(K1);
        let datagram = sealed(&seal, 3, 9, b"probe from a to b, with an update");
        for index in 0..datagram.len() {
            for bit in [0x01u8, 0x80] {
                let mut altered = datagram.clone();
                altered[index] ^= bit;
                let mut guard = ReplayGuard::new(8);
                let err = seal.open(addr(1), &altered, &mut guard).unwrap_err();
                let expected = match index {
                    0 if bit == 0x80 => OpenError::NotSealed {
                        first_byte: altered[0],
                    },
                    0 => OpenError::UnknownVersion { tag: altered[0] },
                    // epoch, sequence, nonce, ciphertext, tag: all authenticated
                    _ => OpenError::NoKeyOpens,
                };
                assert_eq!(err, expected, "byte {index} bit {bit:#x}");
                assert!(guard.is_empty(), "a refused datagram changed the guard");
            }
        }
    }

    #[test]
    fn another_clusters_key_does_not_open() {
        let datagram = sealed(&seal_of(K1), 1, 1, b"hello");
        let err = seal_of(K2)
            .open(addr(1), &datagram, &mut ReplayGuard::new(8))
            .unwrap_err();
        assert_eq!(err, OpenError::NoKeyOpens);
        let open = DatagramSeal::new(&ClusterKeys::open_default());
        let err = open
            .open(addr(1), &datagram, &mut ReplayGuard::new(8))
            .unwrap_err();
        assert_eq!(err, OpenError::NoKeyOpens);
    }

    #[test]
    fn truncated_and_oversized_are_refused() {
        let seal = seal_of(K1);
        let datagram = sealed(&seal, 1, 1, b"some membership update");
        for len in 0..datagram.len() {
            let err = seal
                .open(addr(1), &datagram[..len], &mut ReplayGuard::new(8))
                .unwrap_err();
            if len < SEAL_OVERHEAD {
                assert_eq!(err, OpenError::Truncated { len }, "length {len}");
            } else {
                assert_eq!(err, OpenError::NoKeyOpens, "length {len}");
            }
        }
        let mut big = sealed(&seal, 1, 2, &[7; MAX_PLAINTEXT]);
        big.push(0);
        let err = seal
            .open(addr(1), &big, &mut ReplayGuard::new(8))
            .unwrap_err();
        assert_eq!(
            err,
            OpenError::Oversized {
                len: MAX_SEALED_DATAGRAM + 1
            }
        );
        let err = seal
            .open(
                addr(1),
                &vec![SEAL_TAG_V1; 65_000],
                &mut ReplayGuard::new(8),
            )
            .unwrap_err();
        assert_eq!(err.reason(), "oversized");
    }

    #[test]
    fn replays_are_refused_and_reordering_inside_the_window_is_not() {
        let seal = seal_of(K1);
        let mut guard = ReplayGuard::new(8);
        let d: Vec<Vec<u8>> = (0..200).map(|s| sealed(&seal, 5, s, b"x")).collect();
        seal.open(addr(1), &d[10], &mut guard).unwrap();
        assert_eq!(
            seal.open(addr(1), &d[10], &mut guard).unwrap_err(),
            OpenError::Replayed { seq: 10 }
        );
        // Earlier ones arrive late: accepted once each.
        seal.open(addr(1), &d[3], &mut guard).unwrap();
        seal.open(addr(1), &d[4], &mut guard).unwrap();
        assert_eq!(
            seal.open(addr(1), &d[3], &mut guard).unwrap_err().reason(),
            "replayed"
        );
        // A jump ahead, then the window's edges.
        seal.open(addr(1), &d[100], &mut guard).unwrap();
        seal.open(addr(1), &d[37], &mut guard).unwrap(); // 63 behind: inside
        assert_eq!(
            seal.open(addr(1), &d[36], &mut guard).unwrap_err(),
            OpenError::TooOld {
                seq: 36,
                highest: 100
            }
        );
        assert_eq!(
            seal.open(addr(1), &d[10], &mut guard).unwrap_err().reason(),
            "too_old"
        );
        // Another source has its own state: the same bytes from it open once.
        seal.open(addr(2), &d[10], &mut guard).unwrap();
        assert_eq!(
            seal.open(addr(2), &d[10], &mut guard).unwrap_err().reason(),
            "replayed"
        );
        // A jump further than the window forgets the old window but not the order.
        seal.open(addr(1), &d[199], &mut guard).unwrap();
        seal.open(addr(1), &d[150], &mut guard).unwrap();
        assert_eq!(
            seal.open(addr(1), &d[100], &mut guard)
                .unwrap_err()
                .reason(),
            "too_old"
        );
    }

    #[test]
    fn an_earlier_process_of_the_sender_is_refused() {
        let seal = seal_of(K1);
        let mut guard = ReplayGuard::new(8);
        let old = sealed(&seal, 1_000, 500, b"old process");
        seal.open(addr(1), &old, &mut guard).unwrap();
        // The sender restarts: a new epoch, its sequence starts again.
        let new = sealed(&seal, 2_000, 0, b"new process");
        seal.open(addr(1), &new, &mut guard).unwrap();
        assert_eq!(
            seal.open(addr(1), &old, &mut guard).unwrap_err(),
            OpenError::StaleEpoch {
                epoch: 1_000,
                newest: 2_000
            }
        );
        let older = sealed(&seal, 999, 10_000, b"older process, high sequence");
        assert_eq!(
            seal.open(addr(1), &older, &mut guard).unwrap_err().reason(),
            "stale_epoch"
        );
        seal.open(addr(1), &sealed(&seal, 2_000, 1, b"next"), &mut guard)
            .unwrap();
        // Forgetting the source (membership saw it go) hears a lower epoch again.
        guard.forget(&addr(1));
        seal.open(addr(1), &older, &mut guard).unwrap();
    }

    #[test]
    fn forged_datagrams_do_not_move_the_guard() {
        let seal = seal_of(K1);
        let mut guard = ReplayGuard::new(8);
        seal.open(addr(1), &sealed(&seal, 5, 1, b"a"), &mut guard)
            .unwrap();
        // Someone without the key claims a later epoch and a high sequence.
        let forged = sealed(&seal_of(K3), 6, 1_000_000, b"forged");
        assert_eq!(
            seal.open(addr(1), &forged, &mut guard).unwrap_err(),
            OpenError::NoKeyOpens
        );
        // The real sender's next datagrams still open.
        seal.open(addr(1), &sealed(&seal, 5, 2, b"b"), &mut guard)
            .unwrap();
    }

    #[test]
    fn sealed_with_the_first_key_opened_by_any_listed_key() {
        // (sealer's keys, opener's keys, expected key index or None)
        let both = format!("{K1},{K2}");
        let promoted = format!("{K2},{K1}");
        let cases: [(&str, &str, Option<usize>); 7] = [
            (K1, K1, Some(0)),
            (K1, &both, Some(0)),
            (K1, &promoted, Some(1)),
            (&promoted, K1, None),
            (&promoted, &both, Some(1)),
            (K2, &promoted, Some(0)),
            (K3, &both, None),
        ];
        for (i, (sealer, opener, expected)) in cases.iter().enumerate() {
            let datagram = sealed(&seal_of(sealer), 1, i as u64, b"rotation");
            let result = seal_of(opener).open(addr(1), &datagram, &mut ReplayGuard::new(8));
            match expected {
                Some(index) => assert_eq!(result.unwrap().key_index, *index, "case {i}"),
                None => assert_eq!(result.unwrap_err(), OpenError::NoKeyOpens, "case {i}"),
            }
        }
    }

    #[test]
    fn the_least_recently_heard_source_is_forgotten_when_full() {
        let seal = seal_of(K1);
        let mut guard = ReplayGuard::new(2);
        let d = |s| sealed(&seal, 1, s, b"x");
        seal.open(addr(1), &d(1), &mut guard).unwrap();
        seal.open(addr(2), &d(1), &mut guard).unwrap();
        seal.open(addr(1), &d(2), &mut guard).unwrap(); // 1 heard last
        seal.open(addr(3), &d(1), &mut guard).unwrap(); // evicts 2
        assert_eq!(guard.len(), 2);
        assert_eq!(
            seal.open(addr(1), &d(2), &mut guard).unwrap_err().reason(),
            "replayed"
        );
        // Source 2 was forgotten: its old datagram is judged afresh.
        seal.open(addr(2), &d(1), &mut guard).unwrap();
        assert_eq!(guard.len(), 2);
        assert_eq!(ReplayGuard::new(0).max_sources, 1);
    }

    #[test]
    fn quic_first_bytes_are_never_taken_for_sealed_datagrams() {
        assert!(is_sealed_datagram(SEAL_TAG_V1));
        // Long headers (Initial 0xc0.., 0-RTT 0xd0.., Handshake 0xe0.., Retry 0xf0..) and short
        // headers (0x40..0x7f) all set the fixed bit; version negotiation sets 0x80.
        for byte in 0x40..=0xffu8 {
            assert!(!is_sealed_datagram(byte), "{byte:#04x}");
        }
        for byte in 0x00..0x40u8 {
            assert!(is_sealed_datagram(byte), "{byte:#04x}");
            if byte != SEAL_TAG_V1 {
                let err = seal_of(K1)
                    .open(addr(1), &[byte; 64], &mut ReplayGuard::new(1))
                    .unwrap_err();
                assert_eq!(err, OpenError::UnknownVersion { tag: byte });
            }
        }
        // A real QUIC Initial (RFC 9001 appendix A.2, the client's first packet) starts 0xc0.
        let rfc_initial_first_byte = 0xc0;
        let err = seal_of(K1)
            .open(
                addr(1),
                &[rfc_initial_first_byte; 1200],
                &mut ReplayGuard::new(1),
            )
            .unwrap_err();
        assert_eq!(err.reason(), "not_sealed");
    }
}
