//! Our own node-to-node requests (besides gossip), postcard-encoded on a QUIC bidirectional
//! stream: one request, one response.

use serde::{Deserialize, Serialize};

/// A request one node sends another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// "Who are you?" A client asks the master it dials, to learn the master's node id:
    /// behind NAT or port mapping the address it dialled says nothing about that.
    Hello { node_id: String, generation: u64 },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Hello { node_id: String, generation: u64 },
    Error { message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_postcard() {
        let request = Request::Hello {
            node_id: "edge-1".into(),
            generation: 7,
        };
        let bytes = postcard::to_allocvec(&request).unwrap();
        assert_eq!(postcard::from_bytes::<Request>(&bytes).unwrap(), request);
        assert!(postcard::from_bytes::<Response>(&[0xff, 0xff]).is_err());
    }
}
