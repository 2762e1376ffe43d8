//! The `sealed_datagrams` target: opening UDP payloads as sealed membership datagrams
//! (`bocluster::seal`), and the replay guard against a model of what it must accept.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use bocluster::cluster_key::ClusterKeys;
use bocluster::seal::{
    is_sealed_datagram, DatagramSeal, OpenError, ReplayGuard, MAX_SEALED_DATAGRAM, REPLAY_WINDOW,
    SEAL_HEADER_LEN, SEAL_OVERHEAD, SEAL_TAG_V1,
};

/// The keys the target's node holds (the seeds are sealed with them).
pub const K1: &str = "kL63lntqa/vXk0YjAysIOtioBkRiaRl3WhUBmpA+Mo8=";
pub const K2: &str = "O6Tr/fUyefcE2iG2Evq9IQwVP5eU1toongTe1sZLpEI=";

fn seal_of(keys: &str) -> DatagramSeal {
    DatagramSeal::new(&ClusterKeys::parse(keys).expect("the target's keys are strong"))
}

/// Both parts on every input.
pub fn check_sealed(data: &[u8]) {
    check_open(data);
    check_guard(data);
}

/// The input as a received datagram, on a node that holds K1 and K2: never panics; a refusal
/// has the reason the datagram's form calls for and leaves the guard as it was; a datagram
/// that opens (a seed) is exactly what sealing its plaintext again gives, and opens once.
pub fn check_open(data: &[u8]) {
    let node = seal_of(&format!("{K1},{K2}"));
    let from: SocketAddr = "127.0.0.1:9091".parse().expect("an address");
    let mut guard = ReplayGuard::new(4);
    match node.open(from, data, &mut guard) {
        Err(err) => {
            assert!(guard.is_empty(), "{err:?} changed the guard");
            let expected = match data.first() {
                None => "truncated",
                Some(&b) if !is_sealed_datagram(b) => "not_sealed",
                Some(&b) if b != SEAL_TAG_V1 => "unknown_version",
                Some(_) if data.len() > MAX_SEALED_DATAGRAM => "oversized",
                Some(_) if data.len() < SEAL_OVERHEAD => "truncated",
                Some(_) => "no_key_opens",
            };
            assert_eq!(err.reason(), expected, "{err:?} for {} bytes", data.len());
        }
        Ok(opened) => {
            assert_eq!(guard.len(), 1);
            let sealer = seal_of([K1, K2][opened.key_index]);
            let mut nonce = [0u8; 12];
            nonce.copy_from_slice(&data[SEAL_HEADER_LEN - 12..SEAL_HEADER_LEN]);
            let mut again = Vec::new();
            sealer
                .seal(
                    opened.epoch,
                    opened.seq,
                    nonce,
                    &opened.plaintext,
                    &mut again,
                )
                .expect("an opened plaintext fits");
            assert_eq!(again, data, "sealing the plaintext again gives other bytes");
            let replay = node.open(from, data, &mut guard).unwrap_err();
            assert_eq!(replay, OpenError::Replayed { seq: opened.seq });
        }
    }
}

/// What the guard must decide for one source, kept the plain way: every accepted sequence
/// of the newest epoch in a set.
#[derive(Default)]
struct Model {
    epoch: u64,
    highest: u64,
    accepted: HashSet<u64>,
}

