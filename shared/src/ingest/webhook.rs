//! Signed webhooks: the secret of an endpoint, and the two signature schemes a delivery may carry.
//!
//! An endpoint's secret is never stored: it is derived from the server's key (a secret variable) and
//! the endpoint's id and salt, which are stored, so the document store alone does not reveal it.
//! - Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` (several, space
//!   separated, while a secret rotates), keyed by the secret's base64 part after `whsec_`;
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, keyed by the secret as
//!   GitHub is given it (the whole `whsec_...` text).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::password::constant_time_eq;

/// How far a Standard Webhooks timestamp may be from now.
pub const TOLERANCE_SECONDS: u64 = 300;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The secret of endpoint `id` with `salt`, under the server's `key`: `whsec_` and 32 bytes in
/// base64, the form Standard Webhooks libraries take.
pub fn secret(key: &[u8], id: &str, salt: &str) -> String {
    let raw = hmac(
        key,
        &[
            b"edgerag webhook secret\0",
            id.as_bytes(),
            b"\0",
            salt.as_bytes(),
        ],
    );
    format!("whsec_{}", STANDARD.encode(raw))
}

/// Why a delivery's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Missing(&'static str),
    Stale,
    Mismatch,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(header) => write!(f, "the `{header}` header is missing or malformed"),
            Self::Stale => write!(
                f,
                "`webhook-timestamp` is more than {TOLERANCE_SECONDS} s from now"
            ),
            Self::Mismatch => write!(f, "no signature matches"),
        }
    }
}

/// Signs a Standard Webhooks delivery (what a sender does; the tests and the README use it).
pub fn sign_standard(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .unwrap_or_default();
    let mac = hmac(
        &key,
        &[
            id.as_bytes(),
            b".",
            timestamp.to_string().as_bytes(),
            b".",
            body,
        ],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// Verifies a Standard Webhooks delivery at time `now` (Unix seconds).
pub fn verify_standard(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: u64,
) -> Result<(), Rejection> {
    let id = id
        .filter(|v| !v.is_empty())
        .ok_or(Rejection::Missing("webhook-id"))?;
    let timestamp: u64 = timestamp
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Rejection::Missing("webhook-timestamp"))?;
    let signatures = signatures.ok_or(Rejection::Missing("webhook-signature"))?;
    if timestamp.abs_diff(now) > TOLERANCE_SECONDS {
        return Err(Rejection::Stale);
    }
    let expected = sign_standard(secret, id, timestamp, body);
    let expected = expected.as_bytes();
    let matched = signatures
        .split_ascii_whitespace()
        .filter(|s| s.starts_with("v1,"))
        .fold(false, |found, s| {
            found | constant_time_eq(s.as_bytes(), expected)
        });
    if matched {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

/// Signs a GitHub delivery's body: the `X-Hub-Signature-256` value.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    let mac = hmac(secret.as_bytes(), &[body]);
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Verifies a GitHub delivery's `X-Hub-Signature-256`.
pub fn verify_github(secret: &str, signature: Option<&str>, body: &[u8]) -> Result<(), Rejection> {
    let signature = signature
        .filter(|s| s.starts_with("sha256="))
        .ok_or(Rejection::Missing("x-hub-signature-256"))?;
    let expected = sign_github(secret, body);
    if constant_time_eq(
        signature.trim().to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    ) {
        Ok(())
    } else {
        Err(Rejection::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_depend_on_key_id_and_salt() {
        let a = secret(b"server key", "hook1", "salt");
        assert!(a.starts_with("whsec_"));
        assert_eq!(a, secret(b"server key", "hook1", "salt"));
        assert_ne!(a, secret(b"other key", "hook1", "salt"));
        assert_ne!(a, secret(b"server key", "hook2", "salt"));
        assert_ne!(a, secret(b"server key", "hook1", "pepper"));
    }

    #[test]
    fn standard_webhooks_signatures() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign_standard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let verify = |sigs: &str, now: u64| {
            verify_standard(
                secret,
                Some("msg_p5jXN8AQM9LWM0D4loKWxJek"),
                Some("1614265330"),
                Some(sigs),
                body,
                now,
            )
        };
        assert_eq!(verify(&sig, 1614265330 + 10), Ok(()));
        // Rotation: any of several signatures may match.
        assert_eq!(verify(&format!("v1,bm90IGl0 {sig}"), 1614265330), Ok(()));
        assert_eq!(verify("v1,bm90IGl0", 1614265330), Err(Rejection::Mismatch));
        assert_eq!(verify(&sig, 1614265330 + 301), Err(Rejection::Stale));
        assert_eq!(
            verify_standard(secret, None, Some("1"), Some(&sig), body, 1),
            Err(Rejection::Missing("webhook-id"))
        );
    }

    #[test]
    fn github_signatures() {
        // GitHub's documented example: secret "It's a Secret to Everybody", body "Hello, World!".
        let sig = sign_github("It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            sig,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            verify_github("It's a Secret to Everybody", Some(&sig), b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            verify_github("It's a Secret to Everybody", Some(&sig), b"Hello, World?"),
            Err(Rejection::Mismatch)
        );
        assert_eq!(
            verify_github("x", None, b""),
            Err(Rejection::Missing("x-hub-signature-256"))
        );
    }
}
