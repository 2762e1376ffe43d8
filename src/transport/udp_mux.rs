//! One UDP socket, two protocols: QUIC for streams and sealed membership datagrams.
//!
//! QUIC packets always set the fixed bit (0x40) of their first byte (RFC 9000; bit greasing
//! is switched off on our endpoint, so peers never clear it), and a sealed datagram's first
//! byte has it clear. [`MuxSocket`] wraps the socket quinn reads: every received datagram whose
//! first byte has the bit clear is taken out and handed to membership; the rest goes to quinn.
//! With receive offload one buffer may hold several datagrams of one sender (`stride`): each
//! is classified on its own.
//!
//! It drives the socket itself (quinn's own UDP state, with tokio's readiness), as quinn's
//! tokio runtime does, for one difference: the socket asks for ICMP errors (see
//! `closed_ports`), and a queued error fails the next send once. quinn's wrapper drops that
//! packet and logs a warning; here the send is tried again, since the error was about an
//! earlier datagram.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::io::Interest;
use tokio::sync::mpsc;

/// A failed QUIC send is logged as a warning at most this often.
const SEND_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Whether a datagram starting with `first_byte` is ours rather than QUIC's.
pub fn is_membership_datagram(first_byte: u8) -> bool {
    first_byte & 0x40 == 0
}

/// quinn's socket, with membership datagrams taken out on the way in.
pub struct MuxSocket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    membership: mpsc::Sender<(SocketAddr, Bytes)>,
    /// Membership datagrams dropped because membership had not kept up.
    pub overflow: Arc<AtomicU64>,
    /// When a failed send was last logged as a warning.
    last_send_warning: Mutex<Option<Instant>>,
}

impl fmt::Debug for MuxSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxSocket").finish_non_exhaustive()
    }
}

impl MuxSocket {
    /// Takes `socket` over (it must be in a tokio runtime) for quinn and membership.
    pub fn new(
        socket: std::net::UdpSocket,
        membership: mpsc::Sender<(SocketAddr, Bytes)>,
    ) -> io::Result<MuxSocket> {
        // Sets the socket non-blocking, and asks for what quinn needs with every datagram.
        let state = UdpSocketState::new((&socket).into())?;
        Ok(MuxSocket {
            io: tokio::net::UdpSocket::from_std(socket)?,
            state,
            membership,
            overflow: Arc::new(AtomicU64::new(0)),
            last_send_warning: Mutex::new(None),
        })
    }

    /// One send; a failure that only reports an earlier datagram's ICMP error is tried again.
    fn send(&self, transmit: &Transmit) -> io::Result<()> {
        super::closed_ports::send_past_queued_error(|| {
            self.state.try_send((&self.io).into(), transmit)
        })
    }

    /// A send that failed for good: QUIC resends what it lost, as for a lost packet.
    fn send_failed(&self, transmit: &Transmit, error: &io::Error) {
        let mut last = self
            .last_send_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= SEND_WARNING_EVERY);
        // Refused twice in a row: two ICMP errors were queued (a peer that just died).
        if due && error.kind() != io::ErrorKind::ConnectionRefused {
            *last = Some(Instant::now());
            tracing::warn!(peer = %transmit.destination, error = %error, "a QUIC packet could not be sent (warned at most once a minute)");
        } else {
            tracing::debug!(peer = %transmit.destination, error = %error, "a QUIC packet could not be sent");
        }
    }

    fn deliver(&self, from: SocketAddr, datagram: &[u8]) {
        if self
            .membership
            .try_send((from, Bytes::copy_from_slice(datagram)))
            .is_err()
        {
            self.overflow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Takes the membership datagrams out of one received buffer, keeping QUIC's in place.
/// Returns the bytes left for QUIC.
pub fn split_buffer(
    buf: &mut [u8],
    len: usize,
    stride: usize,
    mut take: impl FnMut(&[u8]),
) -> usize {
    let stride = if stride == 0 { len.max(1) } else { stride };
    let (mut read, mut write) = (0usize, 0usize);
    while read < len {
        let end = (read + stride).min(len);
        if is_membership_datagram(buf[read]) {
            take(&buf[read..end]);
        } else {
            if write != read {
                buf.copy_within(read..end, write);
            }
            write += end - read;
        }
        read = end;
    }
    write
}

/// Tells quinn when the socket can take more.
#[derive(Debug)]
struct WritablePoller {
    socket: Arc<MuxSocket>,
}

impl UdpPoller for WritablePoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.socket.io.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for MuxSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(WritablePoller { socket: self })
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        match self.io.try_io(Interest::WRITABLE, || self.send(transmit)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(e),
            // An MTU probe larger than the path: expected, as quinn's own socket treats it.
            Err(e) if e.raw_os_error() == Some(nix::libc::EMSGSIZE) => Ok(()),
            Err(e) => {
                self.send_failed(transmit, &e);
                Ok(())
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            // Any other error (a queued ICMP error fails one receive) is read past.
            let Ok(received) = self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), bufs, meta)
            }) else {
                continue;
            };
            let mut kept = 0usize;
            for i in 0..received.min(bufs.len()).min(meta.len()) {
                let from = meta[i].addr;
                let len = meta[i].len.min(bufs[i].len());
                let left =
                    split_buffer(&mut bufs[i], len, meta[i].stride, |d| self.deliver(from, d));
                if left == 0 {
                    continue;
                }
                meta[i].len = left;
                if kept != i {
                    meta[kept] = meta[i];
                    let (head, tail) = bufs.split_at_mut(i);
                    head[kept][..left].copy_from_slice(&tail[0][..left]);
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
            // Everything was membership's: read again (or register for wake-up).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quic_first_bytes_are_never_ours() {
        // Long header (Initial, Handshake...) and short header packets set 0x40.
        for byte in [0xc0u8, 0xc3, 0xe1, 0x40, 0x5f, 0x7f] {
            assert!(!is_membership_datagram(byte), "{byte:#x}");
        }
        for byte in [0x00u8, 0x01, 0x3f, 0x80, 0xbf] {
            assert!(is_membership_datagram(byte), "{byte:#x}");
        }
    }

    #[test]
    fn split_takes_ours_and_compacts_quic_segments() {
        // Three segments of stride 4, the middle one ours, the last one short.
        let mut buf = [0x41, 1, 1, 1, 0x01, 2, 2, 2, 0x42, 3, 0, 0];
        let mut taken = Vec::new();
        let left = split_buffer(&mut buf, 10, 4, |d| taken.push(d.to_vec()));
        assert_eq!(taken, vec![vec![0x01, 2, 2, 2]]);
        assert_eq!(left, 6);
        assert_eq!(&buf[..6], &[0x41, 1, 1, 1, 0x42, 3]);
        // A buffer that is all ours leaves nothing for QUIC.
        let mut ours = [0x02, 9, 9];
        assert_eq!(split_buffer(&mut ours, 3, 0, |_| {}), 0);
    }
}
