//! `mysql_native_password` for the MySQL port: when `BO_API_TOKEN` is set, the token is the
//! password (any user name).
//!
//! The client sends `SHA1(password) XOR SHA1(salt + SHA1(SHA1(password)))`; the server keeps
//! only `SHA1(SHA1(password))` and checks that the recovered `SHA1(password)` hashes to it.
//! The salt is random per connection, so a recorded answer cannot be replayed.

use ring::digest::{digest, Context, SHA1_FOR_LEGACY_USE_ONLY};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// Length of the salt and of the hashes.
pub const SALT_LEN: usize = 20;

fn sha1(bytes: &[u8]) -> [u8; SALT_LEN] {
    let mut out = [0u8; SALT_LEN];
    out.copy_from_slice(digest(&SHA1_FOR_LEGACY_USE_ONLY, bytes).as_ref());
    out
}

/// What the server keeps of a password: `SHA1(SHA1(password))`.
pub fn stored_hash(password: &[u8]) -> [u8; SALT_LEN] {
    sha1(&sha1(password))
}

/// What a client answers for `password` and `salt` (for tests and tools).
pub fn client_answer(password: &[u8], salt: &[u8]) -> [u8; SALT_LEN] {
    let stage1 = sha1(password);
    let mut context = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    context.update(salt);
    context.update(&sha1(&stage1));
    let mask = context.finish();
    let mut out = [0u8; SALT_LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = stage1[i] ^ mask.as_ref()[i];
    }
    out
}

/// Whether `answer` proves knowledge of the password whose [`stored_hash`] is `stored`.
pub fn verify(stored: &[u8; SALT_LEN], salt: &[u8], answer: &[u8]) -> bool {
    if answer.len() != SALT_LEN {
        return false;
    }
    let mut context = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    context.update(salt);
    context.update(stored);
    let mask = context.finish();
    let mut stage1 = [0u8; SALT_LEN];
    for (i, byte) in stage1.iter_mut().enumerate() {
        *byte = answer[i] ^ mask.as_ref()[i];
    }
    // Compared in constant time, so the time does not say how much matched.
    bool::from(sha1(&stage1).ct_eq(stored))
}

/// A fresh salt: printable bytes other than `$` (clients treat the salt as a C string).
pub fn random_salt() -> [u8; SALT_LEN] {
    let mut salt = [0u8; SALT_LEN];
    let rng = SystemRandom::new();
    if rng.fill(&mut salt).is_err() {
        // No system randomness: a fixed salt still authenticates, without replay protection.
        salt = *b"bocluster-salt-00000";
    }
    for byte in &mut salt {
        *byte = 0x21 + (*byte % 94);
        if *byte == b'$' {
            *byte = b'%';
        }
    }
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_passes_and_others_fail() {
        let stored = stored_hash(b"s3cret-token");
        let salt = random_salt();
        assert!(salt.iter().all(|b| b.is_ascii_graphic() && *b != b'$'));
        assert!(verify(
            &stored,
            &salt,
            &client_answer(b"s3cret-token", &salt)
        ));
        assert!(!verify(
            &stored,
            &salt,
            &client_answer(b"s3cret-tokeN", &salt)
        ));
        assert!(!verify(
            &stored,
            &random_salt(),
            &client_answer(b"s3cret-token", &salt)
        ));
        assert!(!verify(&stored, &salt, b""));
        assert!(!verify(&stored, &salt, &[0u8; 19]));
    }
}
