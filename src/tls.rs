//! The cluster's identity: mutual TLS 1.3 for QUIC, derived from the shared cluster keys.
//!
//! Every node derives the same Ed25519 CA key from each key of `BO_CLUSTER_KEY` (HKDF-SHA256),
//! builds the same CA certificate for it, and signs a fresh certificate for itself with the
//! FIRST key's CA. Peers accept certificates that chain to the CA of ANY listed key, in both
//! directions: nodes with no key in common never finish a handshake, and a rolling restart
//! that adds a key, promotes it and drops the old one keeps every pair of nodes talking at
//! each step (see the README's "The cluster key"). Nothing has to be distributed but the
//! keys themselves.
//!
//! Without a key, nodes use a well-known built-in key: traffic is still encrypted, but anyone
//! running bocluster can join. The node warns about this loudly at start.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use crate::cluster_key::{ClusterKey, ClusterKeys};

/// The DNS name every node certificate carries and every client asks for. Peers are dialled by
/// IP address, so the name is a fixed label rather than a host name.
pub const SERVER_NAME: &str = "bocluster.node";

/// ALPN protocol id; a peer speaking anything else is refused during the handshake.
pub const ALPN: &[u8] = b"bocluster/1";

/// Domain separation for the HKDF derivation of the CA key (and the stateless-reset key);
/// the datagram seal has a label of its own (`seal::SEAL_SALT`).
const HKDF_SALT: &[u8] = b"bocluster cluster CA v1";

/// PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows it.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not build a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("could not build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("could not build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS configuration has no TLS 1.3 cipher suite usable by QUIC: {0}")]
    NoQuicSuite(String),
}

/// Whether the cluster key was given or the open default is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Configured,
    OpenDefault,
}

/// A node's TLS material: the cluster CAs (trust anchors, one per key) and this node's
/// certificate, signed by the first key's CA.
pub struct ClusterIdentity {
    reset_key: [u8; 32],
    ca_certs: Vec<CertificateDer<'static>>,
    node_cert: CertificateDer<'static>,
    node_key: PrivatePkcs8KeyDer<'static>,
    pub key_source: KeySource,
}

impl ClusterIdentity {
    /// Derives one CA per cluster key and issues this node's certificate with the first,
    /// naming `node_id` in its subject for log messages on the other side.
    pub fn new(keys: &ClusterKeys, node_id: &str) -> Result<Self, TlsError> {
        let key_source = if keys.is_open() {
            KeySource::OpenDefault
        } else {
            KeySource::Configured
        };
        let mut ca_certs = Vec::with_capacity(keys.len());
        for key in keys.iter() {
            let params = ca_params(key);
            ca_certs.push(params.self_signed(&derive_ca_key(key)?)?.der().clone());
        }
        let signer = keys.first();
        let issuer = Issuer::new(ca_params(signer), derive_ca_key(signer)?);

        let node_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut node_params = CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        node_params
            .distinguished_name
            .push(DnType::CommonName, format!("bocluster node {node_id}"));
        node_params.is_ca = IsCa::NoCa;
        let node_cert = node_params.signed_by(&node_key, &issuer)?;

        Ok(ClusterIdentity {
            reset_key: signer.derive(HKDF_SALT, &[b"quic-stateless-reset", node_id.as_bytes()]),
            ca_certs,
            node_cert: node_cert.der().clone(),
            node_key: PrivatePkcs8KeyDer::from(node_key.serialize_der()),
            key_source,
        })
    }

    /// The QUIC stateless-reset key of this node: the same across its restarts (derived from
    /// the cluster key and node id), different for every node.
    pub fn stateless_reset_key(&self) -> [u8; 32] {
        self.reset_key
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        for ca in &self.ca_certs {
            roots.add(ca.clone())?;
        }
        Ok(Arc::new(roots))
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.node_cert.clone()]
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.node_key.clone_key())
    }

    /// Server side: present our certificate and require one from the peer, chained to one of
    /// the CAs. (Plain rustls, for tests that drive a handshake in memory.)
    pub fn rustls_server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone()).build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain(), self.private_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// Client side: verify the peer against the CAs and present our own certificate.
    pub fn rustls_client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain(), self.private_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// [`ClusterIdentity::rustls_server_config`] for QUIC.
    pub fn quic_server_config(&self) -> Result<QuicServerConfig, TlsError> {
        QuicServerConfig::try_from(self.rustls_server_config()?)
            .map_err(|e| TlsError::NoQuicSuite(e.to_string()))
    }

    /// [`ClusterIdentity::rustls_client_config`] for QUIC.
    pub fn quic_client_config(&self) -> Result<QuicClientConfig, TlsError> {
        QuicClientConfig::try_from(self.rustls_client_config()?)
            .map_err(|e| TlsError::NoQuicSuite(e.to_string()))
    }
}

