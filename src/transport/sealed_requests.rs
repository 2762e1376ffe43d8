//! Requests that travel in one sealed datagram and are answered in one, beside QUIC.
//!
//! A `BO_MASTER` client's first registration used to wait for a QUIC handshake with its
//! master: two round trips and a mutual-TLS exchange (about 2-4 ms of a start of 8 on a
//! loaded 2-core machine), before the one round trip that registers. The registration fits
//! one datagram, and a sealed datagram is admitted by the same cluster key the TLS CA is
//! derived from, so the client sends it sealed and gets its answer sealed: one round trip.
//! QUIC stays for every request that does not fit, and is the fallback for this one.
//!
//! Only requests that [`Request::may_travel_sealed`] are served this way. A request is
//! refused (answered "ask over QUIC", [`Answer::AskOverQuic`]) when its sender's epoch (the
//! start time of the sending process, which seals it) is more than [`FRESHNESS`] away from
//! the receiver's clock: the replay guard is kept in memory only, so after a restart of the
//! receiver a captured datagram would open again, and this bounds how old a replayed one may
//! be. A client whose clock is that far off asks over QUIC, where no replay is possible.
//!
//! Never amplify: an answer is sent only when it is no bigger than the request that asked for
//! it (the asker pads its request to a whole datagram), else "ask over QUIC" is.
//!
//! Plaintext layouts (inside the seal; membership's packet kinds are 1-7):
//!
//! ```text
//! request: 0x20 | id (8, little-endian) | postcard(Request) | zero padding
//! answer:  0x21 | id (8, little-endian) | 1 | postcard(Response)     (answered)
//!          0x21 | id (8, little-endian) | 0                          (ask over QUIC)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::wire::{Request, Response};

/// First plaintext byte of a sealed request.
pub const KIND_REQUEST: u8 = 0x20;
/// First plaintext byte of a sealed answer.
pub const KIND_ANSWER: u8 = 0x21;

/// Kind and request id.
const HEADER: usize = 1 + 8;

/// How far a sealed request's sender epoch may be from the receiver's clock.
pub const FRESHNESS: Duration = Duration::from_secs(60);

/// A sealed request or answer, decoded.
#[derive(Debug, PartialEq)]
pub enum Message {
    Request { id: u64, request: Request },
    Answer { id: u64, answer: Answer },
}

/// What came back for a sealed request.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Answered(Response),
    /// Not served in a datagram (too old, too big to answer, or not a kind served this way).
    AskOverQuic,
}

/// Whether a plaintext is a sealed request or answer (rather than a membership packet).
pub fn is_sealed_request_or_answer(plaintext: &[u8]) -> bool {
    matches!(plaintext.first(), Some(&KIND_REQUEST) | Some(&KIND_ANSWER))
}

/// The plaintext of request `id`, zero-padded to `pad_to` bytes; `None` when it does not fit
/// in `max` bytes.
pub fn encode_request(id: u64, request: &Request, pad_to: usize, max: usize) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(pad_to.max(HEADER));
    bytes.push(KIND_REQUEST);
    bytes.extend_from_slice(&id.to_le_bytes());
    let mut bytes = postcard::to_extend(request, bytes).ok()?;
    if bytes.len() > max {
        return None;
    }
    if bytes.len() < pad_to {
        bytes.resize(pad_to.min(max), 0);
    }
    Some(bytes)
}

/// The plaintext of the answer to request `id`.
pub fn encode_answer(id: u64, answer: &Answer) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + 1);
    bytes.push(KIND_ANSWER);
    bytes.extend_from_slice(&id.to_le_bytes());
    match answer {
        Answer::AskOverQuic => {
            bytes.push(0);
            bytes
        }
        Answer::Answered(response) => {
            bytes.push(1);
            // A response postcard cannot encode is answered "ask over QUIC".
            postcard::to_extend(response, bytes)
                .unwrap_or_else(|_| encode_answer(id, &Answer::AskOverQuic))
        }
    }
}

/// Decodes a sealed request or answer; `None` for anything else or anything malformed.
/// Padding after a request is ignored.
pub fn decode(plaintext: &[u8]) -> Option<Message> {
    let (&kind, rest) = plaintext.split_first()?;
    let id = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let body = &rest[8..];
    match kind {
        KIND_REQUEST => {
            let (request, _padding) = postcard::take_from_bytes::<Request>(body).ok()?;
            Some(Message::Request { id, request })
        }
        KIND_ANSWER => {
            let (&answered, response) = body.split_first()?;
            let answer = match answered {
                0 if response.is_empty() => Answer::AskOverQuic,
                1 => Answer::Answered(postcard::from_bytes::<Response>(response).ok()?),
                _ => return None,
            };
            Some(Message::Answer { id, answer })
        }
        _ => None,
    }
}

/// Whether a sender epoch (ms since the Unix epoch) is within [`FRESHNESS`] of `now_ms`.
pub fn is_fresh(epoch_ms: u64, now_ms: u64) -> bool {
    epoch_ms.abs_diff(now_ms) <= FRESHNESS.as_millis() as u64
}

/// Requests sent and not answered yet, by id: an answer is taken only from the address the
/// request went to, once.
#[derive(Default)]
pub struct Pending {
    waiting: Mutex<HashMap<u64, (SocketAddr, oneshot::Sender<Answer>)>>,
}

