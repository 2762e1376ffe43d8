//! The cluster's identity: mutual TLS 1.3 for QUIC, derived from one shared key.
//!
//! Every node derives the same Ed25519 CA key from `BO_CLUSTER_KEY` (HKDF-SHA256), builds the
//! same CA certificate subject, and signs a fresh certificate for itself with it. Peers accept
//! only certificates that chain to that CA, in both directions, so nodes with another key never
//! finish a handshake. Nothing has to be distributed but the key itself.
//!
//! Without a key, nodes use a well-known built-in key: traffic is still encrypted, but anyone
//! running bocluster can join. The node warns about this loudly at start.

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use ring::hkdf;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

/// The DNS name every node certificate carries and every client asks for. Peers are dialled by
/// IP address, so the name is a fixed label rather than a host name.
pub const SERVER_NAME: &str = "bocluster.node";

/// ALPN protocol id; a peer speaking anything else is refused during the handshake.
pub const ALPN: &[u8] = b"bocluster/1";

/// Key used when no `BO_CLUSTER_KEY` is set: encrypted, but open to any bocluster node.
const OPEN_CLUSTER_KEY: &str = "bocluster-open-cluster-no-key-set";

/// Domain separation for the HKDF derivation of the CA key.
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

/// A node's TLS material: the cluster CA (trust anchor) and this node's signed certificate.
pub struct ClusterIdentity {
    reset_key: [u8; 32],
    ca_cert: CertificateDer<'static>,
    node_cert: CertificateDer<'static>,
    node_key: PrivatePkcs8KeyDer<'static>,
    pub key_source: KeySource,
}

impl ClusterIdentity {
    /// Derives the cluster CA from `cluster_key` (or the open default) and issues this node's
    /// certificate, naming `node_id` in its subject for log messages on the other side.
    pub fn new(cluster_key: Option<&str>, node_id: &str) -> Result<Self, TlsError> {
        let (key, key_source) = match cluster_key {
            Some(key) => (key, KeySource::Configured),
            None => (OPEN_CLUSTER_KEY, KeySource::OpenDefault),
        };
        let ca_key = derive_ca_key(key)?;
        let ca_params = ca_params();
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let node_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut node_params = CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        node_params
            .distinguished_name
            .push(DnType::CommonName, format!("bocluster node {node_id}"));
        node_params.is_ca = IsCa::NoCa;
        let node_cert = node_params.signed_by(&node_key, &issuer)?;

        Ok(ClusterIdentity {
            reset_key: derive_secret(key, &[b"quic-stateless-reset", node_id.as_bytes()])?,
            ca_cert: ca_cert.der().clone(),
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
        roots.add(self.ca_cert.clone())?;
        Ok(Arc::new(roots))
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.node_cert.clone()]
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.node_key.clone_key())
    }

    /// Server side: present our certificate and require one from the peer, chained to the CA.
    pub fn quic_server_config(&self) -> Result<QuicServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone()).build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain(), self.private_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        QuicServerConfig::try_from(config).map_err(|e| TlsError::NoQuicSuite(e.to_string()))
    }

    /// Client side: verify the peer against the CA and present our own certificate.
    pub fn quic_client_config(&self) -> Result<QuicClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain(), self.private_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        QuicClientConfig::try_from(config).map_err(|e| TlsError::NoQuicSuite(e.to_string()))
    }
}

/// Parameters of the CA certificate. They are the same on every node, so the trust anchor
/// (subject + public key) every node builds is the same.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "bocluster cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// 32 bytes derived from the cluster key with HKDF-SHA256, for the purpose named by `info`.
fn derive_secret(cluster_key: &str, info: &[&[u8]]) -> Result<[u8; 32], TlsError> {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(cluster_key.as_bytes());
    let mut out = [0u8; 32];
    prk.expand(info, Len32)
        .and_then(|okm| okm.fill(&mut out))
        .map_err(|_| TlsError::Certificate(rcgen::Error::RingUnspecified))?;
    Ok(out)
}

/// HKDF-SHA256(cluster key) -> 32-byte Ed25519 seed -> PKCS#8 -> rcgen key pair.
fn derive_ca_key(cluster_key: &str) -> Result<KeyPair, TlsError> {
    let seed = derive_secret(cluster_key, &[b"ca-ed25519-seed"])?;
    let mut pkcs8 = Vec::with_capacity(48);
    pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
    pkcs8.extend_from_slice(&seed);
    let der = PrivatePkcs8KeyDer::from(pkcs8);
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ED25519)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_derives_same_ca_and_other_key_another() {
        let a = ClusterIdentity::new(Some("secret"), "a").unwrap();
        let b = ClusterIdentity::new(Some("secret"), "b").unwrap();
        let c = ClusterIdentity::new(Some("other"), "c").unwrap();
        let open = ClusterIdentity::new(None, "d").unwrap();
        assert_eq!(a.key_source, KeySource::Configured);
        assert_eq!(open.key_source, KeySource::OpenDefault);
        // The CA public key is what peers trust; compare the derived keys.
        let pk = |k: &str| derive_ca_key(k).unwrap().public_key_raw().to_vec();
        assert_eq!(pk("secret"), pk("secret"));
        assert_ne!(pk("secret"), pk("other"));
        assert_ne!(a.node_cert, b.node_cert);
        assert!(a.quic_server_config().is_ok());
        assert!(c.quic_client_config().is_ok());
    }
}