/// The input as a list of 4-byte sends (source 0-2, epoch 0-3, sequence 0-1023), each sealed
/// for real and opened by a node with room for every source: each verdict is the model's.
pub fn check_guard(data: &[u8]) {
    let seal = seal_of(K1);
    let mut guard = ReplayGuard::new(8);
    let mut models: HashMap<u8, Model> = HashMap::new();
    let mut datagram = Vec::new();
    for (index, op) in data.chunks_exact(4).take(256).enumerate() {
        let source = op[0] % 3;
        let epoch = u64::from(op[1] % 4);
        let seq = u64::from(u16::from_be_bytes([op[2], op[3]]) % 1024);
        let from = SocketAddr::from(([127, 0, 0, 1], 1000 + u16::from(source)));
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(index as u64).to_le_bytes());
        seal.seal(epoch, seq, nonce, op, &mut datagram)
            .expect("4 bytes fit");
        let verdict = seal.open(from, &datagram, &mut guard);
        let expected = match models.get(&source) {
            None => None,
            Some(m) if epoch < m.epoch => Some("stale_epoch"),
            Some(m) if epoch > m.epoch || seq > m.highest => None,
            Some(m) if m.highest - seq >= REPLAY_WINDOW => Some("too_old"),
            Some(m) if m.accepted.contains(&seq) => Some("replayed"),
            Some(_) => None,
        };
        assert_eq!(
            verdict.as_ref().err().map(OpenError::reason),
            expected,
            "send {index}: source {source} epoch {epoch} seq {seq}: {verdict:?}"
        );
        if let Ok(opened) = verdict {
            assert_eq!(opened.plaintext, op);
            let model = models.entry(source).or_default();
            if epoch > model.epoch || model.accepted.is_empty() {
                *model = Model {
                    epoch,
                    highest: seq,
                    accepted: HashSet::from([seq]),
                };
            } else {
                model.highest = model.highest.max(seq);
                model.accepted.insert(seq);
            }
        }
    }
    assert!(guard.len() <= 3);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds: datagrams sealed with each key (they open, so the re-seal and replay checks
    /// run), one the keys cannot open, and sends that exercise the guard's window and epochs.
    /// `FUZZ_WRITE_SEEDS=1 cargo test` writes them to `seeds/sealed_datagrams/` after a change
    /// of the format.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        let sealed = |keys: &str, epoch, seq, plaintext: &[u8]| {
            let mut out = Vec::new();
            seal_of(keys)
                .seal(epoch, seq, [7; 12], plaintext, &mut out)
                .unwrap();
            out
        };
        let other = "DhoOZoqY1UHBgRtVNaeoBpaOp0LJUeWhi/z+IXQ7b4k=";
        let mut sends = Vec::new();
        for (source, epoch, seq) in [
            (0u8, 1u8, 5u16),
            (0, 1, 3),
            (0, 1, 5),
            (1, 2, 900),
            (0, 0, 9),
            (0, 1, 80),
            (0, 1, 10),
            (0, 2, 0),
        ] {
            sends.extend_from_slice(&[source, epoch]);
            sends.extend_from_slice(&seq.to_be_bytes());
        }
        vec![
            (
                "sealed_k1",
                sealed(K1, 1_764_000_000_000, 42, b"ping from node a"),
            ),
            ("sealed_k2", sealed(K2, 3, 0, &[0u8; 300])),
            ("sealed_other_key", sealed(other, 3, 1, b"another cluster")),
            ("guard_sends", sends),
        ]
    }

    #[test]
    fn seeds_are_current_and_pass() {
        for (name, bytes) in seeds() {
            let path = format!(
                "{}/seeds/sealed_datagrams/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            if std::env::var_os("FUZZ_WRITE_SEEDS").is_some() {
                std::fs::create_dir_all(format!(
                    "{}/seeds/sealed_datagrams",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap();
                std::fs::write(&path, &bytes).unwrap();
            }
            let stored = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                stored, bytes,
                "{name} is stale: rerun with FUZZ_WRITE_SEEDS=1"
            );
            check_sealed(&bytes);
        }
    }

    #[test]
    fn odd_inputs_pass() {
        for input in [
            &[][..],
            &[0x40],
            &[0xc3, 0, 0, 0, 1],
            &[SEAL_TAG_V1; 44],
            &[SEAL_TAG_V1; 1201],
            &[0x3f; 50],
        ] {
            check_sealed(input);
        }
    }
}
