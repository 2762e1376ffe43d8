//! Sealing of membership datagrams on the wire (first byte with bit 0x40 clear).
//!
//! PLACEHOLDER until the AEAD seal (`crate::seal`) lands: frames the plaintext behind a tag
//! byte without encryption.

use std::net::SocketAddr;

/// Tag of a sealed membership datagram; bit 0x40 is clear, so it is never QUIC's.
const TAG: u8 = 0x01;

/// Why a datagram was refused before it was decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a sealed membership datagram")]
    NotSealed,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotSealed => "not_sealed",
        }
    }
}

/// Seals what membership sends and opens what it receives.
#[derive(Default)]
pub struct Sealer {}

impl Sealer {
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + 1);
        out.push(TAG);
        out.extend_from_slice(plaintext);
        out
    }

    pub fn open(&self, _from: SocketAddr, datagram: &[u8]) -> Result<Vec<u8>, Refusal> {
        match datagram.split_first() {
            Some((&TAG, rest)) => Ok(rest.to_vec()),
            _ => Err(Refusal::NotSealed),
        }
    }
}