impl Pending {
    /// A new request to `to`: its id, and where its answer arrives. The request is forgotten
    /// when the returned [`Waiting`] is dropped, however its wait ends.
    pub fn open(&self, to: SocketAddr) -> Waiting<'_> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.lock();
        let mut id: u64 = rand::random();
        while waiting.contains_key(&id) {
            id = rand::random();
        }
        waiting.insert(id, (to, tx));
        Waiting {
            pending: self,
            id,
            answer: rx,
        }
    }

    /// Hands `answer` to request `id` if it went to `from`; whether it was waited for.
    pub fn answer(&self, from: SocketAddr, id: u64, answer: Answer) -> bool {
        let mut waiting = self.lock();
        match waiting.get(&id) {
            Some((to, _)) if *to == from => {}
            _ => return false,
        }
        waiting
            .remove(&id)
            .is_some_and(|(_, tx)| tx.send(answer).is_ok())
    }

    /// Requests waiting (for tests).
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (SocketAddr, oneshot::Sender<Answer>)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request sent (or about to be) and its answer, still to come. Dropped, it forgets the
/// request: a cancelled or timed-out wait leaves nothing behind in [`Pending`].
pub struct Waiting<'a> {
    pending: &'a Pending,
    pub id: u64,
    pub answer: oneshot::Receiver<Answer>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Introduction;

    fn register() -> Request {
        Request::Register {
            node: Introduction {
                node_id: "c1".into(),
                generation: 7,
                endpoint: "10.0.0.3:19091".parse().unwrap(),
                host: "edge-7".into(),
                databases: vec!["log1".into(), "log2".into()],
            },
        }
    }

    #[test]
    fn a_padded_request_decodes_to_itself() {
        let bytes = encode_request(42, &register(), 1000, 1100).unwrap();
        assert_eq!(bytes.len(), 1000);
        assert_eq!(
            decode(&bytes),
            Some(Message::Request {
                id: 42,
                request: register()
            })
        );
    }

    #[test]
    fn a_request_too_big_for_the_datagram_is_not_encoded() {
        let mut big = register();
        if let Request::Register { node } = &mut big {
            node.databases = (0..100).map(|i| format!("database_{i:04}")).collect();
        }
        assert_eq!(encode_request(1, &big, 0, 1100), None);
    }

    #[test]
    fn answers_decode_to_themselves() {
        for answer in [
            Answer::AskOverQuic,
            Answer::Answered(Response::NodeIdInUse {
                endpoint: "10.0.0.9:9091".parse().unwrap(),
            }),
        ] {
            let bytes = encode_answer(7, &answer);
            assert_eq!(decode(&bytes), Some(Message::Answer { id: 7, answer }));
        }
    }

    #[test]
    fn malformed_plaintexts_decode_to_nothing() {
        let good = encode_answer(7, &Answer::AskOverQuic);
        for bad in [
            &[][..],
            &[KIND_REQUEST][..],
            &good[..5],
            &[KIND_ANSWER, 0, 0, 0, 0, 0, 0, 0, 0, 2][..],
            &[KIND_ANSWER, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9][..],
            &[KIND_REQUEST, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff][..],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        assert!(is_sealed_request_or_answer(&good));
        assert!(!is_sealed_request_or_answer(&[1, 2, 3]));
    }

    #[test]
    fn the_fuzz_seeds_are_a_request_and_two_answers() {
        let seeds: [&[u8]; 3] = [
            include_bytes!("../../fuzz/seeds/wire_messages/sealed_request_register"),
            include_bytes!("../../fuzz/seeds/wire_messages/sealed_answer_ask_over_quic"),
            include_bytes!("../../fuzz/seeds/wire_messages/sealed_answer_hello"),
        ];
        assert!(matches!(
            decode(seeds[0]),
            Some(Message::Request {
                id: 42,
                request: Request::Register { .. }
            })
        ));
        assert_eq!(
            decode(seeds[1]),
            Some(Message::Answer {
                id: 42,
                answer: Answer::AskOverQuic
            })
        );
        assert!(matches!(
            decode(seeds[2]),
            Some(Message::Answer {
                id: 42,
                answer: Answer::Answered(Response::Hello { .. })
            })
        ));
    }

    #[test]
    fn freshness_is_a_minute_either_way() {
        let now = 1_800_000_000_000;
        assert!(is_fresh(now, now));
        assert!(is_fresh(now - 60_000, now));
        assert!(is_fresh(now + 60_000, now));
        assert!(!is_fresh(now - 60_001, now));
        assert!(!is_fresh(now + 60_001, now));
        assert!(!is_fresh(0, now));
    }

    #[test]
    fn an_answer_is_taken_once_and_only_from_where_the_request_went() {
        let pending = Pending::default();
        let master: SocketAddr = "10.0.0.1:9091".parse().unwrap();
        let other: SocketAddr = "10.0.0.2:9091".parse().unwrap();
        let mut waiting = pending.open(master);
        let id = waiting.id;
        assert!(!pending.answer(other, id, Answer::AskOverQuic));
        assert!(!pending.answer(master, id.wrapping_add(1), Answer::AskOverQuic));
        assert!(pending.answer(master, id, Answer::AskOverQuic));
        assert_eq!(waiting.answer.try_recv(), Ok(Answer::AskOverQuic));
        assert!(!pending.answer(master, id, Answer::AskOverQuic));
    }

    #[test]
    fn a_request_given_up_is_forgotten() {
        let pending = Pending::default();
        let master: SocketAddr = "10.0.0.1:9091".parse().unwrap();
        let waiting = pending.open(master);
        let id = waiting.id;
        assert_eq!(pending.waiting(), 1);
        drop(waiting);
        assert_eq!(pending.waiting(), 0);
        assert!(!pending.answer(master, id, Answer::AskOverQuic));
    }
}
