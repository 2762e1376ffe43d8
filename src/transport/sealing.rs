//! The transport's side of sealed membership datagrams: [`crate::seal`] with this process's
//! epoch, a growing sequence number, fresh nonces, and one replay guard for all sources.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::cluster_key::ClusterKeys;
use crate::membership::SenderStamp;
use crate::seal::{DatagramSeal, OpenError, ReplayGuard};

/// Sources whose replay state is kept (about 40 bytes each); beyond it, the least recently
/// heard is forgotten.
const REPLAY_SOURCES: usize = 65_536;

/// Seals what membership sends and opens what it receives.
pub struct Sealer {
    seal: DatagramSeal,
    /// This process's epoch: its start time in ms, so a restarted sender's epoch is newer.
    epoch: u64,
    seq: AtomicU64,
    guard: Mutex<ReplayGuard>,
}

impl Sealer {
    pub fn new(keys: &ClusterKeys) -> Sealer {
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Sealer {
            seal: DatagramSeal::new(keys),
            epoch,
            seq: AtomicU64::new(0),
            guard: Mutex::new(ReplayGuard::new(REPLAY_SOURCES)),
        }
    }

    /// A sealer whose process started at `epoch` (ms since the Unix epoch): for tests of
    /// what an old process's datagrams meet.
    #[cfg(test)]
    pub fn with_epoch(keys: &ClusterKeys, epoch: u64) -> Sealer {
        Sealer {
            epoch,
            ..Sealer::new(keys)
        }
    }

    /// The sealed datagram, or `None` when the plaintext is too large to seal.
    pub fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let nonce: [u8; 12] = rand::random();
        let mut out = Vec::with_capacity(plaintext.len() + crate::seal::SEAL_OVERHEAD);
        self.seal
            .seal(self.epoch, seq, nonce, plaintext, &mut out)
            .ok()
            .map(|()| out)
    }

    /// The plaintext, and where the datagram stands in its sender's stream.
    pub fn open(
        &self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(Vec<u8>, SenderStamp), OpenError> {
        let mut guard = self.guard.lock().unwrap_or_else(|p| p.into_inner());
        self.seal.open(from, datagram, &mut guard).map(|opened| {
            let stamp = SenderStamp {
                epoch: opened.epoch,
                seq: opened.seq,
            };
            (opened.plaintext, stamp)
        })
    }
}
