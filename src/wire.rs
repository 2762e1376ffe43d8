//! Our own node-to-node requests, postcard-encoded on a QUIC bidirectional stream: one
//! request, one response; a client's first registration also in one sealed datagram each way
//! (see `transport::sealed_requests`). (Probes travel as sealed datagrams, see `membership`.)

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::membership::{GoneMember, JoinView, MemberId, RecordUpdate, RecordVersion};

/// Who a node is and what it serves, as it tells a peer it talks to directly.
///
/// A master that exchanges introductions with a client knows at once that the client is
/// alive, where, and with which databases: it lists it `alive` right away instead of after
/// gossip's failure detector has heard it twice (a second or so).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introduction {
    pub node_id: String,
    pub generation: u64,
    /// The endpoint the node advertises (`BO_ENDPOINT`).
    pub endpoint: SocketAddr,
    pub host: String,
    pub databases: Vec<String>,
}

/// A request one node sends another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// "Who are you?", with the sender's own introduction. Behind NAT or port mapping the
    /// address dialled says nothing about who answers, so each side learns the other's node id.
    /// `register` is set by a `BO_MASTER` client: it registers all its databases with the
    /// receiver now (gossip carries the same registration, and keeps it current, later). The
    /// receiver first checks the id, as for [`Request::Register`].
    Hello { node: Introduction, register: bool },
    /// "Let me join through you": the sender's identity and record; answered with the
    /// receiver's whole view, once, so the joiner does not wait for gossip to fill it in.
    Join {
        member: MemberId,
        record: RecordUpdate,
    },
    /// Anti-entropy: the (node, generation, version) of every record the receiver holds.
    Versions,
    /// The records the receiver holds for these nodes.
    Records { nodes: Vec<String> },
    /// "Do you know a live node with this id, and where?" (asked by a node at start, so two
    /// processes never run under one node id).
    Lookup { node_id: String },
    /// Anti-entropy of liveness: the members the receiver holds dead or left (asked when
    /// two nodes' digests differ and their records do not explain it). Kept last: older nodes
    /// answer what they cannot decode with an error, and the asker does without.
    Gone,
    /// A `BO_MASTER` client's first registration, sent before its membership starts: a
    /// registering [`Request::Hello`] that is also the start-time node id check. An id the
    /// receiver lists alive elsewhere, where something answers as that id, is refused with
    /// [`Response::NodeIdInUse`]. Kept last: an older master answers it with an error, and the
    /// client checks through `Lookup` and registers with `Hello` instead.
    Register { node: Introduction },
}

impl Request {
    /// Whether a receiver serves this request from one sealed datagram (see
    /// `transport::sealed_requests`): only a client's first registration, the one request on
    /// the path of a start, and one that changes nothing when it is replayed within the
    /// freshness window (the same registration again).
    pub fn may_travel_sealed(&self) -> bool {
        matches!(self, Request::Register { .. })
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello {
        node: Introduction,
    },
    /// Kept second: the encoding of every earlier variant stays what older nodes send.
    Error {
        message: String,
    },
    Join(JoinView),
    Versions(Vec<RecordVersion>),
    Records(Vec<RecordUpdate>),
    /// The answer to [`Request::Lookup`]: the endpoint and generation of that node, if the
    /// receiver lists it alive.
    Lookup(Option<(SocketAddr, u64)>),
    /// The answer to [`Request::Gone`].
    Gone(Vec<GoneMember>),
    /// A registration refused: another process answers as that node id at
    /// `endpoint`. Kept last, as [`Response::Gone`] is.
    NodeIdInUse {
        endpoint: SocketAddr,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_postcard() {
        let request = Request::Hello {
            node: Introduction {
                node_id: "edge-1".into(),
                generation: 7,
                endpoint: "192.168.0.3:19091".parse().unwrap(),
                host: "edge".into(),
                databases: vec!["log1".into(), "log2".into()],
            },
            register: true,
        };
        let bytes = postcard::to_allocvec(&request).unwrap();
        assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), request);
        assert!(postcard::from_bytes::<Response>(&[0xff, 0xff]).is_err());
    }
}
