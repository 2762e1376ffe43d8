//! Word from a peer's host that nothing listens on its port any more.
//!
//! When a node's process is gone (killed, crashed, out of memory), its host still runs: a
//! datagram sent to its port is answered by the host's kernel with ICMP "port unreachable".
//! A process that is merely frozen or starved keeps its socket open, so its datagrams wait
//! in the kernel and no such answer comes; neither does one through a partition. This is the
//! one signal that tells a dead process from a silent one, so membership can declare the
//! first quickly and give the second the time a pause needs (see
//! `membership::settings::Timings::port_closed_timeout`).
//!
//! Linux hands these answers to an unconnected UDP socket only if it asked (`IP_RECVERR`):
//! they are queued on the socket's error queue, read here with `MSG_ERRQUEUE`. A queued error
//! also fails the socket's next send or receive once (`ECONNREFUSED`): receives read past it,
//! every send goes through [`send_past_queued_error`], and draining the queue at once clears
//! it.

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};

/// ICMP (v4): destination unreachable, port unreachable.
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
/// ICMPv6: destination unreachable, port unreachable.
const ICMP6_DST_UNREACH: u8 = 1;
const ICMP6_DST_UNREACH_NOPORT: u8 = 4;

/// Bytes for one error's control messages (an error and its offender take about 64).
const CONTROL_BUFFER: usize = 512;

/// Asks the kernel to queue the ICMP errors of what this socket sends.
pub fn ask_for_errors(socket: &std::net::UdpSocket) -> io::Result<()> {
    let v4 = setsockopt(socket, sockopt::Ipv4RecvErr, &true);
    if socket.local_addr()?.is_ipv6() {
        // A dual-stack socket: IPv4 peers' errors come the IPv4 way.
        setsockopt(socket, sockopt::Ipv6RecvErr, &true).map_err(io::Error::from)?;
        Ok(())
    } else {
        v4.map_err(io::Error::from)
    }
}

/// Runs `send` again once if it failed with `ECONNREFUSED`: that reports an ICMP error queued
/// for an earlier datagram, and this one was not sent.
pub fn send_past_queued_error<T>(mut send: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    match send() {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => send(),
        sent => sent,
    }
}

/// What one entry of the error queue said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedError {
    /// Nothing listens on this address's port: its host said so.
    PortClosed(SocketAddr),
    /// Anything else (a host or network unreachable, a packet too big): not ours to act on.
    Other,
}

/// Reads one entry of `socket`'s error queue; `WouldBlock` when it is empty.
pub fn read_error(socket: &impl AsFd) -> io::Result<QueuedError> {
    // The payload is the start of the datagram that was refused: not needed.
    let mut payload = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut payload)];
    // Room for the error and its offender, and for what else quinn asked the socket to
    // report with every datagram (packet info, ECN, segment size), which comes along: a
    // control buffer too small for all of it loses the error.
    let mut control = [0u8; CONTROL_BUFFER];
    let message = recvmsg::<SockaddrStorage>(
        socket.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let destination = message.address.as_ref().and_then(socket_addr);
    let mut port_closed = false;
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        port_closed |= match cmsg {
            ControlMessageOwned::Ipv4RecvErr(err, _) => {
                err.ee_origin == nix::libc::SO_EE_ORIGIN_ICMP
                    && err.ee_type == ICMP_DEST_UNREACH
                    && err.ee_code == ICMP_PORT_UNREACH
            }
            ControlMessageOwned::Ipv6RecvErr(err, _) => {
                err.ee_origin == nix::libc::SO_EE_ORIGIN_ICMP6
                    && err.ee_type == ICMP6_DST_UNREACH
                    && err.ee_code == ICMP6_DST_UNREACH_NOPORT
            }
            _ => false,
        };
    }
    Ok(match destination {
        Some(addr) if port_closed => QueuedError::PortClosed(addr),
        _ => QueuedError::Other,
    })
}

/// The address of a socket address, IPv4-mapped IPv6 addresses as IPv4 (how peers are named).
fn socket_addr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    let v6 = storage.as_sockaddr_in6()?;
    let addr = SocketAddr::V6(SocketAddrV6::new(v6.ip(), v6.port(), 0, 0));
    Some(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Waits (polling, with a deadline) for the next queued error.
    fn next_error(socket: &std::net::UdpSocket) -> QueuedError {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match read_error(socket) {
                Ok(error) => return error,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("no queued error: {e}"),
            }
        }
    }

    #[test]
    fn a_closed_port_is_named_and_an_open_one_is_not() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        ask_for_errors(&socket).expect("IP_RECVERR");
        // As quinn's socket does: every message carries its packet info and TOS as well.
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).expect("IP_PKTINFO");
        setsockopt(&socket, sockopt::IpRecvTos, &true).expect("IP_RECVTOS");
        // A port that was open a moment ago and is closed now, as a killed node's.
        let closed = {
            let gone = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            gone.local_addr().expect("addr")
        };
        socket.send_to(b"\x01ping", closed).expect("send");
        assert_eq!(next_error(&socket), QueuedError::PortClosed(closed));
        // The queue is empty again, and the socket works as before.
        let open = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let open_addr = open.local_addr().expect("addr");
        socket.send_to(b"\x01ping", open_addr).expect("send");
        let mut buf = [0u8; 16];
        open.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let (n, _) = open.recv_from(&mut buf).expect("received");
        assert_eq!(&buf[..n], b"\x01ping");
        assert_eq!(
            read_error(&socket).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
    }

    /// The transport waits for errors with tokio (`Interest::ERROR`), not by polling.
    #[tokio::test]
    async fn tokio_wakes_on_the_error_queue() {
        let std_socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        ask_for_errors(&std_socket).expect("IP_RECVERR");
        std_socket.set_nonblocking(true).unwrap();
        let socket = tokio::net::UdpSocket::from_std(std_socket).unwrap();
        let closed = {
            let gone = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            gone.local_addr().expect("addr")
        };
        socket.send_to(b"\x01ping", closed).await.expect("send");
        let read = tokio::time::timeout(
            Duration::from_secs(3),
            socket.async_io(tokio::io::Interest::ERROR, || read_error(&socket)),
        )
        .await;
        assert!(
            matches!(read, Ok(Ok(QueuedError::PortClosed(a))) if a == closed),
            "{read:?}"
        );
    }
}
