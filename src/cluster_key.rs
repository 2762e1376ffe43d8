//! The cluster keys (`BO_CLUSTER_KEY`): what admits a node to the cluster.
//!
//! Every secret of the cluster is derived from these keys with HKDF-SHA256, each purpose with
//! its own label (the TLS CA in `tls`, the datagram seal in `seal`). The derivation is fast, and
//! every node shows a certificate that a key guess can be checked against offline, so a key
//! must carry the strength itself: it is at least [`MIN_KEY_BYTES`] random bytes written in
//! base64 or hex (what `bocluster keygen`, `openssl rand -base64 32` or `openssl rand -hex 32`
//! print). Passphrases are refused: `winter2026` was found in 780 guesses, and no passphrase a
//! person picks comes near 2^128.
//!
//! Several keys, comma-separated, make rotation possible without downtime: the first seals and
//! signs, every one listed opens and verifies.
//!
//! Why no password estimator (zxcvbn): its dictionaries stay in the heap for the life of the
//! process (5.5 MiB, measured, where a node's private memory is about 2 MiB), and its guess
//! count is a `u64` that tops out near 2^64, below the 2^128 asked of a key here. Checking the
//! form of a random key is cheap and strict; the sanity checks of [`check_random`] only catch
//! mistakes (a placeholder, a repeated or counting pattern, text that happens to be base64).

use std::fmt;

use data_encoding::{Encoding, BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// Fewest random bytes a key may hold: 128 bits. At 10^12 guesses a second, an offline search
/// of half that space takes about 5 x 10^18 years.
pub const MIN_KEY_BYTES: usize = 16;

/// Bytes of a key made by [`generate_key`] (`bocluster keygen`): 256 bits.
pub const GENERATED_KEY_BYTES: usize = 32;

/// Key used when no `BO_CLUSTER_KEY` is set: encrypted, but open to any bocluster node.
const OPEN_CLUSTER_KEY: &[u8] = b"bocluster-open-cluster-no-key-set";

/// HKDF label of key fingerprints (shown in logs so operators can tell keys apart).
const FINGERPRINT_SALT: &[u8] = b"bocluster key fingerprint v1";

/// What the messages tell a user to do.
const HOW_TO: &str = "make one with `bocluster keygen` (or `openssl rand -base64 32`)";

/// Why a `BO_CLUSTER_KEY` value was refused. Messages name the key by its position in the
/// list, never by its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must not be empty; unset it to run an open cluster, or {HOW_TO}")]
    Empty,
    #[error("key {position} of the list is empty (stray comma?)")]
    EmptyEntry { position: usize },
    #[error("key {position} is not base64 or hex: a cluster key is at least {MIN_KEY_BYTES} random bytes, not a passphrase; {HOW_TO}")]
    NotEncoded { position: usize },
    #[error("key {position} holds {bytes} bytes, fewer than the {MIN_KEY_BYTES} random bytes a key needs to stand an offline search; {HOW_TO}")]
    TooShort { position: usize, bytes: usize },
    #[error("key {position} does not look random ({why}); {HOW_TO}")]
    NotRandom { position: usize, why: &'static str },
    #[error("key {position} repeats key {first}")]
    Duplicate { position: usize, first: usize },
    #[error("could not read random bytes from the operating system")]
    NoRandom,
}

/// One cluster key: its secret bytes (the decoded key) and a fingerprint for logs.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey {
    secret: Vec<u8>,
    fingerprint: String,
}

impl ClusterKey {
    fn from_secret(secret: Vec<u8>) -> Self {
        let tag = derive_secret(&secret, FINGERPRINT_SALT, &[b"fingerprint"]);
        let fingerprint = HEXLOWER.encode(&tag[..4]);
        ClusterKey {
            secret,
            fingerprint,
        }
    }

    /// 32 bytes for one purpose: HKDF-SHA256 with `salt` (the purpose's own label) over the
    /// key, expanded with `info`. Different salts give unrelated outputs.
    pub fn derive(&self, salt: &[u8], info: &[&[u8]]) -> [u8; 32] {
        derive_secret(&self.secret, salt, info)
    }

    /// Eight hex digits that name this key in logs and certificates. It is a one-way function
    /// of the key and tells an attacker nothing a node's certificate does not already show.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Never prints the secret.
impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({})", self.fingerprint)
    }
}

