//! Random identifiers and bearer secrets: API keys, widget keys, refresh tokens, one-time codes.
//!
//! A secret is `<prefix>_<id>_<secret>`: the prefix says what it is (so leaked keys are recognisable to
//! secret scanners and to people), the id finds its record with one read, and only the SHA-256 of the whole
//! string is stored. A fast hash is enough because the secret part carries over 200 bits of entropy.

use sha2::{Digest, Sha256};

/// Lowercase letters and digits: safe in URLs, document ids and headers, and never split by `_`.
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Length of record ids (about 82 bits) and of the secret part of a key (about 206 bits).
pub const ID_CHARS: usize = 16;
pub const SECRET_CHARS: usize = 40;

/// The kinds of bearer secret, by prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// `erk_`: a project API key.
    ApiKey,
    /// `erw_`: a public widget key.
    WidgetKey,
    /// `err_`: a refresh token.
    RefreshToken,
}

impl SecretKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::ApiKey => "erk",
            Self::WidgetKey => "erw",
            Self::RefreshToken => "err",
        }
    }
}

/// A source of randomness (the platform's CSPRNG in the functions, a seeded one in tests).
pub trait Entropy {
    fn fill(&self, buf: &mut [u8]);
}

/// `n` characters from the alphabet, uniformly (rejection sampling, so no modulo bias).
pub fn random_string(entropy: &dyn Entropy, n: usize) -> String {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        entropy.fill(&mut buf);
        for &b in &buf {
            // 252 = 7 * 36: bytes at or above it would favour the first letters.
            if b < 252 && out.len() < n {
                out.push(ALPHABET[usize::from(b % 36)] as char);
            }
        }
    }
    out
}

/// A new record id.
pub fn new_id(entropy: &dyn Entropy) -> String {
    random_string(entropy, ID_CHARS)
}

/// A six-digit one-time code.
pub fn new_code(entropy: &dyn Entropy) -> String {
    let mut buf = [0u8; 8];
    entropy.fill(&mut buf);
    format!("{:06}", u64::from_le_bytes(buf) % 1_000_000)
}

/// A new secret of `kind` for record `id`.
pub fn new_secret(entropy: &dyn Entropy, kind: SecretKind, id: &str) -> String {
    format!(
        "{}_{id}_{}",
        kind.prefix(),
        random_string(entropy, SECRET_CHARS)
    )
}

/// The record id inside a secret of `kind`, if the secret has that shape.
pub fn secret_id(secret: &str, kind: SecretKind) -> Option<&str> {
    let rest = secret.strip_prefix(kind.prefix())?.strip_prefix('_')?;
    let (id, tail) = rest.split_once('_')?;
    let shaped = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| ALPHABET.contains(&b));
    (shaped(id, ID_CHARS) && shaped(tail, SECRET_CHARS)).then_some(id)
}

/// Which kind of secret this is, by prefix alone.
pub fn secret_kind(secret: &str) -> Option<SecretKind> {
    [
        SecretKind::ApiKey,
        SecretKind::WidgetKey,
        SecretKind::RefreshToken,
    ]
    .into_iter()
    .find(|kind| secret_id(secret, *kind).is_some())
}

/// Lowercase hex SHA-256, how secrets and codes are stored.
pub fn digest(value: &str) -> String {
    let hash = Sha256::digest(value.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;

    use super::*;

    /// Deterministic bytes for tests (xorshift); never used outside them.
    #[derive(Debug)]
    pub struct Seeded(pub Cell<u64>);

    impl Entropy for Seeded {
        fn fill(&self, buf: &mut [u8]) {
            for b in buf {
                let mut x = self.0.get();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.0.set(x);
                *b = (x >> 24) as u8;
            }
        }
    }

    #[test]
    fn secrets_round_trip_their_id_and_kind() {
        let entropy = Seeded(Cell::new(42));
        let id = new_id(&entropy);
        assert_eq!(id.len(), ID_CHARS);
        for kind in [
            SecretKind::ApiKey,
            SecretKind::WidgetKey,
            SecretKind::RefreshToken,
        ] {
            let secret = new_secret(&entropy, kind, &id);
            assert!(secret.starts_with(&format!("{}_", kind.prefix())));
            assert_eq!(secret_id(&secret, kind), Some(id.as_str()));
            assert_eq!(secret_kind(&secret), Some(kind));
        }
        let key = new_secret(&entropy, SecretKind::ApiKey, &id);
        assert_eq!(secret_id(&key, SecretKind::WidgetKey), None);
        for bad in [
            "",
            "erk_",
            "erk_short_x",
            &key[..key.len() - 1],
            &key.to_uppercase(),
            &format!("{key}x"),
        ] {
            assert_eq!(secret_kind(bad), None, "{bad}");
        }
    }

    #[test]
    fn random_strings_use_the_whole_alphabet_evenly() {
        let entropy = Seeded(Cell::new(7));
        let text = random_string(&entropy, 36_000);
        let mut counts = [0u32; 36];
        for b in text.bytes() {
            counts[ALPHABET.iter().position(|a| *a == b).unwrap()] += 1;
        }
        // 1000 expected per letter; a biased sampler would push the first letters well above.
        assert!(counts.iter().all(|c| (850..1150).contains(c)), "{counts:?}");
        assert_eq!(new_code(&entropy).len(), 6);
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