/// Parameters of the CA certificate of `key`. They are the same on every node, so the trust
/// anchor (subject + public key) every node builds is the same. The subject names the key's
/// fingerprint, so the CAs of a rotation have distinct names and a certificate names its CA.
fn ca_params(key: &ClusterKey) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("bocluster cluster CA {}", key.fingerprint()),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// HKDF-SHA256(cluster key) -> 32-byte Ed25519 seed -> PKCS#8 -> rcgen key pair.
fn derive_ca_key(key: &ClusterKey) -> Result<KeyPair, TlsError> {
    let seed = key.derive(HKDF_SALT, &[b"ca-ed25519-seed"]);
    let mut pkcs8 = Vec::with_capacity(48);
    pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
    pkcs8.extend_from_slice(&seed);
    let der = PrivatePkcs8KeyDer::from(pkcs8);
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ED25519)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;

    const K1: &str = "kL63lntqa/vXk0YjAysIOtioBkRiaRl3WhUBmpA+Mo8=";
    const K2: &str = "O6Tr/fUyefcE2iG2Evq9IQwVP5eU1toongTe1sZLpEI=";
    const K3: &str = "DhoOZoqY1UHBgRtVNaeoBpaOp0LJUeWhi/z+IXQ7b4k=";

    fn keys(text: &str) -> ClusterKeys {
        ClusterKeys::parse(text).unwrap()
    }

    fn identity(text: Option<&str>, node: &str) -> ClusterIdentity {
        let keys = text.map(keys).unwrap_or_else(ClusterKeys::open_default);
        ClusterIdentity::new(&keys, node).unwrap()
    }

    /// Moves everything `from` wants to write into `to`.
    fn transfer(
        from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
    ) {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
        }
    }

    /// A full mutual-TLS handshake between two identities, in memory: Ok when both sides
    /// accept each other, the first refusal otherwise.
    fn handshake(client: &ClusterIdentity, server: &ClusterIdentity) -> Result<(), rustls::Error> {
        let name = ServerName::try_from(SERVER_NAME).unwrap();
        let mut c =
            rustls::ClientConnection::new(Arc::new(client.rustls_client_config().unwrap()), name)?;
        let mut s =
            rustls::ServerConnection::new(Arc::new(server.rustls_server_config().unwrap()))?;
        for _ in 0..10 {
            transfer(&mut c, &mut s);
            s.process_new_packets()?;
            transfer(&mut s, &mut c);
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                assert_eq!(c.alpn_protocol(), Some(ALPN));
                return Ok(());
            }
        }
        panic!("handshake did not finish in 10 rounds");
    }

    #[test]
    fn same_key_derives_same_ca_and_other_key_another() {
        let a = identity(Some(K1), "a");
        let b = identity(Some(K1), "b");
        let open = identity(None, "d");
        assert_eq!(a.key_source, KeySource::Configured);
        assert_eq!(open.key_source, KeySource::OpenDefault);
        // The CA public key is what peers trust; compare the derived keys.
        let pk = |k: &str| {
            derive_ca_key(keys(k).first())
                .unwrap()
                .public_key_raw()
                .to_vec()
        };
        assert_eq!(pk(K1), pk(K1));
        assert_ne!(pk(K1), pk(K2));
        assert_eq!(a.ca_certs, b.ca_certs);
        assert_ne!(a.node_cert, b.node_cert);
        assert_ne!(a.stateless_reset_key(), b.stateless_reset_key());
        assert!(a.quic_server_config().is_ok());
        assert!(open.quic_client_config().is_ok());
    }

    /// Every pair of key lists met during a rotation (and some that never should meet): a
    /// handshake succeeds exactly when each side's first key is among the other's keys.
    #[test]
    fn handshake_matrix_follows_first_key_signs_any_key_verifies() {
        let lists: [&[&str]; 7] = [
            &[K1],
            &[K1, K2],
            &[K2, K1],
            &[K2],
            &[K3, K1],
            &[K3],
            &[], // the open default
        ];
        let nodes: Vec<(ClusterIdentity, &[&str])> = lists
            .iter()
            .enumerate()
            .map(|(i, list)| {
                let text = list.join(",");
                let text = (!list.is_empty()).then_some(text.as_str());
                (identity(text, &format!("n{i}")), *list)
            })
            .collect();
        for (ci, (client, client_keys)) in nodes.iter().enumerate() {
            for (si, (server, server_keys)) in nodes.iter().enumerate() {
                let expected = match (client_keys.first(), server_keys.first()) {
                    (Some(c), Some(s)) => server_keys.contains(c) && client_keys.contains(s),
                    // Two open-default nodes trust each other; open and keyed never do.
                    (None, None) => true,
                    _ => false,
                };
                let outcome = handshake(client, server);
                assert_eq!(
                    outcome.is_ok(),
                    expected,
                    "client {:?} -> server {:?}: {outcome:?}",
                    lists[ci],
                    lists[si]
                );
            }
        }
    }

    /// The documented procedure: at every step of the rolling restart, a node already on the
    /// step's list and a node still on the previous one handshake in both directions.
    #[test]
    fn each_step_of_a_rotation_keeps_old_and_new_nodes_talking() {
        let steps = [
            K1.to_string(),
            format!("{K1},{K2}"),
            format!("{K2},{K1}"),
            K2.to_string(),
        ];
        for pair in steps.windows(2) {
            let old = identity(Some(&pair[0]), "old");
            let new = identity(Some(&pair[1]), "new");
            for (c, s) in [(&old, &new), (&new, &old), (&new, &new)] {
                handshake(c, s).unwrap_or_else(|e| panic!("{:?} -> {:?}: {e}", pair[0], pair[1]));
            }
        }
        // Skipping a step breaks it: a node on K1 alone and one that promoted K2 do not talk.
        let k1 = identity(Some(&steps[0]), "k1");
        let promoted = identity(Some(&steps[2]), "promoted");
        assert!(handshake(&k1, &promoted).is_err());
        assert!(handshake(&promoted, &k1).is_err());
    }
}