/// The keys of `BO_CLUSTER_KEY`, in order: the first seals and signs, every one opens and
/// verifies. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterKeys {
    keys: Vec<ClusterKey>,
    open: bool,
}

impl ClusterKeys {
    /// Parses a comma-separated list of keys, each base64 or hex of at least
    /// [`MIN_KEY_BYTES`] random bytes. Spaces around a key are ignored.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.trim().is_empty() {
            return Err(KeyError::Empty);
        }
        let mut keys: Vec<ClusterKey> = Vec::new();
        for (index, entry) in text.split(',').enumerate() {
            let position = index + 1;
            let key = ClusterKey::from_secret(parse_one(entry.trim(), position)?);
            if let Some(first) = keys.iter().position(|k| k.secret == key.secret) {
                return Err(KeyError::Duplicate {
                    position,
                    first: first + 1,
                });
            }
            keys.push(key);
        }
        Ok(ClusterKeys { keys, open: false })
    }

    /// The built-in key used when `BO_CLUSTER_KEY` is not set: traffic is encrypted, but any
    /// bocluster node can join.
    pub fn open_default() -> Self {
        ClusterKeys {
            keys: vec![ClusterKey::from_secret(OPEN_CLUSTER_KEY.to_vec())],
            open: true,
        }
    }

    /// Whether this is the open default rather than keys that were given.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// The key that seals and signs.
    pub fn first(&self) -> &ClusterKey {
        // `parse` refuses an empty list and `open_default` holds one key.
        &self.keys[0]
    }

    /// Every key, the first one first: each of them opens and verifies.
    pub fn iter(&self) -> impl Iterator<Item = &ClusterKey> {
        self.keys.iter()
    }

    /// How many keys are listed (at least one).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: there is at least one key. (For clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The fingerprints, in order, comma-separated: what a node logs at start.
    pub fn fingerprints(&self) -> String {
        let names: Vec<&str> = self.keys.iter().map(ClusterKey::fingerprint).collect();
        names.join(",")
    }
}

/// A new key of [`GENERATED_KEY_BYTES`] random bytes from the operating system, in base64:
/// what `bocluster keygen` prints.
pub fn generate_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; GENERATED_KEY_BYTES];
    // A key that fails the sanity checks is possible by chance (about 1 in 10^10 for 32
    // bytes); draw again rather than hand out a key the node would refuse.
    for _ in 0..16 {
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::NoRandom)?;
        let text = BASE64.encode(&bytes);
        if parse_one(&text, 1).is_ok() {
            return Ok(text);
        }
    }
    Err(KeyError::NoRandom)
}

/// One key of the list: decoded, long enough, and plausibly random.
fn parse_one(text: &str, position: usize) -> Result<Vec<u8>, KeyError> {
    if text.is_empty() {
        return Err(KeyError::EmptyEntry { position });
    }
    let (bytes, is_hex) = decode(text).ok_or(KeyError::NotEncoded { position })?;
    if bytes.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort {
            position,
            bytes: bytes.len(),
        });
    }
    check_random(text, &bytes, is_hex).map_err(|why| KeyError::NotRandom { position, why })?;
    Ok(bytes)
}

/// Hex (all one case) first, since a hex string can also be valid base64; then base64 with
/// the standard or the URL-safe alphabet, padded or not, with canonical trailing bits.
fn decode(text: &str) -> Option<(Vec<u8>, bool)> {
    let hex_case = |upper: bool| {
        text.bytes().all(|b| {
            b.is_ascii_digit() || (b.is_ascii_hexdigit() && b.is_ascii_uppercase() == upper)
        })
    };
    if hex_case(false) || hex_case(true) {
        if let Ok(bytes) = HEXLOWER.decode(text.to_ascii_lowercase().as_bytes()) {
            return Some((bytes, true));
        }
    }
    let encodings: [&Encoding; 4] = [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD];
    encodings
        .iter()
        .find_map(|e| e.decode(text.as_bytes()).ok())
        .map(|bytes| (bytes, false))
}

