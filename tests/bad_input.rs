//! Bad input at every door of a live node: random datagrams on UDP 9091, QUIC peers without
//! this cluster's certificate, malformed frames from a peer that has one, and malformed,
//! oversized and concurrent requests on the HTTP API (9090).
//!
//! Every test starts a master and a client the master has added with ADD CLIENT, records what
//! the master shows, throws its bad input at the master, and then checks that the master still
//! answers, shows the same SHOW CLUSTER (the client rows still `alive`), SHOW DATABASES and
//! SHOW NODES (nothing lost, nothing injected), and that its memory (VmRSS) did not grow
//! beyond 2x + 50 MiB of what it was before.
//!
//! Address blocks used here: 127.0.100.x to 127.0.113.x.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bocluster::cluster_key::ClusterKeys;
use bocluster::tls::{ClusterIdentity, ALPN, SERVER_NAME};
use bocluster::wire::{Introduction, Request, Response};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The cluster under attack, and what must survive.

/// What the master shows before the bad input, to compare with after.
struct Baseline {
    cluster: Vec<ClusterRow>,
    databases: Value,
    /// (node_id, status, endpoint, databases) of every SHOW NODES row.
    nodes: Vec<[String; 4]>,
    rss_kib: u64,
}

struct Fixture {
    _dir: tempfile::TempDir,
    block: u8,
    master: LocalNode,
    client: LocalNode,
    before: Baseline,
    /// Node ids a test injected on purpose (controls), left out of the SHOW NODES comparison.
    injected: Vec<String>,
}

/// A master on 127.0.<block>.1 with databases m1, m2, and a client on .2 with log1, log2
/// that the master has added (both databases), both `alive` in the master's SHOW CLUSTER.
fn fixture(block: u8, env: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut client_env = env.to_vec();
    client_env.push(("BO_DATABASES", "log1,log2"));
    let client = start(spec(dir.path(), block, 2, &client_env));
    let mut master_env = env.to_vec();
    master_env.push(("BO_DATABASES", "m1,m2"));
    let master = start(spec(dir.path(), block, 1, &master_env));
    let client_ip = ip(block, 2).to_string();
    for db in ["log1", "log2"] {
        ok(
            &master,
            &format!("ADD CLIENT ip=\"{client_ip}\" db=\"{db}\""),
        );
    }
    let client_id = client.spec.node_id.clone();
    let expected = expected_rows(&[
        (&client_ip, 9091, "log1", "add", "alive", &client_id),
        (&client_ip, 9091, "log2", "add", "alive", &client_id),
    ]);
    let formed = wait_for(DEADLINE, || {
        (show_cluster(&master) == expected).then_some(())
    });
    assert!(
        formed.is_some(),
        "the cluster never formed: {:?}; master log:\n{}",
        show_cluster(&master),
        master.log()
    );
    expect_status(&master, &client_id, "alive");
    expect_status(&client, &master.spec.node_id, "alive");
    // One answer of every kind first, so lazily built state is in the baseline.
    ok(&master, "SHOW NODES");
    let before = baseline(&master);
    Fixture {
        _dir: dir,
        block,
        master,
        client,
        before,
        injected: Vec::new(),
    }
}

fn show_nodes(node: &LocalNode) -> Vec<[String; 4]> {
    let text = |row: &serde_json::Map<String, Value>, k: &str| {
        row.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    node.query("SHOW NODES")
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|row| {
            [
                text(row, "node_id"),
                text(row, "status"),
                text(row, "endpoint"),
                text(row, "databases"),
            ]
        })
        .collect()
}

fn baseline(master: &LocalNode) -> Baseline {
    Baseline {
        cluster: show_cluster(master),
        databases: ok(master, "SHOW DATABASES")["results"].clone(),
        nodes: show_nodes(master),
        rss_kib: proc_status_kib(master, "VmRSS"),
    }
}

