//! Password hashing with Argon2id, and the password policy.
//!
//! Parameters: 19 MiB of memory, 2 passes, 1 lane: the first of OWASP's recommended Argon2id settings
//! (Password Storage Cheat Sheet). A login runs inside one WebAssembly instance per request, so the cost
//! has to fit its budget: one lane because a component instance has one thread; 19 MiB because every
//! concurrent login holds that much linear memory (the host's per-instance limit is 512 MiB, and a
//! 2-core machine runs only a few logins at once); 2 passes because the time a pass takes in wasm
//! (measured in BENCHMARKS.md, "Auth") keeps a login well under a second. The parameters are stored with
//! each hash, so raising them later re-hashes passwords at their next login.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;

use crate::ApiError;

/// Memory in KiB, passes, lanes.
pub const PARAMS: (u32, u32, u32) = (19 * 1024, 2, 1);

/// Bytes of salt and of hash output.
pub const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;

/// Shortest and longest password accepted, in characters and bytes. NIST SP 800-63B asks for at least
/// 8 characters and for long passphrases to be allowed; the byte cap bounds the work one request can cause.
pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_BYTES: usize = 256;

/// Checks a new password against the policy.
pub fn check_policy(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::BadRequest(format!(
            "a password has at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest(format!(
            "a password has at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The stored form: `argon2id$v=19$m=<kib>,t=<passes>,p=<lanes>$<salt>$<hash>` (base64, no padding).
pub fn hash(password: &str, salt: &[u8; SALT_BYTES]) -> String {
    let (m, t, p) = PARAMS;
    let output = derive(password, salt, m, t, p).expect("the built-in parameters are valid");
    format!(
        "argon2id$v=19$m={m},t={t},p={p}${}${}",
        B64.encode(salt),
        B64.encode(output)
    )
}

/// Whether `password` matches a stored hash. A malformed stored hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    let Some((m, t, p, salt, expected)) = parse(stored) else {
        return false;
    };
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    match derive(password, &salt, m, t, p) {
        Some(output) => constant_time_eq(&output, &expected),
        None => false,
    }
}

/// Whether a stored hash was made with weaker parameters than today's.
pub fn needs_rehash(stored: &str) -> bool {
    parse(stored).is_none_or(|(m, t, p, _, _)| (m, t, p) != PARAMS)
}

fn derive(password: &str, salt: &[u8], m: u32, t: u32, p: u32) -> Option<[u8; HASH_BYTES]> {
    let params = Params::new(m, t, p, Some(HASH_BYTES)).ok()?;
    let mut output = [0u8; HASH_BYTES];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut output)
        .ok()?;
    Some(output)
}

type Parsed = (u32, u32, u32, Vec<u8>, Vec<u8>);

fn parse(stored: &str) -> Option<Parsed> {
    let mut parts = stored.split('$');
    if parts.next()? != "argon2id" || parts.next()? != "v=19" {
        return None;
    }
    let mut m = None;
    let mut t = None;
    let mut p = None;
    for pair in parts.next()?.split(',') {
        let (name, value) = pair.split_once('=')?;
        let value: u32 = value.parse().ok()?;
        match name {
            "m" => m = Some(value),
            "t" => t = Some(value),
            "p" => p = Some(value),
            _ => return None,
        }
    }
    let salt = B64.decode(parts.next()?).ok()?;
    let hash = B64.decode(parts.next()?).ok()?;
    if parts.next().is_some() || hash.len() != HASH_BYTES {
        return None;
    }
    // Refuse parameters that would let a tampered record make verification arbitrarily expensive.
    let (m, t, p) = (m?, t?, p?);
    if m > 256 * 1024 || t > 16 || p > 4 {
        return None;
    }
    Some((m, t, p, salt, hash))
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_carry_their_parameters() {
        let stored = hash("correct horse battery", &[7; SALT_BYTES]);
        assert!(
            stored.starts_with("argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse batterY", &stored));
        assert!(!needs_rehash(&stored));
        // Another salt, another hash.
        assert_ne!(stored, hash("correct horse battery", &[8; SALT_BYTES]));
    }

    #[test]
    fn malformed_or_hostile_records_never_match() {
        let stored = hash("correct horse battery", &[7; SALT_BYTES]);
        for bad in [
            String::new(),
            "argon2i$v=19$m=19456,t=2,p=1$AAAA$AAAA".into(),
            stored.replace("v=19", "v=16"),
            stored.replace("m=19456", "m=99999999"),
            stored.replace("t=2", "t=99"),
            format!("{stored}$extra"),
            stored[..stored.len() - 4].to_string(),
        ] {
            assert!(!verify("correct horse battery", &bad), "{bad}");
            assert!(needs_rehash(&bad) || bad.contains("t=99") || bad.contains("m=99999999"));
        }
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("ten chars!").is_ok());
        assert!(check_policy(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
        // Characters, not bytes, count towards the minimum.
        assert!(check_policy("ééééééééé").is_err());
    }
}