/// Sanity checks that random keys pass and typed-in values fail. Together they refuse a
/// random key of 16 bytes about once in 40,000 draws (measured over 800,000; a 32-byte key
/// about once in 10^10), and [`generate_key`] draws again when it happens:
/// - more than half of the byte values differ (of the first 128 bytes): refuses repeats such
///   as all zeros or `deadbeef` four times;
/// - at most half of the neighbouring characters are equal or one apart (`aa`, `ab`, `ba`):
///   refuses counting patterns such as `abcdefgh...` or `0123...`;
/// - base64 mixes upper- and lowercase letters: refuses words that happen to be valid base64,
///   such as 24 lowercase letters and digits.
fn check_random(text: &str, bytes: &[u8], is_hex: bool) -> Result<(), &'static str> {
    let sample = &bytes[..bytes.len().min(128)];
    let mut seen = [false; 256];
    let distinct = sample
        .iter()
        .filter(|&&b| !std::mem::replace(&mut seen[usize::from(b)], true))
        .count();
    if distinct * 2 <= sample.len() {
        return Err("too many repeated bytes");
    }
    let chars = text.trim_end_matches('=').as_bytes();
    let pairs = chars.len().saturating_sub(1);
    let close = chars
        .windows(2)
        .filter(|w| w[0].abs_diff(w[1]) <= 1)
        .count();
    if close * 2 > pairs {
        return Err("repeated or counting characters");
    }
    if !is_hex {
        let upper = chars.iter().any(u8::is_ascii_uppercase);
        let lower = chars.iter().any(u8::is_ascii_lowercase);
        if !(upper && lower) {
            return Err("random base64 mixes upper- and lowercase letters");
        }
    }
    Ok(())
}