/// A `kB` field of /proc/<pid>/status of the node (VmRSS, VmHWM).
fn proc_status_kib(node: &LocalNode, field: &str) -> u64 {
    let pid = node.pid().expect("the node process is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e} (did the node exit?)"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Memory may grow to twice what it was, plus 50 MiB, and no more.
fn memory_bound_kib(before_kib: u64) -> u64 {
    2 * before_kib + 50 * 1024
}

/// After the bad input: the master process is running and healthy, its SHOW CLUSTER (client
/// rows `alive`), SHOW DATABASES and SHOW NODES are what they were, and so is the client's
/// view of the master; its memory is within [`memory_bound_kib`].
fn assert_intact(fx: &mut Fixture, what: &str) {
    assert!(
        !fx.master.has_exited(),
        "{what}: the master process exited; its log:\n{}",
        fx.master.log()
    );
    let health = get_health(&fx.master);
    assert_eq!(
        health["node_id"],
        fx.master.spec.node_id.as_str(),
        "{what}: {health}"
    );
    let cluster = show_cluster(&fx.master);
    assert_eq!(
        cluster,
        fx.before.cluster,
        "{what}: SHOW CLUSTER changed; master log:\n{}",
        fx.master.log()
    );
    let databases = ok(&fx.master, "SHOW DATABASES")["results"].clone();
    assert_eq!(databases, fx.before.databases, "{what}: SHOW DATABASES");
    let mut nodes = show_nodes(&fx.master);
    nodes.retain(|[id, ..]| !fx.injected.contains(id));
    assert_eq!(nodes, fx.before.nodes, "{what}: SHOW NODES changed");
    assert_eq!(
        node_status(&fx.client, &fx.master.spec.node_id).as_deref(),
        Some("alive"),
        "{what}: the client no longer sees the master alive"
    );
    let rss = proc_status_kib(&fx.master, "VmRSS");
    let bound = memory_bound_kib(fx.before.rss_kib);
    println!(
        "{what}: master VmRSS {} KiB before, {rss} KiB after (bound {bound} KiB)",
        fx.before.rss_kib
    );
    assert!(
        rss < bound,
        "{what}: master VmRSS grew from {} KiB to {rss} KiB (bound {bound} KiB)",
        fx.before.rss_kib
    );
}

fn get_health(node: &LocalNode) -> Value {
    let answer = http_exchange(
        node.http_addr(),
        b"GET /health HTTP/1.1\r\nHost: bocluster\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    let reply = answer
        .reply()
        .unwrap_or_else(|| panic!("GET /health: no answer: {answer:?}"));
    assert_eq!(reply.status, 200, "GET /health: {reply:?}");
    reply.json()
}

/// Polls the master's health and its client rows while bad input is thrown at it, to tell
/// whether it kept serving *during* the storm, not only after it.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<WatchReport>>,
}

#[derive(Debug, Default)]
struct WatchReport {
    polls: u32,
    failures: Vec<String>,
    slowest: Duration,
    /// Client-row statuses other than `alive` seen during the storm.
    not_alive: Vec<String>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Watcher {
    fn start(master: &LocalNode) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = master.http_addr();
        let node_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut report = WatchReport::default();
            while !node_stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = http_exchange(
                    addr,
                    &post_request(br#"{"stmt": "SHOW CLUSTER"}"#),
                    Duration::from_secs(10),
                );
                report.polls += 1;
                report.slowest = report.slowest.max(started.elapsed());
                match answer.reply() {
                    Some(reply) if reply.status == 200 => {
                        for row in bocluster::fleet::rows_as_maps(&reply.json()) {
                            let status = row["status"].as_str().unwrap_or_default().to_string();
                            if status != "alive" {
                                report.not_alive.push(status);
                            }
                        }
                    }
                    _ => report.failures.push(format!("{answer:?}")),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            report
        });
        Watcher {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops polling; asserts that every poll was answered in time and that the client rows
    /// never left `alive`.
    fn finish(mut self, what: &str) {
        self.stop.store(true, Ordering::Relaxed);
        let report = self.thread.take().unwrap().join().expect("watcher thread");
        println!(
            "{what}: {} polls during the storm, slowest {:?}",
            report.polls, report.slowest
        );
        assert!(report.polls > 0, "{what}: the watcher never polled");
        assert!(
            report.failures.is_empty(),
            "{what}: the master did not answer during the storm: {:?}",
            report.failures
        );
        assert!(
            report.not_alive.is_empty(),
            "{what}: client rows left `alive` during the storm: {:?}",
            report.not_alive
        );
    }
}

// ---------------------------------------------------------------------------------------------
// UDP 9091: random and truncated datagrams.

/// The first bytes of QUIC packets: long headers (Initial, 0-RTT, Handshake, Retry) of
/// version 1, of an unknown version (the server answers those with version negotiation), and
/// short headers, each with random or absurd connection-id lengths.
fn quic_looking(rng: &mut StdRng) -> Vec<u8> {
    let mut packet = Vec::with_capacity(1500);
    match rng.random_range(0..4) {
        0 | 1 => {
            packet.push(0xc0 | rng.random_range(0..0x40u8));
            let version: u32 = match rng.random_range(0..4) {
                0 => 0x0a1a_2a3a,
                1 => rng.random(),
                _ => 1,
            };
            packet.extend(version.to_be_bytes());
            for _ in 0..2 {
                // Connection-id lengths over 20 are invalid in version 1.
                let cid_len: u8 = if rng.random_bool(0.2) {
                    rng.random()
                } else {
                    rng.random_range(0..=20)
                };
                packet.push(cid_len);
                packet.extend((0..cid_len.min(20)).map(|_| rng.random::<u8>()));
            }
            // Token length, packet length (variable-length integers), packet number, payload.
            packet.extend((0..rng.random_range(0..8)).map(|_| rng.random::<u8>()));
        }
        2 => {
            packet.push(0x40 | rng.random_range(0..0x40u8));
            packet.extend((0..8).map(|_| rng.random::<u8>()));
        }
        _ => {
            // Version negotiation: version 0.
            packet.push(0x80 | rng.random::<u8>());
            packet.extend([0, 0, 0, 0]);
            packet.extend((0..rng.random_range(0..40)).map(|_| rng.random::<u8>()));
        }
    }
    // Initials must be padded to 1200 bytes; some are, some are not.
    let len = if rng.random_bool(0.5) {
        rng.random_range(1200..=1500)
    } else {
        rng.random_range(packet.len()..=1500)
    };
    while packet.len() < len {
        packet.push(rng.random());
    }
    packet.truncate(len);
    packet
}

/// Real QUIC Initial packets of this protocol (a quinn client's first flight, ALPN
/// bocluster/1), caught on a UDP socket of the test's own instead of the node.
fn real_initials(rt: &tokio::runtime::Runtime, block: u8, count: usize) -> Vec<Vec<u8>> {
    let identity = ClusterIdentity::new(&ClusterKeys::open_default(), "initial-catcher").unwrap();
    let config = quinn::ClientConfig::new(Arc::new(identity.quic_client_config().unwrap()));
    let initials = rt.block_on(async {
        let catcher = tokio::net::UdpSocket::bind(SocketAddr::new(ip(block, 51), 0))
            .await
            .unwrap();
        let target = catcher.local_addr().unwrap();
        let endpoint = quinn::Endpoint::client(SocketAddr::new(ip(block, 50), 0)).unwrap();
        let mut pending = Vec::new();
        let mut initials = Vec::new();
        for _ in 0..count {
            pending.push(
                endpoint
                    .connect_with(config.clone(), target, SERVER_NAME)
                    .unwrap(),
            );
            let mut buf = vec![0u8; 2048];
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), catcher.recv_from(&mut buf))
                .await
                .expect("a QUIC client sends its Initial at once")
                .unwrap();
            buf.truncate(n);
            initials.push(buf);
        }
        drop(pending);
        endpoint.close(0u32.into(), b"");
        initials
    });
    assert!(
        initials
            .iter()
            .all(|p| p.len() >= 1200 && p[0] & 0xf0 == 0xc0),
        "not QUIC Initial packets"
    );
    initials
}

#[test]
fn random_and_truncated_datagrams_on_udp_9091_are_ignored() {
    let block = 100;
    let mut fx = fixture(block, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let initials = real_initials(&rt, block, 16);
    let target = fx.master.quic_addr();
    let sockets: Vec<UdpSocket> = (0..8)
        .map(|_| UdpSocket::bind(SocketAddr::new(ip(block, 50), 0)).unwrap())
        .collect();
    let mut rng = StdRng::seed_from_u64(0x0b0c_1057);

    let watcher = Watcher::start(&fx.master);
    // 24,000 datagrams over about 6 s: a steady storm, not a bandwidth test.
    let started = Instant::now();
    let total = 24_000u32;
    let mut kinds = [0u32; 4];
    for i in 0..total {
        let datagram: Vec<u8> = match rng.random_range(0..10) {
            // Random bytes of random length, the empty datagram included.
            0..=3 => {
                let len = rng.random_range(0..=1500);
                kinds[0] += 1;
                (0..len).map(|_| rng.random::<u8>()).collect()
            }
            4..=6 => {
                kinds[1] += 1;
                quic_looking(&mut rng)
            }
            // A real Initial, truncated or with bytes flipped (its integrity check fails).
            7 | 8 => {
                kinds[2] += 1;
                let mut packet = initials[rng.random_range(0..initials.len())].clone();
                if rng.random_bool(0.5) {
                    packet.truncate(rng.random_range(0..packet.len()));
                } else {
                    for _ in 0..rng.random_range(1..8) {
                        let at = rng.random_range(0..packet.len());
                        packet[at] ^= 1 << rng.random_range(0..8);
                    }
                }
                packet
            }
            // A real Initial as it was: the node starts a handshake nobody finishes.
            _ => {
                kinds[3] += 1;
                initials[rng.random_range(0..initials.len())].clone()
            }
        };
        let socket = &sockets[rng.random_range(0..sockets.len())];
        // A full socket buffer may drop a datagram; that is UDP.
        let _ = socket.send_to(&datagram, target);
        if i % 200 == 199 {
            let due = started + Duration::from_micros(250 * u64::from(i + 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    println!(
        "sent {total} datagrams in {:?}: {} random, {} QUIC-looking, {} mangled Initials, {} replayed Initials",
        started.elapsed(),
        kinds[0],
        kinds[1],
        kinds[2],
        kinds[3]
    );
    // The storm reached the node's QUIC stack: it answered some of it (version negotiation
    // for unknown versions, handshakes for the replayed Initials).
    let mut answers = 0;
    let mut buf = [0u8; 2048];
    for socket in &sockets {
        socket.set_nonblocking(true).unwrap();
        while socket.recv_from(&mut buf).is_ok() {
            answers += 1;
        }
    }
    println!("the node answered {answers} datagrams of the storm");
    assert!(
        answers > 0,
        "the node never answered any datagram: did the storm reach it?"
    );
    watcher.finish("UDP storm");
    assert_intact(&mut fx, "after the UDP storm");
}

// ---------------------------------------------------------------------------------------------
// QUIC without this cluster's certificate.

/// The cluster key of the QUIC tests' nodes.
fn cluster_key(block: u8) -> String {
    test_key(&format!("bad-input-key-{block}"))
}

/// Accepts any server certificate (signatures still checked), so what is tested is the
/// node's verdict on the *client*, not the client's on the node.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A QUIC client config that trusts any node, presenting `client_cert` (chain and key) or
/// no certificate at all.
fn lenient_client_config(
    client_cert: Option<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)));
    let mut config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    client_config(quinn::crypto::rustls::QuicClientConfig::try_from(config).unwrap())
}

fn client_config(crypto: quinn::crypto::rustls::QuicClientConfig) -> quinn::ClientConfig {
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(5).try_into().unwrap()));
    config.transport_config(Arc::new(transport));
    config
}

/// A certificate chain of another cluster that *looks* like ours: a CA with the same subject
/// as the CA of `cluster_key` ("bocluster cluster CA <fingerprint>") but another key, and a
/// node certificate for "bocluster.node" signed by it. Only the node's check of the signature
/// can tell.
fn lookalike_cluster_cert(
    cluster_key: &str,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    let keys = ClusterKeys::parse(cluster_key).unwrap();
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("bocluster cluster CA {}", keys.first().fingerprint()),
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let node_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut node_params = CertificateParams::new(vec![SERVER_NAME.to_string()]).unwrap();
    node_params
        .distinguished_name
        .push(DnType::CommonName, "bocluster node intruder");
    let node_cert = node_params.signed_by(&node_key, &issuer).unwrap();
    (
        vec![node_cert.der().clone(), ca_cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(node_key.serialize_der().into()),
    )
}

/// A request stream: the Request tag and the postcard request.
fn request_frame(request: &Request) -> Vec<u8> {
    postcard::to_extend(request, vec![2u8]).unwrap()
}

fn hello(node_id: &str) -> Request {
    Request::Hello {
        node: Introduction {
            node_id: node_id.to_string(),
            generation: 1,
            endpoint: SocketAddr::from(([127, 0, 0, 1], 9091)),
            host: String::new(),
            databases: Vec::new(),
        },
        register: false,
    }
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random::<u8>()).collect()
}

/// What became of one QUIC connection attempt.
#[derive(Debug)]
struct Probe {
    /// The handshake failed on our side (e.g. we refused the node's certificate).
    handshake_error: Option<quinn::ConnectionError>,
    /// Answers that came back on request streams.
    answers: Vec<Response>,
    /// How the connection ended (None: still open when we stopped waiting).
    closed: Option<quinn::ConnectionError>,
}

impl Probe {
    /// Refused by TLS: a handshake error, or the peer closing the connection with a TLS
    /// alert (QUIC CRYPTO_ERROR codes 0x100..0x200, RFC 9001 4.8).
    fn refused_by_tls(&self) -> bool {
        let crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
        let is_tls = |e: &quinn::ConnectionError| match e {
            quinn::ConnectionError::TransportError(e) => crypto(e.code),
            quinn::ConnectionError::ConnectionClosed(close) => crypto(close.error_code),
            _ => false,
        };
        self.handshake_error.as_ref().is_some_and(is_tls)
            || (self.handshake_error.is_none() && self.closed.as_ref().is_some_and(is_tls))
    }
}

/// Connects with `config` and, if the handshake lets us, writes every kind of stream: garbage
/// on unidirectional streams, a gossip tag with garbage, a forged gossip message, a request
/// tag with garbage and a well-formed hello request; then waits for the connection to end.
async fn probe(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    node: SocketAddr,
    forged: &[u8],
    rng: &mut StdRng,
) -> Probe {
    let connecting = endpoint.connect_with(config, node, SERVER_NAME).unwrap();
    let connection = match tokio::time::timeout(Duration::from_secs(10), connecting).await {
        Err(_) => panic!("QUIC handshake with {node} neither finished nor failed in 10 s"),
        Ok(Err(e)) => {
            return Probe {
                handshake_error: Some(e),
                answers: Vec::new(),
                closed: None,
            }
        }
        Ok(Ok(connection)) => connection,
    };
    // In TLS 1.3 the client finishes its side of the handshake before the server has judged
    // the client's certificate, so streams can be opened and written here; the node must
    // discard all of it.
    let mut uni_frames = vec![random_bytes(rng, 512)];
    let mut tagged = vec![1u8];
    tagged.extend(random_bytes(rng, 512));
    uni_frames.push(tagged);
    uni_frames.push(forged.to_vec());
    for frame in uni_frames {
        if let Ok(mut stream) = connection.open_uni().await {
            let _ = stream.write_all(&frame).await;
            let _ = stream.finish();
        }
    }
    let mut garbage_request = vec![2u8];
    garbage_request.extend(random_bytes(rng, 256));
    let mut answers = Vec::new();
    for frame in [garbage_request, request_frame(&hello("intruder"))] {
        if let Some(answer) = request(&connection, &frame).await {
            answers.push(answer);
        }
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .ok();
    Probe {
        handshake_error: None,
        answers,
        closed,
    }
}

/// Sends one request frame on a new bidirectional stream; the decoded answer, if any.
async fn request(connection: &quinn::Connection, frame: &[u8]) -> Option<Response> {
    let exchange = async {
        let (mut send, mut recv) = connection.open_bi().await.ok()?;
        send.write_all(frame).await.ok()?;
        send.finish().ok()?;
        let bytes = recv.read_to_end(1 << 20).await.ok()?;
        postcard::from_bytes::<Response>(&bytes).ok()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}

/// A join request naming a node that does not exist: a node that takes it lists that node in
/// SHOW NODES (alive until its probes fail, then dead).
fn forged_join(node_id: &str, endpoint: SocketAddrV4) -> Vec<u8> {
    let member = bocluster::membership::MemberId::new(node_id, 1, SocketAddr::V4(endpoint));
    let record = bocluster::membership::RecordUpdate {
        node_id: node_id.to_string(),
        generation: 1,
        version: 1,
        owner_endpoint: SocketAddr::V4(endpoint),
        body: Some(bocluster::membership::Record::default()),
    };
    request_frame(&Request::Join { member, record })
}

/// Node ids in the master's SHOW NODES.
fn node_ids(master: &LocalNode) -> Vec<String> {
    show_nodes(master).into_iter().map(|[id, ..]| id).collect()
}

/// Runs `configs` (name, config) against the master: each must be refused by TLS, get no
/// answer, and inject nothing; then a peer with the right key sends the same forged gossip,
/// which must show up (so the refusals above are what kept it out).
fn assert_refused_then_control(fx: &mut Fixture, configs: Vec<(&str, quinn::ClientConfig)>) {
    let block = fx.block;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = fx.master.quic_addr();
    let intruder = format!("intruder-{block}");
    let intruder_endpoint = SocketAddrV4::new(std::net::Ipv4Addr::new(127, 0, block, 99), 9091);
    let mut rng = StdRng::seed_from_u64(u64::from(block));
    rt.block_on(async {
        for (name, config) in configs {
            // Several attempts from several endpoints (source ports), so the node refuses
            // a small storm of handshakes, not one.
            for round in 0..20 {
                let endpoint = quinn::Endpoint::client(SocketAddr::new(ip(block, 50), 0)).unwrap();
                let forged = forged_join(&intruder, intruder_endpoint);
                let outcome = probe(&endpoint, config.clone(), node, &forged, &mut rng).await;
                assert!(
                    outcome.refused_by_tls(),
                    "{name}, attempt {round}: not refused by TLS: {outcome:?}"
                );
                assert!(
                    outcome.answers.is_empty(),
                    "{name}, attempt {round}: the node answered: {:?}",
                    outcome.answers
                );
                if round == 0 {
                    println!("{name}: refused: {outcome:?}");
                }
                endpoint.close(0u32.into(), b"");
            }
        }
    });
    // Give forged gossip, had it been taken, time to show: a new node is listed once it has
    // settled (12 gossip rounds of 100 ms).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !node_ids(&fx.master).contains(&intruder),
        "an unauthenticated peer injected a node: {:?}",
        show_nodes(&fx.master)
    );
    assert_intact(fx, "after the refused QUIC peers");

    // Control: the same frames from a peer of this cluster are taken.
    let identity =
        ClusterIdentity::new(&ClusterKeys::parse(&cluster_key(block)).unwrap(), "probe").unwrap();
    let config = client_config(identity.quic_client_config().unwrap());
    rt.block_on(async {
        let endpoint = quinn::Endpoint::client(SocketAddr::new(ip(block, 50), 0)).unwrap();
        let connection = endpoint
            .connect_with(config, node, SERVER_NAME)
            .unwrap()
            .await
            .expect("a peer with the cluster key connects");
        match request(&connection, &request_frame(&hello("probe"))).await {
            Some(Response::Hello { node }) => assert_eq!(node.node_id, fx.master.spec.node_id),
            other => panic!("control: a peer of the cluster gets no hello answer: {other:?}"),
        }
        let forged = forged_join(&intruder, intruder_endpoint);
        let answer = request(&connection, &forged).await;
        assert!(
            matches!(answer, Some(Response::Join(_))),
            "control: a join from a peer of the cluster got {answer:?}"
        );
        let seen = wait_for(DEADLINE, || {
            node_ids(&fx.master).contains(&intruder).then_some(())
        });
        assert!(
            seen.is_some(),
            "control: gossip forged by a peer of the cluster never showed in SHOW NODES, so \
             its absence above proves nothing (has the join request changed?): {:?}; \
             master log:\n{}",
            show_nodes(&fx.master),
            fx.master.log()
        );
        connection.close(0u32.into(), b"done");
        endpoint.close(0u32.into(), b"");
    });
}

#[test]
fn quic_peers_without_a_client_certificate_are_refused() {
    let block = 101;
    let key = cluster_key(block);
    let mut fx = fixture(block, &[("BO_CLUSTER_KEY", &key)]);
    assert_refused_then_control(
        &mut fx,
        vec![("no client certificate", lenient_client_config(None))],
    );
}

#[test]
fn quic_peers_with_another_clusters_certificate_are_refused() {
    let block = 102;
    let key = cluster_key(block);
    let mut fx = fixture(block, &[("BO_CLUSTER_KEY", &key)]);
    // A node of another cluster as it really dials: it also refuses our node's certificate.
    let other = ClusterIdentity::new(
        &ClusterKeys::parse(&test_key("bad-input other key")).unwrap(),
        "intruder",
    )
    .unwrap();
    let other_config = client_config(other.quic_client_config().unwrap());
    // The same without a node key at all (the open default), which is another cluster too.
    let open = ClusterIdentity::new(&ClusterKeys::open_default(), "intruder").unwrap();
    let open_config = client_config(open.quic_client_config().unwrap());
    assert_refused_then_control(
        &mut fx,
        vec![
            ("a node of another cluster key", other_config),
            ("a node of the open default key", open_config),
            // Trusting any node but presenting a look-alike chain: the node's own check of
            // the client certificate is what refuses it.
            (
                "a look-alike certificate of another CA",
                lenient_client_config(Some(lookalike_cluster_cert(&key))),
            ),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// QUIC streams from a peer that does hold this cluster's certificate.

/// A QUIC client of this cluster (right key): what a buggy or hostile member can send.
fn member_config(block: u8, name: &str) -> quinn::ClientConfig {
    let identity =
        ClusterIdentity::new(&ClusterKeys::parse(&cluster_key(block)).unwrap(), name).unwrap();
    let mut config = client_config(identity.quic_client_config().unwrap());
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(Duration::from_secs(30).try_into().unwrap()))
        .keep_alive_interval(Some(Duration::from_secs(1)));
    config.transport_config(Arc::new(transport));
    config
}

async fn member_connection(
    block: u8,
    node: SocketAddr,
) -> (quinn::Endpoint, quinn::Connection, SocketAddr) {
    let endpoint = quinn::Endpoint::client(SocketAddr::new(ip(block, 50), 0)).unwrap();
    let connection = endpoint
        .connect_with(member_config(block, "member"), node, SERVER_NAME)
        .unwrap()
        .await
        .expect("a peer with the cluster key connects");
    let from = endpoint.local_addr().unwrap();
    (endpoint, connection, from)
}

fn is_malformed_answer(answer: &Option<Response>) -> bool {
    matches!(answer, Some(Response::Error { message }) if message.contains("malformed"))
}

#[test]
fn malformed_streams_from_a_cluster_peer_are_answered_with_errors_or_ignored() {
    let block = 103;
    let key = cluster_key(block);
    let mut fx = fixture(block, &[("BO_CLUSTER_KEY", &key)]);
    let node = fx.master.quic_addr();
    let master_id = fx.master.spec.node_id.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(103);
    let watcher = Watcher::start(&fx.master);
    rt.block_on(async {
        let (endpoint, connection, _from) = member_connection(block, node).await;
        let good = request_frame(&hello("member"));

        // Request streams the node cannot decode: each answered "malformed request".
        let mut garbage = vec![2u8];
        garbage.extend(random_bytes(&mut rng, 300));
        // A hello whose node_id length (a postcard varint) claims about 2^62 bytes.
        let huge_length = vec![2u8, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f];
        let mut wrong_tag = good.clone();
        wrong_tag[0] = 1;
        let mut unknown_tag = good.clone();
        unknown_tag[0] = 0xee;
        let mut unknown_variant = good.clone();
        unknown_variant[1] = 0x7f;
        let truncated = good[..good.len() - 2].to_vec();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("an empty stream", Vec::new()),
            ("the request tag alone", vec![2]),
            ("the request tag and garbage", garbage),
            ("a length of 2^62 bytes", huge_length),
            ("a stream tag no longer used", wrong_tag),
            ("an unknown tag", unknown_tag),
            ("an unknown request variant", unknown_variant),
            ("a truncated hello", truncated),
        ];
        for (what, frame) in &cases {
            let answer = request(&connection, frame).await;
            assert!(
                is_malformed_answer(&answer),
                "{what}: expected a \"malformed request\" error, got {answer:?}"
            );
        }
        // Over the 1 MiB stream limit: not read to the end, so not answered (or answered as
        // malformed); either way not taken as a request.
        let mut oversized = good.clone();
        oversized.resize((1 << 20) + 1, 0);
        let answer = request(&connection, &oversized).await;
        assert!(
            answer.is_none() || is_malformed_answer(&answer),
            "a stream over 1 MiB: {answer:?}"
        );

        // The node still answers this peer, on this connection and on a new one.
        let answer = request(&connection, &good).await;
        assert!(
            matches!(&answer, Some(Response::Hello { node }) if node.node_id == master_id),
            "after the malformed streams, hello got {answer:?}"
        );
        let (endpoint2, connection2, _) = member_connection(block, node).await;
        let answer = request(&connection2, &good).await;
        assert!(
            matches!(&answer, Some(Response::Hello { node }) if node.node_id == master_id),
            "a new connection's hello got {answer:?}"
        );
        connection.close(0u32.into(), b"done");
        connection2.close(0u32.into(), b"done");
        endpoint.close(0u32.into(), b"");
        endpoint2.close(0u32.into(), b"");
    });
    watcher.finish("malformed streams from a peer");
    assert_intact(&mut fx, "after malformed streams from a peer");
}

// ---------------------------------------------------------------------------------------------
// HTTP 9090: raw exchanges, so every byte sent is the test's choice.

/// What came back on one TCP connection.
#[derive(Debug, Default)]
struct HttpAnswer {
    /// The connection could not even be opened.
    connect_error: Option<String>,
    bytes: Vec<u8>,
    write_error: Option<String>,
    read_error: Option<String>,
    /// Nothing more came and the connection stayed open until the deadline.
    timed_out: bool,
}

/// One HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} answer is not JSON ({e}): {}\n{:?}",
                self.status,
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

impl HttpAnswer {
    /// The responses in the bytes, in order (several when requests were pipelined).
    fn replies(&self) -> Vec<Reply> {
        let mut replies = Vec::new();
        let mut rest = &self.bytes[..];
        while let Some((reply, used)) = parse_reply(rest) {
            replies.push(reply);
            rest = &rest[used..];
        }
        replies
    }

    fn reply(&self) -> Option<Reply> {
        self.replies().into_iter().next()
    }

    /// The node closed the connection (FIN or reset) without a word.
    fn closed_silently(&self) -> bool {
        self.connect_error.is_none() && self.bytes.is_empty() && !self.timed_out
    }
}

/// One response at the start of `bytes` (Content-Length or chunked body), and its length.
fn parse_reply(bytes: &[u8]) -> Option<(Reply, usize)> {
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())?;
    let header = |name: &str| {
        head.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let rest = &bytes[head_end..];
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let body = rest.get(..len)?.to_vec();
        return Some((Reply { status, head, body }, head_end + len));
    }
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_text = String::from_utf8_lossy(&rest[at..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                at += 2;
                break;
            }
            body.extend_from_slice(rest.get(at..at + size)?);
            at += size + 2;
        }
        return Some((Reply { status, head, body }, head_end + at));
    }
    Some((
        Reply {
            status,
            head,
            body: rest.to_vec(),
        },
        bytes.len(),
    ))
}

/// Connects to `addr`, lets `write` send whatever it likes while another thread reads, and
/// collects everything that comes back until the node closes or `limit` passes.
fn http_exchange_with(
    addr: SocketAddr,
    limit: Duration,
    write: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
) -> HttpAnswer {
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(stream) => stream,
        Err(e) => {
            return HttpAnswer {
                connect_error: Some(format!("connect {addr}: {e}")),
                ..HttpAnswer::default()
            }
        }
    };
    let deadline = Instant::now() + limit;
    let mut reader = stream.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut answer = HttpAnswer::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                answer.timed_out = true;
                break;
            };
            reader
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => answer.bytes.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => {
                    answer.read_error = Some(e.to_string());
                    break;
                }
            }
        }
        answer
    });
    stream
        .set_write_timeout(Some(limit.max(Duration::from_secs(1))))
        .unwrap();
    let write_error = write(&mut stream).err().map(|e| e.to_string());
    let mut answer = reading.join().expect("reader thread");
    answer.write_error = write_error;
    let _ = stream.shutdown(Shutdown::Both);
    answer
}

