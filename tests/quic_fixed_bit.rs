//! One UDP port for QUIC and sealed datagrams rests on one fact: every QUIC packet sets bit
//! 0x40 of its first byte, and a sealed datagram's first byte has it clear
//! (`bocluster::seal::is_sealed_datagram`). Here two real quinn endpoints with this cluster's
//! TLS identities (mid-rotation key lists) talk through a UDP relay that records the first
//! byte of every datagram in both directions.
//!
//! quinn "greases" the bit by default (RFC 9287): a peer that allows it gets about half of
//! its packets with 0x40 clear. So the endpoints that share a socket with sealed datagrams
//! must turn that off (`EndpointConfig::grease_quic_bit(false)`), and this test shows both
//! sides of it.
//!
//! Address block used here: 127.0.158.x.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use bocluster::cluster_key::ClusterKeys;
use bocluster::seal::is_sealed_datagram;
use bocluster::tls::{ClusterIdentity, SERVER_NAME};
use common::*;

const BLOCK: u8 = 158;

fn identity(keys: &str, node: &str) -> ClusterIdentity {
    ClusterIdentity::new(&ClusterKeys::parse(keys).unwrap(), node).unwrap()
}

fn endpoint_config(grease: bool) -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config.grease_quic_bit(grease);
    config
}

/// Forwards datagrams between one client and `server`, recording every first byte.
async fn relay(socket: tokio::net::UdpSocket, server: SocketAddr, seen: Arc<Mutex<Vec<u8>>>) {
    let mut client: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buf).await else {
            return;
        };
        if len > 0 {
            seen.lock().unwrap().push(buf[0]);
        }
        let to = if from == server {
            match client {
                Some(c) => c,
                None => continue,
            }
        } else {
            client = Some(from);
            server
        };
        let _ = socket.send_to(&buf[..len], to).await;
    }
}

/// A handshake and 40 request/answer round trips through the relay; returns the first bytes
/// seen, or the connection error.
fn talk(client_keys: &str, server_keys: &str, grease: bool, host: u8) -> Result<Vec<u8>, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runtime = Arc::new(quinn::TokioRuntime);
        let server_identity = identity(server_keys, "server");
        let server_config = quinn::ServerConfig::with_crypto(Arc::new(
            server_identity.quic_server_config().unwrap(),
        ));
        let server = quinn::Endpoint::new(
            endpoint_config(grease),
            Some(server_config),
            UdpSocket::bind(SocketAddr::new(ip(BLOCK, host), 0)).unwrap(),
            runtime.clone(),
        )
        .unwrap();
        let server_addr = server.local_addr().unwrap();
        let relay_socket = tokio::net::UdpSocket::bind(SocketAddr::new(ip(BLOCK, host + 1), 0))
            .await
            .unwrap();
        let relay_addr = relay_socket.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let relay_task = tokio::spawn(relay(relay_socket, server_addr, seen.clone()));

        // The server echoes every stream it accepts.
        let echo = tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                let Ok(connection) = incoming.await else {
                    continue;
                };
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    if let Ok(data) = recv.read_to_end(4096).await {
                        let _ = send.write_all(&data).await;
                        let _ = send.finish();
                    }
                }
            }
        });

        let client_identity = identity(client_keys, "client");
        let mut client = quinn::Endpoint::new(
            endpoint_config(grease),
            None,
            UdpSocket::bind(SocketAddr::new(ip(BLOCK, host + 2), 0)).unwrap(),
            runtime,
        )
        .unwrap();
        client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
            client_identity.quic_client_config().unwrap(),
        )));
        let outcome = async {
            let connection = client
                .connect(relay_addr, SERVER_NAME)
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            for i in 0..40u32 {
                let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
                let message = format!("round trip {i}");
                send.write_all(message.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                send.finish().map_err(|e| e.to_string())?;
                let answer = recv.read_to_end(4096).await.map_err(|e| e.to_string())?;
                assert_eq!(answer, message.as_bytes());
            }
            connection.close(0u32.into(), b"done");
            Ok::<(), String>(())
        };
        let result = tokio::time::timeout(DEADLINE, outcome)
            .await
            .unwrap_or_else(|_| Err("timed out".to_string()));
        client.wait_idle().await;
        echo.abort();
        relay_task.abort();
        let bytes = seen.lock().unwrap().clone();
        result.map(|()| bytes)
    })
}

const K1: &str = "kL63lntqa/vXk0YjAysIOtioBkRiaRl3WhUBmpA+Mo8=";
const K2: &str = "O6Tr/fUyefcE2iG2Evq9IQwVP5eU1toongTe1sZLpEI=";
const K3: &str = "DhoOZoqY1UHBgRtVNaeoBpaOp0LJUeWhi/z+IXQ7b4k=";

#[test]
fn without_greasing_no_quic_packet_looks_sealed() {
    // A node that has promoted K2 and one that has only added it still talk.
    let bytes = talk(&format!("{K2},{K1}"), &format!("{K1},{K2}"), false, 1)
        .unwrap_or_else(|e| panic!("the QUIC connection failed: {e}"));
    let short = bytes.iter().filter(|b| *b & 0x80 == 0).count();
    assert!(
        short >= 40,
        "only {short} short-header packets of {}",
        bytes.len()
    );
    let sealed: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| is_sealed_datagram(*b))
        .collect();
    assert!(
        sealed.is_empty(),
        "{} of {} QUIC packets would be taken for sealed datagrams: {sealed:02x?}",
        sealed.len(),
        bytes.len()
    );
    assert!(bytes.iter().all(|b| b & 0x40 != 0));
    eprintln!(
        "MEASURED fixed bit: {} QUIC datagrams ({short} short headers) with greasing off, all with 0x40 set",
        bytes.len()
    );
}

#[test]
fn quinn_greases_the_bit_by_default_so_it_must_be_turned_off() {
    let bytes =
        talk(K1, K1, true, 11).unwrap_or_else(|e| panic!("the QUIC connection failed: {e}"));
    let cleared = bytes.iter().filter(|b| is_sealed_datagram(**b)).count();
    // Each short-header packet has its bit cleared with probability 1/2: over 40 and more,
    // none cleared would happen once in 2^40 runs.
    assert!(
        cleared > 0,
        "quinn no longer greases by default ({} datagrams, none with 0x40 clear)",
        bytes.len()
    );
    eprintln!(
        "MEASURED fixed bit: with quinn's default, {cleared} of {} QUIC datagrams had 0x40 clear",
        bytes.len()
    );
}

#[test]
fn endpoints_without_a_common_key_do_not_connect() {
    let err = talk(K3, &format!("{K1},{K2}"), false, 21).unwrap_err();
    assert!(!err.is_empty());
}
