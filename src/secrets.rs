//! Secrets: random tokens, their stored hashes, and password hashing.
//!
//! API tokens, session ids, OAuth codes and client secrets are 256-bit random strings, so a single
//! SHA-256 is enough to store them safely (no dictionary to attack). Only the hash is stored;
//! a short prefix is kept in the clear so people can tell tokens apart. Passwords are low-entropy
//! and are hashed with argon2id instead.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Characters of a token kept in the clear for identification (JupyterHub keeps 4).
pub const PREFIX_LEN: usize = 4;

/// A fresh 256-bit random token, hex encoded (64 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A short random identifier (not a secret), e.g. for token ids.
pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a high-entropy secret: SHA-256, hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The clear prefix shown for a token.
pub fn token_prefix(token: &str) -> String {
    token.chars().take(PREFIX_LEN).collect()
}

/// Compare two secrets (or hashes) in constant time.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A value derived from a secret for a different purpose (e.g. the CSRF token of a session),
/// so the derived value reveals nothing about the secret.
pub fn derive(purpose: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(purpose.as_bytes());
    h.update([0u8]);
    h.update(secret.as_bytes());
    hex::encode(&h.finalize()[..20])
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct PasswordError(String);

/// Hash a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError(e.to_string()))
}

/// Check a password against a stored argon2 hash. A malformed stored hash never matches.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A secret Orrery must be able to read back (a provider's refresh token), sealed with
/// ChaCha20-Poly1305 under a key kept in the state directory: `base64(nonce ‖ ciphertext)`.
/// Unlike the hashes above, whoever holds the key can open it; the state database alone
/// cannot.
pub fn seal(key: &[u8; 32], plaintext: &str) -> Result<String, String> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
    let key =
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|e| e.to_string())?);
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let mut sealed = plaintext.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut sealed,
    )
    .map_err(|e| e.to_string())?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        out,
    ))
}

/// Open what [`seal`] made with the same key; `None` if it was made with another key or
/// changed.
pub fn open(key: &[u8; 32], sealed: &str) -> Option<String> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
    let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, sealed).ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = raw.split_at(NONCE_LEN);
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).ok()?);
    let mut body = body.to_vec();
    let plain = key
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).ok()?,
            Aad::empty(),
            &mut body,
        )
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

/// The sealing key in `path`, made (32 random bytes, mode 0600) the first time it is needed.
pub fn sealing_key(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut key = [0u8; 32];
            key.copy_from_slice(&bytes);
            return Ok(key);
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a 32-byte key; move it aside to make a new one (stored refresh tokens are then lost: their users log in again)", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(&key)?;
            f.sync_all()?;
            Ok(key)
        }
        // Made meanwhile by another caller: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => sealing_key(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_their_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("provider-tokens.key");
        let key = sealing_key(&path).unwrap();
        assert_eq!(sealing_key(&path).unwrap(), key, "made once, then read");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let sealed = seal(&key, "refresh-token-value").unwrap();
        assert!(!sealed.contains("refresh-token-value"));
        assert_ne!(
            sealed,
            seal(&key, "refresh-token-value").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(open(&key, &sealed).as_deref(), Some("refresh-token-value"));
        assert_eq!(open(&[7u8; 32], &sealed), None, "another key");
        let mut tampered = sealed.clone();
        tampered.replace_range(20..21, if &sealed[20..21] == "A" { "B" } else { "A" });
        assert_eq!(open(&key, &tampered), None, "changed");
    }

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), a);
    }

    #[test]
    fn passwords_verify_only_when_right() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