fn http_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> HttpAnswer {
    http_exchange_with(addr, limit, |stream| stream.write_all(request))
}

/// `POST /api` with `body` as is, `Connection: close`.
fn post_request(body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /api HTTP/1.1\r\nHost: bocluster\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// POSTs `body` and returns the answer; panics (with the node's log) if none comes.
fn post(node: &LocalNode, body: &[u8]) -> Reply {
    let answer = http_exchange(
        node.http_addr(),
        &post_request(body),
        Duration::from_secs(30),
    );
    answer.reply().unwrap_or_else(|| {
        panic!(
            "POST of {} bytes got no HTTP answer: write {:?}, read {:?}, timed out {}, {} bytes; node log:\n{}",
            body.len(),
            answer.write_error,
            answer.read_error,
            answer.timed_out,
            answer.bytes.len(),
            node.log()
        )
    })
}

/// The JSON statement body for `stmt`.
fn stmt_body(stmt: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "stmt": stmt })).unwrap()
}

/// Longest error message an answer may carry: bad input is never echoed back whole.
const MAX_ERRMSG_LEN: usize = 2048;

/// An error answer: `status`, `retcode`, a short errmsg.
fn assert_error_reply(what: &str, reply: &Reply, status: u16, retcode: i64) {
    assert!(
        reply.body.len() < 8 * 1024,
        "{what}: a {}-byte answer to bad input",
        reply.body.len()
    );
    let body = reply.json();
    assert_eq!(
        (reply.status, body["retcode"].as_i64()),
        (status, Some(retcode)),
        "{what}: {body}"
    );
    let errmsg = body["errmsg"].as_str().unwrap_or_default();
    assert!(
        !errmsg.is_empty() && errmsg.len() <= MAX_ERRMSG_LEN,
        "{what}: errmsg of {} bytes: {errmsg:?}",
        errmsg.len()
    );
}