/// HKDF-SHA256(salt, ikm = secret) expanded with `info` to 32 bytes.
fn derive_secret(secret: &[u8], salt: &[u8], info: &[&[u8]]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    let mut out = [0u8; 32];
    // HKDF-SHA256 can expand to 255 x 32 bytes; 32 never fails.
    prk.expand(info, Len32)
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 expands to 32 bytes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys of the form the tools print, for the tests below.
    const K1: &str = "kL63lntqa/vXk0YjAysIOtioBkRiaRl3WhUBmpA+Mo8=";
    const K1_HEX: &str = "90beb7967b6a6bfbd7934623032b083ad8a80644626919775a15019a903e328f";
    const K2: &str = "O6Tr/fUyefcE2iG2Evq9IQwVP5eU1toongTe1sZLpEI=";

    #[test]
    fn weak_keys_are_refused_with_a_way_out_and_without_the_key() {
        type Expect = fn(&KeyError) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("winter2026", |e| matches!(e, KeyError::NotEncoded { .. })),
            ("a", |e| matches!(e, KeyError::NotEncoded { .. })),
            ("correct horse battery staple", |e| {
                matches!(e, KeyError::NotEncoded { .. })
            }),
            // URL-safe base64 that decodes to 9 bytes.
            ("alpha-secret", |e| {
                matches!(e, KeyError::TooShort { bytes: 9, .. })
            }),
            ("c2VjcmV0", |e| {
                matches!(e, KeyError::TooShort { bytes: 6, .. })
            }),
            ("00112233445566778899aabbccddeeff"[..30].as_ref(), |e| {
                matches!(e, KeyError::TooShort { bytes: 15, .. })
            }),
            ("AAAAAAAAAAAAAAAAAAAAAA==", |e| {
                matches!(e, KeyError::NotRandom { .. })
            }),
            ("00000000000000000000000000000000", |e| {
                matches!(e, KeyError::NotRandom { .. })
            }),
            ("deadbeefdeadbeefdeadbeefdeadbeef", |e| {
                matches!(e, KeyError::NotRandom { .. })
            }),
            ("0123456789abcdef0123456789abcdef", |e| {
                matches!(e, KeyError::NotRandom { .. })
            }),
            ("abcdefghijklmnopqrstuvwxyzABCDEF", |e| {
                matches!(e, KeyError::NotRandom { .. })
            }),
            ("mysecretclusterkey2026ab", |e| {
                matches!(e, KeyError::NotRandom { .. })
            }),
            ("", |e| matches!(e, KeyError::Empty)),
            ("  ", |e| matches!(e, KeyError::Empty)),
        ];
        for (text, expected) in cases {
            let err = ClusterKeys::parse(text).expect_err(text);
            assert!(expected(&err), "{text:?}: unexpected {err:?}");
            let message = err.to_string();
            assert!(message.contains("keygen"), "{text:?}: {message}");
            if text.len() > 2 {
                assert!(!message.contains(text.trim()), "{message} shows the key");
            }
        }
    }

    #[test]
    fn lists_name_the_bad_entry_by_position() {
        let err = ClusterKeys::parse(&format!("{K1},winter2026")).unwrap_err();
        assert_eq!(err, KeyError::NotEncoded { position: 2 });
        assert!(err.to_string().starts_with("key 2 "), "{err}");
        let err = ClusterKeys::parse(&format!("{K1},,{K2}")).unwrap_err();
        assert_eq!(err, KeyError::EmptyEntry { position: 2 });
        let err = ClusterKeys::parse(&format!("{K1},{K2},{K1_HEX}")).unwrap_err();
        assert_eq!(
            err,
            KeyError::Duplicate {
                position: 3,
                first: 1
            }
        );
        let err = ClusterKeys::parse(&format!("{K1},")).unwrap_err();
        assert_eq!(err, KeyError::EmptyEntry { position: 2 });
    }

    #[test]
    fn strong_keys_in_every_form_parse_and_keep_their_order() {
        let keys = ClusterKeys::parse(&format!(" {K2} , {K1}")).unwrap();
        assert!(!keys.is_open());
        assert_eq!(keys.len(), 2);
        let k2 = ClusterKeys::parse(K2).unwrap();
        assert_eq!(keys.first(), k2.first());
        // The same bytes in hex, base64 and unpadded URL-safe base64 are the same key.
        let hex = ClusterKeys::parse(K1_HEX).unwrap();
        let upper = ClusterKeys::parse(&K1_HEX.to_ascii_uppercase()).unwrap();
        let b64 = ClusterKeys::parse(K1).unwrap();
        let url =
            ClusterKeys::parse(&BASE64URL_NOPAD.encode(&BASE64.decode(K1.as_bytes()).unwrap()))
                .unwrap();
        assert_eq!(hex.first(), b64.first());
        assert_eq!(upper.first(), b64.first());
        assert_eq!(url.first(), b64.first());
        assert_eq!(keys.iter().nth(1), Some(b64.first()));
        assert_eq!(
            keys.fingerprints(),
            format!("{},{}", k2.first().fingerprint(), b64.first().fingerprint())
        );
        // Debug shows fingerprints only.
        let debug = format!("{keys:?}");
        assert!(!debug.contains(K1) && !debug.contains(&K1[..10]), "{debug}");
        assert!(debug.contains(b64.first().fingerprint()), "{debug}");
    }

    #[test]
    fn open_default_is_one_key_and_says_so() {
        let open = ClusterKeys::open_default();
        assert!(open.is_open());
        assert_eq!(open.len(), 1);
        assert_ne!(open.first(), ClusterKeys::parse(K1).unwrap().first());
    }

    #[test]
    fn derivations_depend_on_key_salt_and_info() {
        let a = ClusterKeys::parse(K1).unwrap();
        let b = ClusterKeys::parse(K2).unwrap();
        let d = |k: &ClusterKeys, salt: &[u8], info: &[u8]| k.first().derive(salt, &[info]);
        assert_eq!(d(&a, b"x", b"i"), d(&a, b"x", b"i"));
        assert_ne!(d(&a, b"x", b"i"), d(&b, b"x", b"i"));
        assert_ne!(d(&a, b"x", b"i"), d(&a, b"y", b"i"));
        assert_ne!(d(&a, b"x", b"i"), d(&a, b"x", b"j"));
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let text = generate_key().unwrap();
            assert_eq!(BASE64.decode(text.as_bytes()).unwrap().len(), 32);
            ClusterKeys::parse(&text).unwrap();
            assert!(seen.insert(text));
        }
    }

    /// The sanity checks' false refusals of random keys, counted over many random draws at
    /// the smallest size (16 bytes), in hex and base64: none expected.
    #[test]
    fn random_minimal_keys_pass_the_sanity_checks() {
        use rand::{Rng, SeedableRng};
        // A fixed seed: the count is the same on every run.
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let mut refused = 0;
        for _ in 0..20_000 {
            let mut bytes = [0u8; MIN_KEY_BYTES];
            rng.fill_bytes(&mut bytes);
            for text in [HEXLOWER.encode(&bytes), BASE64.encode(&bytes)] {
                if ClusterKeys::parse(&text).is_err() {
                    refused += 1;
                }
            }
        }
        // 40,000 keys (half hex, half base64), about one refusal expected: more than 4 would
        // mean a check is stricter than documented.
        assert!(refused <= 4, "{refused} random keys refused");
    }
}