/// A success answer whose rows are the master's databases.
fn assert_databases_reply(what: &str, reply: &Reply, fx: &Fixture) {
    let body = reply.json();
    assert_eq!(reply.status, 200, "{what}: {body}");
    assert_eq!(body["retcode"], 0, "{what}: {body}");
    assert_eq!(body["results"], fx.before.databases, "{what}: {body}");
}

#[test]
fn malformed_http_bodies_get_json_errors() {
    let mut fx = fixture(106, &[]);
    let deep = |open: &str, n: usize| open.repeat(n);
    let mut cases: Vec<(String, Vec<u8>, u16, i64)> = Vec::new();
    let mut case = |what: &str, body: Vec<u8>, status: u16, retcode: i64| {
        cases.push((what.to_string(), body, status, retcode));
    };
    // Not JSON, or JSON that is not an object with a string "stmt".
    case("plain text", b"SHOW DATABASES".to_vec(), 400, -1);
    case("an empty body", Vec::new(), 400, -1);
    case("whitespace", b" \r\n\t ".to_vec(), 400, -1);
    case("an empty array", b"[]".to_vec(), 400, -1);
    case(
        "an array of the statement",
        br#"["SHOW DATABASES"]"#.to_vec(),
        400,
        -1,
    );
    case(
        "an array of a request",
        br#"[{"stmt": "SHOW DATABASES"}]"#.to_vec(),
        400,
        -1,
    );
    case("a JSON string", br#""SHOW DATABASES""#.to_vec(), 400, -1);
    case("null", b"null".to_vec(), 400, -1);
    case("a number", b"42".to_vec(), 400, -1);
    case(
        "trailing garbage",
        br#"{"stmt": "SHOW DATABASES"} x"#.to_vec(),
        400,
        -1,
    );
    case(
        "two objects",
        br#"{"stmt": "SHOW DATABASES"}{"stmt": "SHOW NODES"}"#.to_vec(),
        400,
        -1,
    );
    // Deep nesting: serde_json stops at 128 levels instead of overflowing the stack.
    case("100,000 '['", deep("[", 100_000).into_bytes(), 400, -1);
    case("100,000 ']'", deep("]", 100_000).into_bytes(), 400, -1);
    case(
        "100,000 '{\"a\":'",
        deep("{\"a\":", 100_000).into_bytes(),
        400,
        -1,
    );
    case(
        "stmt inside 100,000 '['",
        format!("{{\"stmt\": {}", deep("[", 100_000)).into_bytes(),
        400,
        -1,
    );
    case(
        "balanced nesting 50,000 deep beside stmt",
        format!(
            "{{\"x\": {}{}, \"stmt\": \"SHOW DATABASES\"}}",
            deep("[", 50_000),
            deep("]", 50_000)
        )
        .into_bytes(),
        400,
        -1,
    );
    // Not UTF-8.
    case(
        "bytes that are not UTF-8",
        b"\xff\xfe\xfd\xfc".to_vec(),
        400,
        -1,
    );
    case(
        "non-UTF-8 bytes inside the statement string",
        b"{\"stmt\": \"SHOW \xff\xfe DATABASES\"}".to_vec(),
        400,
        -1,
    );
    case(
        "a truncated UTF-8 sequence inside the string",
        b"{\"stmt\": \"CREATE DATABASE caf\xc3\"}".to_vec(),
        400,
        -1,
    );
    case(
        "an overlong UTF-8 encoding of '/'",
        b"{\"stmt\": \"SHOW \xc0\xaf\"}".to_vec(),
        400,
        -1,
    );
    case(
        "a UTF-8 BOM before the JSON",
        b"\xef\xbb\xbf{\"stmt\": \"SHOW DATABASES\"}".to_vec(),
        400,
        -1,
    );
    // Bad escapes inside the JSON string.
    for (what, body) in [
        ("an unknown escape", r#"{"stmt": "SHOW \q"}"#),
        ("a short \\u escape", r#"{"stmt": "SHOW \u12"}"#),
        ("a \\u escape of non-hex", r#"{"stmt": "SHOW \uZZZZ"}"#),
        ("a lone high surrogate", r#"{"stmt": "SHOW \ud800"}"#),
        (
            "a lone low surrogate",
            r#"{"stmt": "\udc00SHOW DATABASES"}"#,
        ),
        (
            "a high surrogate and a letter",
            r#"{"stmt": "\ud800\u0041"}"#,
        ),
        ("an escape at the end", r#"{"stmt": "SHOW DATABASES\"#),
        ("an unterminated string", r#"{"stmt": "SHOW DATABASES"#),
        (
            "a number out of range",
            r#"{"stmt": "SHOW DATABASES", "n": 1e999999}"#,
        ),
    ] {
        case(what, body.as_bytes().to_vec(), 400, -1);
    }
    case(
        "a raw tab inside the string",
        b"{\"stmt\": \"SHOW\tDATABASES\"}".to_vec(),
        400,
        -1,
    );
    case(
        "a raw NUL inside the string",
        b"{\"stmt\": \"SHOW\x00DATABASES\"}".to_vec(),
        400,
        -1,
    );
    // Valid JSON, a statement with characters no statement has: the parser says no.
    case(
        "an escaped NUL in the statement",
        br#"{"stmt": "SHOW\u0000DATABASES"}"#.to_vec(),
        400,
        -2,
    );
    case(
        "an escaped U+FFFF",
        br#"{"stmt": "SHOW \uffff"}"#.to_vec(),
        400,
        -2,
    );

    for (what, body, status, retcode) in &cases {
        let reply = post(&fx.master, body);
        assert_error_reply(what, &reply, *status, *retcode);
    }

    // What is valid still works, even when large or odd: 100 levels of nesting beside the
    // statement, a 100,000-digit number, 50,000 other keys, escaped characters.
    let valid = [
        (
            "100 levels of nesting beside stmt",
            format!(
                "{{\"x\": {}{}, \"stmt\": \"SHOW DATABASES\"}}",
                deep("[", 100),
                deep("]", 100)
            ),
        ),
        (
            "a number of 100,000 digits",
            format!(
                "{{\"n\": 0.{}, \"stmt\": \"SHOW DATABASES\"}}",
                "9".repeat(100_000)
            ),
        ),
        (
            "50,000 other keys",
            format!(
                "{{{}\"stmt\": \"SHOW DATABASES\"}}",
                (0..50_000)
                    .map(|i| format!("\"k{i}\": {i}, "))
                    .collect::<String>()
            ),
        ),
        (
            "escaped letters",
            r#"{"stmt": "\u0053HOW\tDATABASES\n"}"#.to_string(),
        ),
    ];
    for (what, body) in &valid {
        let reply = post(&fx.master, body.as_bytes());
        assert_databases_reply(what, &reply, &fx);
    }
    assert_intact(&mut fx, "after malformed bodies");
}

#[test]
fn oversized_bodies_are_refused_and_bodies_up_to_the_limit_are_read() {
    let mut fx = fixture(107, &[]);
    const MIB: usize = 1 << 20;
    let addr = fx.master.http_addr();

    // Exactly 1 MiB, padded with JSON whitespace after the object: read and answered.
    let mut padded = stmt_body("SHOW DATABASES");
    padded.resize(MIB, b' ');
    assert_databases_reply("1 MiB body, padded JSON", &post(&fx.master, &padded), &fx);
    // Exactly 1 MiB, the statement itself nearly 1 MiB: trailing spaces, a long comment.
    let wrapper = stmt_body("").len();
    let spaces = format!("SHOW DATABASES{}", " ".repeat(MIB - wrapper - 14));
    assert_eq!(stmt_body(&spaces).len(), MIB);
    assert_databases_reply(
        "a 1 MiB statement of spaces",
        &post(&fx.master, &stmt_body(&spaces)),
        &fx,
    );
    let comment = format!("-- {}\nSHOW DATABASES", "x".repeat(MIB - wrapper - 20));
    assert!((MIB - 64..=MIB).contains(&stmt_body(&comment).len()));
    assert_databases_reply(
        "a 1 MiB comment",
        &post(&fx.master, &stmt_body(&comment)),
        &fx,
    );
    // Just under 1 MiB and not a statement: a parse error with a short message.
    let junk = "x".repeat(MIB - wrapper - 1);
    let reply = post(&fx.master, &stmt_body(&junk));
    assert_error_reply("a statement just under 1 MiB", &reply, 400, -2);

    // A statement string of 1 MiB is a body over 1 MiB (the JSON around it): 413.
    let over = stmt_body(&"x".repeat(MIB));
    assert!(over.len() > MIB);
    assert_error_reply(
        "a 1 MiB statement string",
        &post(&fx.master, &over),
        413,
        -1,
    );
    let mut one_over = stmt_body("SHOW DATABASES");
    one_over.resize(MIB + 1, b' ');
    assert_error_reply("1 MiB + 1 byte", &post(&fx.master, &one_over), 413, -1);
    let huge = stmt_body(&"x".repeat(16 * MIB));
    assert_error_reply("16 MiB", &post(&fx.master, &huge), 413, -1);

    // A Content-Length of 100 GB: refused with 413 once more than 1 MiB of it has come,
    // without the node waiting for (or keeping) the rest.
    let started = Instant::now();
    let answer = http_exchange_with(addr, Duration::from_secs(30), |stream| {
        stream.write_all(
            b"POST /api HTTP/1.1\r\nHost: bocluster\r\nContent-Length: 100000000000\r\n\
              Connection: close\r\n\r\n",
        )?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..32 {
            stream.write_all(&chunk)?;
        }
        Ok(())
    });
    let reply = answer
        .reply()
        .unwrap_or_else(|| panic!("Content-Length 100 GB: {answer:?}"));
    assert_error_reply("Content-Length 100 GB", &reply, 413, -1);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "Content-Length 100 GB took {:?}",
        started.elapsed()
    );

    // Chunked: 2 MiB in 4 KiB chunks is refused as it arrives; a small one is read.
    let answer = http_exchange_with(addr, Duration::from_secs(30), |stream| {
        stream.write_all(
            b"POST /api HTTP/1.1\r\nHost: bocluster\r\nTransfer-Encoding: chunked\r\n\
              Connection: close\r\n\r\n",
        )?;
        let chunk = [b'x'; 4096];
        for _ in 0..512 {
            stream.write_all(b"1000\r\n")?;
            stream.write_all(&chunk)?;
            stream.write_all(b"\r\n")?;
        }
        stream.write_all(b"0\r\n\r\n")
    });
    let reply = answer
        .reply()
        .unwrap_or_else(|| panic!("2 MiB chunked: {answer:?}"));
    assert_error_reply("2 MiB chunked", &reply, 413, -1);
    let body = stmt_body("SHOW DATABASES");
    let mut chunked = b"POST /api HTTP/1.1\r\nHost: bocluster\r\nTransfer-Encoding: chunked\r\n\
                        Connection: close\r\n\r\n"
        .to_vec();
    for piece in body.chunks(3) {
        chunked.extend(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend(piece);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let answer = http_exchange(addr, &chunked, Duration::from_secs(10));
    let reply = answer
        .reply()
        .unwrap_or_else(|| panic!("small chunked: {answer:?}"));
    assert_databases_reply("small chunked body", &reply, &fx);

    assert_intact(&mut fx, "after oversized bodies");
}

#[test]
fn long_runs_of_repeated_tokens_are_parse_errors_with_short_messages() {
    let mut fx = fixture(108, &[]);
    let peak_before = proc_status_kib(&fx.master, "VmHWM");
    let client_ip = ip(108, 9);
    let cases: Vec<(&str, String)> = vec![
        ("SHOW x 100,000", "SHOW ".repeat(100_000)),
        (
            "ip=1 x 50,000",
            format!("ADD CLIENT {}", "ip=1 ".repeat(50_000)),
        ),
        (
            "db=x x 50,000",
            format!("ADD CLIENT ip={client_ip} {}", "db=x ".repeat(50_000)),
        ),
        (
            "port=1 x 50,000",
            format!("DROP CLIENT {}", "port=1 ".repeat(50_000)),
        ),
        (
            "ip=... x 50,000 with quotes",
            format!("ADD CLIENT {}", "ip='1.2.3.4' ".repeat(50_000)),
        ),
        (
            "a 1,000,000-letter name",
            format!("CREATE DATABASE {}", "a".repeat(1_000_000)),
        ),
        (
            "a 900,000-byte ip",
            format!("ADD CLIENT db=x ip={}", "a.".repeat(450_000)),
        ),
        ("'(' x 500,000", "(".repeat(500_000)),
        (
            "an unterminated 500,000-byte string",
            format!("SHOW '{}", "x".repeat(500_000)),
        ),
        ("'/*' x 300,000", "/*".repeat(300_000)),
        ("'--' x 300,000", "--".repeat(300_000)),
        (
            "'\"' x 300,000 after ip=",
            format!("ADD CLIENT ip={}", "\"".repeat(300_000)),
        ),
        (
            "';' x 100,000",
            format!("SHOW DATABASES{}", ";".repeat(100_000)),
        ),
        (
            "'=' x 300,000",
            format!("ADD CLIENT ip{}", "=".repeat(300_000)),
        ),
        ("'é' x 300,000", "é".repeat(300_000)),
        ("emoji x 200,000", "\u{1f600}".repeat(200_000)),
        ("NUL x 150,000", "\0".repeat(150_000)),
    ];
    for (what, stmt) in &cases {
        let started = Instant::now();
        let reply = post(&fx.master, &stmt_body(stmt));
        let took = started.elapsed();
        println!("{what}: answered HTTP {} in {took:?}", reply.status);
        assert_error_reply(what, &reply, 400, -2);
        assert!(took < Duration::from_secs(10), "{what}: took {took:?}");
    }
    // Positions stay exact far into a long input.
    let far = format!("{}SHOW FOO", "\n".repeat(500_000));
    let reply = post(&fx.master, &stmt_body(&far));
    assert_error_reply("500,000 newlines", &reply, 400, -2);
    let errmsg = reply.json()["errmsg"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        errmsg.starts_with("line 500001, column 6"),
        "500,000 newlines then SHOW FOO: {errmsg:?}"
    );
    // And what is valid stays valid, however much whitespace and comment it carries.
    let spaced = format!("SHOW{}DATABASES", " \n\t/* c */".repeat(50_000));
    assert_databases_reply(
        "a statement spread over 500 KB",
        &post(&fx.master, &stmt_body(&spaced)),
        &fx,
    );
    // The high-water mark, not only what is resident afterwards: tokenizing a whole MiB-long
    // statement at once peaked at over 100 MiB.
    let peak = proc_status_kib(&fx.master, "VmHWM");
    let bound = memory_bound_kib(fx.before.rss_kib);
    println!("long runs of repeated tokens: master peak RSS (VmHWM) {peak_before} KiB -> {peak} KiB (bound {bound} KiB)");
    assert!(
        peak < bound,
        "long runs of repeated tokens raised the master's peak RSS from {peak_before} KiB to {peak} KiB (bound {bound} KiB)"
    );
    assert_intact(&mut fx, "after long runs of repeated tokens");
}

/// The soft limit on open files of this process (/proc/self/limits).
fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// How one of many concurrent connections ended.
#[derive(Debug)]
enum Ending {
    Answered(u16, Vec<u8>),
    ClosedSilently,
    Failed(String),
}

async fn concurrent_exchange(mut stream: tokio::net::TcpStream, kind: usize) -> Ending {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = if kind == 1 {
        b"GET /health HTTP/1.1\r\nHost: bocluster\r\nConnection: close\r\n\r\n".to_vec()
    } else {
        post_request(&stmt_body("SHOW DATABASES"))
    };
    let exchange = async {
        if kind == 0 {
            // A slow client: one byte every 5 ms.
            for byte in &request {
                stream.write_all(std::slice::from_ref(byte)).await?;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } else {
            stream.write_all(&request).await?;
        }
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await?;
        Ok::<_, std::io::Error>(bytes)
    };
    match tokio::time::timeout(Duration::from_secs(60), exchange).await {
        Err(_) => Ending::Failed("no answer and no close in 60 s".into()),
        // The node closed the connection (e.g. a client too slow for its timeouts).
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            Ending::ClosedSilently
        }
        Ok(Err(e)) => Ending::Failed(e.to_string()),
        Ok(Ok(bytes)) if bytes.is_empty() => Ending::ClosedSilently,
        Ok(Ok(bytes)) => match parse_reply(&bytes) {
            Some((reply, _)) => Ending::Answered(reply.status, reply.body),
            None => Ending::Failed(format!(
                "not an HTTP answer: {:?}",
                String::from_utf8_lossy(&bytes)
            )),
        },
    }
}

#[test]
fn a_thousand_concurrent_api_connections_are_answered_or_closed_cleanly() {
    let mut fx = fixture(109, &[]);
    let addr = fx.master.http_addr();
    // Each connection takes a descriptor here and one in the node (which inherits this
    // process's limit); keep well inside the limit.
    let limit = open_files_limit();
    let n = 1_000.min(usize::try_from(limit.saturating_sub(200)).unwrap_or(0));
    if n < 1_000 {
        println!("NOTICE: open-files limit {limit}: {n} concurrent connections instead of 1,000");
    }
    assert!(
        n >= 100,
        "open-files limit {limit} is too low for this test"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let expected_databases = fx.before.databases.clone();
    let started = Instant::now();
    let endings = rt.block_on(async {
        // Open every connection first, so all of them are open at once...
        let mut connects = tokio::task::JoinSet::new();
        for i in 0..n {
            connects.spawn(async move {
                let stream = tokio::time::timeout(
                    Duration::from_secs(30),
                    tokio::net::TcpStream::connect(addr),
                )
                .await;
                (i, stream)
            });
        }
        let mut streams = Vec::new();
        while let Some(joined) = connects.join_next().await {
            match joined.unwrap() {
                (i, Ok(Ok(stream))) => streams.push((i, stream)),
                (i, other) => panic!("connection {i} could not be opened: {other:?}"),
            }
        }
        // ...then let each send its request: a tenth slowly, a tenth GET /health.
        let mut exchanges = tokio::task::JoinSet::new();
        for (i, stream) in streams {
            exchanges.spawn(async move { (i, concurrent_exchange(stream, i % 10).await) });
        }
        let mut endings = Vec::new();
        while let Some(joined) = exchanges.join_next().await {
            endings.push(joined.unwrap());
        }
        endings
    });
    let mut answered = 0;
    let mut closed = 0;
    for (i, ending) in &endings {
        match ending {
            Ending::Answered(status, body) => {
                answered += 1;
                let body: Value = serde_json::from_slice(body)
                    .unwrap_or_else(|e| panic!("connection {i}: answer is not JSON: {e}"));
                assert_eq!(*status, 200, "connection {i}: {body}");
                if i % 10 == 1 {
                    assert_eq!(body["status"], "ok", "connection {i}: {body}");
                } else {
                    assert_eq!(
                        body["results"], expected_databases,
                        "connection {i}: {body}"
                    );
                }
            }
            Ending::ClosedSilently => closed += 1,
            Ending::Failed(e) => panic!("connection {i}: {e}"),
        }
    }
    println!(
        "{n} concurrent connections in {:?}: {answered} answered, {closed} closed without an answer",
        started.elapsed()
    );
    assert_eq!(answered + closed, n);
    assert!(answered > 0, "no connection was answered");

    // The same number of connections held open and idle (or with half a request head)
    // does not stop the node from answering anyone else.
    let idle: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
            if i % 2 == 0 {
                let _ = stream.write_all(b"POST /api HTTP/1.1\r\nHost: bocl");
            }
            stream
        })
        .collect();
    let started = Instant::now();
    assert_eq!(show_cluster(&fx.master), fx.before.cluster);
    println!(
        "with {n} idle connections open, SHOW CLUSTER answered in {:?}",
        started.elapsed()
    );
    drop(idle);
    assert_intact(&mut fx, "after 1,000 concurrent connections");
}

#[test]
fn garbage_on_the_http_port_is_answered_with_errors_or_closed() {
    let mut fx = fixture(110, &[]);
    let addr = fx.master.http_addr();
    let mut rng = StdRng::seed_from_u64(110);
    let limit = Duration::from_secs(20);
    // An acceptable ending for bad input: a 4xx/5xx answer, or the node closing.
    let refused = |what: &str, answer: &HttpAnswer| {
        assert!(
            !answer.timed_out,
            "{what}: no answer and no close: {answer:?}"
        );
        if let Some(reply) = answer.reply() {
            assert!(reply.status >= 400, "{what}: answered {}", reply.head);
        } else {
            assert!(
                answer.closed_silently() || answer.read_error.is_some(),
                "{what}: {} bytes that are not an HTTP answer: {:?}",
                answer.bytes.len(),
                String::from_utf8_lossy(&answer.bytes[..answer.bytes.len().min(200)])
            );
        }
    };

    for i in 0..50 {
        let len = rng.random_range(1..64 * 1024);
        let bytes = random_bytes(&mut rng, len);
        refused(
            &format!("random bytes #{i}"),
            &http_exchange(addr, &bytes, limit),
        );
    }
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: b\r\n\r\n", "a".repeat(1 << 20));
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: b\r\n{}\r\n",
        "X-Bad: 1\r\n".repeat(10_000)
    );
    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: b\r\nX-Big: {}\r\n\r\n",
        "v".repeat(1 << 20)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a 1 MiB URI", long_uri.into_bytes()),
        ("10,000 headers", many_headers.into_bytes()),
        ("a 1 MiB header", huge_header.into_bytes()),
        ("an HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        ("HTTP/9.9", b"POST /api HTTP/9.9\r\nHost: b\r\n\r\n".to_vec()),
        ("a request line of spaces", b"          \r\n\r\n".to_vec()),
        (
            "non-UTF-8 in the path",
            b"POST /api\xff\xfe HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        ),
        (
            "two different Content-Lengths",
            b"POST /api HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nContent-Length: 500\r\n\r\n{}".to_vec(),
        ),
        (
            "a negative Content-Length",
            b"POST /api HTTP/1.1\r\nHost: b\r\nContent-Length: -1\r\n\r\n{}".to_vec(),
        ),
        (
            "a chunk size that is not hex",
            b"POST /api HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "a chunk size of 2^72",
            b"POST /api HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n{}\r\n"
                .to_vec(),
        ),
        ("GET /api", b"GET /api HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".to_vec()),
        (
            "POST /nowhere",
            b"POST /nowhere HTTP/1.1\r\nHost: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
                .to_vec(),
        ),
    ];
    for (what, request) in &cases {
        refused(what, &http_exchange(addr, request, limit));
    }
    // A body that ends before its Content-Length, then the client stops sending: answered
    // or closed, not waited for forever... once the client has said it is done.
    let answer = http_exchange_with(addr, limit, |stream| {
        stream
            .write_all(b"POST /api HTTP/1.1\r\nHost: b\r\nContent-Length: 1000\r\n\r\n{\"stmt\"")?;
        stream.shutdown(Shutdown::Write)
    });
    refused("a body shorter than its Content-Length", &answer);

    // 200 requests pipelined on one keep-alive connection: 200 answers, in order.
    let mut pipelined = Vec::new();
    for i in 0..200 {
        if i % 2 == 0 {
            pipelined.extend(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n");
        } else {
            let body = stmt_body("SHOW DATABASES");
            pipelined.extend(
                format!(
                    "POST /api HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            pipelined.extend(body);
        }
    }
    pipelined.extend(b"GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n");
    let answer = http_exchange(addr, &pipelined, Duration::from_secs(30));
    let replies = answer.replies();
    assert_eq!(replies.len(), 201, "pipelined: {} answers", replies.len());
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, 200, "pipelined request {i}: {}", reply.head);
        if i % 2 == 1 {
            assert_eq!(
                reply.json()["results"],
                fx.before.databases,
                "pipelined {i}"
            );
        }
    }
    assert_intact(&mut fx, "after garbage on the HTTP port");
}

#[test]
fn connections_that_never_finish_a_request_are_closed_by_the_node() {
    // A connection that sends nothing, half a request head, or half a body holds a socket
    // (a file descriptor) in the node for as long as the node waits; with no limit on that
    // wait, enough of them take every descriptor the node has, and then it can neither accept
    // connections nor write cluster.json. The node must give up on them: answer (408/400)
    // or close within a bounded time. 45 s leaves room for a 30 s timeout.
    let mut fx = fixture(112, &[]);
    let addr = fx.master.http_addr();
    let patience = Duration::from_secs(45);
    let kinds: [(&str, &'static [u8]); 3] = [
        ("nothing sent", b""),
        ("half a request head", b"POST /api HTTP/1.1\r\nHost: bocl"),
        (
            "half a body",
            b"POST /api HTTP/1.1\r\nHost: b\r\nContent-Length: 100\r\n\r\n{\"stmt\": ",
        ),
    ];
    let started = Instant::now();
    let waiting: Vec<_> = kinds
        .into_iter()
        .flat_map(|(what, bytes)| {
            (0..20).map(move |i| {
                let what = format!("{what} #{i}");
                std::thread::spawn(move || {
                    let answer =
                        http_exchange_with(addr, patience, |stream| stream.write_all(bytes));
                    (what, answer)
                })
            })
        })
        .collect();
    let mut held = Vec::new();
    for thread in waiting {
        let (what, answer) = thread.join().expect("client thread");
        if answer.timed_out {
            held.push(what);
        } else if let Some(reply) = answer.reply() {
            assert!(reply.status >= 400, "{what}: {}", reply.head);
        }
    }
    println!(
        "{} of 60 unfinished requests still held open by the node after {:?}",
        held.len(),
        started.elapsed()
    );
    assert!(
        held.is_empty(),
        "the node still held {} of 60 unfinished requests open after {patience:?} (e.g. {:?}): \
         no header-read or body timeout",
        held.len(),
        &held[..held.len().min(3)]
    );
    assert_intact(&mut fx, "after unfinished requests");
}

#[test]
fn statements_that_are_slow_to_parse_do_not_starve_gossip() {
    // The longest statements (a 1 MiB run of one-letter tokens) once took the parser a second
    // or more on the async workers; they are now parsed off them, and read only as far as the
    // grammar needs. Several at once must not stall the node's gossip: its peers must keep
    // seeing it alive, and it must keep answering.
    let mut fx = fixture(113, &[]);
    let addr = fx.master.http_addr();
    let heavy = stmt_body(&format!("ADD CLIENT db=x ip={}", "a.".repeat(450_000)));
    let watcher = Watcher::start(&fx.master);
    let started = Instant::now();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let request = post_request(&heavy);
            std::thread::spawn(move || http_exchange(addr, &request, Duration::from_secs(120)))
        })
        .collect();
    let mut client_view = Vec::new();
    while senders.iter().any(|s| !s.is_finished()) {
        let status = node_status(&fx.client, &fx.master.spec.node_id).unwrap_or_default();
        client_view.push(status);
        std::thread::sleep(Duration::from_millis(200));
    }
    for sender in senders {
        let answer = sender.join().expect("sender thread");
        let reply = answer
            .reply()
            .unwrap_or_else(|| panic!("a slow statement got no answer: {answer:?}"));
        assert_error_reply("a slow statement", &reply, 400, -2);
    }
    println!(
        "4 slow statements at once took {:?}; the client saw the master as {client_view:?}",
        started.elapsed()
    );
    watcher.finish("slow statements");
    assert!(
        client_view.iter().all(|s| s == "alive"),
        "while the master parsed slow statements, the client saw it as {client_view:?}"
    );
    assert_intact(&mut fx, "after slow statements");
}
